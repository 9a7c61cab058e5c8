"""GraphQL over plain HTTP: the errors strawberry meets before execution, in the GraphQL shape.

Strawberry answers a body it cannot parse, a mutation sent by GET or an unknown operation name
with a plain-text 400; here they become `{"data": null, "errors": [{"message", "extensions":
{"code"}}]}` with the same status (tallyql/http/errors.py), as every other /graphql error.

A subscription needs a stream: WebSocket (graphql-transport-ws or graphql-ws) or GraphQL over
SSE (POST with `Accept: text/event-stream`). Sent as a plain request, strawberry would execute
it as a query and fail inside the resolver (INTERNAL_ERROR and a logged traceback); it gets a
400 BAD_REQUEST that says which transports to use.
"""

from __future__ import annotations

from typing import Any

from cross_web import HTTPException as StrawberryHTTPException
from strawberry.exceptions import MissingQueryError
from strawberry.http.types import HTTPMethod
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from tallyql.http.errors import api_error, code_of_status

SUBSCRIPTION_NEEDS_A_STREAM = (
    "subscriptions need a streaming transport: open a WebSocket on /graphql "
    "(graphql-transport-ws) or POST with `Accept: text/event-stream` (GraphQL over SSE)"
)


class GraphQLHTTPErrors:
    """Mixed into the GraphQL router, before strawberry's GraphQLRouter."""

    schema: BaseSchema  # strawberry's view's, on the router this is mixed into
    allow_queries_via_get: bool

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
        try:
            # the next class in the router's MRO is strawberry's view
            return await super().run(request, context, root_value)  # type: ignore[misc]
        except StrawberryHTTPException as exc:
            status = exc.status_code
            raise api_error(status, code_of_status(status), exc.reason) from None

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: Any,
    ) -> ExecutionResult:
        return await execute_plain(
            self.schema,
            request_adapter.method,
            self.allow_queries_via_get,
            request_data.query,
            request_data.variables,
            request_data.operation_name,
            request_data.extensions,
            context,
            root_value,
        )


async def execute_plain(
    schema: Any,
    method: HTTPMethod,
    allow_queries_via_get: bool,
    query: str | None,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    extensions: dict[str, Any] | None,
    context: Any,
    root_value: Any = None,
) -> ExecutionResult:
    """strawberry's execute_single, except that a plain request never runs a subscription
    (shared by strawberry's view and the direct path of tallyql/http/graphql_fast.py)."""
    allowed = OperationType.from_http(method) - {OperationType.SUBSCRIPTION}
    if method == "GET" and not allow_queries_via_get:
        allowed -= {OperationType.QUERY}
    try:
        return await schema.execute(
            query,
            root_value=root_value,
            variable_values=variables,
            context_value=context,
            operation_name=operation_name,
            allowed_operation_types=allowed,
            operation_extensions=extensions,
        )
    except InvalidOperationTypeError as exc:
        if exc.operation_type is OperationType.SUBSCRIPTION:
            raise api_error(400, "BAD_REQUEST", SUBSCRIPTION_NEEDS_A_STREAM) from None
        reason = exc.as_http_error_reason(method)
        raise api_error(400, "BAD_REQUEST", reason) from None
    except CannotGetOperationTypeError as exc:
        raise api_error(400, "BAD_REQUEST", exc.as_http_error_reason()) from None
    except MissingQueryError:
        raise api_error(400, "BAD_REQUEST", "no GraphQL query found in the request") from None
