"""The GraphiQL page served at GET /graphql to browsers.

Everything it loads ships in the package (static/graphiql/: GraphiQL, React, graphql-ws,
pinned in static/vendor.json; static/app/: this page's own script). The page asks for the API
key once and keeps it in the browser's localStorage; queries and mutations go over HTTP with
`Authorization: Bearer <key>`, subscriptions over WebSocket (graphql-transport-ws) with the
key in connection_init. Its default tab holds the README's first query.

Above the editor, an Ask box: a question in plain words goes to GraphQL's `ask`; the page
shows what was understood, the summary, the chart (the server's PNG, /v1/ask.png, fetched
with the key) and the rows, and "Open as query" puts the equivalent `metrics(query:)`
document with its variables into the editor.
"""

from __future__ import annotations

from functools import cache
from html import escape

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tallyql.first_query import FIRST_QUERY
from tallyql.http.static_files import asset_url

GRAPHQL_PATH = "/graphql"

_SCRIPTS = (
    "graphiql/react.production.min.js",
    "graphiql/react-dom.production.min.js",
    "graphiql/graphiql.min.js",
    "graphiql/graphql-ws.min.js",
)
_STYLES = ("graphiql/graphiql.min.css", "app/graphiql-page.css")


def _json_for_script(value: object) -> str:
    # "</" inside a <script> element would end it early
    return orjson.dumps(value).decode().replace("</", "<\\/")


@cache
def graphiql_html() -> str:
    styles = "\n".join(f'<link rel="stylesheet" href="{escape(asset_url(s))}">' for s in _STYLES)
    scripts = "\n".join(f'<script src="{escape(asset_url(s))}"></script>' for s in _SCRIPTS)
    config = _json_for_script({"endpoint": GRAPHQL_PATH, "defaultQuery": FIRST_QUERY})
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tallyql · GraphiQL</title>
<link rel="icon" href="data:,">
{styles}
</head>
<body>
<form id="tallyql-key" class="tallyql-key" autocomplete="off">
  <label for="tallyql-key-input">API key</label>
  <input id="tallyql-key-input" name="key" type="password" spellcheck="false" autocomplete="off"
         placeholder="tq_… (printed by tallyql serve --demo or tallyql keys create)">
  <button id="tallyql-key-save" type="submit">Use this key</button>
  <span id="tallyql-key-status" role="status"></span>
</form>
<form id="tallyql-ask" class="tallyql-ask" role="search" autocomplete="off">
  <label for="tallyql-ask-input">Ask</label>
  <input id="tallyql-ask-input" name="q" type="search" maxlength="300" spellcheck="false"
         placeholder="a question in plain words, e.g. cost by model this month">
  <button id="tallyql-ask-submit" type="submit">Ask</button>
</form>
<section id="tallyql-ask-answer" class="tallyql-ask-answer" aria-live="polite" hidden></section>
<div id="graphiql">Loading GraphiQL…</div>
{scripts}
<script id="tallyql-config" type="application/json">{config}</script>
<script src="{escape(asset_url("app/graphiql-page.js"))}"></script>
</body>
</html>
"""


class GraphiQLPage:
    """Mixed into the GraphQL router: its IDE page is this one, not strawberry's (which loads
    GraphiQL from a CDN)."""

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        # the page names its assets by digest, so it must itself be revalidated
        return HTMLResponse(graphiql_html(), headers={"Cache-Control": "no-cache"})
