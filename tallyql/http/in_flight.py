"""ASGI middleware: each API key may have at most TALLYQL_KEY_MAX_IN_FLIGHT requests in flight.

The cost budgets (engine/query/cost_meter.py) bound the work a key's questions may cause, but a
flood of cheap requests (ingest calls, small queries, exports) within budget could still
hold every worker, connection and byte of buffer the server has. A request beyond the cap
is answered at once with 429 RATE_LIMITED and `Retry-After`, in its route's error shape
(REST, GraphQL, OTLP's google.rpc.Status), before its key is looked up or its body read.

The key is the bearer token as sent (counting needs no lookup; a wrong token gets its 401
anyway), kept only while it has requests in flight. A request is in flight until its answer
has been sent, streamed exports included. Subscriptions are not requests in flight: GraphQL
over SSE streams (POST /graphql with `Accept: text/event-stream`) and WebSocket connections
live as long as their subscriber and are not counted. The cost on the normal path is a scan
of the headers and two dictionary updates.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tallyql.http.errors import ErrorShape, error_in_shape

RETRY_AFTER_SECONDS = 1
"""What a refused client is told to wait: requests in flight usually end within a second."""


def _token(scope: Scope) -> bytes | None:
    """The bearer token of a request, and None without one or for an SSE subscription."""
    token = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, rest = value.partition(b" ")
            if scheme.lower() == b"bearer" and rest.strip():
                token = rest.strip()
        elif name == b"accept" and b"text/event-stream" in value:
            return None
    return token


class KeyInFlight:
    def __init__(
        self, app: ASGIApp, limit: int, own_shapes: Mapping[str, ErrorShape] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.own_shapes = dict(own_shapes or {})
        self.counts: dict[bytes, int] = {}
        """Requests in flight per token, for the tokens that have any."""
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _token(scope) if scope["type"] == "http" and self.limit > 0 else None
        if token is None:
            await self.app(scope, receive, send)
            return
        counts = self.counts
        held = counts.get(token, 0)
        if held >= self.limit:
            self.refused += 1
            message = (
                f"this key has {held} requests in flight, the most it may have at once "
                f"(TALLYQL_KEY_MAX_IN_FLIGHT); retry when one has been answered"
            )
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            response = error_in_shape(
                Request(scope), 429, "RATE_LIMITED", message, headers, self.own_shapes
            )
            await response(scope, receive, send)
            return
        counts[token] = held + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = counts[token] - 1
            if left:
                counts[token] = left
            else:
                del counts[token]  # no token is kept longer than its requests
