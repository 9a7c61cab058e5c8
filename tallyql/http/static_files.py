"""The browser assets shipped in the package (tallyql/http/static/), served under /static.

Pages refer to them as `/static/<file>?v=<digest of its content>`, so a URL names one content
for ever and browsers may keep it a year; a new release changes the digest, hence the URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"
LONG_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class _Template:
    path: str


class CachedStaticFiles(StaticFiles):
    """StaticFiles whose answers may be cached for a year (their URLs carry a digest)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        # a mount sets no route: name one, so /metrics counts these under "/static", not
        # under "unmatched" with the 404s
        scope["route"] = _Template(STATIC_PATH)
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = LONG_CACHE
        return response


def static_app() -> CachedStaticFiles:
    return CachedStaticFiles(directory=STATIC_DIR, check_dir=True)


@cache
def asset_url(relative: str) -> str:
    """The URL of a shipped file, with the digest of its content as the cache key."""
    digest = hashlib.sha256((STATIC_DIR / relative).read_bytes()).hexdigest()[:16]
    return f"{STATIC_PATH}/{relative}?v={digest}"
