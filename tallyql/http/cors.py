"""CORS for browser frontends on other origins (TALLYQL_CORS_ORIGINS).

Callers authenticate with a bearer key, never cookies, so credentials are not allowed and `*`
is safe to offer. Preflights are answered for GET and POST with the headers a frontend sends
(Authorization, Content-Type, Content-Encoding, Accept, tallyql's X-Tallyql-*); responses,
SSE streams included, carry Access-Control-Allow-Origin and expose Retry-After,
Content-Disposition (export file names) and WWW-Authenticate. With no origin configured the
middleware is not installed and no CORS header is ever sent. WebSocket handshakes are not
subject to CORS; the GraphQL router accepts the same origins (strawberry checks Origin).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from tallyql.schema.base.context import EXPLAIN_HEADER, PLAN_HEADER

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Content-Encoding",
    "Accept",
    EXPLAIN_HEADER,
    PLAN_HEADER,
)
EXPOSED_HEADERS = (
    "Retry-After",
    "Content-Disposition",
    "WWW-Authenticate",
    "X-Tallyql-Unpriced-Events",
    "X-Tallyql-Unpriced-Models",
)
PREFLIGHT_MAX_AGE_SECONDS = 600


def install_cors(app: FastAPI, origins: tuple[str, ...]) -> None:
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
    )
