"""`me`: who the API key belongs to."""

from __future__ import annotations

import strawberry

from tallyql.auth.operator import is_operator
from tallyql.auth.principal import AuthError
from tallyql.schema.base.context import TallyInfo


@strawberry.type(description="The caller: the workspace and role of the API key in use.")
class Me:
    workspace: str = strawberry.field(description="The workspace's name.")
    workspace_id: strawberry.ID = strawberry.field(description="The workspace's id.")
    role: str = strawberry.field(description="admin, member, viewer or ingest.")
    key_id: str = strawberry.field(description="The API key's id.")
    key_name: str = strawberry.field(description="The API key's label.")
    operator: bool = strawberry.field(
        description="Whether this key may look across workspaces (`workspaces`, the `workspace` "
        "argument): an admin key of the operator workspace (TALLYQL_OPERATOR_WORKSPACE)."
    )


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
            operator=is_operator(principal, info.context.services.settings),
        )
