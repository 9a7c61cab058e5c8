"""Sessions: those whose activity overlaps a window and that match a filter, listed with
keyset cursors and summarised exactly.

A session's row (`sessions`, kept by the writer) holds its totals over its whole life. The
filter selects sessions: providers and models through the models a session used
(`session_models`), users and agents through the session's own user and agent, groups through
their current members, and every other field through the session ids of the window's events
that match it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    func,
    literal,
    or_,
    select,
    tuple_,
)

from tallyql.engine.query.cost import session_stats_cost
from tallyql.engine.query.cost_meter import CostMeter
from tallyql.engine.query.exact_stats import (
    Bracket,
    ExactMeasure,
    Sampling,
    exact_summary,
    scan_settings,
)
from tallyql.engine.query.filters import EventFilterSpec, filter_conditions
from tallyql.engine.query.timerange import TimeWindow
from tallyql.engine.session_digests import (
    MIN_WHOLE_DAYS,
    cache_of,
    day_start,
    digest_summary,
    keeps,
    whole_days,
)
from tallyql.money import NANO_PER_USD
from tallyql.sketch import exact_quantile
from tallyql.storage import dialect as sqld
from tallyql.storage.cursors import CursorError, check_page_size, decode_cursor, encode_cursor
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.tables import events, group_members, session_models, sessions
from tallyql.storage.types import from_micros, to_micros

_CURSOR_KIND = "ses"
_DIRECT = ("sessions", "users", "agents", "groups", "providers", "models")


class SessionOrder(Enum):
    COST = "COST"
    TOKENS = "TOKENS"
    RECENT = "RECENT"
    DURATION = "DURATION"
    REQUESTS = "REQUESTS"


def _order_expr(order: SessionOrder, dialect: Dialect) -> ColumnElement[Any]:
    s = sessions.c
    if order is SessionOrder.COST:
        return s.cost_nanousd
    if order is SessionOrder.TOKENS:
        return s.input_tokens + s.output_tokens
    if order is SessionOrder.REQUESTS:
        return s.requests
    if order is SessionOrder.RECENT:
        return s.last_ts
    return sqld.micros_between(dialect, s.first_ts, s.last_ts)


def order_value(order: SessionOrder, row: dict[str, Any]) -> int:
    """The integer a row sorts by (timestamps in microseconds), as the SQL computes it."""
    if order is SessionOrder.COST:
        return int(row["cost_nanousd"])
    if order is SessionOrder.TOKENS:
        return int(row["input_tokens"] + row["output_tokens"])
    if order is SessionOrder.REQUESTS:
        return int(row["requests"])
    if order is SessionOrder.RECENT:
        return to_micros(row["last_ts"])
    return to_micros(row["last_ts"]) - to_micros(row["first_ts"])


def session_conditions(
    dialect: Dialect,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    overlap: bool = True,
) -> list[ColumnElement[bool]]:
    """Conditions on `sessions` selecting the filter set (window None: any time). Without
    `overlap`, the caller bounds the sessions' times itself (within the window)."""
    s = sessions.c
    out: list[ColumnElement[bool]] = [s.workspace_id == workspace_id]
    if window is not None and overlap:
        out += [s.first_ts < window.end, s.last_ts >= window.start]
    if spec.sessions:
        out.append(s.id.in_(list(spec.sessions)))
    if spec.users:
        out.append(s.user_id.in_(list(spec.users)))
    if spec.agents:
        out.append(s.agent_id.in_(list(spec.agents)))
    if spec.groups:
        members = select(group_members.c.user_id).where(
            group_members.c.workspace_id == workspace_id,
            group_members.c.group_name.in_(list(spec.groups)),
        )
        out.append(s.user_id.in_(members))
    if spec.providers or spec.models:
        sm = session_models.c
        used = select(sm.session_id).where(sm.workspace_id == workspace_id)
        if spec.providers:
            used = used.where(sm.provider.in_(list(spec.providers)))
        if spec.models:
            used = used.where(sm.model.in_(list(spec.models)))
        out.append(s.id.in_(used))
    cleared: dict[str, Any] = dict.fromkeys(_DIRECT, ())  # Any: the fields differ in type
    rest = replace(spec, **cleared)
    if not rest.is_empty():
        e = events.c
        matching = select(e.session_id).where(
            e.workspace_id == workspace_id,
            e.session_id.is_not(None),
            *filter_conditions(rest, events.c, dialect),
        )
        if window is not None:
            matching = matching.where(e.ts >= window.start, e.ts < window.end)
        out.append(s.id.in_(matching))
    return out


