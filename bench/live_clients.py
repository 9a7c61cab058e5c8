"""The subscriber side of bench/live.py: one process holding many graphql-transport-ws
subscriptions, counting what each receives and timing each receipt against `committedAt`.

In `batches` mode each subscription is `eventBatches`: every event of a received batch is
timed against its own `committedAt` at the batch's arrival. Subscribers of one shape receive
the same message text, so a message is parsed once per client process (cached by its text)
and each receipt only adds its events' latencies to the histogram."""

from __future__ import annotations

import asyncio
import os
import queue
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

QUERY = """subscription {
  events(types: [REQUEST, COST_UPDATE], interval: 3600) {
    __typename
    ... on RequestEvent { id committedAt }
    ... on Lagged { count }
  }
}"""
BATCH_QUERY = """subscription Batches($ms: Int!) {
  eventBatches(types: [REQUEST], maxLatencyMs: $ms) {
    __typename
    ... on EventBatch { events { ... on RequestEvent { id committedAt } } }
    ... on Lagged { count }
  }
}"""
MEASURED_PREFIX = "c-"  # ids of the paced phase with subscribers
BUCKET_MS = 0.1
CONNECT_AT_ONCE = 50


@dataclass
class Subscriber:
    index: int
    workspace: int
    received: int = 0
    lagged: int = 0
    frames: int = 0
    bytes: int = 0
    ws: ClientConnection | None = None


async def _open(url: str, key: str, sub: Subscriber, mode: str, max_latency_ms: int) -> None:
    """Connect and subscribe; on a loaded machine a connection may be dropped while many
    others are being opened (a ping unanswered in time): it is opened again."""
    for attempt in range(3):
        try:
            await _open_once(url, key, sub, mode, max_latency_ms)
            return
        except (OSError, TimeoutError, ConnectionClosed):
            if attempt == 2:
                raise
            await asyncio.sleep(1)


async def _open_once(url: str, key: str, sub: Subscriber, mode: str, max_latency_ms: int) -> None:
    ws = await connect(
        url,
        subprotocols=["graphql-transport-ws"],
        ping_interval=None,
        max_size=None,
        open_timeout=120,  # a loaded machine (the server is busy ingesting meanwhile)
    )
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
    await ws.send(orjson.dumps(init).decode())
    ack = orjson.loads(await ws.recv())
    assert ack["type"] == "connection_ack", ack
    if mode == "batches":  # nothing arrives before the first event: registered by /health
        payload = {"query": BATCH_QUERY, "variables": {"ms": max_latency_ms}}
        await ws.send(orjson.dumps({"type": "subscribe", "id": "1", "payload": payload}).decode())
        sub.ws = ws
        return
    await ws.send(
        orjson.dumps({"type": "subscribe", "id": "1", "payload": {"query": QUERY}}).decode()
    )
    first = orjson.loads(await ws.recv())
    assert first["type"] == "next" and first["payload"]["data"], first
    sub.ws = ws


Parsed = tuple[int, list[int], int]  # measured events, their commit buckets, lag count
_parsed: dict[str | bytes, Parsed] = {}


def _parse_batch(raw: str | bytes) -> Parsed:
    hit = _parsed.get(raw)
    if hit is not None:
        return hit
    message = orjson.loads(raw)
    offsets: list[int] = []
    lagged = 0
    if message["type"] == "next":
        item = message["payload"]["data"]["eventBatches"]
        if item["__typename"] == "Lagged":
            lagged = item["count"]
        else:
            for event in item["events"]:
                if event["id"].startswith(MEASURED_PREFIX):
                    committed = datetime.fromisoformat(event["committedAt"]).timestamp()
                    offsets.append(int(committed * 1000 / BUCKET_MS))
    if len(_parsed) > 512:
        _parsed.clear()
    parsed = _parsed[raw] = (len(offsets), offsets, lagged)
    return parsed


