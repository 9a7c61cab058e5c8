"""The subscriber side of bench/live.py: one process holding many graphql-transport-ws
subscriptions, counting what each receives and timing each receipt against `committedAt`.

In `batches` mode each subscription is `eventBatches`: every event of a received batch is
timed against its own `committedAt` at the batch's arrival. Subscribers of one shape receive
the same message text, so a message is parsed once per client process (cached by its text)
and each receipt only adds its events' latencies to the histogram."""

from __future__ import annotations

import asyncio
import base64
import os
import queue
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop

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
OP_TEXT = 0x1


@dataclass
class Subscriber:
    index: int
    workspace: int
    received: int = 0
    lagged: int = 0
    frames: int = 0
    bytes: int = 0
    ws: RawWebSocket | None = None


class RawWebSocket(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455) that hands each text message to a callback as
    bytes, in `data_received`: no task, no queue and no UTF-8 decoding per message.

    With the `websockets` client, 1,000 subscribers receiving 7,500 messages a second took
    0.23-0.32 s of CPU a second on the machine whose ingest they measure: a task woken per
    message, frames parsed by a generator, every message decoded to text. Subscribers stand
    for browsers on other hosts; what they cost here is only the harness's. Handles what a
    server may send: unmasked frames, fragmented messages, pings (answered) and close."""

    def __init__(self, host: str, path: str) -> None:
        self.transport: asyncio.Transport | None = None
        self._host = host
        self._path = path
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending: deque[bytes] = deque()
        self._waiting: asyncio.Future[None] | None = None
        self.on_message: Callable[[bytes], None] | None = None
        """Where messages go once set; before, `recv()` takes them one at a time."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        for future in (self.upgraded, self._waiting):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self._upgraded = True
            self.upgraded.set_result(None)
        start = 0
        size = len(buffer)
        while size - start >= 2:
            first, second = buffer[start], buffer[start + 1]
            length = second & 0x7F
            at = start + 2
            if length == 126:
                if size - at < 2:
                    break
                length = int.from_bytes(buffer[at : at + 2], "big")
                at += 2
            elif length == 127:
                if size - at < 8:
                    break
                length = int.from_bytes(buffer[at : at + 8], "big")
                at += 8
            if second & 0x80:  # a masked frame from a server: not expected, but readable
                if size - at < 4 + length:
                    break
                mask = buffer[at : at + 4]
                at += 4
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buffer[at : at + length]))
            else:
                if size - at < length:
                    break
                payload = bytes(buffer[at : at + length])
            start = at + length
            self._frame(first & 0x80 != 0, first & 0x0F, payload)
        del buffer[:start]

    def _frame(self, final: bool, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping
            self._send(0xA, payload)
            return
        if opcode == 0x8:  # close
            if not self.closed.done():
                self.closed.set_result(None)
            if self.transport is not None:
                self.transport.close()
            return
        if opcode == 0xA:  # pong
            return
        if opcode != 0:
            self._fragment_opcode = opcode
        if not final:
            self._fragments.append(payload)
            return
        if self._fragments:
            payload = b"".join((*self._fragments, payload))
            self._fragments = []
        if self._fragment_opcode != OP_TEXT:
            return
        if self.on_message is not None:
            self.on_message(payload)
            return
        self._pending.append(payload)
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    async def recv(self) -> bytes:
        """The next message, before `on_message` is set."""
        while not self._pending:
            self._waiting = asyncio.get_running_loop().create_future()
            await self._waiting
        return self._pending.popleft()

    def deliver(self, on_message: Callable[[bytes], None]) -> None:
        """From now on each message goes to `on_message`, those already received first."""
        while self._pending:
            on_message(self._pending.popleft())
        self.on_message = on_message

    def send_text(self, text: bytes) -> None:
        self._send(OP_TEXT, text)

    def _send(self, opcode: int, payload: bytes) -> None:
        """A client's frames are masked (RFC 6455 §5.3)."""
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = bytes((0x80 | opcode, 0x80 | size))
        elif size < 1 << 16:
            header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(header + mask + masked)

    def close(self) -> None:
        self._send(0x8, (1000).to_bytes(2, "big"))
        if self.transport is not None:
            self.transport.close()


async def _open(url: str, key: str, sub: Subscriber, mode: str, max_latency_ms: int) -> None:
    """Connect and subscribe; on a loaded machine a connection may be dropped while many
    others are being opened (a ping unanswered in time): it is opened again."""
    for attempt in range(3):
        try:
            await asyncio.wait_for(_open_once(url, key, sub, mode, max_latency_ms), 120)
            return
        except (OSError, TimeoutError):  # ConnectionError is an OSError
            if attempt == 2:
                raise
            await asyncio.sleep(1)


async def _open_once(url: str, key: str, sub: Subscriber, mode: str, max_latency_ms: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    _, ws = await asyncio.get_running_loop().create_connection(
        lambda: RawWebSocket(f"{host}:{port}", parts.path or "/"), host, port
    )
    await ws.upgraded
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
    ws.send_text(orjson.dumps(init))
    ack = orjson.loads(await ws.recv())
    assert ack["type"] == "connection_ack", ack
    if mode == "batches":  # nothing arrives before the first event: registered by /health
        payload = {"query": BATCH_QUERY, "variables": {"ms": max_latency_ms}}
        ws.send_text(orjson.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        sub.ws = ws
        return
    ws.send_text(orjson.dumps({"type": "subscribe", "id": "1", "payload": {"query": QUERY}}))
    first = orjson.loads(await ws.recv())
    assert first["type"] == "next" and first["payload"]["data"], first
    sub.ws = ws


Parsed = tuple[int, list[int], int]  # measured events, their commit buckets, lag count
_parsed: dict[bytes, Parsed] = {}


def _parse_batch(raw: bytes) -> Parsed:
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


def _consume_batches(sub: Subscriber) -> Callable[[bytes], None]:
    def received(raw: bytes) -> None:
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

    return received


def _consume(sub: Subscriber, histogram: Counter[int]) -> Callable[[bytes], None]:
    def received(raw: bytes) -> None:
        arrived = time.time()
        sub.frames += 1
        sub.bytes += len(raw)
        message = orjson.loads(raw)
        if message["type"] != "next":
            return
        item = message["payload"]["data"]["events"]
        kind = item["__typename"]
        if kind == "RequestEvent":
            if item["id"].startswith(MEASURED_PREFIX):
                sub.received += 1
                committed = datetime.fromisoformat(item["committedAt"]).timestamp()
                histogram[int((arrived - committed) * 1000 / BUCKET_MS)] += 1
        elif kind == "Lagged":
            sub.lagged += item["count"]

    return received


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
    for sub in subs:
        assert sub.ws is not None
        sub.ws.deliver(_consume_batches(sub) if mode == "batches" else _consume(sub, histogram))
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
            sub.ws.close()


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
    # uvloop (as the server runs): the clients stand for browsers on other hosts, so the less
    # of the measured machine they take, the truer its figures
    uvloop.run(_main(url, keys, count, offset, commands, results, mode, max_latency_ms))


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