# ---------------------------------------------------------------- the list


@dataclass(frozen=True)
class SessionPage:
    rows: list[dict[str, Any]]
    has_next_page: bool
    order: SessionOrder
    descending: bool

    def cursor(self, row: dict[str, Any]) -> str:
        return encode_cursor(
            _CURSOR_KIND, self.order.value, self.descending, order_value(self.order, row), row["id"]
        )


def _decode_after(cursor: str, order: SessionOrder, descending: bool) -> tuple[int, str]:
    name, desc, value, session_id = decode_cursor(_CURSOR_KIND, cursor, 4)
    if name != order.value or desc is not descending:
        raise CursorError("the cursor belongs to another ordering of this list")
    if isinstance(value, bool) or not isinstance(value, int) or not isinstance(session_id, str):
        raise CursorError("invalid cursor")
    return value, session_id


async def list_sessions(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    order: SessionOrder,
    descending: bool,
    first: int,
    after: str | None,
) -> SessionPage:
    check_page_size(first)
    key = _order_expr(order, db.dialect)
    query: Select[Any] = select(sessions).where(
        *session_conditions(db.dialect, workspace_id, window, spec)
    )
    if after:
        value, session_id = _decode_after(after, order, descending)
        bound = (
            literal(from_micros(value), sessions.c.last_ts.type)
            if order is SessionOrder.RECENT
            else literal(value, BigInteger)
        )
        marker = tuple_(bound, literal(session_id, sessions.c.id.type))
        row = tuple_(key, sessions.c.id)
        query = query.where(row < marker if descending else row > marker)
    if descending:
        query = query.order_by(key.desc(), sessions.c.id.desc())
    else:
        query = query.order_by(key.asc(), sessions.c.id.asc())
    async with db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(query.limit(first + 1))).mappings()]
    return SessionPage(rows[:first], len(rows) > first, order, descending)


async def count_sessions(
    db: Database, workspace_id: int, window: TimeWindow | None, spec: EventFilterSpec
) -> int:
    query = (
        select(func.count())
        .select_from(sessions)
        .where(*session_conditions(db.dialect, workspace_id, window, spec))
    )
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


# ---------------------------------------------------------------- exact statistics


@dataclass(frozen=True)
class StatMeasure:
    name: str
    expr: ColumnElement[Any]
    """A stored integer per session, on either database."""
    scale: float
    """Multiplies the stored integer into the API's unit (USD, milliseconds)."""


STAT_MEASURES: tuple[StatMeasure, ...] = (
    StatMeasure("cost", sessions.c.cost_nanousd, 1 / NANO_PER_USD),
    StatMeasure("tokens", sessions.c.input_tokens + sessions.c.output_tokens, 1.0),
    StatMeasure("duration", sessions.c.duration_us, 1e-3),
    StatMeasure("requests", sessions.c.requests, 1.0),
)
QUANTILES = (0.5, 0.95)


@dataclass(frozen=True)
class Distribution:
    p50: float | None
    avg: float | None
    p95: float | None


@dataclass(frozen=True)
class SessionStatsResult:
    sessions: int
    measures: dict[str, Distribution]

    def p(self, measure: str, q: float) -> float | None:
        dist = self.measures[measure]
        return dist.p50 if q == 0.5 else dist.p95


def exact_measures() -> list[ExactMeasure]:
    return [ExactMeasure(m.name, m.expr) for m in STAT_MEASURES]


async def session_stats(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    brackets: dict[tuple[str, float], Bracket] | None = None,
    meter: CostMeter | None = None,
) -> SessionStatsResult:
    """Count, and exact P50, average and P95 of each measure, reading the set's sessions once
    (`tallyql.engine.query.exact_stats`). A sample brackets the quantiles first, reading slices of
    the window through ix_sessions_ws_last, unless the filter reaches the sessions' models or
    events: the sample would run those subqueries again in full, so every value is gathered
    instead. `brackets` replaces the sample (tests)."""
    days = whole_days(window) if window is not None else range(0)
    if brackets is None and keeps(spec) and len(days) >= MIN_WHOLE_DAYS:
        return await _digest_stats(db, workspace_id, window, spec, days, meter)
    if meter is not None:  # a scan of the window: every day of it may hold sessions
        meter.charge(session_stats_cost(len(days) + 2), "sessionStats scanning its window")
    cleared: dict[str, Any] = dict.fromkeys(_DIRECT, ())  # Any: the fields differ in type
    through_events = replace(spec, **cleared)
    sampling = None
    if not (spec.providers or spec.models or not through_events.is_empty()):
        sampling = Sampling(
            session_conditions(db.dialect, workspace_id, window, spec, overlap=False),
            sessions.c.last_ts,
            (window.start, window.end) if window is not None else None,
            [sessions.c.workspace_id == workspace_id],
            slices_joined=spec.is_empty(),
        )
    conditions = session_conditions(db.dialect, workspace_id, window, spec)
    async with db.read() as conn:
        summary = await exact_summary(
            conn,
            db.dialect,
            conditions,
            exact_measures(),
            QUANTILES,
            sampling,
            brackets,
        )
    return _result(summary.count, summary.totals, summary.quantiles)


