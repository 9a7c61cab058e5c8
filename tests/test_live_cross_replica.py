"""The live bus across server processes — PostgreSQL only, by nature: SQLite has one process
and no cross-process bus, so these tests take the PostgreSQL database directly instead of
running on both databases.

Two real `tallyql serve` processes on one database: events ingested on either reach the
subscribers of both (LISTEN/NOTIFY), audit events recorded on one reach the other, a batch far
beyond NOTIFY's 8,000-byte payload limit (thousands of events in one commit, and events whose
live row alone is larger than the limit) arrives complete, exactly once and in order, and the
running totals count exactly what was ingested on either side."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from fastapi import FastAPI

from tests.support.live_client import LEGACY_WS, TRANSPORT_WS, LiveServer
from tests.support.live_support import (
    SSE,
    LiveClient,
    check_request_item,
    expected_totals,
    ingest,
    mixed_events,
    on_or_after,
    open_live,
    post,
)
from tests.support.server import Server, cli, reset_database, start_server

Event = dict[str, Any]


@pytest.fixture
def replicas(
    postgres_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LiveServer, LiveServer, str, str, str]]:
    """Two server processes on one emptied PostgreSQL database, an admin key of workspace
    `acme`, one of `other`, and the database's URL."""
    asyncio.run(reset_database(postgres_database))
    # room for a whole big batch in a subscriber's queue: this test is about the relay
    monkeypatch.setenv("TALLYQL_LIVE_QUEUE_SIZE", "20000")
    # and time: on a loaded machine a subscriber may read a big batch more than the default
    # ten seconds after it committed, and would get a Lagged notice in place of it
    monkeypatch.setenv("TALLYQL_LIVE_MAX_AGE_SECONDS", "600")
    started: list[Server] = []
    try:
        for name in ("one", "two"):  # one after the other: the first one migrates
            started.append(start_server(postgres_database, tmp_path, name))
        keys = [
            cli(
                "keys", "create", "--workspace", workspace, "--role", "admin",
                "--database-url", postgres_database, data_dir=tmp_path,
            ).stdout.strip().splitlines()[-1]
            for workspace in ("acme", "other")
        ]  # fmt: skip
        one, two = (LiveServer(cast(FastAPI, None), s.url) for s in started)
        yield one, two, keys[0], keys[1], postgres_database
    finally:
        for server in started:
            server.stop()


async def announced(live: LiveClient) -> None:
    """The first item is the cost update, sent once the subscription is registered and its
    replica's interest was announced through PostgreSQL."""
    first = await live.next(wait=15)
    assert first["__typename"] == "CostUpdate", first


async def requests_until(live: LiveClient, count: int, wait: float = 30) -> list[Event]:
    """The next `count` REQUEST/ERROR items (cost updates and the BLOCK audit events of blocked
    calls skipped, nothing else expected)."""
    items: list[Event] = []
    while len(items) < count:
        item = await live.next(wait)
        if item["__typename"] == "CostUpdate":
            continue
        if item["__typename"] == "AuditEvent" and item["id"].startswith("block:"):
            continue  # test_block_audit checks these
        assert item["__typename"] in ("RequestEvent", "ErrorEvent"), item
        items.append(item)
    return items


async def relayed(
    subs: dict[str, LiveClient],
    target: LiveServer,
    key: str,
    probes: dict[str, Event],
    seen: dict[str, list[Event]],
) -> None:
    """Probe until an event ingested on `target` reaches every subscriber: a replica learns
    of the others' subscribers once its LISTEN connection is up, which may follow /health.
    `probes` gets every probe sent, `seen` the probes each subscriber received (they count
    in its totals)."""
    for _ in range(10):
        probe = mixed_events(f"probe-{len(probes)}", 1)[0]
        probes[probe["id"]] = probe
        await ingest(target.url, key, [probe])
        try:
            for name, live in subs.items():
                while True:
                    got = (await requests_until(live, 1, wait=2))[0]["id"]
                    if got not in (p["id"] for p in seen[name]):
                        seen[name].append(probes[got])
                    if got == probe["id"]:
                        break
            return
        except TimeoutError:
            continue
    raise AssertionError(f"events ingested on {target.url} never reached the subscribers")


