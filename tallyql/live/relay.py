"""The bus across replicas on PostgreSQL: LISTEN/NOTIFY on one channel.

Messages (JSON, each tagged with its origin process):
- `e`: live rows, packed into as few notifications as fit under NOTIFY's 8000-byte limit,
  each as the array of its values in `compact.ROW_KEYS` order under `a` (as objects, their
  keys took half the bytes that PostgreSQL carries and every replica parses; rows as objects
  under `e`, as earlier versions send them, are still read);
  `"p": 1` when the origin's ingest is saturated (its writer busy nearly all the time): the
  receivers' feeds then send at their pressed share too (live/batches.py
  `PRESSED_SENDER_SHARE`), since their CPU and the database's are the same that ingest needs
  on a shared machine, and at the least the database's is;
- `n`: a notice (limit warning, alert) for one workspace;
- `r`: a reference to an `live_outbox` row holding a message too big for one notification
  (one huge event, say); it is written in the same transaction as the NOTIFY, so receivers
  find it, and rows older than `OUTBOX_KEEP` are deleted; messages received after an `r`
  wait until its row was read, so that rows arrive in commit order;
- `i`: which workspaces the origin has subscribers for, sent on change and every
  `INTEREST_SECONDS` (and in reply to `h`, which a replica sends when it connects). Rows are
  only published for workspaces that some other replica is interested in, so ingest pays
  nothing for the relay while nobody elsewhere subscribes.
A replica ignores its own `e`, `n` and `r` messages (its bus delivered them already).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy import delete, select

from tallyql.clock import clock
from tallyql.live.bus import LiveBus
from tallyql.live.compact import LiveRow, row_of_mapping, row_of_values
from tallyql.live.pg_listener import PgListener
from tallyql.storage.database import Database
from tallyql.storage.live_tables import live_outbox

log = logging.getLogger(__name__)

CHANNEL = "tallyql_live"
MAX_PAYLOAD = 7900  # bytes; PostgreSQL refuses payloads of 8000 bytes and more
INTEREST_SECONDS = 10.0
INTEREST_TTL = 3 * INTEREST_SECONDS
OUTBOX_KEEP = timedelta(minutes=10)
MAX_PENDING = 20_000  # messages waiting for the database; the oldest go first when full
PRESSURE_SECONDS = 0.5
"""How long rows marked as from a saturated origin keep this replica's feeds pressed."""
NOTIFY_SQL = "SELECT pg_notify($1, m) FROM unnest($2::text[]) AS m"