async def _digest_stats(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    days: range,
    meter: CostMeter | None = None,
) -> SessionStatsResult:
    """`session_stats` from kept digests of the window's whole days (session_digests.py)."""
    s = sessions.c
    assert window is not None
    rest = [  # the overlapping sessions that end on neither whole day: two index ranges
        *session_conditions(db.dialect, workspace_id, window, spec),
        or_(
            and_(s.last_ts >= window.start, s.last_ts < day_start(days.start)),
            and_(s.last_ts >= day_start(days.stop), s.first_ts < window.end),
        ),
    ]

    def pay(stamped: int) -> None:
        assert meter is not None  # the edges: up to two partial days
        meter.charge(session_stats_cost(stamped + 2), f"sessionStats over {stamped} days")

    async with db.read_snapshot() as conn:
        summary = await digest_summary(
            conn,
            db.dialect,
            cache_of(db),
            workspace_id,
            spec,
            days,
            session_conditions(db.dialect, workspace_id, None, spec),
            rest,
            [(m.name, m.expr) for m in STAT_MEASURES],
            QUANTILES,
            scan_settings(db.dialect),
            None if meter is None else pay,
        )
    return _result(summary.count, summary.totals, summary.quantiles)


def _result(
    n: int, totals: dict[str, int], quantiles: dict[tuple[str, float], float]
) -> SessionStatsResult:
    measures = {}
    for m in STAT_MEASURES:
        p50, p95 = (quantiles.get((m.name, q)) for q in QUANTILES)
        avg = totals[m.name] / n if n else None
        measures[m.name] = Distribution(
            p50=_scaled(p50, m.scale), avg=_scaled(avg, m.scale), p95=_scaled(p95, m.scale)
        )
    return SessionStatsResult(n, measures)


def _scaled(value: Any, scale: float) -> float | None:
    return None if value is None else float(value) * scale


def measure_of(name: str, row: dict[str, Any]) -> float:
    """A session row's value of a statistics measure, in the API's unit."""
    scale = next(m.scale for m in STAT_MEASURES if m.name == name)
    if name == "cost":
        return row["cost_nanousd"] * scale
    if name == "tokens":
        return float(row["input_tokens"] + row["output_tokens"])
    if name == "duration":
        return (to_micros(row["last_ts"]) - to_micros(row["first_ts"])) * scale
    return float(row["requests"])


RANKED_SET_LIMIT = 10_000
"""Sets of at most this many sessions are read whole to rank a session among them (four
integers a session: a few hundred kilobytes); larger ones compare with their P95 only."""


