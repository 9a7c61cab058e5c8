"""Backpressure and cleanup of live subscriptions, on SQLite and PostgreSQL, with real clients.

A subscriber that stops reading fills its socket, then its bounded queue
(TALLYQL_LIVE_QUEUE_SIZE); from then on events are dropped for it alone and counted: when it
reads again it finds a `Lagged` item with the exact number of events missing at that place.
Meanwhile ingest keeps committing and a subscriber that keeps up receives every event.
Disconnecting (also while the server is blocked sending to a stalled client) unregisters the
subscriber."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tallyql.config import Settings
from tallyql.live.subscriber import Subscriber
from tallyql.schema.live_render import RENDERERS
from tests.support.helpers import iso, workspace_id_of
from tests.support.live_client import LEGACY_WS, TRANSPORT_WS, LiveServer, Subscription, live_server
from tests.support.live_support import (
    LIVE_QUERY,
    TRANSPORTS,
    bus_of,
    expected_totals,
    ingest,
    make_key,
    open_live,
    wait_subscribers,
)

QUEUE_SIZE = 50
BATCH = 20
BATCHES = 30
SMALL_QUERY = """
subscription Small($types: [LiveEventType!]) {
  events(types: $types) { __typename ... on RequestEvent { id } ... on Lagged { count } }
}
"""


@pytest.fixture
async def server(settings: Settings, db_kind: str) -> AsyncIterator[LiveServer]:
    small_queues = replace(settings, live_queue_size=QUEUE_SIZE)
    async with live_server(small_queues, db_kind, send_buffer=8192) as running:
        yield running


def bulky_events(prefix: str, count: int) -> list[dict[str, Any]]:
    """Events whose items are about 4 kB each (32 tags of 120 characters), so that a client
    that does not read fills the socket buffers after a few dozen."""
    now = datetime.now(UTC)
    return [
        {
            "id": f"{prefix}-{i:05d}",
            "timestamp": iso(now - timedelta(seconds=i)),
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": 10 + i,
            "output_tokens": 1,
            "cost_usd": 0.0001,
            "tags": [f"{t:03d}-" + "x" * 116 for t in range(32)],
        }
        for i in range(count)
    ]


@asynccontextmanager
async def stalled_client(
    server: LiveServer, key: str, protocol: str, types: tuple[str, ...] = ("REQUEST", "ERROR")
) -> AsyncIterator[ClientConnection]:
    """A subscription whose client reads nothing until told: a small receive buffer and a
    one-frame queue, so that the server soon has to wait to send to it."""
    address = urlsplit(server.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (address.hostname, address.port))
    async with connect(
        server.ws_url, sock=sock, subprotocols=[protocol], max_queue=1, max_size=None
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
        await ws.send(orjson.dumps(init).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        payload = {"query": LIVE_QUERY, "variables": {"types": list(types), "interval": 1}}
        await ws.send(orjson.dumps({"type": start, "id": "1", "payload": payload}).decode())
        yield ws


async def the_new_subscriber(server: LiveServer, workspace_id: int, known: set[int]) -> Subscriber:
    """The one subscriber of the workspace that is not in `known` (by id)."""
    async with asyncio.timeout(10):
        while True:
            fresh = [s for s in bus_of(server).subscribers(workspace_id) if id(s) not in known]
            if fresh:
                assert len(fresh) == 1
                return fresh[0]
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("protocol", (TRANSPORT_WS, LEGACY_WS))
async def test_stalled_subscriber_lags_alone(server: LiveServer, protocol: str) -> None:
    key = await make_key(server)
    workspace = await workspace_id_of(server.app.state.services, key)

    events = bulky_events("ev", BATCH * BATCHES)
    ids = [e["id"] for e in events]
    with_totals = ("REQUEST", "ERROR", "COST_UPDATE")
    async with stalled_client(server, key, protocol, with_totals) as stalled_ws:
        stalled = await the_new_subscriber(server, workspace, set())
        async with open_live(
            server, protocol, key, {"types": ["REQUEST"]}, query=SMALL_QUERY
        ) as keeping_up:
            keeper = await the_new_subscriber(server, workspace, {id(stalled)})
            received: list[dict[str, Any]] = []

            async def keep_up() -> None:
                while len(received) < len(events):
                    received.append(await keeping_up.next())

            reader = asyncio.create_task(keep_up())
            after_first_drop = 0
            for b in range(BATCHES):
                # a deadline, not a measure: an ingest that waited for the stalled client
                # would hang here (how long ingest takes beside it is bench/'s business)
                async with asyncio.timeout(60):
                    await ingest(server.url, key, events[b * BATCH : (b + 1) * BATCH])
                if stalled.dropped_total > 0:
                    after_first_drop += 1
            await asyncio.wait_for(reader, 20)

            # the one that kept up got everything, in order, and never lagged
            assert [i["__typename"] for i in received] == ["RequestEvent"] * len(events)
            assert [i["id"] for i in received] == ids
            assert keeper.dropped_total == 0
            # ingest went on committing, batch after batch, while the stalled queue was full
            assert stalled.queued == QUEUE_SIZE
            assert stalled.dropped_total > 0
            assert after_first_drop >= 5, (after_first_drop, stalled.dropped_total)

        # the stalled client reads again: every event either arrives, in order, or is counted
        # by the Lagged item in the place where it went missing
        sub = Subscription(stalled_ws, protocol)
        position = lagged = 0
        while position < len(ids):
            item = await sub.next(wait=10)
            if item["__typename"] == "CostUpdate":
                continue
            if item["__typename"] == "Lagged":
                assert item["count"] > 0
                position += item["count"]
                lagged += item["count"]
                assert position <= len(ids), "a Lagged count beyond the events sent"
            else:
                assert item["id"] == ids[position], (item["id"], ids[position])
                assert len(item["tags"]) == 32
                position += 1
        assert lagged == stalled.dropped_total
        # nothing more but cost updates, and their totals count the dropped events too (the
        # last items were taken after ingest ended: the queue was full)
        update = await sub.next(wait=5)
        assert update["__typename"] == "CostUpdate", update
        assert update["sinceStart"] == expected_totals(events)
    await wait_subscribers(server, 0)
    assert len(RENDERERS) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_disconnects_unregister(server: LiveServer, transport: str) -> None:
    key = await make_key(server)
    async with (
        open_live(server, transport, key, {"filter": {"groups": ["ops"]}}),
        open_live(server, transport, key, {"types": ["REQUEST"], "interval": 1}) as other,
    ):
        await wait_subscribers(server, 2)
        event = bulky_events("one", 1)
        await ingest(server.url, key, event)
        assert (await other.next())["id"] == event[0]["id"]
    await wait_subscribers(server, 0)
    assert len(RENDERERS) == 0


@pytest.mark.parametrize("protocol", (TRANSPORT_WS, LEGACY_WS))
async def test_stalled_client_that_goes_away_is_unregistered(
    server: LiveServer, protocol: str
) -> None:
    key = await make_key(server)
    workspace = await workspace_id_of(server.app.state.services, key)
    async with stalled_client(server, key, protocol) as ws:
        stalled = await the_new_subscriber(server, workspace, set())
        batch = 0
        while stalled.dropped_total == 0:  # until the server is stuck sending to it
            await ingest(server.url, key, bulky_events(f"b{batch}", BATCH))
            batch += 1
            assert batch < 100, "the client never stalled"
        ws.transport.abort()  # gone, without a close handshake
        await wait_subscribers(server, 0)
    assert len(RENDERERS) == 0
    # and the server still serves subscribers
    async with open_live(server, protocol, key, {"types": ["REQUEST"]}) as live:
        await wait_subscribers(server, 1)
        event = bulky_events("after", 1)
        await ingest(server.url, key, event)
        assert (await live.next())["id"] == event[0]["id"]


@pytest.mark.parametrize("protocol", (TRANSPORT_WS, LEGACY_WS))
async def test_stopping_one_operation_keeps_the_others(server: LiveServer, protocol: str) -> None:
    """Two operations on one connection (the same document, so one shared renderer): `complete`
    (or the legacy `stop`) ends one and unregisters it; the other and the socket go on."""
    key = await make_key(server)
    start, stop = ("subscribe", "complete") if protocol == TRANSPORT_WS else ("start", "stop")
    item_type = "next" if protocol == TRANSPORT_WS else "data"
    async with connect(server.ws_url, subprotocols=[protocol]) as ws:

        async def send(message: dict[str, Any]) -> None:
            await ws.send(orjson.dumps(message).decode())

        async def receive() -> dict[str, Any]:
            async with asyncio.timeout(10):
                message: dict[str, Any] = orjson.loads(await ws.recv())
            return message

        await send({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        assert (await receive())["type"] == "connection_ack"
        payload = {"query": SMALL_QUERY, "variables": {"types": ["REQUEST"]}}
        for op in ("a", "b"):
            await send({"type": start, "id": op, "payload": payload})
        await wait_subscribers(server, 2)
        first = bulky_events("first", 2)
        await ingest(server.url, key, first)
        got = sorted(
            (m["id"], m["payload"]["data"]["events"]["id"])
            for m in [await receive() for _ in "1234"]
        )
        assert got == sorted((op, e["id"]) for op in "ab" for e in first)
        assert len(RENDERERS) == 1  # shared by both operations

        await send({"type": stop, "id": "a"})
        if protocol == LEGACY_WS:  # the legacy server confirms with `complete`
            assert await receive() == {"type": "complete", "id": "a"}
        await wait_subscribers(server, 1)
        second = bulky_events("second", 3)
        await ingest(server.url, key, second)
        messages = [await receive() for _ in second]
        assert [(m["type"], m["id"]) for m in messages] == [(item_type, "b")] * 3
        assert [m["payload"]["data"]["events"]["id"] for m in messages] == [e["id"] for e in second]
        assert len(RENDERERS) == 1
    await wait_subscribers(server, 0)
    assert len(RENDERERS) == 0
