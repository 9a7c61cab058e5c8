"""Real clients of the live endpoints: graphql-transport-ws and graphql-ws over `websockets`,
GraphQL over SSE over httpx, and a uvicorn server in the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from tallyql.app import create_app
from tallyql.config import Settings
from tests.conftest import _reset_postgres

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


@dataclass
class LiveServer:
    app: FastAPI
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"


@asynccontextmanager
async def live_server(
    settings: Settings, db_kind: str, send_buffer: int | None = None
) -> AsyncIterator[LiveServer]:
    """The app served by uvicorn on a free port, in this event loop. `send_buffer` caps the
    kernel's send buffer of every connection (SO_SNDBUF), so that a client that stops
    reading soon makes the server wait (loopback buffers otherwise hold megabytes)."""
    if db_kind == "postgresql":
        await _reset_postgres(settings.database_url)
    app = create_app(settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)  # accepted inherit it
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        ws_per_message_deflate=False,  # as `tallyql serve` (cli.py)
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(30):  # a server that never starts fails the test, not CI
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    try:
        yield LiveServer(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


class Subscription:
    """One subscription on its own connection; `next()` returns each item's data."""

    def __init__(self, ws: ClientConnection, protocol: str, op_id: str = "1") -> None:
        self.ws = ws
        self.protocol = protocol
        self.op_id = op_id

    async def next(self, wait: float = 10.0) -> dict[str, Any]:
        """The next `events` item (raises on errors or completion; TimeoutError after
        `wait` seconds without one)."""
        while True:
            message = orjson.loads(await asyncio.wait_for(self.ws.recv(), wait))
            kind = message["type"]
            if kind in ("next", "data"):
                payload = message["payload"]
                if payload.get("errors"):
                    raise AssertionError(payload["errors"])
                return next(iter(payload["data"].values()))  # the root field: events, eventBatches
            if kind in ("ka", "ping", "pong"):
                continue
            raise AssertionError(f"unexpected message {message}")

    async def until(self, typename: str, wait: float = 10.0) -> dict[str, Any]:
        """Skip items until one of this __typename."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            left = deadline - asyncio.get_running_loop().time()
            item = await self.next(max(left, 0.01))
            if item["__typename"] == typename:
                return item

    async def raw(self, wait: float = 10.0) -> dict[str, Any]:
        return orjson.loads(await asyncio.wait_for(self.ws.recv(), wait))


@asynccontextmanager
async def subscribe(
    server: LiveServer,
    key: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    protocol: str = TRANSPORT_WS,
    header_key: str | None = None,
) -> AsyncIterator[Subscription]:
    """Connect, authenticate in connection_init (or with a header), start one operation."""
    headers = {"Authorization": f"Bearer {header_key}"} if header_key else {}
    async with connect(
        server.ws_url, subprotocols=[protocol], additional_headers=headers, max_size=None
    ) as ws:
        payload = {"Authorization": f"Bearer {key}"} if key else {}
        await ws.send(orjson.dumps({"type": "connection_init", "payload": payload}).decode())
        ack = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        body = {"query": query, "variables": variables or {}}
        await ws.send(orjson.dumps({"type": start, "id": "1", "payload": body}).decode())
        yield Subscription(ws, protocol)


async def sse_items(
    server: LiveServer, key: str, query: str, variables: dict[str, Any] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The `events` items of a subscription over GraphQL-over-SSE (distinct connections)."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream(
            "POST",
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "next":
                payload = orjson.loads(line.split(":", 1)[1])
                if payload.get("errors"):
                    raise AssertionError(payload["errors"])
                yield next(iter(payload["data"].values()))
            elif line.startswith("data:") and event == "complete":
                return
