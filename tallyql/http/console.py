"""GET /: the console, a dashboard on the public GraphQL API, from files shipped in the package.

The page is plain ES modules (static/console/, no build step) plus vendored uPlot (charts) and
graphql-ws (the Live view's subscription). Modules import each other by relative path; an
import map sends each such path to its digest URL, so every file is cached for a year and a
new release still loads fresh copies. The page itself holds no data and needs no key: the
browser signs in with an API key and calls /graphql like any other client.
"""

from __future__ import annotations

from functools import cache
from html import escape

import orjson
from fastapi import APIRouter
from starlette.responses import HTMLResponse

from tallyql.http.static_files import STATIC_DIR, STATIC_PATH, asset_url

router = APIRouter()

CONSOLE_PATH = "/"
_MODULE_DIR = "console"
_CLASSIC_SCRIPTS = ("uplot/uPlot.iife.min.js", "graphiql/graphql-ws.min.js")
_STYLES = ("uplot/uPlot.min.css", "console/console.css")


def _import_map() -> str:
    modules = sorted((STATIC_DIR / _MODULE_DIR).rglob("*.js"))
    imports = {
        f"{STATIC_PATH}/{path.relative_to(STATIC_DIR).as_posix()}": asset_url(
            path.relative_to(STATIC_DIR).as_posix()
        )
        for path in modules
    }
    # "</" inside a <script> element would end it early
    return orjson.dumps({"imports": imports}).decode().replace("</", "<\\/")


@cache
def console_html() -> str:
    styles = "\n".join(f'<link rel="stylesheet" href="{escape(asset_url(s))}">' for s in _STYLES)
    scripts = "\n".join(f'<script src="{escape(asset_url(s))}"></script>' for s in _CLASSIC_SCRIPTS)
    main = escape(asset_url(f"{_MODULE_DIR}/main.js"))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>tallyql console</title>
<link rel="icon" href="data:,">
{styles}
<script type="importmap">{_import_map()}</script>
</head>
<body>
<div id="app"><p class="boot">Loading the console…</p></div>
<noscript>The console needs JavaScript. The API itself is at /graphql.</noscript>
{scripts}
<script type="module" src="{main}"></script>
</body>
</html>
"""


@router.get(CONSOLE_PATH, include_in_schema=False)
async def console() -> HTMLResponse:
    # the page names its assets by digest, so it must itself be revalidated
    return HTMLResponse(console_html(), headers={"Cache-Control": "no-cache"})
