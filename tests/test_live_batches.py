"""`Subscription.eventBatches` (coalesced live delivery, live/batches.py) end to end, with real
clients on a real server, on SQLite and PostgreSQL, on graphql-transport-ws, the legacy
graphql-ws and GraphQL over SSE: batches hold exactly the events committed after the
subscription, with the ingested values, in commit order; each batch's totals and running
totals equal plain-Python sums of the ingested events; subscribers of one shape share one
execution and one message per window (the same text on every socket); workspaces stay apart;
a subscriber that stops reading lags alone and is told how many events it missed; leaving
cleans up the feed and the renderer. The feed's own rules are checked without a server too."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tallyql.config import Settings
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.live import batches as batches_module
from tallyql.live.batches import BATCH, MAX_BUFFER, MIN_BUFFER, BatchFeeds, EventWindow, SendBudget
from tallyql.live.bus import LiveBus
from tallyql.live.compact import LiveRow
from tallyql.live.matcher import compile_matcher
from tallyql.live.pacer import DeliveryPacer
from tallyql.live.subscriber import LAGGED
from tallyql.schema.live_render import RENDERERS, STATS
from tests.support.helpers import iso, workspace_id_of
from tests.support.live_client import LEGACY_WS, TRANSPORT_WS, LiveServer, live_server
from tests.support.live_support import (
    REQUEST_FIELDS,
    SSE,
    TOTALS,
    TRANSPORTS,
    LiveClient,
    bus_of,
    check_request_item,
    expected_totals,
    ingest,
    make_key,
    mixed_events,
    numbered_row,
    open_live,
    wait_subscribers,
)

QUEUE_SIZE = 50
BATCH_QUERY = f"""
subscription Batches($filter: EventFilter, $types: [LiveEventType!], $ms: Int! = 50) {{
  eventBatches(filter: $filter, types: $types, maxLatencyMs: $ms) {{
    __typename
    ... on EventBatch {{
      count openedAt closedAt runningSince sequence
      totals {{ {TOTALS} }}
      runningTotals {{ {TOTALS} }}
      events {{
        __typename
        ... on RequestEvent {{ {REQUEST_FIELDS} }}
        ... on ErrorEvent {{ {REQUEST_FIELDS} errorType errorMessage policyId policyName }}
      }}
    }}
    ... on Lagged {{ count }}
  }}
}}
"""
SMALL_QUERY = """
subscription Small($ms: Int! = 10) {
  eventBatches(maxLatencyMs: $ms) {
    __typename
    ... on EventBatch { count events { ... on RequestEvent { id } ... on ErrorEvent { id } } }
    ... on Lagged { count }
  }
}
"""

BULKY_QUERY = SMALL_QUERY.replace("RequestEvent { id }", "RequestEvent { id tags }")


@pytest.fixture
async def server(settings: Settings, db_kind: str, midday: datetime) -> AsyncIterator[LiveServer]:
    small_queues = replace(settings, live_queue_size=QUEUE_SIZE)
    async with live_server(small_queues, db_kind, send_buffer=8192) as running:
        yield running


async def batches_until(live: LiveClient, count: int, wait: float = 10.0) -> list[dict[str, Any]]:
    """Batches until they hold `count` events (a Lagged item fails the test)."""
    batches: list[dict[str, Any]] = []
    while sum(b["count"] for b in batches) < count:
        item = await live.next(wait)
        assert item["__typename"] == "EventBatch", item
        batches.append(item)
    assert sum(b["count"] for b in batches) == count
    return batches


# ---------------------------------------------------------------------- end to end


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_batches_carry_committed_events_in_order_with_totals(
    server: LiveServer, transport: str
) -> None:
    key = await make_key(server)
    await ingest(server.url, key, mixed_events("pre", 6))  # before: never delivered nor counted
    async with open_live(server, transport, key, {}, query=BATCH_QUERY) as live:
        await wait_subscribers(server, 1)
        events = mixed_events("ev", 21)
        for part in (events[:4], events[4:5], events[5:13], events[13:]):
            await ingest(server.url, key, part)
        batches = await batches_until(live, len(events))
        by_id = {e["id"]: e for e in events}
        items = [item for batch in batches for item in batch["events"]]
        assert [i["id"] for i in items] == [e["id"] for e in events]  # commit order
        for item in items:
            check_request_item(item, by_id[item["id"]])
            error = by_id[item["id"]].get("status") == "error"
            assert item["__typename"] == ("ErrorEvent" if error else "RequestEvent")
        seen: list[dict[str, Any]] = []
        for n, batch in enumerate(batches):
            mine = [by_id[i["id"]] for i in batch["events"]]
            seen += mine
            assert batch["count"] == len(mine) > 0
            assert batch["totals"] == expected_totals(mine)
            assert batch["runningTotals"] == expected_totals(seen)
            assert batch["runningSince"] == batches[0]["runningSince"]
            assert batch["sequence"] == n
            opened, closed = datetime.fromisoformat(batch["openedAt"]), batch["closedAt"]
            held = datetime.fromisoformat(closed) - opened
            assert timedelta(0) <= held < timedelta(seconds=5)
        assert batches[-1]["runningTotals"]["errors"] == 7
        with pytest.raises(TimeoutError):
            await live.next(0.3)  # nothing more: no duplicates, nothing from before


async def test_types_and_filter_select_the_events_and_totals_count_the_filter(
    server: LiveServer,
) -> None:
    key = await make_key(server)
    variables = {"types": ["ERROR"], "filter": {"providers": ["openai"]}}
    async with open_live(server, TRANSPORT_WS, key, variables, query=BATCH_QUERY) as live:
        await wait_subscribers(server, 1)
        events = mixed_events("ev", 18)
        await ingest(server.url, key, events)
        openai = [e for e in events if e["provider"] == "openai"]
        errors = [e for e in openai if e.get("status") == "error"]
        assert errors and len(errors) < len(openai)
        got: list[dict[str, Any]] = []
        running: dict[str, Any] = {}
        while running.get("requests") != len(openai):
            batch = await live.next()
            assert batch["__typename"] == "EventBatch", batch
            got += batch["events"]
            running = batch["runningTotals"]
        assert [i["id"] for i in got] == [e["id"] for e in errors]
        for item, event in zip(got, errors, strict=True):
            assert item["__typename"] == "ErrorEvent"
            check_request_item(item, event)
        assert running == expected_totals(openai)  # the filter's events, every type


@pytest.mark.parametrize("variables", ({"types": ["AUDIT"]}, {"ms": 5}, {"ms": 10_001}))
async def test_bad_arguments_are_refused(server: LiveServer, variables: dict[str, Any]) -> None:
    key = await make_key(server)
    async with open_live(server, TRANSPORT_WS, key, variables, query=BATCH_QUERY) as live:
        with pytest.raises(AssertionError, match="BAD_USER_INPUT"):
            await live.next()
    assert not bus_of(server).workspaces()


async def test_subscribers_of_one_shape_share_one_execution_and_message(
    server: LiveServer,
) -> None:
    key = await make_key(server)
    variables = {"ms": 150}
    async with AsyncExitStack() as stack:
        clients: list[tuple[str, LiveClient]] = []
        for n in range(12):
            transport = TRANSPORTS[n % 3]
            live = await stack.enter_async_context(
                open_live(server, transport, key, variables, query=BATCH_QUERY)
            )
            clients.append((transport, live))
        await wait_subscribers(server, 12)
        assert len(server.app.state.services.live.service.batches.feeds) == 1
        assert len(RENDERERS) == 1
        assert RENDERERS.users == 12  # SSE subscribers too take the shared path
        (feed,) = server.app.state.services.live.service.batches.feeds.values()
        # WebSocket subscribers are written to by the feed's sender; SSE ones read a queue
        assert sorted(m.outlet is not None for m in feed.members) == [False] * 4 + [True] * 8
        executions = STATS.executions
        events = mixed_events("ev", 30)
        await ingest(server.url, key, events[:15])
        await ingest(server.url, key, events[15:])
        received = [await batches_until(live, len(events)) for _, live in clients]
        for batches in received[1:]:
            assert batches == received[0]  # the same windows for everybody
        windows = len(received[0])
        assert STATS.executions - executions == windows  # once per window, not per subscriber
        assert [i["id"] for b in received[0] for i in b["events"]] == [e["id"] for e in events]
    await wait_subscribers(server, 0)


async def test_transports_send_the_same_text(server: LiveServer) -> None:
    """The message text on the wire: one payload, spliced into each protocol's envelope."""
    key = await make_key(server)
    async with AsyncExitStack() as stack:
        sockets = []
        for protocol in (TRANSPORT_WS, TRANSPORT_WS, LEGACY_WS):
            ws = await stack.enter_async_context(
                connect(server.ws_url, subprotocols=[protocol], max_size=None)
            )
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
            await ws.send(orjson.dumps(init).decode())
            assert orjson.loads(await ws.recv())["type"] == "connection_ack"
            start = "subscribe" if protocol == TRANSPORT_WS else "start"
            body = {"query": SMALL_QUERY, "variables": {"ms": 200}}
            await ws.send(orjson.dumps({"type": start, "id": "7", "payload": body}).decode())
            sockets.append(ws)
        await wait_subscribers(server, 3)
        await ingest(server.url, key, mixed_events("ev", 5))
        texts = [await asyncio.wait_for(ws.recv(), 10) for ws in sockets]
        assert texts[0] == texts[1]
        assert texts[0].startswith('{"id":"7","type":"next","payload":{"data":')
        assert texts[2].startswith('{"type":"data","id":"7","payload":{"data":')
        payloads = [t[t.index('"payload":') :] for t in texts]
        assert payloads[0] == payloads[2]
        assert [
            i["id"] for i in orjson.loads(texts[0])["payload"]["data"]["eventBatches"]["events"]
        ] == [f"ev-{i:04d}" for i in range(5)]


