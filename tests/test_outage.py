"""While the database is unreachable every route answers 503 with Retry-After in its own error
shape (REST JSON, a GraphQL body on /graphql), the API key lookup included, and the server
recovers by itself once the database is back.

PostgreSQL: the app talks to the database through a TCP proxy owned by the test; closing it
drops every connection and refuses new ones (what a crashed or restarting server looks like
to the pool). SQLite: the database's directory is moved away and the pools are emptied, so no
connection can be opened (an unmounted volume).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.storage.database import Database
from tallyql.storage.outage import is_database_unavailable
from tests.conftest import running_api
from tests.support.helpers import llm
from tests.support.live_client import LEGACY_WS, TRANSPORT_WS, live_server

NO_DATABASE = {"/metrics", "/docs", "/openapi.json", "/static"}
"""Routes that never touch the database (they answer as usual during an outage)."""


class Proxy:
    """A TCP proxy to PostgreSQL that the test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.pipes -= {writer, up_writer}

    async def cut(self) -> None:
        """Refuse new connections and break every open one."""
        assert self.server is not None
        self.server.close()
        for pipe in list(self.pipes):
            pipe.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def restore(self) -> None:
        await self.start()


@pytest.fixture
async def outage(db_kind: str, database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """(settings URL, cut, restore) for this database kind."""
    if db_kind == "postgresql":
        url = make_url(database_url)
        proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
        await proxy.start()
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        yield proxied, (lambda db: proxy.cut()), (lambda db: proxy.restore())
        if proxy.server is not None:
            await proxy.cut()
        return
    directory = tmp_path / "data"
    aside = tmp_path / "aside"

    async def cut(db: Database) -> None:
        os.rename(directory, aside)
        directory.write_text("not a directory")  # nothing can be opened below it
        await db.reader.dispose()
        await db.writer.dispose()

    async def restore(db: Database) -> None:
        directory.unlink()
        os.rename(aside, directory)

    yield f"sqlite:///{directory / 'tallyql.db'}", cut, restore


def audit_events() -> list[dict[str, Any]]:
    return [
        {
            "id": f"a-{time.monotonic_ns()}",
            "timestamp": datetime.now(UTC).isoformat(),
            "actor_id": "alice",
            "actor_type": "user",
            "action": "login",
            "resource_type": "app",
        }
    ]


Request = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]


