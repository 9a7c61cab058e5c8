"""The metrics store: coding agents' OTLP metric points, per workspace, as deltas.

A series is a metric name with one set of attributes (its resource's included). Points are
stored once: a point's key is (workspace, series, start time, time), so an exporter's retry is
a duplicate. Counters are stored as deltas whatever the exporter's temporality: a cumulative
point becomes its value minus the series' previous point with the same start time (its whole
value when there is none, or when the counter went down, which OpenTelemetry defines as a
reset); histograms likewise for their count, sum and bucket counts. A cumulative point older
than its series' latest stored point is rejected as out of order, since the delta of the
point after it was already taken. Writers of one workspace take turns (a transaction-scoped
advisory lock on PostgreSQL; SQLite has one writer), so two requests never take the same
previous point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.ingest.otlp_metrics import GAUGE, HISTOGRAM, OtlpPoint
from tallyql.money import to_usd
from tallyql.storage import dialect as sqld
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.locks import Lock, hold
from tallyql.storage.tables import events, metric_points, metric_series
from tallyql.storage.types import EPOCH, from_micros

_CHUNK = 500  # series per IN list


def series_id(point: OtlpPoint) -> str:
    identity = orjson.dumps(
        [point.name, point.kind, point.unit, point.attributes],
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return hashlib.sha256(identity).hexdigest()[:32]


@dataclass
class MetricWrite:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _ts(ns: int) -> datetime:
    return from_micros(ns // 1000)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def store_points(
    conn: AsyncConnection, workspace_id: int, points: Sequence[OtlpPoint], now: datetime
) -> MetricWrite:
    """Store a request's points (positions are their indexes in `points`) in the caller's
    transaction."""
    result = MetricWrite()
    if not points:
        return result
    dialect = Dialect.of(conn)
    await hold(conn, Lock.METRIC_WRITES, workspace_id)
    ids = [series_id(p) for p in points]
    series_rows = {
        sid: {
            "workspace_id": workspace_id,
            "id": sid,
            "name": p.name,
            "kind": p.kind,
            "unit": p.unit,
            "monotonic": p.monotonic,
            "attributes": p.attributes,
            "created_at": now,
        }
        for sid, p in zip(ids, points, strict=True)
    }
    rows = [series_rows[sid] for sid in sorted(series_rows)]  # key order: no deadlocks
    for chunk in _chunks(rows):
        await conn.execute(sqld.insert_ignoring_duplicates(dialect, metric_series), list(chunk))
    # what is stored already: the points of this request (duplicates), and each cumulative
    # series' latest point per start time (the previous point of the first new one)
    stored: set[tuple[str, int, int]] = set()
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    distinct = sorted(series_rows)
    times = sorted({p.time_ns for p in points})
    cumulative_ids = sorted({sid for sid, p in zip(ids, points, strict=True) if p.cumulative})
    p_ = metric_points.c
    for chunk in _chunks(distinct):
        for time_chunk in _chunks(times):
            found = await conn.execute(
                select(p_.series_id, p_.start_ns, p_.time_ns).where(
                    p_.workspace_id == workspace_id,
                    p_.series_id.in_(chunk),
                    p_.time_ns.in_(time_chunk),
                )
            )
            stored.update((r[0], r[1], r[2]) for r in found)
    for chunk in _chunks(cumulative_ids):
        newest = (
            select(p_.series_id, p_.start_ns, func.max(p_.time_ns).label("time_ns"))
            .where(p_.workspace_id == workspace_id, p_.series_id.in_(chunk))
            .group_by(p_.series_id, p_.start_ns)
            .subquery()
        )
        found = await conn.execute(
            select(metric_points)
            .join(
                newest,
                and_(
                    p_.series_id == newest.c.series_id,
                    p_.start_ns == newest.c.start_ns,
                    p_.time_ns == newest.c.time_ns,
                ),
            )
            .where(p_.workspace_id == workspace_id)
        )
        for r in found.mappings():
            latest[(r["series_id"], r["start_ns"])] = dict(r)
    new_rows: list[dict[str, Any]] = []
    order = sorted(
        range(len(points)), key=lambda i: (ids[i], points[i].start_ns, points[i].time_ns)
    )
    seen: set[tuple[str, int, int]] = set()
    for i in order:
        point, sid = points[i], ids[i]
        key = (sid, point.start_ns, point.time_ns)
        if key in stored or key in seen:
            result.duplicates += 1
            continue
        previous = latest.get((sid, point.start_ns)) if point.cumulative else None
        if previous is not None and previous["time_ns"] > point.time_ns:
            result.rejected.append(
                (i, f"{point.name}: cumulative point older than the series' latest; out of order")
            )
            continue
        row = _row(workspace_id, sid, point, previous)
        seen.add(key)
        new_rows.append(row)
        if point.cumulative:
            latest[(sid, point.start_ns)] = row
    for chunk in _chunks(new_rows):
        inserted = await conn.execute(
            sqld.insert_ignoring_duplicates(dialect, metric_points).returning(p_.series_id),
            list(chunk),
        )
        result.accepted += len(inserted.all())
    result.duplicates += len(new_rows) - result.accepted
    return result


def _delta(current: float | int | None, previous: float | int | None) -> Any:
    if current is None:
        return None
    if previous is None or current < previous:
        return current  # the first point of a series, or a reset: all of it is new
    return current - previous


def _row(
    workspace_id: int, sid: str, point: OtlpPoint, previous: dict[str, Any] | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "workspace_id": workspace_id,
        "series_id": sid,
        "start_ns": point.start_ns,
        "time_ns": point.time_ns,
        "ts": _ts(point.time_ns),
        "value": point.value,
        "count": point.count,
        "buckets": point.buckets,
        "bounds": point.bounds,
        "min": point.minimum,
        "max": point.maximum,
        "raw_value": None,
        "raw_count": None,
        "raw_buckets": None,
    }
    if not point.cumulative:
        return row
    row["raw_value"], row["raw_count"], row["raw_buckets"] = point.value, point.count, point.buckets
    before = previous or {}
    if point.kind == HISTOGRAM:
        reset = previous is not None and (point.count or 0) < (before.get("raw_count") or 0)
        if reset:
            before = {}
        row["count"] = _delta(point.count, before.get("raw_count"))
        row["value"] = (
            point.value
            if reset or point.value is None or before.get("raw_value") is None
            else point.value - before["raw_value"]
        )
        old = before.get("raw_buckets")
        if point.buckets and old and len(old) == len(point.buckets):
            row["buckets"] = [c - o for c, o in zip(point.buckets, old, strict=True)]
    elif point.monotonic:
        row["value"] = _delta(point.value, before.get("raw_value"))
    elif before.get("raw_value") is not None and point.value is not None:
        # an up-down counter may go down: its change is the difference, never a reset
        row["value"] = point.value - before["raw_value"]
    return row


# ---------------------------------------------------------------- reading


@dataclass
class MetricGroupRow:
    name: str
    kind: str
    unit: str
    group: dict[str, Any]
    total: float | None
    count: int | None
    last: float | None
    minimum: float | None
    maximum: float | None
    series: int
    points: int
    first_at: datetime
    last_at: datetime
    events_total: float | None = None
    """The same figure counted from the events (`reconcile`), where they overlap."""


async def metric_groups(
    conn: AsyncConnection,
    workspace_id: int,
    start: datetime | None,
    end: datetime | None,
    names: Sequence[str],
    group_by: Sequence[str],
) -> list[MetricGroupRow]:
    """Each metric's points in [start, end), grouped by the values of the `group_by`
    attributes: per series in SQL, then series into groups (series are few)."""
    p_, s_ = metric_points.c, metric_series.c
    conditions = [p_.workspace_id == workspace_id]
    if start is not None:
        conditions.append(p_.ts >= start)
    if end is not None:
        conditions.append(p_.ts < end)
    per_series = (
        select(
            p_.series_id,
            func.sum(p_.value).label("total"),
            func.sum(p_.count).label("count"),
            func.min(p_.min).label("minimum"),
            func.max(p_.max).label("maximum"),
            func.count().label("points"),
            func.min(p_.ts).label("first_at"),
            func.max(p_.ts).label("last_at"),
            func.max(p_.time_ns).label("last_ns"),
        )
        .where(*conditions)
        .group_by(p_.series_id)
        .subquery()
    )
    query = select(s_.id, s_.name, s_.kind, s_.unit, s_.attributes, *per_series.c[1:]).join(
        per_series, and_(s_.workspace_id == workspace_id, s_.id == per_series.c.series_id)
    )
    if names:
        query = query.where(s_.name.in_(list(names)))
    series = [dict(r) for r in (await conn.execute(query)).mappings()]
    last_values: dict[str, float] = {}
    gauges = [(r["id"], r["last_ns"]) for r in series if r["kind"] == GAUGE]
    for chunk in _chunks(gauges):
        found = await conn.execute(
            select(p_.series_id, p_.value).where(
                p_.workspace_id == workspace_id,
                tuple_(p_.series_id, p_.time_ns).in_(list(chunk)),
            )
        )
        for sid, value in found:
            last_values[sid] = value  # one start time per gauge series in practice
    groups: dict[tuple[Any, ...], MetricGroupRow] = {}
    for r in series:
        attrs = r["attributes"] or {}
        values = {key: attrs.get(key) for key in group_by}
        key = (r["name"], r["kind"], r["unit"], orjson.dumps(values, option=orjson.OPT_SORT_KEYS))
        first_at, last_at = _aware(r["first_at"]), _aware(r["last_at"])
        is_gauge = r["kind"] == GAUGE
        total = None if is_gauge else r["total"]
        count = r["count"] if r["kind"] == HISTOGRAM else None
        last = last_values.get(r["id"]) if is_gauge else None
        group = groups.get(key)
        if group is None:
            groups[key] = MetricGroupRow(
                name=r["name"],
                kind=r["kind"],
                unit=r["unit"],
                group=values,
                total=total,
                count=count,
                last=last,
                minimum=r["minimum"],
                maximum=r["maximum"],
                series=1,
                points=r["points"],
                first_at=first_at,
                last_at=last_at,
            )
            continue
        group.total = _plus(group.total, total)
        group.count = _plus(group.count, count)
        group.last = _plus(group.last, last)
        group.minimum = _pick(min, group.minimum, r["minimum"])
        group.maximum = _pick(max, group.maximum, r["maximum"])
        group.series += 1
        group.points += r["points"]
        group.first_at = min(group.first_at, first_at)
        group.last_at = max(group.last_at, last_at)
    return sorted(
        groups.values(),
        key=lambda g: (g.name, orjson.dumps(g.group, option=orjson.OPT_SORT_KEYS, default=str)),
    )


def _aware(value: Any) -> datetime:
    if isinstance(value, int):  # SQLite: aggregates return the stored microseconds
        return from_micros(value)
    return value if value.tzinfo else value.replace(tzinfo=EPOCH.tzinfo)


def _plus(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _pick(how: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return how(a, b)


# ---------------------------------------------------------------- reconciliation with events

_INPUT = "input"
_E = events.c
_SUMS: dict[str, ColumnElement[Any]] = {
    "cost": func.sum(_E.cost_nanousd),
    "input": func.sum(func.coalesce(_E.input_tokens, 0)),
    # Claude Code counts input without cached tokens (events store input inclusive)
    "uncached_input": func.sum(
        func.coalesce(_E.input_tokens, 0)
        - func.coalesce(_E.cache_read_tokens, 0)
        - func.coalesce(_E.cache_write_tokens, 0)
    ),
    "output": func.sum(func.coalesce(_E.output_tokens, 0)),
    # Gemini CLI counts output without thought tokens (events store output inclusive)
    "visible_output": func.sum(
        func.coalesce(_E.output_tokens, 0) - func.coalesce(_E.reasoning_tokens, 0)
    ),
    "cache_read": func.sum(func.coalesce(_E.cache_read_tokens, 0)),
    "cache_write": func.sum(func.coalesce(_E.cache_write_tokens, 0)),
    "reasoning": func.sum(func.coalesce(_E.reasoning_tokens, 0)),
}
OVERLAPS: dict[str, tuple[str, dict[str | None, str]]] = {
    "claude_code.cost.usage": ("claude_code.api_request", {None: "cost"}),
    "claude_code.token.usage": (
        "claude_code.api_request",
        {
            "input": "uncached_input",
            "output": "output",
            "cacheRead": "cache_read",
            "cacheCreation": "cache_write",
        },
    ),
    "gemini_cli.token.usage": (
        "gemini_cli.api_response",
        {
            "input": "input",
            "output": "visible_output",
            "thought": "reasoning",
            "cache": "cache_read",
        },
    ),
}
"""The metrics that count what log records also carry: (the records' event name, the event
figure of each value of the metric's `type` attribute; None: a metric without one)."""
GROUP_COLUMNS: dict[str, ColumnElement[Any]] = {
    "model": _E.model,
    "session.id": _E.session_id,
    "user.email": _E.user_id,
}
"""Metric attributes that name an event column (user.email: the user id the log mapping
chose, an email when the agent sends one)."""


async def reconcile(
    conn: AsyncConnection,
    workspace_id: int,
    start: datetime | None,
    end: datetime | None,
    group_by: Sequence[str],
    groups: Sequence[MetricGroupRow],
) -> None:
    """Set `events_total` of each group whose metric the events also count, over the same
    range and group, when every group_by key names an event column (or the metric's type)."""
    for name, (event_name, figures) in OVERLAPS.items():
        mine = [g for g in groups if g.name == name]
        typed = None not in figures
        keys = [k for k in group_by if not (typed and k == "type")]
        if not mine or any(k not in GROUP_COLUMNS for k in keys):
            continue
        columns = [GROUP_COLUMNS[k] for k in keys]
        sums = [_SUMS[f].label(f) for f in sorted(set(figures.values()))]
        conditions = [
            _E.workspace_id == workspace_id,
            sqld.json_text(Dialect.of(conn), _E.metadata, "otel.event.name") == event_name,
        ]
        if start is not None:
            conditions.append(_E.ts >= start)
        if end is not None:
            conditions.append(_E.ts < end)
        query = select(*columns, *sums).where(*conditions)
        if columns:
            query = query.group_by(*columns)
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in (await conn.execute(query)).mappings():
            found[tuple(row[c.name] for c in columns)] = dict(row)
        for group in mine:
            sums_of = found.get(tuple(group.group.get(k) for k in keys), {})
            if typed and "type" in group_by:
                figure = figures.get(group.group.get("type"))
                wanted = [figure] if figure else []
                if not figure:
                    continue  # a type the events do not count (Gemini's tool tokens)
            else:
                wanted = sorted(set(figures.values()))
            total = sum((sums_of.get(f) or 0) for f in wanted)
            group.events_total = to_usd(total) if not typed else total


async def read_metric_groups(
    db: Database,
    workspace_id: int,
    start: datetime | None,
    end: datetime | None,
    names: Sequence[str],
    group_by: Sequence[str],
) -> list[MetricGroupRow]:
    """`metric_groups`, each reconciled with the events (`reconcile`), in one read."""
    async with db.read() as conn:
        groups = await metric_groups(conn, workspace_id, start, end, names, group_by)
        await reconcile(conn, workspace_id, start, end, group_by, groups)
    return groups