class PgRelay:
    def __init__(
        self,
        db: Database,
        bus: LiveBus,
        listener: PgListener,
        pressure: Callable[[], bool] | None = None,
    ) -> None:
        """`pressure`: whether this replica's ingest is saturated (marked on its rows)."""
        self.origin = uuid.uuid4().hex[:12]
        self._pressure = pressure
        self._pressed_until = 0.0
        self._db = db
        self._bus = bus
        self._listener = listener
        self._pending: deque[tuple[str, str | None]] = deque()  # (payload, outbox body)
        self._wake = asyncio.Event()
        self._remote: dict[str, tuple[float, frozenset[int]]] = {}
        self._wanted: frozenset[int] = frozenset()
        self.remote_serving = 0
        """Other replicas with live subscribers (as they last announced)."""
        self._echo: dict[str, asyncio.Future[None]] = {}
        self._inbox: deque[dict[str, Any]] = deque()  # received, behind an outbox read
        self._reader: asyncio.Task[None] | None = None
        self._header = f'{{"k":"e","o":"{self.origin}","a":'.encode()
        self._pressed_header = f'{{"k":"e","o":"{self.origin}","p":1,"a":'.encode()
        self._bytes_per_row = 300.0
        """Encoded bytes per relayed row lately (see `publish_rows`)."""
        self._own_rows = f'{{"k":"e","o":"{self.origin}",'
        """How this replica's own row messages start (they come back to it: skipped unread)."""
        self.sent = 0
        self.received = 0
        self.dropped = 0
        listener.add(CHANNEL, self._on_message)
        listener.on_connect.append(self._hello)

    # ------------------------------------------------------------------ publishing

    def wants(self, workspace_id: int) -> bool:
        return workspace_id in self._wanted

    @property
    def pressed(self) -> bool:
        """Whether rows from a replica whose ingest is saturated arrived lately."""
        return time.monotonic() < self._pressed_until

    def publish_rows(self, rows: Sequence[LiveRow]) -> None:
        """Queue the rows of watched workspaces, in commit order, in as few notifications as
        fit under `MAX_PAYLOAD`. Rows are encoded several at a time, one orjson call for as
        many as the bytes per row seen so far say fit in the room left (a call per row,
        with the sizes summed in Python, cost the origin as much as the encoding itself);
        a group that overflows is halved; a row too big alone goes by the outbox."""
        pressed = self._pressure is not None and self._pressure()
        header = self._pressed_header if pressed else self._header
        wanted = self._wanted
        # a named tuple is not JSON to orjson: its values as a plain tuple
        values = [tuple(row) for row in rows if row.workspace_id in wanted]
        room = MAX_PAYLOAD - len(header) - 3  # the brackets of "a" and the closing brace
        parts: list[bytes] = []  # encoded rows of the next notification, brackets stripped
        used = 0
        per_row = self._bytes_per_row
        start = 0
        while start < len(values):
            count = max(1, int((room - used) / per_row))
            group = values[start : start + count]
            encoded = orjson.dumps(group)[1:-1]
            size = len(encoded) + (1 if parts else 0)  # and a comma
            if used + size <= room:
                parts.append(encoded)
                used += size
                start += len(group)
                per_row = len(encoded) / len(group)
                if room - used >= per_row:
                    continue  # room for more
            elif len(group) > 1:
                per_row = 2 * len(encoded) / len(group)  # half as many next time
                continue
            elif not parts:  # one row, too big for a notification of its own
                self._via_outbox(header + b"[" + encoded + b"]}")
                start += 1
                continue
            if parts:
                self._enqueue(header + b"[" + b",".join(parts) + b"]}")
                parts, used = [], 0
        if parts:
            self._enqueue(header + b"[" + b",".join(parts) + b"]}")
        self._bytes_per_row = per_row

    def publish_notice(self, workspace_id: int, kind: str, notice: dict[str, Any]) -> None:
        message = orjson.dumps(
            {"k": "n", "o": self.origin, "w": workspace_id, "t": kind, "n": notice}
        )
        if len(message) > MAX_PAYLOAD:
            self._via_outbox(message)
        else:
            self._enqueue(message)

    def interest_changed(self) -> None:
        self._enqueue(self._interest_message())

    async def sync(self, wait_seconds: float = 2.0) -> None:
        """Announce this replica's interest and wait until PostgreSQL has delivered it."""
        nonce = uuid.uuid4().hex[:8]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echo[nonce] = future
        self._enqueue(self._interest_message(nonce))
        try:
            async with asyncio.timeout(wait_seconds):
                await future
        except TimeoutError:
            log.warning("live relay: interest announcement not echoed within %.1fs", wait_seconds)
        finally:
            self._echo.pop(nonce, None)

    def _interest_message(self, nonce: str | None = None) -> bytes:
        message: dict[str, Any] = {"k": "i", "o": self.origin, "w": self._bus.workspaces()}
        if nonce:
            message["x"] = nonce
        return orjson.dumps(message)

    def _enqueue(self, payload: bytes, outbox: bytes | None = None) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append((payload.decode(), None if outbox is None else outbox.decode()))
        self._wake.set()

    def _via_outbox(self, message: bytes) -> None:
        ref = uuid.uuid4().hex
        self._enqueue(orjson.dumps({"k": "r", "o": self.origin, "ref": ref}), message)

    async def run(self) -> None:
        """Send queued messages, for the life of the process."""
        next_interest = time.monotonic() + INTEREST_SECONDS
        next_cleanup = time.monotonic()
        conn: asyncpg.Connection | None = None
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_interest - time.monotonic())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            now = time.monotonic()
            if now >= next_interest:
                next_interest = now + INTEREST_SECONDS
                self._enqueue(self._interest_message())
                self._prune(now)
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self._db.asyncpg_dsn)
                await self._send(conn)
                if now >= next_cleanup:
                    next_cleanup = now + 60
                    await self._cleanup()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live relay: NOTIFY failed (%s); retrying", exc)
                if conn is not None and not conn.is_closed():
                    conn.terminate()
                conn = None
                await asyncio.sleep(1)
                self._wake.set()

    async def _send(self, conn: asyncpg.Connection) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), 500))]
            try:
                async with conn.transaction():
                    created = clock.now()
                    for payload, body in batch:
                        if body is not None:
                            ref = orjson.loads(payload)["ref"]
                            await conn.execute(
                                "INSERT INTO live_outbox (id, created_at, body)"
                                " VALUES ($1, $2, $3)",
                                ref,
                                created,
                                body,
                            )
                    await conn.execute(NOTIFY_SQL, CHANNEL, [p for p, _ in batch])
            except BaseException:
                self._pending.extendleft(reversed(batch))
                raise
            self.sent += len(batch)

    async def _cleanup(self) -> None:
        cutoff = clock.now() - OUTBOX_KEEP
        async with self._db.write() as conn:
            await conn.execute(delete(live_outbox).where(live_outbox.c.created_at < cutoff))

    # ------------------------------------------------------------------ receiving

    async def _hello(self) -> None:
        self._enqueue(orjson.dumps({"k": "h", "o": self.origin}))
        self._enqueue(self._interest_message())

    def _on_message(self, payload: str) -> None:
        if payload.startswith(self._own_rows):
            return  # this replica's bus delivered them already
        message = orjson.loads(payload)
        kind, origin = message["k"], message["o"]
        if kind == "i":
            if origin == self.origin:
                echo = self._echo.get(message.get("x", ""))
                if echo is not None and not echo.done():
                    echo.set_result(None)
                return
            self._remote[origin] = (time.monotonic() + INTEREST_TTL, frozenset(message["w"]))
            self._recompute()
            return
        if origin == self.origin:
            return
        self.received += 1
        if kind == "h":
            self.interest_changed()
        elif kind == "r" or self._inbox:
            # an outbox message is read from the database: later messages wait for it, so
            # that each replica's rows keep their commit order
            self._inbox.append(message)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_inbox())
        else:
            self._handle(message)

    async def _read_inbox(self) -> None:
        while self._inbox:
            message = self._inbox[0]
            try:
                if message["k"] == "r":
                    await self._fetch(message["ref"])  # logs its own failures
                else:
                    self._handle(message)
            except Exception:
                log.exception("live relay: delivering a received message failed")
            finally:
                self._inbox.popleft()

    def _handle(self, message: dict[str, Any]) -> None:
        if message["k"] == "e":
            if message.get("p"):
                self._pressed_until = time.monotonic() + PRESSURE_SECONDS
            if "a" in message:
                self._bus.deliver_rows([row_of_values(v) for v in message["a"]])
            else:
                self._bus.deliver_rows([row_of_mapping(row) for row in message["e"]])
        elif message["k"] == "n":
            self._bus.deliver_notice(message["w"], message["t"], message["n"])

    async def _fetch(self, ref: str) -> None:
        try:
            async with self._db.read() as conn:
                body = (
                    await conn.execute(select(live_outbox.c.body).where(live_outbox.c.id == ref))
                ).scalar_one_or_none()
            if body is None:
                log.warning("live relay: outbox message %s is gone", ref)
                return
            self._handle(orjson.loads(body))
        except Exception:
            log.exception("live relay: reading outbox message %s failed", ref)

    def _prune(self, now: float) -> None:
        expired = [o for o, (until, _) in self._remote.items() if until < now]
        for origin in expired:
            del self._remote[origin]
        if expired:
            self._recompute()

    def _recompute(self) -> None:
        wanted: set[int] = set()
        for _, workspaces in self._remote.values():
            wanted |= workspaces
        self._wanted = frozenset(wanted)
        self.remote_serving = sum(1 for _, workspaces in self._remote.values() if workspaces)
