"""The request log: events newest first, with filters and keyset cursors over (ts, id).

Its `totalCount` is a count of every matching event, which over a month of a busy workspace
is a scan of millions of rows. When a rollup keeps every column the filter reads (always so
within the coverage rule, `rollups.LOW_CARDINALITY`; users with provider, model, kind and
status too) it is the REQUESTS metric of the engine instead, rollups for whole hours and raw
events at the edges, over the window clipped to the workspace's first and last events (so
that rollup rows outliving purged raw events, which the log cannot list, are never counted).
Other filters count raw events, and explain says why.

A page with such a filter reads raw events only where the rollups count its matches: from
the newest day or two holding a page of them when they are dense, else only the hours that
hold them (each hour range its own SELECT), and every such hour when the window holds fewer
than a page. A plain scan of the (workspace_id, ts, id) index probes every event back to the
page's last match: all of the window's when it holds fewer (a rare gateway and status code:
100k events on 300k over 30 days). Asking the rollups again after the read keeps pages exact
while events arrive (`_still_exact`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Select,
    column,
    false,
    func,
    literal,
    select,
    true,
    tuple_,
    union_all,
    values,
)

from tallyql.engine.query.buckets import BucketError, Granularity
from tallyql.engine.query.executor import MetricsQuery, run_query
from tallyql.engine.query.filters import EventFilterSpec, filter_conditions
from tallyql.engine.query.planner import covering_rollup, needed_columns, uncovered_reason
from tallyql.engine.query.registry import Metric
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.timerange import TimeWindow
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
    only in the hours the rollups say hold them (`_narrowing`): a filter matching few events
    would otherwise read every event of the window (or of the days back to a page of
    matches) to fill a page. The hours only narrow the read, and the page stays exact: the
    rollups are asked again after the read (`_still_exact`), and when they count a match the
    read skipped (an event that arrived meanwhile, or a rollup row outliving purged events)
    the page is read again without the hours.
    """
    check_page_size(first)
    # the window's bounds apart: the narrowed read puts its own, clipped to it, on each range
    # (SQLite walks the index by the first bounds it meets: the window's, read 30 times)
    keyed: Select[Any] = select(events).where(*_conditions(db, workspace_id, None, spec))
    before: datetime | None = None
    if after:
        ts, event_id = _decode_after(after)
        before = ts
        # typed binds: SQLite stores ts as integer microseconds (UtcDateTime), and an untyped
        # datetime would be bound as text, which sorts after every integer
        keyed = keyed.where(
            tuple_(events.c.ts, events.c.id)
            < tuple_(literal(ts, events.c.ts.type), literal(event_id, events.c.id.type))
        )
    keyed = keyed.order_by(events.c.ts.desc(), events.c.id.desc()).limit(first + 1)
    query = keyed if window is None else keyed.where(*_window(window.start, window.end))
    narrowing = (
        None
        if spec.is_empty()
        else await _narrowing(db, workspace_id, window, spec, first + 1, before)
    )
    rows: list[dict[str, Any]] = []
    exact = False
    if narrowing is not None:
        async with db.read() as conn:
            narrowed = narrowing.read(keyed, window, first + 1, db.dialect.day_partitions)
            rows = [dict(r) for r in (await conn.execute(narrowed)).mappings()]
        # every match from `check_from` on was read: the page is exact when it is full (older
        # matches sort after it) or when nothing older exists
        full, complete = len(rows) > first, narrowing.complete and len(rows) <= first
        exact = (full or complete) and await _still_exact(
            db, workspace_id, window, spec, replace(narrowing, complete=complete), rows
        )
    if not exact:
        async with db.read() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return RequestPage(rows[:first], len(rows) > first)


