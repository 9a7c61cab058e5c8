"""Helpers of the shared-answers tests (tallyql/http/shared_answers.py): the direct GraphQL
route of an app, a computation held open on it, serving replicas on one database, and the raw
events' totals read without tallyql."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, closing
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from tallyql.app import create_app
from tallyql.config import Settings
from tallyql.http.graphql_fast import FastGraphQLPost
from tests.conftest import Api, _reset_postgres

OVERVIEW = """query($r: TimeRangeInput!) { overview(range: $r) {
    totalRequests totalTokens costUsd } }"""
DAY = {"r": {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}}


def event(n: int, tokens: int = 10, session: str | None = None) -> dict[str, Any]:
    """Event `n` of 2026-11-20 (within `DAY`), with `tokens` input tokens and one output."""
    out: dict[str, Any] = {
        "id": f"e{n}",
        "timestamp": f"2026-11-20T{10 + n // 3600 % 12:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": tokens,
        "output_tokens": 1,
    }
    if session is not None:
        out["session_id"] = session
    return out


def direct_route(app: FastAPI) -> FastGraphQLPost:
    """The app's direct POST /graphql route, which holds the single flight."""
    found = next(
        route.app
        for route in app.router.routes
        if isinstance(getattr(route, "app", None), FastGraphQLPost)
    )
    assert isinstance(found, FastGraphQLPost)
    return found


def held_after_reading(route: FastGraphQLPost, gate: asyncio.Event, read: asyncio.Event) -> None:
    """The route's next computation reads the database, then waits for `gate` before it
    answers (a slow computation, held open while the test commits an event): the strictest
    case for a request arriving meanwhile, since this computation has read everything it will
    answer with."""
    original = route._execute
    calls = [0]

    async def execute(*args: Any) -> Any:
        calls[0] += 1
        answer = await original(*args)
        if calls[0] == 1:
            read.set()
            await gate.wait()
        return answer

    route._execute = execute  # type: ignore[method-assign]


async def until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Wait until `condition` holds (polled; each poll yields to the requests in flight)."""
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def overview_total(api: Api, key: str) -> int:
    """totalRequests of the overview of `DAY`."""
    data = await api.data(key, OVERVIEW, DAY)
    return int(data["overview"]["totalRequests"])


QUESTION = """query($r: TimeRangeInput!) {
    overview(range: $r) { totalRequests totalTokens }
    sessionStats(range: $r) { sessions } }"""
"""The question the replica tests ask: rollups (one whole day), and the sessions of that day,
which each replica keeps a digest of while its stamp is unchanged (engine/session_digests.py)."""


async def figures(api: Api, key: str) -> tuple[int, int, int]:
    """(events, tokens, sessions) of `DAY`, as `QUESTION` answers them."""
    data = await api.data(key, QUESTION, DAY)
    overview = data["overview"]
    return (
        int(overview["totalRequests"]),
        int(overview["totalTokens"]),
        int(data["sessionStats"]["sessions"]),
    )


@asynccontextmanager
async def replicas(settings: Settings, db_kind: str, count: int = 2) -> AsyncIterator[list[Api]]:
    """`count` serving apps on one emptied database, each with its own services (connection
    pools, writer, key cache, single flight), as replicas behind a load balancer have."""
    if db_kind == "postgresql":
        await _reset_postgres(settings.database_url)
    async with AsyncExitStack() as stack:
        apps = []
        for _ in range(count):
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver")
            )
            apps.append(Api(app, client))
        yield apps


RawTotals = Callable[[], Awaitable[tuple[int, int, int]]]

_RAW_SQL = (
    "SELECT count(*), COALESCE(sum(input_tokens), 0) + COALESCE(sum(output_tokens), 0),"
    " count(DISTINCT session_id) FROM events"
)


def raw_totals(database_url: str) -> RawTotals:
    """(events, input + output tokens, sessions) of every stored event (the tests' events all
    fall in `DAY`), read with the database's own driver on a connection of its own: the
    independent count answers are checked against."""
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")

        async def sqlite_totals() -> tuple[int, int, int]:
            with closing(sqlite3.connect(path)) as conn:
                count, tokens, sessions = conn.execute(_RAW_SQL).fetchone()
            return int(count), int(tokens), int(sessions)

        return sqlite_totals

    async def postgres_totals() -> tuple[int, int, int]:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(_RAW_SQL)
        finally:
            await conn.close()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    return postgres_totals
