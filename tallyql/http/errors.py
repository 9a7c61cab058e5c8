"""One error shape per protocol.

REST routes answer every error with `{"error": {"code": "...", "message": "..."}}` and the HTTP
status (`Retry-After` where a retry helps). `/graphql` answers errors raised before execution
(401, 403, 413, 429, 503) with a GraphQL body, `{"errors": [{"message", "extensions": {"code"}}]}`,
and the same status, so that GraphQL clients show the reason. `/v1/traces` speaks OTLP, whose
specification requires a google.rpc.Status body in the request's encoding for every error: it
registers that shape here (tallyql/http/otlp.py), for the 401 and 403 of its key check too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from tallyql.http.responses import JSONBody

GRAPHQL_PATH = "/graphql"

# the code of an HTTPException raised without one (FastAPI's own 404 and 405 among them)
_CODE_OF_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "BAD_REQUEST",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}


def code_of_status(status: int) -> str:
    return _CODE_OF_STATUS.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONBody:
    """The REST error body: `{"error": {"code", "message", ...extra}}`."""
    return JSONBody(
        {"error": {"code": code, "message": message, **extra}},
        status_code=status,
        headers=dict(headers) if headers else None,
    )


def graphql_error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONBody:
    """An error met before a GraphQL operation ran, as a GraphQL response body."""
    return JSONBody(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
        headers=dict(headers) if headers else None,
    )


def api_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> HTTPException:
    """An exception that the handlers below turn into the error shape of the route's protocol."""
    return HTTPException(
        status_code=status,
        detail={"code": code, "message": message},
        headers=dict(headers) if headers else None,
    )


ErrorShape = Callable[[Request, int, str, Mapping[str, str] | None], Response]
"""A protocol's own error body: (request, HTTP status, message, headers) -> response."""


def error_in_shape(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None,
    own_shapes: Mapping[str, ErrorShape],
) -> Response:
    """The error answer for `request` in its route's protocol: a GraphQL body on /graphql,
    the protocol's own body on the paths of `own_shapes`, else the REST shape."""
    path = request.url.path
    if path == GRAPHQL_PATH:
        return graphql_error_response(status, code, message, headers)
    if path in own_shapes:
        return own_shapes[path](request, status, message, headers)
    return error_response(status, code, message, headers)


def install_error_handlers(
    app: FastAPI, own_shapes: Mapping[str, ErrorShape] | None = None
) -> None:
    """`own_shapes`: the paths whose protocol prescribes another error body."""
    shapes = dict(own_shapes or {})

    def respond(request: Request, status: int, code: str, message: str, headers: Any) -> Response:
        return error_in_shape(request, status, code, message, headers, shapes)

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail
        if isinstance(detail, dict) and "code" in detail:
            code, message = str(detail["code"]), str(detail.get("message", ""))
        else:
            code, message = code_of_status(exc.status_code), str(detail)
        return respond(request, exc.status_code, code, message, exc.headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        )
        return respond(request, 400, "BAD_REQUEST", reasons or "invalid request", None)

    app.add_exception_handler(StarletteHTTPException, http_exception)
    app.add_exception_handler(RequestValidationError, validation_error)