_HOUR = timedelta(hours=1)
# Dense matches (a page within the newest day or two, or in at least one hour of every two
# back to the page's oldest): every event from the floor is read newest first, as a plain
# scan from there; asking which hours hold them (and again after the read) would cost more
# than it saves (two rollup queries of about 10 ms each on 300k events).
_DENSE_DAYS = 2
_DENSE_HOURS = 2


@dataclass(frozen=True)
class _Narrowing:
    """Where a page's matches lie, by the rollups: from `open_from` on (newer events, and
    any arriving, read as a plain scan would) and in `hours` (older hour starts, newest
    first), with none elsewhere from `check_from` on. `complete`: the rollups count no match
    before `check_from` either (the window's first event)."""

    open_from: datetime
    hours: tuple[datetime, ...]
    check_from: datetime
    complete: bool

    def read(
        self, keyed: Select[Any], window: TimeWindow | None, limit: int, lateral: bool
    ) -> Select[Any]:
        """`keyed` (ordered newest first, limited, without the window's bounds) over these
        hours of the window only, each run of adjacent hours walking its own index range,
        merged newest first. One OR of ranges made every PostgreSQL day partition plan every
        range (100 ms of planning over a month), and SQLite walk the window's bounds once per
        range. `lateral` (PostgreSQL): a VALUES list of ranges joined LATERAL to one SELECT,
        planned once and pruned to each range's partitions as it runs (a UNION ALL of one
        SELECT per range planned each: 40 ms for 30 ranges, 5 as LATERAL); else a UNION ALL."""
        ranges: list[tuple[datetime, datetime | None]] = [(self.open_from, None)]
        for hour in self.hours:
            if ranges[-1][0] == hour + _HOUR:
                ranges[-1] = (hour, ranges[-1][1])
            else:
                ranges.append((hour, hour + _HOUR))
        if window is not None:
            ranges = [
                (max(lo, window.start), window.end if hi is None else min(hi, window.end))
                for lo, hi in ranges
            ]
        ranges = [(lo, hi) for lo, hi in ranges if hi is None or lo < hi]
        if not ranges:
            return keyed.where(false())
        if len(ranges) == 1:
            return keyed.where(*_window(*ranges[0]))
        if lateral:
            ts = events.c.ts
            bounds = values(column("lo", ts.type), column("hi", ts.type), name="ranges").data(
                [(lo, _END_OF_TIME if hi is None else hi) for lo, hi in ranges]
            )
            part = keyed.where(ts >= bounds.c.lo, ts < bounds.c.hi).lateral("matches")
            return (
                select(part)
                .select_from(bounds)
                .join(part, true())
                .order_by(part.c.ts.desc(), part.c.id.desc())
                .limit(limit)
            )
        merged = union_all(*(select(keyed.where(*_window(*r)).subquery()) for r in ranges))
        rows = merged.subquery()
        return select(rows).order_by(rows.c.ts.desc(), rows.c.id.desc()).limit(limit)


_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


def _window(start: datetime, end: datetime | None) -> list[ColumnElement[bool]]:
    """Events from `start` (to `end`, excluded), bound typed (see `list_requests`)."""
    ts = events.c.ts
    bounds = [ts >= literal(start, ts.type)]
    return bounds if end is None else [*bounds, ts < literal(end, ts.type)]


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