async def test_events_cross_replicas_postgresql_only(
    replicas: tuple[LiveServer, LiveServer, str, str, str],
) -> None:
    one, two, acme, other, database_url = replicas
    variables = {"types": ["REQUEST", "ERROR", "COST_UPDATE", "AUDIT"], "interval": 1}
    sent: list[Event] = []  # every acme event ingested after the subscriptions began ...
    async with AsyncExitStack() as stack:
        subs = {
            "one/ws": await stack.enter_async_context(
                open_live(one, TRANSPORT_WS, acme, variables)
            ),
            "two/legacy": await stack.enter_async_context(
                open_live(two, LEGACY_WS, acme, variables)
            ),
            "one/sse": await stack.enter_async_context(open_live(one, SSE, acme, variables)),
        }
        await asyncio.gather(*(announced(live) for live in subs.values()))
        probes: dict[str, Event] = {}
        seen: dict[str, list[Event]] = {name: [] for name in subs}  # ... and the probes
        await relayed(subs, two, acme, probes, seen)
        await relayed(subs, one, acme, probes, seen)

        # events ingested on either replica reach the subscribers of both, with their values;
        # another workspace's events (ingested in between) reach nobody here
        from_one, from_two = mixed_events("one", 12), mixed_events("two", 12)
        await ingest(two.url, acme, from_two[:6])
        await ingest(one.url, other, mixed_events("elsewhere-1", 5))
        await ingest(one.url, acme, from_one[:6])
        await ingest(two.url, other, mixed_events("elsewhere-2", 5))
        await ingest(two.url, acme, from_two[6:])
        await ingest(one.url, acme, from_one[6:])
        sent += from_one + from_two
        by_id = {e["id"]: e for e in from_one + from_two}
        for name, live in subs.items():
            items = await requests_until(live, len(by_id))
            ids = [i["id"] for i in items]
            assert sorted(ids) == sorted(by_id), name
            for origin in (from_one, from_two):  # each replica's commits stay in order
                mine = [e["id"] for e in origin]
                assert [i for i in ids if i in set(mine)] == mine, name
            for item in items:
                check_request_item(item, by_id[item["id"]])

        # one commit far beyond NOTIFY's payload limit, with some events whose live row alone
        # exceeds it (big metadata, long error message, many long tags)
        big = big_batch(3000)
        await ingest(two.url, acme, big)
        sent += big
        for name, live in subs.items():
            items = await requests_until(live, len(big), wait=60)
            assert [i["id"] for i in items] == [e["id"] for e in big], name
            for item, event in zip(items, big, strict=True):
                check_request_item(item, event)
        # (the oversized rows did take the outbox: one row each, from the replica that
        # committed them)
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM live_outbox") == OVERSIZED
        finally:
            await conn.close()

        # audit events recorded through one replica reach the subscribers of both
        audit = {"id": "aud-x", "actor_type": "user", "action": "export", "resource_type": "csv"}
        await post(two.url, "/v1/audit-events", acme, [audit])
        for name, live in subs.items():
            while True:
                item = await live.next(wait=10)
                if item["__typename"] == "AuditEvent" and item["id"] == "aud-x":
                    break
                assert item["__typename"] in ("CostUpdate", "AuditEvent"), (name, item)

        # the running totals count every event ingested on either replica, exactly once
        for name, live in subs.items():
            update = await live.until("CostUpdate", wait=5)
            assert update["sinceStart"] == expected_totals(seen[name] + sent), name
            today = on_or_after(seen[name] + sent, update["todayStart"])
            assert update["today"] == expected_totals(today), name


OVERSIZED = 24  # rows of big_batch(3000) beyond NOTIFY's limit


def big_batch(count: int) -> list[Event]:
    events = mixed_events("big", count)
    for i in range(0, count, 250):  # two oversized rows (and one just under) per 250
        events[i]["metadata"] = {"blob": f"{i}:" + "m" * 12_000}  # > 8,000 bytes alone
        events[i + 1]["tags"] = [f"{t:02d}" + "t" * 126 for t in range(32)]
        events[i + 2].update(
            status="error",
            error_type="other",
            error_message="e" * 2000,
            tags=[f"{t:02d}" + "u" * 126 for t in range(32)],
            metadata={"blob": "n" * 9_000},
        )
    return events


BATCH_QUERY = """
subscription Batches {
  eventBatches(maxLatencyMs: 50) {
    __typename
    ... on EventBatch {
      events { ... on RequestEvent { id } ... on ErrorEvent { id } }
      runningTotals { requests errors inputTokens outputTokens cacheReadTokens
                      cacheWriteTokens reasoningTokens totalTokens costUsd }
    }
    ... on Lagged { count }
  }
}
"""


async def test_event_batches_cross_replicas_postgresql_only(
    replicas: tuple[LiveServer, LiveServer, str, str, str],
) -> None:
    """Coalesced subscribers on both replicas receive the events ingested on either, in
    commit order, exactly once, with running totals that grow by exactly what was ingested."""
    one, two, acme, _, _ = replicas
    async with AsyncExitStack() as stack:
        subs = {
            name: await stack.enter_async_context(
                open_live(server, transport, acme, {}, query=BATCH_QUERY)
            )
            for name, server, transport in (
                ("one/ws", one, TRANSPORT_WS),
                ("two/sse", two, SSE),
                ("two/legacy", two, LEGACY_WS),
            )
        }
        last: dict[str, dict[str, Any]] = {}

        async def drain(name: str, live: LiveClient, wait: float) -> list[str]:
            ids: list[str] = []
            while True:
                try:
                    item = await live.next(wait)
                except TimeoutError:
                    return ids
                assert item["__typename"] == "EventBatch", item
                ids += [e["id"] for e in item["events"]]
                last[name] = item["runningTotals"]

        # probe until an event ingested on each replica reaches every subscriber
        for n in range(20):
            await ingest(one.url, acme, mixed_events(f"probe-one-{n}", 1))
            await ingest(two.url, acme, mixed_events(f"probe-two-{n}", 1))
            got = [await drain(name, live, 1.0) for name, live in subs.items()]
            if all(any(i.startswith(f"probe-two-{n}") for i in ids) for ids in got) and all(
                any(i.startswith(f"probe-one-{n}") for i in ids) for ids in got
            ):
                break
        else:
            raise AssertionError("the replicas never relayed to each other")
        before = {name: last[name] for name in subs}

        events = mixed_events("ev", 40)
        await ingest(one.url, acme, events[:25])
        await ingest(two.url, acme, events[25:])
        for name, live in subs.items():
            ids: list[str] = []
            while len(ids) < len(events):
                ids += await drain(name, live, 5.0) or []
                if not ids:
                    break
            assert ids == [e["id"] for e in events], name
            grown = {k: last[name][k] - before[name][k] for k in last[name]}
            want = expected_totals(events)
            assert grown.keys() == want.keys()
            for k, v in want.items():
                assert grown[k] == pytest.approx(v), (name, k)
