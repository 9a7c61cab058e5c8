"""The one shape of the managed resources' root fields (budgets, alert rules, webhooks,
reports, price overrides):

- `xs(first, after)`: a page, oldest first (`row_connection`); `x(id)`: one or null;
- `createX(input)` / `updateX(id, input)`: an `XPayload { x userErrors }`; the feature store
  checks the input and raises a `FieldError` (code INVALID on that field) or finds no such
  resource (code NOT_FOUND on `id`): `saved` turns either into `userErrors`;
- `deleteX(id)`: a `DeletePayload { deletedId userErrors }` (`deleted`).

Every change is audited by the feature store in its own transaction, with `actor_of` the
caller.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import strawberry

from tallyql.auth.principal import Principal
from tallyql.field_error import FieldError
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import UserError
from tallyql.storage.audit import Actor

M = TypeVar("M")


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


async def saved(what: str, change: Awaitable[M | None]) -> tuple[M | None, list[UserError]]:
    """A create or update by a feature store: what it stored, or why not (the input at fault,
    or no such `what`)."""
    try:
        stored = await change
    except FieldError as exc:
        return None, invalid(exc.field, str(exc))
    if stored is None:
        return None, not_found(what)
    return stored, []


async def deleted(what: str, id: strawberry.ID, change: Awaitable[bool]) -> DeletePayload:
    """A delete by a feature store, which answers whether there was such a `what`."""
    if not await change:
        return DeletePayload(deleted_id=None, user_errors=not_found(what))
    return DeletePayload(deleted_id=id, user_errors=[])
