"""Shared by the mutations on budgets, alert rules and webhooks."""

from __future__ import annotations

import strawberry

from tallyql.auth.principal import Principal
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import UserError
from tallyql.storage.actor import Actor


@strawberry.type(description="The result of a delete mutation.")
class DeletePayload:
    deleted_id: strawberry.ID | None = strawberry.field(
        description="The id deleted; null on errors."
    )
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


def actor_of(info: TallyInfo, principal: Principal) -> Actor:
    """The caller, for the audit trail."""
    return Actor(principal.key_id, "api_key", info.context.client_ip)


def invalid(field: str, message: str) -> list[UserError]:
    return [UserError(field=field, message=message, code="INVALID")]


def not_found(what: str) -> list[UserError]:
    return [UserError(field="id", message=f"no such {what}", code="NOT_FOUND")]