def route_requests(key: str) -> dict[str, Request]:
    """One request per database-backed route, keyed by the route's path template."""
    auth = {"Authorization": f"Bearer {key}"}
    span = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "chat gpt-4o-mini",
                                "startTimeUnixNano": str(time.time_ns() - 10**9),
                                "endTimeUnixNano": str(time.time_ns()),
                                "attributes": [
                                    {
                                        "key": "gen_ai.request.model",
                                        "value": {"stringValue": "gpt-4o-mini"},
                                    },
                                    {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    query = {"query": "{ overview(range: {preset: LAST_24H}) { totalRequests } }"}
    return {
        "/v1/events": lambda c, h: c.post(
            "/v1/events", json=[llm(f"o-{time.monotonic_ns()}")], headers={**auth, **h}
        ),
        "/v1/traces": lambda c, h: c.post("/v1/traces", json=span, headers={**auth, **h}),
        "/v1/audit-events": lambda c, h: c.post(
            "/v1/audit-events", json=audit_events(), headers={**auth, **h}
        ),
        "/v1/export/{dataset}": lambda c, h: c.get(
            "/v1/export/requests?preset=LAST_24H&format=json", headers={**auth, **h}
        ),
        "/graphql": lambda c, h: c.post("/graphql", json=query, headers={**auth, **h}),
        "/health": lambda c, h: c.get("/health", headers=h),
    }


def check_unavailable(path: str, response: httpx.Response) -> None:
    assert response.status_code == 503, (path, response.status_code, response.text)
    assert int(response.headers["retry-after"]) >= 1, path
    assert response.headers["content-type"].startswith("application/json"), path
    body = response.json()
    if path == "/graphql":
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "UNAVAILABLE", body
        assert body["data"] is None
    elif path == "/v1/traces":  # OTLP's google.rpc.Status (JSON, as the request was)
        assert body["code"] == 14, body  # UNAVAILABLE: exporters retry it
        assert "retry" in body["message"]
    elif path == "/health":
        assert body["status"] == "degraded" and body["database"]["reachable"] is False
    else:
        assert body["error"]["code"] == "UNAVAILABLE", body
        assert "retry" in body["error"]["message"]


async def test_every_route_answers_503_during_an_outage_and_recovers(
    outage: Any, db_kind: str, tmp_path: Path
) -> None:
    url, cut, restore = outage
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        key_cache_seconds=600.0,  # a used key is cached: its routes reach the database
        retention_interval_seconds=0.0,
        budget_debounce_seconds=3600.0,
    )
    async with running_api(settings, db_kind) as api:
        covered = set(route_requests("k"))
        paths = {getattr(r, "path", "") for r in api.app.routes}
        unknown = paths - covered - NO_DATABASE - {""}  # "": the GraphQL WebSocket route
        assert not unknown, f"add these routes to route_requests: {unknown}"

        cached = await api.key(role=Role.ADMIN)
        fresh = await api.key(role=Role.ADMIN)  # never used before the outage: looked up
        for path, send in route_requests(cached).items():
            response = await send(api.client, {})
            assert response.status_code == 200, (path, response.text)
            if path.startswith("/v1/") and "export" not in path:
                assert "rejected" not in response.text or response.json()["rejected"] == 0

        await cut(api.services.db)
        for key in (cached, fresh):
            for path, send in route_requests(key).items():
                check_unavailable(path, await send(api.client, {}))
        # inside GraphQL execution (a cached key: the lookup needs no database)
        mutation = {"query": 'mutation { createWebhook(input: {url: "https://example.com/h"})'
                    " { userErrors { code } } }"}  # fmt: skip
        response = await api.client.post(
            "/graphql", json=mutation, headers={"Authorization": f"Bearer {cached}"}
        )
        check_unavailable("/graphql", response)
        assert (await api.client.get("/metrics")).status_code == 200

        await restore(api.services.db)
        deadline = time.monotonic() + 15
        pending = dict(route_requests(fresh))
        while pending:
            for path, send in list(pending.items()):
                response = await send(api.client, {})
                if response.status_code == 200:
                    del pending[path]
                else:
                    assert response.status_code == 503, (path, response.text)
            assert time.monotonic() < deadline, f"not recovered: {sorted(pending)}"
            await asyncio.sleep(0.1)
        data = await api.data(cached, "{ overview(range: {preset: LAST_24H}) { totalRequests } }")
        # an event before the outage and one after recovery, and the OTLP span (its id is
        # the same both times: the second export is a duplicate); nothing from the outage
        assert data["overview"]["totalRequests"] == 3


async def test_outage_errors_are_told_from_statement_errors(
    db_kind: str, database_url: str, tmp_path: Path
) -> None:
    """Real driver errors: connect failures are outages, a failing statement is not."""
    if db_kind == "postgresql":
        url = make_url(database_url)
        closed = url.set(port=1).render_as_string(hide_password=False)
        with pytest.raises(OSError) as refused:
            await asyncpg.connect(closed.replace("postgresql+asyncpg", "postgresql"))
        assert is_database_unavailable(refused.value)
        gone = url.set(database="tallyql_no_such_db").render_as_string(hide_password=False)
        db = Database(gone)
    else:
        (tmp_path / "a-directory").mkdir()
        db = Database(f"sqlite:///{tmp_path / 'a-directory'}")  # cannot be opened
    with pytest.raises(sa_exc.DBAPIError) as failed:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
    await db.dispose()
    assert is_database_unavailable(failed.value)
    assert not is_database_unavailable(sqlite3.OperationalError("no such table: x"))

    ok = Database(database_url)
    try:
        with pytest.raises(sa_exc.DBAPIError) as bad:
            async with ok.read() as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
        assert not is_database_unavailable(bad.value)
        if db_kind == "postgresql":  # SQLite answers NULL
            with pytest.raises(sa_exc.DBAPIError) as zero:
                async with ok.read() as conn:
                    await conn.execute(text("SELECT 1 / 0"))
            assert not is_database_unavailable(zero.value)
    finally:
        await ok.dispose()
    assert not is_database_unavailable(TimeoutError())
    assert not is_database_unavailable(ValueError("x"))


async def _connection_init(url: str, protocol: str, key: str) -> tuple[list[Any], int | None]:
    """The messages answering connection_init, and the close code (None: still open)."""
    messages: list[Any] = []
    async with connect(url, subprotocols=[protocol]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
        await ws.send(orjson.dumps(init).decode())
        try:
            async with asyncio.timeout(10):
                while True:
                    messages.append(orjson.loads(await ws.recv()))
                    if messages[-1]["type"] == "connection_ack":
                        return messages, None
        except ConnectionClosed as closed:
            return messages, closed.rcvd.code if closed.rcvd else None
    raise AssertionError("unreachable")


async def test_live_connections_during_an_outage_are_told_to_try_again_later(
    outage: Any, db_kind: str, tmp_path: Path
) -> None:
    """A subscriber whose key must be looked up while the database is down: over WebSocket
    the socket closes with 1013 Try Again Later (graphql-ws says connection_error with code
    UNAVAILABLE first), over SSE the answer is 503 with Retry-After and a GraphQL body; once
    the database is back the same key connects."""
    url, cut, restore = outage
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        retention_interval_seconds=0.0,
        budget_debounce_seconds=3600.0,
    )
    async with live_server(settings, db_kind) as server:
        services = server.app.state.services
        fresh = {
            protocol: (await services.keys.create("acme", Role.ADMIN, "outage"))[0]
            for protocol in (TRANSPORT_WS, LEGACY_WS, "sse")
        }
        await cut(services.db)
        for protocol in (TRANSPORT_WS, LEGACY_WS):
            messages, code = await _connection_init(server.ws_url, protocol, fresh[protocol])
            assert code == 1013, (protocol, messages, code)
            if protocol == LEGACY_WS:
                (error,) = messages
                assert error["type"] == "connection_error", error
                assert error["payload"]["extensions"]["code"] == "UNAVAILABLE", error
                assert "retry" in error["payload"]["message"]
            else:
                assert messages == [], messages
        headers = {"Authorization": f"Bearer {fresh['sse']}", "Accept": "text/event-stream"}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            response = await client.post(
                "/graphql",
                json={"query": "subscription { events { __typename } }"},
                headers=headers,
            )
        check_unavailable("/graphql", response)

        await restore(services.db)
        deadline = time.monotonic() + 15
        for protocol in (TRANSPORT_WS, LEGACY_WS):
            while True:
                messages, code = await _connection_init(server.ws_url, protocol, fresh[protocol])
                if code is None:
                    break
                assert code == 1013, (protocol, messages, code)
                assert time.monotonic() < deadline, f"{protocol} not recovered"
                await asyncio.sleep(0.1)
            assert messages[-1]["type"] == "connection_ack"


async def test_a_subscription_started_during_an_outage_gets_an_unavailable_error(
    outage: Any, db_kind: str, tmp_path: Path
) -> None:
    """A connection acknowledged before the outage subscribes during it: the stream cannot
    open (it reads the database), and the operation gets the protocol's error with code
    UNAVAILABLE instead of a bare `complete` after a logged traceback."""
    url, cut, restore = outage
    settings = Settings(
        data_dir=tmp_path, database_url=url, retention_interval_seconds=0.0,
        budget_debounce_seconds=3600.0,
    )  # fmt: skip
    async with live_server(settings, db_kind) as server:
        services = server.app.state.services
        key = (await services.keys.create("acme", Role.ADMIN, "outage"))[0]
        for protocol in (TRANSPORT_WS, LEGACY_WS):
            async with connect(server.ws_url, subprotocols=[protocol]) as ws:
                init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
                await ws.send(orjson.dumps(init).decode())
                assert orjson.loads(await ws.recv())["type"] == "connection_ack"
                await cut(services.db)
                start = "subscribe" if protocol == TRANSPORT_WS else "start"
                body = {"query": "subscription { events { __typename } }"}
                await ws.send(orjson.dumps({"type": start, "id": "1", "payload": body}).decode())
                async with asyncio.timeout(15):
                    while (message := orjson.loads(await ws.recv()))["type"] == "ka":
                        pass
                assert message["type"] == "error" and message["id"] == "1", message
                errors = message["payload"]
                error = errors[0] if isinstance(errors, list) else errors
                assert error["extensions"]["code"] == "UNAVAILABLE", message
                await restore(services.db)