async def _narrowing(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    wanted: int,
    before: datetime | None,
) -> _Narrowing | None:
    """The newest hours in which the rollups count `wanted` matching events up to `before`
    (the cursor's instant), or every hour holding one when they count fewer; None when no
    rollup counts them. Over a long window the days are counted first, then the hours from
    the oldest day needed (hour buckets over months would be thousands of rollup rows)."""
    if _rollup_reason(spec) is not None:
        return None
    clipped = await _clip(db, workspace_id, window)
    if clipped is None:
        return None
    end = clipped.end if before is None else min(clipped.end, before + timedelta(microseconds=1))
    if end <= clipped.start:
        return None
    span = TimeWindow(clipped.start, end, _UTC)
    complete_from = clipped.start
    # no match counted: only what sorts before the cursor (ties at its instant) or arrives
    open_from = clipped.end if before is None else before
    if span.duration > timedelta(days=4):
        days = await _bucket_counts(db, workspace_id, span, spec, Granularity.DAY)
        if days is None:
            return None
        chosen_days, complete = _newest_holding(days, wanted)
        if not chosen_days:
            return _Narrowing(open_from, (), complete_from, True)
        floor = max(chosen_days[-1], span.start)
        if not complete and len(chosen_days) <= _DENSE_DAYS:
            return _Narrowing(floor, (), floor, False)
        span = TimeWindow(floor, end, _UTC)
    hours = await _bucket_counts(db, workspace_id, span, spec, Granularity.HOUR)
    if hours is None:
        return None
    chosen, complete = _newest_holding(hours, wanted)
    if not chosen:
        return _Narrowing(open_from, (), complete_from, complete)
    if not complete and (end - chosen[-1]) < _DENSE_HOURS * _HOUR * len(chosen):
        return _Narrowing(chosen[-1], (), chosen[-1], False)
    check_from = complete_from if complete else chosen[-1]
    return _Narrowing(chosen[0], tuple(chosen[1:]), check_from, complete)


def _newest_holding(counts: list[tuple[datetime, int]], wanted: int) -> tuple[list[datetime], bool]:
    """The newest buckets with matches that together count `wanted`, or all of them and
    True when they count fewer."""
    chosen: list[datetime] = []
    counted = 0
    for start, count in counts:
        if count:
            chosen.append(start)
            counted += count
            if counted >= wanted:
                return chosen, False
    return chosen, True


async def _bucket_counts(
    db: Database,
    workspace_id: int,
    span: TimeWindow,
    spec: EventFilterSpec,
    granularity: Granularity | None,
) -> list[tuple[datetime, int]] | None:
    """Matching events per bucket of `span` (UTC; None: one bucket), newest first, from the
    rollups (raw events at the edges); None over too many buckets (years of history)."""
    try:
        result = await run_query(
            db,
            MetricsQuery(
                scope=Scope.of(workspace_id),
                metrics=(Metric.REQUESTS,),
                window=span,
                filter=spec,
                granularity=granularity,
            ),
        )
    except BucketError:
        return None
    starts = result.bucketing.starts
    return [
        (starts[key[0]], int(result.values[key].get(Metric.REQUESTS) or 0))
        for key in sorted(result.values, reverse=True)
    ]


async def _still_exact(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    narrowing: _Narrowing,
    rows: list[dict[str, Any]],
) -> bool:
    """Whether the read holds every match from `check_from` to `open_from`, by the rollups
    asked after it: an event committed before the read is counted by then (rollups are
    written in the events' transaction), so a match that arrived in a skipped hour after the
    hours were chosen is seen here and the page is read again without them. A full page: no
    hour between them counts a match it did not read. A complete one (the read was not cut
    by the page size): the rollups count as many matches there as it read, and no event
    arrived before `check_from`."""
    start, end = narrowing.check_from, narrowing.open_from
    if window is not None:
        start, end = max(start, window.start), min(end, window.end)
    if narrowing.complete:
        clipped = await _clip(db, workspace_id, window)
        if clipped is None or clipped.start < narrowing.check_from:
            return False
        if end <= start:
            return True
        read = sum(1 for r in rows if r["ts"] < narrowing.open_from)
        counted = await _bucket_counts(db, workspace_id, TimeWindow(start, end, _UTC), spec, None)
        return counted is not None and sum(c for _, c in counted) == read
    if end <= start:
        return True
    counts = await _bucket_counts(
        db, workspace_id, TimeWindow(start, end, _UTC), spec, Granularity.HOUR
    )
    if counts is None:
        return False
    hours = set(narrowing.hours)
    return all(count == 0 or hour in hours for hour, count in counts)


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