async def set_values(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    limit: int = RANKED_SET_LIMIT,
) -> dict[str, list[int]] | None:
    """Each statistics measure's stored integers over the set's sessions (those
    `session_stats` summarises), ascending; None when the set holds more than `limit`."""
    columns = [m.expr.label(m.name) for m in STAT_MEASURES]
    query = (
        select(*columns)
        .where(*session_conditions(db.dialect, workspace_id, window, spec))
        .limit(limit + 1)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    if len(rows) > limit:
        return None
    return {m.name: sorted(int(row[i]) for row in rows) for i, m in enumerate(STAT_MEASURES)}


def stats_of_values(values: dict[str, list[int]]) -> SessionStatsResult:
    """`session_stats` of a set read whole (`set_values`): the same figures, by the same
    definition and arithmetic as the database paths."""
    n = len(values[STAT_MEASURES[0].name])
    totals = {m.name: sum(values[m.name]) for m in STAT_MEASURES}
    quantiles: dict[tuple[str, float], float] = {}
    for m in STAT_MEASURES:
        for q in QUANTILES:
            found = exact_quantile(values[m.name], q)
            if found is not None:
                quantiles[(m.name, q)] = found
    return _result(n, totals, quantiles)


async def in_filter_set(
    db: Database,
    workspace_id: int,
    window: TimeWindow | None,
    spec: EventFilterSpec,
    session_id: str,
) -> bool:
    query = select(sessions.c.id).where(
        *session_conditions(db.dialect, workspace_id, window, spec), sessions.c.id == session_id
    )
    async with db.read() as conn:
        return (await conn.execute(query)).first() is not None


# ---------------------------------------------------------------- one session


async def get_sessions(
    db: Database, workspace_id: int, ids: list[str]
) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    query = select(sessions).where(sessions.c.workspace_id == workspace_id, sessions.c.id.in_(ids))
    async with db.read() as conn:
        return {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}


async def get_session_models(
    db: Database, workspace_id: int, ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each session's per-model rows, costliest first."""
    sm = session_models.c
    query = (
        select(session_models)
        .where(sm.workspace_id == workspace_id, sm.session_id.in_(ids))
        .order_by(sm.session_id, sm.cost_nanousd.desc(), sm.provider, sm.model)
    )
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    async with db.read() as conn:
        for r in (await conn.execute(query)).mappings():
            out[r["session_id"]].append(dict(r))
    return out


SessionSpan = tuple[str, datetime, datetime]
"""A session's id with its first and last event's timestamps."""


async def get_session_latencies(
    db: Database, workspace_id: int, spans: list[SessionSpan]
) -> dict[SessionSpan, list[dict[str, Any]]]:
    """Each session's latency sums and counts by kind, provider and model, read from its
    events (index on workspace, session and time; the spans bound the days read). The
    session_models rows cannot say which kind a latency was: their model-less row mixes tool
    calls with agent runs, whose latency is a run's duration."""
    out: dict[SessionSpan, list[dict[str, Any]]] = {s: [] for s in spans}
    if not spans:
        return out
    e = events.c
    provider, model = func.coalesce(e.provider, ""), func.coalesce(e.model, "")
    query = (
        select(
            e.session_id,
            e.kind,
            provider.label("provider"),
            model.label("model"),
            func.sum(e.latency_ms).label("latency_ms_sum"),
            func.count(e.latency_ms).label("latency_count"),
        )
        .where(
            e.workspace_id == workspace_id,
            e.session_id.in_(sorted({s[0] for s in spans})),
            e.ts >= min(s[1] for s in spans),
            e.ts <= max(s[2] for s in spans),
            e.latency_ms.is_not(None),
        )
        .group_by(e.session_id, e.kind, provider, model)
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    async with db.read() as conn:
        for r in (await conn.execute(query)).mappings():
            by_id.setdefault(r["session_id"], []).append(
                {**r, "latency_ms_sum": float(r["latency_ms_sum"])}
            )
    for span in spans:
        out[span] = by_id.get(span[0], [])
    return out


@dataclass(frozen=True)
class Timeline:
    starts: list[int]
    """Bucket starts, epoch microseconds."""
    width_micros: int
    rows: list[dict[str, int]]
    """Per bucket: requests, token columns, cost_nanousd (zeros when empty)."""


TIMELINE_SUMS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanousd",
)


async def session_timeline(
    db: Database, workspace_id: int, session: dict[str, Any], buckets: int
) -> Timeline:
    """The session's lifespan cut into at most `buckets` equal buckets (at least a second
    each), with its events' sums per bucket (read through index ix_events_ws_session)."""
    first = to_micros(session["first_ts"])
    span = to_micros(session["last_ts"]) - first
    width = max(1_000_000, math.ceil((span + 1) / buckets))
    count = span // width + 1
    offset = sqld.micros_between(
        db.dialect, literal(session["first_ts"], events.c.ts.type), events.c.ts
    )
    inner = (
        select(
            (offset // literal(width, BigInteger)).label("b"),
            *(events.c[c] for c in TIMELINE_SUMS),
        )
        .where(events.c.workspace_id == workspace_id, events.c.session_id == session["id"])
        .subquery("session_events")
    )
    query = select(
        inner.c.b, func.count(), *(func.sum(inner.c[c]) for c in TIMELINE_SUMS)
    ).group_by(inner.c.b)
    rows = [{"requests": 0, **dict.fromkeys(TIMELINE_SUMS, 0)} for _ in range(count)]
    async with db.read() as conn:
        for b, n, *sums in (await conn.execute(query)).all():
            slot = rows[min(max(int(b), 0), count - 1)]
            slot["requests"] += int(n)
            for column, value in zip(TIMELINE_SUMS, sums, strict=True):
                slot[column] += int(value or 0)
    return Timeline([first + i * width for i in range(count)], width, rows)
