"""GraphQL errors: user mistakes carry `extensions.code`; everything else is masked.

Codes: BAD_USER_INPUT, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, GRAPHQL_PARSE_FAILED (syntax
errors and the token limit), GRAPHQL_VALIDATION_FAILED, COST_LIMIT and RATE_LIMITED (query
cost, schema/base/limits.py), QUERY_TIMEOUT (a statement ran past the statement timeout),
DEADLINE_EXCEEDED (the request ran past its deadline), UNAVAILABLE (the database cannot be
reached: retry later; the HTTP answer is then 503 with Retry-After), INTERNAL_ERROR (the
message is replaced and the original is logged with its traceback).

A mistake in a mutation's input is not an error but data: `UserError`, the one type of every
payload's `userErrors` (a field, a message, a stable code).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension

from tallyql.auth.principal import AuthError, PermissionDenied
from tallyql.engine.analytics import QueryError
from tallyql.engine.buckets import BucketError
from tallyql.engine.cost_meter import CostLimitExceeded, RateLimited
from tallyql.engine.timerange import TimeRangeError
from tallyql.imports.openrouter_client import ProviderError
from tallyql.storage.cursors import CursorError
from tallyql.storage.outage import UNAVAILABLE_MESSAGE, is_database_unavailable
from tallyql.storage.read_limits import DeadlineExceeded, StatementTimeout

log = logging.getLogger("tallyql.graphql")


@strawberry.type(description="A mistake in the input, with where it is and a stable code.")
class UserError:
    field: str = strawberry.field(description="The input field at fault (camelCase path).")
    message: str = strawberry.field(description="What is wrong, for people.")
    code: str = strawberry.field(
        description="A stable machine-readable code, e.g. INVALID_EVENT, NOT_FOUND."
    )
    index: int | None = strawberry.field(
        default=None, description="For lists: the position (from 0) of the item at fault."
    )


class BadInput(ValueError):
    """The caller's arguments are wrong (BAD_USER_INPUT)."""

    code = "BAD_USER_INPUT"


class NotFound(LookupError):
    code = "NOT_FOUND"


USER_ERRORS: dict[type[Exception], str] = {
    BadInput: "BAD_USER_INPUT",
    TimeRangeError: "BAD_USER_INPUT",
    CursorError: "BAD_USER_INPUT",
    QueryError: "BAD_USER_INPUT",
    BucketError: "BAD_USER_INPUT",
    AuthError: "UNAUTHENTICATED",
    PermissionDenied: "FORBIDDEN",
    NotFound: "NOT_FOUND",
    CostLimitExceeded: "COST_LIMIT",
    RateLimited: "RATE_LIMITED",
    StatementTimeout: "QUERY_TIMEOUT",
    DeadlineExceeded: "DEADLINE_EXCEEDED",
    ProviderError: "PROVIDER_UNAVAILABLE",
}


def user_error_code(error: BaseException | None) -> str | None:
    """The code of an error that is not ours to mask: the caller's mistake, or an outage."""
    if error is None:
        return None
    if is_database_unavailable(error):
        return "UNAVAILABLE"
    for cls, code in USER_ERRORS.items():
        if isinstance(error, cls):
            return code
    return None


def is_internal(error: GraphQLError) -> bool:
    """An error raised by our code that is not a user mistake."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False
    return user_error_code(original) is None


class ErrorCodes(MaskErrors):
    """Masks internal errors as INTERNAL_ERROR and gives every other error its code."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_internal, error_message="Internal server error")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_ERROR"}
        return masked

    def on_operation(self) -> Iterator[None]:
        try:
            yield from super().on_operation()
        except GraphQLError as error:
            # A syntax error (or the token limit) aborts parsing: it is thrown through the
            # operation hooks instead of reaching `_process_errors`, so it is coded here.
            if "code" not in (error.extensions or {}):
                error.extensions = {**(error.extensions or {}), "code": "GRAPHQL_PARSE_FAILED"}
            raise

    def _process_result(self, result: object) -> None:
        # strawberry's checks a runtime Protocol first, which costs more than the rest of it
        # when there is nothing to mask (nearly always)
        if getattr(result, "errors", None):
            super()._process_result(result)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = [_unavailable(e) for e in super()._process_errors(errors)]
        for error in processed:
            extensions: dict[str, Any] = dict(error.extensions or {})
            if "code" not in extensions:
                code = user_error_code(error.original_error)
                if code is None:
                    code = (
                        "BAD_USER_INPUT"
                        if error.original_error is not None
                        else "GRAPHQL_VALIDATION_FAILED"
                    )
                extensions["code"] = code
                error.extensions = extensions
        return processed


def _unavailable(error: GraphQLError) -> GraphQLError:
    """An outage's error with our message (the driver's may name hosts and ports)."""
    if error.original_error is None or not is_database_unavailable(error.original_error):
        return error
    return GraphQLError(
        UNAVAILABLE_MESSAGE,
        nodes=error.nodes,
        path=error.path,
        original_error=error.original_error,
        extensions={"code": "UNAVAILABLE"},
    )


def log_internal_errors(errors: list[GraphQLError]) -> None:
    for error in errors:
        if is_internal(error):
            original = error.original_error
            log.error(
                "internal error at %s: %s",
                error.path,
                original,
                exc_info=(type(original), original, original.__traceback__) if original else None,
            )


class ExplainPlans(SchemaExtension):
    """Adds the engine's plans to `extensions.plans` when the caller asked to explain."""

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if getattr(context, "explain", False):
            return {"plans": context.plans}
        return {}
