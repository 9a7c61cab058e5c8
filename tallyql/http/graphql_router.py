"""The GraphQL router: queries and mutations over HTTP; subscriptions over WebSocket
(`graphql-transport-ws` and the legacy `graphql-ws`) and over SSE (GraphQL over SSE,
distinct-connections mode: POST /graphql with `Accept: text/event-stream`).

WebSocket connections authenticate once, at `connection_init`: the API key comes from the
init payload (`{"Authorization": "Bearer <key>"}`) or else from the handshake's
Authorization header. A missing, unknown or revoked key closes the socket with 4403 (on both
protocols; the legacy one first sends `connection_error`); a key that cannot be looked up
because the database is unreachable closes it with 1013 Try Again Later (the legacy one first
sends `connection_error` with code UNAVAILABLE). SSE requests authenticate like any HTTP
request (401 without a valid key, 503 with Retry-After during a database outage). Live
subscriptions over WebSocket are delivered by tallyql/http/live_transport.py.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.http.streaming import HTTPStreamTransport, SSETransport, merge_stream_with_heartbeat
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
)
from strawberry.types.unset import UNSET, UnsetType

from tallyql.http.auth import bearer_key, services_of
from tallyql.http.graphiql import GraphiQLPage
from tallyql.http.graphql_http import GraphQLHTTPErrors
from tallyql.http.graphql_limits import refuse_large_body, refuse_spent_key
from tallyql.http.live_transport import LegacyWSHandler, TransportWSHandler, sse_messages
from tallyql.http.outage import RETRY_HEADERS, has_unavailable_error
from tallyql.schema.base.context import Context
from tallyql.storage.outage import (
    UNAVAILABLE_MESSAGE,
    DatabaseUnavailable,
    is_database_unavailable,
)

PROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL)


def key_from_params(params: Any) -> str | None:
    """The key of a connection_init payload: {"Authorization": "Bearer <key>"} (any case)."""
    if not isinstance(params, dict):
        return None
    for name, value in params.items():
        if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str):
            scheme, _, key = value.strip().partition(" ")
            if scheme.lower() == "bearer" and key.strip():
                return key.strip()
            return None
    return None


class TallyGraphQLRouter(GraphiQLPage, GraphQLHTTPErrors, GraphQLRouter[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    temporal_response: Response  # set by strawberry's route handlers before each run()

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """The body limit first (tallyql/http/graphql_limits.py), then strawberry's view."""
        if isinstance(request, Request) and request.scope["type"] == "http":
            # strawberry keeps this request's response on the router until run() reads it,
            # without awaiting in between; reading the body awaits, so it is kept on the
            # request meanwhile (else a concurrent request's response would be taken)
            request.state.sub_response = self.temporal_response
            settings = services_of(request).settings
            principal = getattr(context, "principal", None)
            spent = refuse_spent_key(
                getattr(self.schema, "key_buckets", None),
                principal.key_id if principal is not None else None,
                settings.cost_request_limit,
            )
            if spent is not None:
                return spent
            refused = await refuse_large_body(request, settings.graphql_max_body_bytes)
            if refused is not None:
                return refused
        return await super().run(request, context, root_value)

    async def execute_operation(
        self,
        request: Any,
        request_adapter: Any,
        request_data: Any,
        context: Any,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        if isinstance(request_data, GraphQLRequestData) and request_data.protocol == "sse":
            request.state.graphql_operation = request_data  # for _stream_result
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    def _stream_result(self, request: Any, result: Any, transport: HTTPStreamTransport) -> Any:
        """GraphQL over SSE: live items take the shared path (http/live_transport.py)."""
        operation = getattr(request.state, "graphql_operation", None)
        if not isinstance(transport, SSETransport) or operation is None:
            return super()._stream_result(request, result, transport)

        async def first(value: Any) -> str:
            response, _ = await self._process_stream_result(request, value, [])
            return transport.encode_next(response, self.encode_json_string)

        async def stream() -> AsyncGenerator[str, None]:
            async for text in sse_messages(
                self.schema,
                operation.query,
                operation.variables,
                operation.operation_name,
                result,
                first,
            ):
                yield text
            yield transport.encode_complete()

        return merge_stream_with_heartbeat(
            stream,
            lambda: transport.heartbeat_message(self.encode_json_string),
            interval=transport.heartbeat_interval,
            send_initial_heartbeat=transport.send_initial_heartbeat,
        )

    async def get_sub_response(self, request: Request) -> Response:
        kept = getattr(request.state, "sub_response", None)
        return kept if kept is not None else self.temporal_response

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        key = key_from_params(context.connection_params)
        if key is None and context.request is not None:
            key = bearer_key(context.request)
        if key is None:
            raise ConnectionRejectionError({"message": "missing API key"})
        try:
            principal = await context.services.keys.authenticate(key)
        except Exception as exc:
            if is_database_unavailable(exc):  # the handlers close with 1013 Try Again Later
                raise DatabaseUnavailable(UNAVAILABLE_MESSAGE) from exc
            raise
        if principal is None:
            raise ConnectionRejectionError({"message": "invalid or revoked API key"})
        context.principal = principal
        return UNSET

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        if has_unavailable_error(response_data):  # the database failed during execution
            response.status_code = 503
            response.headers.update(RETRY_HEADERS)
        return response
