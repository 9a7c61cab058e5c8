"""REST reads from a PostgreSQL hot standby (TALLYQL_DATABASE_READ_URLS).

Exports, chart and ask images, statements and report files read from a standby that has
replayed every commit made before the request (storage/standbys.py), or from the primary;
their writes (the audit record of an export) go to the primary as always. The route holds for
the whole response, a streamed export's rows included. With X-Tallyql-Explain the answer says
which database answered in `X-Tallyql-Database` and why in `X-Tallyql-Database-Reason`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tallyql.storage.standbys import READ_ROUTE, ReadRoute, StandbyRouter

READ_PATHS = ("/v1/export/", "/v1/charts/", "/v1/ask.png", "/v1/statements/", "/v1/reports/runs/")
"""GET routes whose reads a standby may answer."""
DATABASE_HEADER = "x-tallyql-database"
REASON_HEADER = "x-tallyql-database-reason"
_EXPLAIN = b"x-tallyql-explain"


class StandbyReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = _router(scope)
        if (
            router is None
            or scope["type"] != "http"
            or scope.get("method") != "GET"
            or not scope["path"].startswith(READ_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        route = ReadRoute(router)
        explain = any(
            name == _EXPLAIN and value.lower() in (b"1", b"true", b"yes")
            for name, value in scope.get("headers", ())
        )

        async def send_explained(message: Message) -> None:
            if explain and message["type"] == "http.response.start" and route.answered:
                answered = route.answered
                reason = answered.reason.encode("ascii", "replace")[:500]
                message["headers"] = [
                    *message.get("headers", ()),
                    (DATABASE_HEADER.encode(), answered.database.encode()),
                    (REASON_HEADER.encode(), reason),
                ]
            await send(message)

        token = READ_ROUTE.set(route)
        try:
            await self.app(scope, receive, send_explained)
        finally:
            READ_ROUTE.reset(token)


def _router(scope: Scope) -> StandbyRouter | None:
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    return services.db.standbys if services is not None else None