async def test_workspaces_stay_apart(server: LiveServer) -> None:
    acme = await make_key(server, "acme")
    other = await make_key(server, "globex")
    async with (
        open_live(server, TRANSPORT_WS, acme, {}, query=BATCH_QUERY) as a,
        open_live(server, SSE, other, {}, query=BATCH_QUERY) as b,
    ):
        await wait_subscribers(server, 2)
        mine, theirs = mixed_events("a", 9), mixed_events("g", 5)
        await ingest(server.url, other, theirs)
        await ingest(server.url, acme, mine)
        got_a = [i["id"] for x in await batches_until(a, 9) for i in x["events"]]
        got_b = await batches_until(b, 5)
        assert got_a == [e["id"] for e in mine]
        assert [i["id"] for x in got_b for i in x["events"]] == [e["id"] for e in theirs]
        assert got_b[-1]["runningTotals"] == expected_totals(theirs)
        assert len(server.app.state.services.live.service.batches.feeds) == 2
        with pytest.raises(TimeoutError):
            await a.next(0.3)


def bulky_events(prefix: str, count: int) -> list[dict[str, Any]]:
    """Events of about 4 kB each, so that a client that does not read soon fills its socket."""
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
async def stalled_client(server: LiveServer, key: str) -> AsyncIterator[ClientConnection]:
    """A batch subscription whose client reads nothing until told (small buffers)."""
    address = urlsplit(server.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (address.hostname, address.port))
    async with connect(
        server.ws_url, sock=sock, subprotocols=[TRANSPORT_WS], max_queue=1, max_size=None
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
        await ws.send(orjson.dumps(init).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": BULKY_QUERY, "variables": {"ms": 10}}
        await ws.send(orjson.dumps({"type": "subscribe", "id": "1", "payload": payload}).decode())
        yield ws


async def test_a_stalled_subscriber_lags_alone_and_hears_how_many(server: LiveServer) -> None:
    key = await make_key(server)
    workspace = await workspace_id_of(server.app.state.services, key)
    events = bulky_events("ev", 20 * 80)
    ids = [e["id"] for e in events]
    async with (
        stalled_client(server, key) as stalled,
        open_live(server, TRANSPORT_WS, key, {"ms": 10}, query=SMALL_QUERY) as reader,
    ):
        await wait_subscribers(server, 2)
        (feed,) = bus_of(server).subscribers(workspace)
        got: list[str] = []

        async def read() -> None:
            while len(got) < len(ids):
                item = await reader.next()
                assert item["__typename"] == "EventBatch", item
                got.extend(i["id"] for i in item["events"])

        reading = asyncio.create_task(read())
        for start in range(0, len(events), 20):
            await ingest(server.url, key, events[start : start + 20])
        await asyncio.wait_for(reading, 30)
        assert got == ids  # the reader kept up: everything, in order
        members = sorted(feed.members, key=lambda m: m.dropped_total)  # type: ignore[union-attr]
        assert all(m.outlet is not None for m in members)  # written by the feed's sender
        assert members[-1].dropped_total > 0
        assert all(m.queued <= QUEUE_SIZE + 20 for m in members)  # bounded

        # the stalled one reads now: batches with gaps, each gap told by a Lagged count
        seen: list[str] = []
        missing = 0
        async with asyncio.timeout(30):
            while len(seen) + missing < len(ids):
                message = orjson.loads(await stalled.recv())
                item = message["payload"]["data"]["eventBatches"]
                if item["__typename"] == "Lagged":
                    assert item["count"] > 0
                    missing += item["count"]
                    continue
                seen += [i["id"] for i in item["events"]]
        assert missing == members[-1].dropped_total
        assert len(seen) + missing == len(ids)
        assert seen == [i for i in ids if i in set(seen)]  # what arrived is in commit order


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_leaving_cleans_up(server: LiveServer, transport: str) -> None:
    key = await make_key(server)
    workspace = await workspace_id_of(server.app.state.services, key)
    live_service = server.app.state.services.live.service
    async with open_live(server, transport, key, {}, query=BATCH_QUERY) as live:
        await wait_subscribers(server, 1)
        await ingest(server.url, key, mixed_events("ev", 3))
        await batches_until(live, 3)
        assert bus_of(server).workspaces() == [workspace]
        # a WebSocket is written to by the feed's sender and holds a share of the send budget
        # (64 MiB by default: one socket is capped at MAX_BUFFER); SSE reads a queue
        sockets = 0 if transport == SSE else 1
        assert live_service.batches.budget.sockets == sockets
        async with httpx.AsyncClient(base_url=server.url) as client:
            health = (await client.get("/health")).json()
        assert health["jobs"]["live"]["socket_send_share_bytes"] == MAX_BUFFER
    await wait_subscribers(server, 0)
    assert live_service.batches.budget.sockets == 0
    async with asyncio.timeout(10):
        while live_service.batches.feeds or len(RENDERERS):  # noqa: ASYNC110 (no event)
            await asyncio.sleep(0.01)
    assert bus_of(server).workspaces() == []


# ---------------------------------------------------------------------- the feed alone

WORKSPACE = 7


def row(n: int, status: str = "ok") -> LiveRow:
    return numbered_row(n, status=status, workspace_id=WORKSPACE)


def plain_totals(rows: list[LiveRow]) -> dict[str, int]:
    return {
        "requests": len(rows),
        "errors": sum(r.status == "error" for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cache_read_tokens": sum(r.cache_read_tokens for r in rows),
        "cache_write_tokens": 0,
        "reasoning_tokens": sum(r.reasoning_tokens for r in rows),
        "cost_nanousd": sum(r.cost_nanousd for r in rows),
    }


async def test_feed_windows_members_and_bounds() -> None:
    bus = LiveBus()
    feeds = BatchFeeds(bus)
    spec = EventFilterSpec()

    def join(max_queue: int = 1000) -> Any:
        return feeds.join(
            WORKSPACE, compile_matcher(spec), (spec, None), True, True, 60.0, max_queue, 1e9
        )

    first, small = join(), join(max_queue=5)
    assert len(feeds.feeds) == 1 and bus.subscriber_count == 2
    rows = [row(n, "error" if n % 4 == 0 else "ok") for n in range(12)]
    bus.deliver_rows(rows[:3])
    late = join()  # joining closes the open window: the newcomer never sees those rows
    bus.deliver_rows(rows[3:10])
    feed = next(iter(feeds.feeds.values()))
    feed.flush()
    bus.deliver_rows(rows[10:])
    feed.flush()

    def drain(member: Any) -> list[tuple[str, Any]]:
        out = []
        while (item := member.take()) is not None:
            out.append(item)
        return out

    got = drain(first)
    assert [k for k, _ in got] == [BATCH, BATCH, BATCH]
    windows: list[EventWindow] = [w for _, w in got]
    assert [[r.id for _, r in w.items] for w in windows] == [
        ["e0", "e1", "e2"],
        [f"e{n}" for n in range(3, 10)],
        ["e10", "e11"],
    ]
    assert [k for k, _ in windows[0].items] == ["error", "request", "request"]
    assert [vars(w.totals) for w in windows] == [
        plain_totals(rows[:3]),
        plain_totals(rows[3:10]),
        plain_totals(rows[10:]),
    ]
    assert vars(windows[-1].running) == plain_totals(rows)
    assert [w.sequence for w in windows] == [0, 1, 2]
    assert [w for _, w in drain(late)] == windows[1:]  # the very same objects

    # the small queue took the first window (3 events), dropped the next (7 > 5) and told
    assert drain(small) == [(BATCH, windows[0]), (LAGGED, 7), (BATCH, windows[2])]
    assert small.dropped_total == 7

    for member in (first, small, late):
        feeds.leave(member)
    assert not feeds.feeds and bus.subscriber_count == 0 and not bus.workspaces()


class FakeOutlet:
    """A socket the feed's sender writes to: what it was given, and a settable backlog."""

    def __init__(self, group: str = "op") -> None:
        self.group = group
        self.backlog = 0
        self.open = True
        self.written: list[bytes] = []
        self.encoded = 0

    def alive(self) -> bool:
        return self.open

    def buffered(self) -> int:
        return self.backlog

    def encode(self, window: EventWindow) -> bytes:
        self.encoded += 1
        return orjson.dumps({"group": self.group, "ids": [r.id for _, r in window.items]})

    def encode_lagged(self, count: int) -> bytes:
        return orjson.dumps({"lagged": count})

    def write(self, data: bytes) -> None:
        self.written.append(data)


def decoded(outlet: FakeOutlet) -> list[Any]:
    return [orjson.loads(data) for data in outlet.written]


async def settled(feed: Any) -> None:
    """Until the feed's sender has written every closed window."""
    if feed._sender is not None:  # it runs until the outbox is empty
        await asyncio.wait_for(feed._sender, 5)
    assert not feed._outbox


async def test_outlets_share_one_encoding_and_a_slow_socket_lags_alone() -> None:
    bus = LiveBus()
    feeds = BatchFeeds(bus)
    spec = EventFilterSpec()
    outlets = [FakeOutlet() for _ in range(70)] + [FakeOutlet("other-op")]
    slow = outlets[5]
    members = [
        feeds.join(WORKSPACE, compile_matcher(spec), (spec, None), True, True, 0.02, 10, 1e9, o)
        for o in outlets
    ]
    (feed,) = feeds.feeds.values()
    rows = [row(n) for n in range(9)]

    bus.deliver_rows(rows[:3])
    feed.flush()
    await settled(feed)
    first = outlets[0].written[0]
    # one encoding per group and window; the very same bytes object to every socket
    assert sum(o.encoded for o in outlets) == 2
    assert all(o.written == [first] for o in outlets[:70])
    assert decoded(outlets[0]) == [{"group": "op", "ids": ["e0", "e1", "e2"]}]
    assert decoded(outlets[70]) == [{"group": "other-op", "ids": ["e0", "e1", "e2"]}]
    # outlet members hold no queue: the 3 events did not count against max_queue
    assert all(m.queued == 0 for m in members)

    slow.backlog = 10**9  # the client stopped reading: its socket is full
    bus.deliver_rows(rows[3:7])
    feed.flush()
    await settled(feed)
    assert decoded(outlets[0])[1]["ids"] == ["e3", "e4", "e5", "e6"]  # the others: on time
    assert len(slow.written) == 1 and members[5].dropped_total == 4

    # drained: told how many it missed, without waiting for more events
    slow.backlog = 0
    async with asyncio.timeout(5):
        while len(slow.written) == 1:  # noqa: ASYNC110 (the feed's settle timer)
            await asyncio.sleep(0.005)
    assert decoded(slow)[1:] == [{"lagged": 4}]
    bus.deliver_rows(rows[7:])
    feed.flush()
    await settled(feed)
    assert decoded(slow)[2]["ids"] == ["e7", "e8"]
    assert decoded(outlets[0])[2] == decoded(slow)[2]

    for member in members:
        feeds.leave(member)
    assert not feeds.feeds and bus.subscriber_count == 0


async def test_an_outlet_joining_before_the_sender_runs_gets_no_earlier_window() -> None:
    bus = LiveBus()
    feeds = BatchFeeds(bus)
    spec = EventFilterSpec()

    def join(outlet: FakeOutlet) -> Any:
        return feeds.join(
            WORKSPACE, compile_matcher(spec), (spec, None), True, True, 60.0, 10, 1e9, outlet
        )

    early, late = FakeOutlet(), FakeOutlet()
    first = join(early)
    bus.deliver_rows([row(0), row(1)])
    second = join(late)  # closes the open window for `early`; the sender has not run yet
    bus.deliver_rows([row(2)])
    (feed,) = feeds.feeds.values()
    feed.flush()
    await settled(feed)
    assert [d["ids"] for d in decoded(early)] == [["e0", "e1"], ["e2"]]
    assert [d["ids"] for d in decoded(late)] == [["e2"]]

    # a closed socket is written nothing; leaving stops the feed
    late.open = False
    bus.deliver_rows([row(3)])
    feed.flush()
    await settled(feed)
    assert len(late.written) == 1 and decoded(early)[-1]["ids"] == ["e3"]
    feeds.leave(first)
    feeds.leave(second)
    assert not feeds.feeds and not bus.workspaces()


def test_the_send_budget_is_shared_evenly_within_bounds() -> None:
    budget = SendBudget(total=1024 * 1024)
    budget.count(+1)
    assert budget.per_socket == MAX_BUFFER  # 1 MiB for one socket: capped at 512 KiB
    for _ in range(3):
        budget.count(+1)
    assert budget.per_socket == 256 * 1024  # four sockets share 1 MiB
    for _ in range(996):
        budget.count(+1)
    assert budget.per_socket == MIN_BUFFER  # 1,048 bytes each would starve them: the floor
    for _ in range(998):
        budget.count(-1)
    assert budget.per_socket == MAX_BUFFER // 1 and budget.sockets == 2


async def test_a_socket_gets_no_window_that_would_pass_its_share_of_the_budget() -> None:
    bus = LiveBus()
    feeds = BatchFeeds(bus, SendBudget(total=4 * 40_000))
    spec = EventFilterSpec()
    outlets = [FakeOutlet() for _ in range(4)]
    members = [
        feeds.join(WORKSPACE, compile_matcher(spec), (spec, None), True, True, 0.02, 10, 1e9, o)
        for o in outlets
    ]
    assert feeds.budget.per_socket == 40_000  # 160,000 bytes shared by four sockets
    (feed,) = feeds.feeds.values()
    rows = [row(n) for n in range(6)]
    bus.deliver_rows(rows[:2])
    feed.flush()
    await settled(feed)
    size = len(outlets[0].written[0])  # every socket got the first window
    empty, under, over, full = outlets
    under.backlog = 40_000 - size  # the window fits exactly
    over.backlog = 40_000 - size + 1  # one byte too many with the window
    full.backlog = 40_000
    bus.deliver_rows(rows[2:4])
    feed.flush()
    await settled(feed)
    window_ids = [[d.get("ids") for d in decoded(o)] for o in outlets]
    assert window_ids[:2] == [[["e0", "e1"], ["e2", "e3"]]] * 2
    # `over` missed the window, and is told at once since a short notice still fits;
    # `full` has no room even for that
    assert decoded(over) == [{"group": "op", "ids": ["e0", "e1"]}, {"lagged": 2}]
    assert decoded(full) == [{"group": "op", "ids": ["e0", "e1"]}]
    assert [m.dropped_total for m in members] == [0, 0, 2, 2]

    # a socket with nothing unsent takes a window larger than its share
    feeds.budget.per_socket = 1
    bus.deliver_rows(rows[4:])
    feed.flush()
    await settled(feed)
    assert decoded(empty)[-1]["ids"] == ["e4", "e5"] and members[0].dropped_total == 0
    assert len(under.written) == 2 and members[1].dropped_total == 2  # under has a backlog
    assert len(over.written) == 2 and members[2].dropped_total == 4

    for member in members:
        feeds.leave(member)
    assert feeds.budget.sockets == 0 and not feeds.feeds


async def test_the_sender_is_charged_for_the_bytes_it_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A socket sends most of a large window after the slice that wrote it returns, so the
    slice's CPU time alone undercounts the sender: each byte written is charged BYTE_COST
    more (here 1 ms a byte, so that the bytes' part dwarfs the slice's own time)."""
    monkeypatch.setattr(batches_module, "BYTE_COST", 1e-3)
    bus = LiveBus()
    feeds = BatchFeeds(bus)
    spec = EventFilterSpec()
    pacer = DeliveryPacer(1.0)
    outlets = [FakeOutlet() for _ in range(3)]
    for o in outlets:
        feeds.join(
            WORKSPACE, compile_matcher(spec), (spec, None), True, True, 60.0, 10, 1e9, o, pacer
        )
    (feed,) = feeds.feeds.values()
    bus.deliver_rows([row(0), row(1)])
    before = time.perf_counter()
    feed.flush()
    await settled(feed)
    written = sum(len(data) for o in outlets for data in o.written)
    assert written == 3 * len(outlets[0].written[0]) > 0
    ahead = pacer._due - before  # what was charged, from when the slice started
    assert written * 1e-3 <= ahead < written * 1e-3 + 0.05


@pytest.mark.parametrize("pressed", [False, True])
async def test_a_pressed_sender_holds_few_windows(pressed: bool) -> None:
    """While ingest is saturated the sender is behind by at most PRESSED_OUTBOX windows: older
    ones are dropped at once and counted for their members (Lagged), instead of being held
    until MAX_OUTBOX pushes them out."""
    bus = LiveBus()
    feeds = BatchFeeds(bus)
    spec = EventFilterSpec()
    pacer = DeliveryPacer(0.25, pressed_share=0.03, pressure=lambda: pressed)
    outlet = FakeOutlet()
    member = feeds.join(
        WORKSPACE, compile_matcher(spec), (spec, None), True, True, 60.0, 10, 1e9, outlet, pacer
    )
    (feed,) = feeds.feeds.values()
    for n in range(20):  # the sender task has not run yet: every window waits
        bus.deliver_rows([row(2 * n), row(2 * n + 1)])
        feed.flush()
    held = batches_module.PRESSED_OUTBOX if pressed else 20
    assert len(feed._outbox) == held
    assert member.dropped_total == 2 * (20 - held)
    await settled(feed)
    ids = [i for d in decoded(outlet) if "ids" in d for i in d["ids"]]
    assert ids == [f"e{n}" for n in range(2 * (20 - held), 40)]  # the freshest, in order
    lagged = [d["lagged"] for d in decoded(outlet) if "lagged" in d]
    assert lagged == ([2 * (20 - held)] if pressed else [])
    assert batches_module.PRESSED_OUTBOX < 20 < batches_module.MAX_OUTBOX
    feeds.leave(member)