_receipts: dict[int, tuple[list[int], list[int]]] = {}
"""Per distinct message (by id of its parsed offsets): its events' commit buckets and the
arrival bucket of each receipt. The latencies are added up when a report is asked for, not
while messages arrive: the load generator shares the machine with the server it measures."""


def _settle(histogram: Counter[int]) -> None:
    for offsets, arrivals in _receipts.values():
        for arrived in arrivals:
            histogram.update([arrived - o for o in offsets])
    _receipts.clear()


async def _consume_batches(sub: Subscriber, histogram: Counter[int]) -> None:
    assert sub.ws is not None
    try:
        async for raw in sub.ws:
            arrived = int(time.time() * 1000 / BUCKET_MS)
            sub.frames += 1
            sub.bytes += len(raw)
            count, offsets, lagged = _parse_batch(raw)
            sub.received += count
            sub.lagged += lagged
            if offsets:
                entry = _receipts.get(id(offsets))
                if entry is None or entry[0] is not offsets:
                    entry = _receipts[id(offsets)] = (offsets, [])
                entry[1].append(arrived)
    except Exception:  # the connection closed at the end of the run
        return


async def _consume(sub: Subscriber, histogram: Counter[int]) -> None:
    assert sub.ws is not None
    try:
        async for raw in sub.ws:
            arrived = time.time()
            sub.frames += 1
            sub.bytes += len(raw)
            message = orjson.loads(raw)
            if message["type"] != "next":
                continue
            item = message["payload"]["data"]["events"]
            kind = item["__typename"]
            if kind == "RequestEvent":
                if item["id"].startswith(MEASURED_PREFIX):
                    sub.received += 1
                    committed = datetime.fromisoformat(item["committedAt"]).timestamp()
                    histogram[int((arrived - committed) * 1000 / BUCKET_MS)] += 1
            elif kind == "Lagged":
                sub.lagged += item["count"]
    except Exception:  # the connection closed at the end of the run
        return


async def _main(
    url: str,
    keys: list[str],
    count: int,
    offset: int,
    commands: Any,
    results: Any,
    mode: str,
    max_latency_ms: int,
) -> None:
    subs = [Subscriber(offset + i, (offset + i) % len(keys)) for i in range(count)]
    for start in range(0, count, CONNECT_AT_ONCE):
        chunk = subs[start : start + CONNECT_AT_ONCE]
        await asyncio.gather(
            *(_open(url, keys[s.workspace], s, mode, max_latency_ms) for s in chunk)
        )
    histogram: Counter[int] = Counter()
    consume = _consume_batches if mode == "batches" else _consume
    tasks = [asyncio.create_task(consume(s, histogram)) for s in subs]
    results.put({"ready": count})
    loop = asyncio.get_running_loop()
    while True:
        try:
            command = await loop.run_in_executor(None, commands.get, True, 1.0)
        except queue.Empty:
            continue
        if command == "report":
            _settle(histogram)
            results.put(
                {
                    "subscribers": [
                        {
                            "workspace": s.workspace,
                            "received": s.received,
                            "lagged": s.lagged,
                            "frames": s.frames,
                            "bytes": s.bytes,
                        }
                        for s in subs
                    ],
                    "histogram": dict(histogram),
                }
            )
        elif command == "stop":
            break
    for sub in subs:
        if sub.ws is not None:
            await sub.ws.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_clients(
    url: str,
    keys: list[str],
    count: int,
    offset: int,
    commands: Any,
    results: Any,
    mode: str = "events",
    max_latency_ms: int = 250,
    nice: int = 0,
) -> None:
    if nice:  # lower priority: the subscribers' clients take what the server leaves
        os.nice(nice)
    asyncio.run(_main(url, keys, count, offset, commands, results, mode, max_latency_ms))


def histogram_quantile(histogram: dict[int, int], q: float) -> float:
    """Seconds at quantile q of a merged receipt-latency histogram."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank = q * (total - 1)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return (bucket + 0.5) * BUCKET_MS / 1000
    return max(histogram) * BUCKET_MS / 1000
