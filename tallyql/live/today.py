"""Today's totals for a filter, read from the engine: the base that live COST_UPDATEs add
streamed events to, without counting an event twice or missing one.

An event committed while the base is read may be in the base and be streamed as well. So the
base is read in one snapshot together with a marker of that snapshot, and each streamed event
committed around that time is checked against the marker later (`visible_in_base`), by its
key, without holding the snapshot open:
- SQLite (one writer, so commit order is insertion order): the largest `rowid` of `events`;
  an event is in the base when its rowid is not larger.
- PostgreSQL: the snapshot itself (`pg_current_snapshot()`); an event is in the base when the
  transaction that inserted its key (`event_keys.xmin`) is visible in that snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.engine.analytics import Asker
from tallyql.engine.compiler import Scope
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.registry import Metric
from tallyql.engine.timerange import TimeWindow
from tallyql.live.totals import Totals
from tallyql.money import round_to_nano
from tallyql.storage.database import Database

TOTAL_METRICS: dict[str, Metric] = {
    "requests": Metric.REQUESTS,
    "errors": Metric.ERRORS,
    "input_tokens": Metric.INPUT_TOKENS,
    "output_tokens": Metric.OUTPUT_TOKENS,
    "cache_read_tokens": Metric.CACHE_READ_TOKENS,
    "cache_write_tokens": Metric.CACHE_WRITE_TOKENS,
    "reasoning_tokens": Metric.REASONING_TOKENS,
}
CHECK_CHUNK = 500
XID_SPAN = 1 << 32


@dataclass(frozen=True)
class Marker:
    """Which committed events a base read saw."""

    max_rowid: int | None = None  # SQLite
    xmin: int = 0  # PostgreSQL: the snapshot's bounds and in-progress transactions
    xmax: int = 0
    xip: frozenset[int] = frozenset()

    def sees_xid(self, xid32: int) -> bool:
        xid = _widen(xid32, self.xmax)
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)


def _widen(xid32: int, reference: int) -> int:
    """A 32-bit transaction id as the 64-bit one nearest to `reference`."""
    xid = (reference & ~(XID_SPAN - 1)) | xid32
    if xid - reference > XID_SPAN // 2:
        xid -= XID_SPAN
    elif reference - xid > XID_SPAN // 2:
        xid += XID_SPAN
    return xid


def parse_snapshot(value: str) -> Marker:
    """`xmin:xmax:xip,...` as returned by pg_current_snapshot()."""
    xmin, xmax, xip = value.split(":")
    return Marker(
        xmin=int(xmin), xmax=int(xmax), xip=frozenset(int(x) for x in xip.split(",") if x)
    )


class _Pinned:
    """A Database for the engine whose reads all use one connection (one snapshot)."""

    def __init__(self, db: Database, conn: AsyncConnection) -> None:
        self.dialect = db.dialect
        self.reader = db.reader
        self._conn = conn
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._lock:  # the engine may ask concurrently; one connection answers
            yield self._conn


@asynccontextmanager
async def _snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read connection whose statements all see one snapshot."""
    level = db.dialect.snapshot_isolation
    if level is not None:
        async with db.reader.connect() as conn:
            pinned = await conn.execution_options(isolation_level=level)
            async with pinned.begin():
                yield pinned
    else:
        async with db.read() as conn:
            await conn.exec_driver_sql("BEGIN")  # WAL: the snapshot of the first read holds
            try:
                yield conn
            finally:
                await conn.rollback()


async def totals_between(
    db: Database, workspace_id: int, spec: EventFilterSpec, start: datetime, end: datetime
) -> tuple[Totals, Marker]:
    """The totals of [start, end) for the filter, and the marker of the snapshot they count."""
    async with _snapshot(db) as conn:
        if db.dialect.rowids_in_commit_order:
            found = (await conn.execute(text("SELECT max(rowid) FROM events"))).scalar()
            marker = Marker(max_rowid=int(found or 0))
        else:
            value = (await conn.execute(text("SELECT pg_current_snapshot()::text"))).scalar_one()
            marker = parse_snapshot(value)
        pinned = cast(Database, _Pinned(db, conn))
        window = TimeWindow(start, end, ZoneInfo("UTC"))
        result = await Asker(pinned, Scope.of(workspace_id), window, spec).run(
            (*TOTAL_METRICS.values(), Metric.COST_USD)
        )
    values = {name: int(result.value((0,), m) or 0) for name, m in TOTAL_METRICS.items()}
    cost = result.value((0,), Metric.COST_USD) or 0.0
    return Totals(**values, cost_nanousd=round_to_nano(cost)), marker


async def visible_in_base(
    db: Database, workspace_id: int, marker: Marker, ids: Sequence[str]
) -> set[str]:
    """Those of these (committed) events that the base read with `marker` counted."""
    if db.dialect.rowids_in_commit_order:
        query = text("SELECT id, rowid FROM events WHERE workspace_id = :w AND id IN :ids")
    else:
        query = text(
            "SELECT event_id, xmin::text::bigint FROM event_keys"
            " WHERE workspace_id = :w AND event_id IN :ids"
        )
    query = query.bindparams(bindparam("ids", expanding=True))
    seen: set[str] = set()
    async with db.read() as conn:
        for i in range(0, len(ids), CHECK_CHUNK):
            rows: Any = await conn.execute(
                query, {"w": workspace_id, "ids": ids[i : i + CHECK_CHUNK]}
            )
            for event_id, position in rows:
                if marker.max_rowid is not None:
                    if position <= marker.max_rowid:
                        seen.add(event_id)
                elif marker.sees_xid(int(position)):
                    seen.add(event_id)
    return seen
