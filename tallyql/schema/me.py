"""`me`: who the API key belongs to."""

from __future__ import annotations

import strawberry

from tallyql.auth.principal import AuthError
from tallyql.schema.context import TallyInfo


@strawberry.type(description="The caller: the workspace and role of the API key in use.")
class Me:
    workspace: str
    workspace_id: strawberry.ID
    role: str
    key_id: str
    key_name: str


@strawberry.type
class MeQuery:
    @strawberry.field(description="The caller's workspace, role and key.")
    def me(self, info: TallyInfo) -> Me:
        principal = info.context.principal
        if principal is None:
            raise AuthError("missing or invalid API key")
        return Me(
            workspace=principal.workspace_name,
            workspace_id=strawberry.ID(str(principal.workspace_id)),
            role=principal.role.value,
            key_id=principal.key_id,
            key_name=principal.key_name,
        )
