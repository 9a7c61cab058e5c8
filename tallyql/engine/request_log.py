"""The request log: events newest first, with filters and keyset cursors over (ts, id).

Its `totalCount` is a count of every matching event, which over a month of a busy workspace
is a scan of millions of rows. When a rollup keeps every column the filter reads (always so
within the coverage rule, `rollups.LOW_CARDINALITY`; users with provider, model, kind and
status too) it is the REQUESTS metric of the engine instead, rollups for whole hours and raw
events at the edges, over the window clipped to the workspace's first and last events (so
that rollup rows outliving purged raw events, which the log cannot list, are never counted).
Other filters count raw events, and explain says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_

from tallyql.engine.buckets import BucketError, Granularity
from tallyql.engine.compiler import Scope
from tallyql.engine.executor import MetricsQuery, run_query
from tallyql.engine.filters import EventFilterSpec, filter_conditions
from tallyql.engine.planner import covering_rollup, needed_columns, uncovered_reason
from tallyql.engine.registry import Metric
from tallyql.engine.timerange import TimeWindow
from tallyql.storage.cursors import CursorError, check_page_size, decode_cursor, encode_cursor
from tallyql.storage.database import Database
from tallyql.storage.tables import event_keys, events, payloads
from tallyql.storage.types import from_micros, to_micros

_CURSOR_KIND = "req"


@dataclass(frozen=True)
class RequestPage:
    rows: list[dict[str, Any]]
    has_next_page: bool

    def cursor(self, row: dict[str, Any]) -> str:
        return encode_cursor(_CURSOR_KIND, to_micros(row["ts"]), row["id"])


def _conditions(
    db: Database, workspace_id: int, window: TimeWindow | None, spec: EventFilterSpec
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [events.c.workspace_id == workspace_id]
    if window is not None:
        conditions += [events.c.ts >= window.start, events.c.ts < window.end]
    conditions += filter_conditions(spec, events.c, db.dialect)
    return conditions


async def list_requests(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    first: int,
    after: str | None,
) -> RequestPage:
    """A page of the log. With a filter a rollup can count, the page's events are looked for
    only from the newest bucket (hour, or day over a long window) back to which the rollups
    count `first + 1` of them before the cursor: a filter matching few events would otherwise
    read every event of the window to fill a page. The range only narrows the read; when it
    yields fewer rows than asked (events counted but not yet visible, say), the page is read
    again without it, so pages stay exact."""
    check_page_size(first)
    query: Select[Any] = select(events).where(*_conditions(db, workspace_id, window, spec))
    before: datetime | None = None
    if after:
        ts, event_id = _decode_after(after)
        before = ts
        # typed binds: SQLite stores ts as integer microseconds (UtcDateTime), and an untyped
        # datetime would be bound as text, which sorts after every integer
        query = query.where(
            tuple_(events.c.ts, events.c.id)
            < tuple_(literal(ts, events.c.ts.type), literal(event_id, events.c.id.type))
        )
    query = query.order_by(events.c.ts.desc(), events.c.id.desc()).limit(first + 1)
    floor = (
        None
        if spec.is_empty()
        else await _page_floor(db, workspace_id, window, spec, first + 1, before)
    )
    async with db.read() as conn:
        rows: list[dict[str, Any]] = []
        if floor is not None:
            narrowed = query.where(events.c.ts >= literal(floor, events.c.ts.type))
            rows = [dict(r) for r in (await conn.execute(narrowed)).mappings()]
        if len(rows) <= first:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return RequestPage(rows[:first], len(rows) > first)


def _rollup_reason(spec: EventFilterSpec) -> str | None:
    """Why no rollup counts the events `spec` selects (None: one does)."""
    needed, reason = needed_columns((), spec, None)
    if reason is None and covering_rollup(needed, histogram=False) is None:
        reason = uncovered_reason(needed, histogram=False)
    return reason


async def _clip(db: Database, workspace_id: int, window: TimeWindow | None) -> TimeWindow | None:
    """The window clipped to the workspace's first and last events in it (two index probes
    on (workspace_id, ts)); None when it holds none."""
    # ORDER BY ... LIMIT 1 each: one min() and one max() in one SELECT make SQLite scan the
    # window's index range instead of reading its two ends
    conditions = _conditions(db, workspace_id, window, EventFilterSpec())
    edge = select(events.c.ts).where(*conditions).limit(1)
    bounds = select(
        edge.order_by(events.c.ts.asc()).scalar_subquery(),
        edge.order_by(events.c.ts.desc()).scalar_subquery(),
    )
    async with db.read() as conn:
        first, last = (await conn.execute(bounds)).one()
    if first is None:
        return None
    # microseconds are the stored precision: [first, last + 1 us) holds every event
    end = last.astimezone(UTC) + timedelta(microseconds=1)
    return TimeWindow(first.astimezone(UTC), end, _UTC)


async def _page_floor(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    wanted: int,
    before: datetime | None,
) -> datetime | None:
    """The start of the newest bucket from which the rollups count `wanted` matching events
    up to `before` (the cursor's instant); None when no rollup counts them or they are fewer."""
    if _rollup_reason(spec) is not None:
        return None
    clipped = await _clip(db, workspace_id, window)
    if clipped is None:
        return None
    end = clipped.end if before is None else min(clipped.end, before + timedelta(microseconds=1))
    if end <= clipped.start:
        return None
    span = TimeWindow(clipped.start, end, _UTC)
    long = span.duration > timedelta(days=4)
    try:
        result = await run_query(
            db,
            MetricsQuery(
                scope=Scope.of(workspace_id),
                metrics=(Metric.REQUESTS,),
                window=span,
                filter=spec,
                granularity=Granularity.DAY if long else Granularity.HOUR,
            ),
        )
    except BucketError:  # years of history: read the page without a floor
        return None
    starts = result.bucketing.starts
    counted = 0
    for key in sorted(result.values, reverse=True):
        counted += int(result.values[key].get(Metric.REQUESTS) or 0)
        if counted >= wanted:
            return max(starts[key[0]], span.start)
    return None


def _decode_after(cursor: str) -> tuple[datetime, str]:
    ts_micros, event_id = decode_cursor(_CURSOR_KIND, cursor, 2)
    if isinstance(ts_micros, bool) or not isinstance(ts_micros, int):
        raise CursorError("invalid cursor")
    if not isinstance(event_id, str):
        raise CursorError("invalid cursor")
    try:
        return from_micros(ts_micros), event_id
    except OverflowError:
        raise CursorError("invalid cursor") from None


@dataclass(frozen=True)
class RequestCount:
    count: int
    plans: list[dict[str, Any]]
    """How it was counted, for explain."""


_UTC = ZoneInfo("UTC")


async def count_requests(
    db: Database, workspace_id: int, window: TimeWindow | None, spec: EventFilterSpec
) -> RequestCount:
    raw_reason = _rollup_reason(spec)
    if raw_reason is not None:
        plan = {"group": "requests.totalCount", "source": "raw", "reason": raw_reason}
        return RequestCount(await _count_raw(db, workspace_id, window, spec), [plan])
    clipped = await _clip(db, workspace_id, window)
    if clipped is None:
        return RequestCount(0, [])
    result = await run_query(
        db,
        MetricsQuery(
            scope=Scope.of(workspace_id),
            metrics=(Metric.REQUESTS,),
            window=clipped,
            filter=spec,
        ),
    )
    plans = [{**p.describe(), "group": "requests.totalCount"} for p in result.plans]
    for plan in plans:
        plan.pop("sql", None)
    counted = sum(v.get(Metric.REQUESTS) or 0 for v in result.values.values())
    return RequestCount(int(counted), plans)


async def _count_raw(
    db: Database, workspace_id: int, window: TimeWindow | None, spec: EventFilterSpec
) -> int:
    query = (
        select(func.count()).select_from(events).where(*_conditions(db, workspace_id, window, spec))
    )
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def get_request(db: Database, workspace_id: int, event_id: str) -> dict[str, Any] | None:
    query = select(events).where(events.c.workspace_id == workspace_id, events.c.id == event_id)
    if db.dialect.day_partitions:  # find the day partition through the idempotency key's ts
        query = query.join(
            event_keys,
            (event_keys.c.workspace_id == events.c.workspace_id)
            & (event_keys.c.event_id == events.c.id)
            & (event_keys.c.ts == events.c.ts),
        )
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def get_payloads(
    db: Database, workspace_id: int, event_ids: list[str]
) -> dict[str, tuple[Any, Any]]:
    """Request and response bodies by event id (one query for any number of ids)."""
    if not event_ids:
        return {}
    query = select(payloads.c.event_id, payloads.c.request, payloads.c.response).where(
        payloads.c.workspace_id == workspace_id, payloads.c.event_id.in_(event_ids)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return {r.event_id: (r.request, r.response) for r in rows}
