"""ASGI middleware: a request that failed because the database is down answers 503.

Any route (the API key lookup included) fails with a driver error while the database is
unreachable; without this the client got Starlette's plain-text 500, and a client retrying
on 500 cannot tell a bug from an outage. Here such a failure becomes 503 with `Retry-After`
and the route's error shape (tallyql/http/errors.py): REST `{"error": {"code": "UNAVAILABLE",
"message"}}`, on /graphql a GraphQL body with `extensions.code` UNAVAILABLE, on /v1/traces
OTLP's google.rpc.Status (the paths given as `own_shapes`). Nothing else
changes: other exceptions go on to the server's error handling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tallyql.http.errors import ErrorShape, error_in_shape
from tallyql.storage.outage import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    is_database_unavailable,
)

log = logging.getLogger(__name__)

RETRY_HEADERS = {"Retry-After": str(RETRY_AFTER_SECONDS)}
_LOG_EVERY_SECONDS = 10.0


def unavailable_response(
    request: Request, own_shapes: Mapping[str, ErrorShape] | None = None
) -> Response:
    """The 503 answer for `request`, in its protocol's error shape (`own_shapes`: the paths
    whose protocol prescribes another body, as in `install_error_handlers`)."""
    return error_in_shape(
        request, 503, "UNAVAILABLE", UNAVAILABLE_MESSAGE, RETRY_HEADERS, own_shapes or {}
    )


def has_unavailable_error(response_data: Mapping[str, Any] | list[Any]) -> bool:
    """True when a GraphQL result (or batch) holds an UNAVAILABLE error: the database failed
    during execution, and the HTTP answer is 503 with Retry-After like any other route's."""
    results = response_data if isinstance(response_data, list) else [response_data]
    return any(
        (error.get("extensions") or {}).get("code") == "UNAVAILABLE"
        for result in results
        for error in (result.get("errors") or [])
    )


class DatabaseOutage:
    def __init__(self, app: ASGIApp, own_shapes: Mapping[str, ErrorShape] | None = None) -> None:
        self.app = app
        self.own_shapes = dict(own_shapes or {})
        self.answered = 0
        self._logged_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started or not is_database_unavailable(exc):
                raise
            self.answered += 1
            now = time.monotonic()
            if now - self._logged_at >= _LOG_EVERY_SECONDS:  # one line, not one per request
                self._logged_at = now
                log.warning("database unavailable (%s); answering 503", type(exc).__name__)
            response = unavailable_response(Request(scope), self.own_shapes)
            await response(scope, receive, send)
