"""Exact count, sums and quantiles of a few integer measures over the rows that conditions
select, reading those rows once.

The quantile q of n values interpolates linearly between the values of ranks floor(h) and
ceil(h), h = q * (n - 1), in ascending order (`tallyql.sketch.exact_quantile`, PostgreSQL's
`percentile_cont`): the scan finds both neighbours exactly, and `sketch.interpolate` combines
them here, the same on both databases. Ordering a million rows by each measure costs several
times more than reading them, so a sample brackets each quantile first: the rows whose time
column falls in SAMPLE_SLICES short slices spread evenly over the span (SAMPLE_FRACTION of it in
all, one index range scan per slice) place the values of those ranks between two sampled values
lo and hi, with a margin of BRACKET_Z standard deviations. One statement then reads every row
once and computes, exactly: the count n, each measure's sum, for each quantile the number of
values below lo, and either the number at most hi (lo = hi: a neighbour is lo when its rank
falls between the two counts) or the values within [lo, hi], gathered, of which the neighbours
are the (rank - below)-th and the next. When the counts show that a bracket missed a rank (an
unlucky sample), that quantile alone is recomputed by ordering every value. The sample only
decides how much is gathered, never the answer.

PostgreSQL runs the statements in one REPEATABLE READ transaction (one snapshot), the scan in
parallel workers, and picks the answer from the gathered values in SQL; SQLite returns them as
JSON arrays, picked here.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql import sketch
from tallyql.storage import dialect as sqld
from tallyql.storage.dialect import Dialect

SAMPLE_FRACTION = 0.02
SAMPLE_SLICES = 32
BRACKET_Z = 4.0
MIN_SAMPLE = 40
"""Below this many sampled rows, every value is gathered (the set is small)."""
SAMPLE_LIMIT = 50_000
SCAN_SETTINGS = (
    ("parallel_setup_cost", "1000"),
    ("parallel_tuple_cost", "0.01"),
    ("min_parallel_index_scan_size", "64"),
    ("jit", "off"),
)
"""PostgreSQL, for the rest of the transaction: the scan aggregates in parallel workers (its
gathering aggregate has a combine step, `sqld.collect`), so the planner is told the default
setup cost that tallyql's sessions raise (`storage/database.py`), a cheaper Gather, and that an
index of a few megabytes is worth splitting. JIT compilation gains nothing on these plans and
costs 15 ms to several hundred."""


def _same(value: int) -> Any:
    return value


@dataclass(frozen=True)
class ExactMeasure:
    name: str
    expr: ColumnElement[Any]
    decode: Callable[[Any], int] = int
    """A value (or a sum) as read back, to an integer."""
    encode: Callable[[int], Any] = _same
    """An integer to a bound to compare `expr` with."""


@dataclass(frozen=True)
class Bracket:
    """Where a quantile is looked for: [lo, hi], None meaning unbounded."""

    lo: int | None
    hi: int | None

    @property
    def is_point(self) -> bool:
        return self.lo is not None and self.lo == self.hi


WHOLE = Bracket(None, None)


def bracket(ordered: Sequence[Any], q: float, z: float | None = None) -> Bracket:
    """The bracket of quantile q from a sorted sample (its values as they are read back)."""
    s = len(ordered)
    if s < MIN_SAMPLE:
        return WHOLE
    center = q * (s - 1)
    margin = (BRACKET_Z if z is None else z) * math.sqrt(s * q * (1 - q)) + 2
    low, high = math.floor(center - margin), math.ceil(center + margin)
    return Bracket(ordered[low] if low >= 0 else None, ordered[high] if high < s else None)


SAMPLE_SEED = 20240601
"""Seeds the slices' offset when the caller gives no generator: the same question reads the same
sample every time, so how much work it takes (and whether a quantile is recounted) is
reproducible; the figures are exact whatever the sample."""


def sample_fractions(rng: random.Random | None = None) -> list[tuple[float, float]]:
    """SAMPLE_SLICES slices of [0, 1), evenly spaced from a pseudo-random offset (from
    SAMPLE_SEED unless `rng` is given), covering SAMPLE_FRACTION of it."""
    offset = (rng or random.Random(SAMPLE_SEED)).random()
    return [
        ((i + offset) / SAMPLE_SLICES, (i + offset + SAMPLE_FRACTION) / SAMPLE_SLICES)
        for i in range(SAMPLE_SLICES)
    ]


@dataclass(frozen=True)
class Sampling:
    """Where the sample comes from: the rows `conditions` select whose `time_column` falls
    in slices of `span`, or without a span, of the time extent of the rows `extent` selects
    (min and max read through an index). `conditions` are those of the summary, less
    any that would keep the database from reading the slices through the time column's index
    (a lower bound on it: the slices lie within the span)."""

    conditions: Sequence[ColumnElement[bool]]
    time_column: ColumnElement[Any]
    span: tuple[datetime, datetime] | None
    extent: Sequence[ColumnElement[bool]] = ()
    slices_joined: bool = False
    """Join the slices as rows, their bounds (and without a span, the extent) computed in the
    sample's statement; else the extent is read first and the slices are OR-ed literal ranges,
    which the planner can estimate (for conditions with subqueries)."""


@dataclass(frozen=True)
class ExactSummary:
    count: int
    totals: dict[str, int]
    quantiles: dict[tuple[str, float], float] = field(default_factory=dict)
    """(measure, q) -> value, interpolated (fractional between two integers); empty when count
    is 0."""
    recounted: int = 0
    """Quantiles whose bracket missed and that were recomputed by a full ordering."""


async def sample_brackets(
    conn: AsyncConnection,
    dialect: Dialect,
    sampling: Sampling,
    measures: Sequence[ExactMeasure],
    quantiles: Sequence[float],
    rng: random.Random | None = None,
) -> dict[tuple[str, float], Bracket]:
    """Brackets of the quantiles from a sample. On PostgreSQL the statement also sets the
    transaction's planner settings for the scan (`SCAN_SETTINGS`)."""
    time_column, span = sampling.time_column, sampling.span
    measured = select(*(m.expr for m in measures)).where(*sampling.conditions)
    fractions = sample_fractions(rng)
    if sampling.slices_joined:
        edges: tuple[ColumnElement[Any], ColumnElement[Any]]
        if span is not None:
            edges = (literal(span[0], time_column.type), literal(span[1], time_column.type))
        else:
            edges = (
                select(func.min(time_column)).where(*sampling.extent).scalar_subquery(),
                select(func.max(time_column)).where(*sampling.extent).scalar_subquery(),
            )
        sampled = _sampled_by_slices(dialect, measured, time_column, edges, fractions)
    else:
        if span is None:
            span = await _extent(conn, time_column, sampling.extent)
        if span is None:
            return {(m.name, q): WHOLE for m in measures for q in quantiles}
        start, end = span
        bounds = [(start + (end - start) * a, start + (end - start) * b) for a, b in fractions]
        in_slices = or_(*(and_(time_column >= a, time_column < b) for a, b in bounds))
        sampled = measured.where(in_slices)
    rows = sampled.subquery("sampled")
    columns: list[ColumnElement[Any]] = [sqld.collect(dialect, column) for column in rows.c]
    columns += scan_settings(dialect)
    row = (await conn.execute(select(*columns))).one()
    out = {}
    for i, m in enumerate(measures):
        ordered = sorted(as_list(row[i]))  # as read: intervals order like their microseconds
        for q in quantiles:
            b = bracket(ordered, q)
            lo = m.decode(b.lo) if b.lo is not None else None
            out[(m.name, q)] = Bracket(lo, m.decode(b.hi) if b.hi is not None else None)
    return out


def _sampled_by_slices(
    dialect: Dialect,
    measured: Select[Any],
    time_column: ColumnElement[Any],
    bounds: tuple[ColumnElement[Any], ColumnElement[Any]],
    fractions: list[tuple[float, float]],
) -> Select[Any]:
    """The sample's rows, the slices joined as rows and their bounds computed in the
    statement: one index range scan per slice on either database (SQLite reads a list of OR-ed
    ranges as one scan). Only with cheap conditions: the planner, unable to estimate ranges it
    cannot see, may run subqueries once per slice."""
    times = select(bounds[0].label("start"), bounds[1].label("end")).subquery("span")
    random.shuffle(fractions)  # the limit, if reached, keeps random slices
    slices = union_all(
        *(select(literal(a, Float).label("a"), literal(b, Float).label("b")) for a, b in fractions)
    ).subquery("slices")
    along = partial(sqld.time_along, dialect, times.c.start, times.c.end)
    in_slice = and_(time_column >= along(slices.c.a), time_column < along(slices.c.b))
    return (
        measured.select_from(times)
        .join(slices, true())
        .join(time_column.table, in_slice)
        # also keeps PostgreSQL's estimate (of those unseen ranges) from compiling the plan
        .limit(SAMPLE_LIMIT)
    )


async def _extent(
    conn: AsyncConnection, time_column: ColumnElement[Any], extent: Sequence[ColumnElement[bool]]
) -> tuple[datetime, datetime] | None:
    bounds = (
        select(func.min(time_column)).where(*extent).scalar_subquery(),
        select(func.max(time_column)).where(*extent).scalar_subquery(),
    )
    first, last = (await conn.execute(select(*bounds))).one()
    return None if first is None else (first, last + timedelta(microseconds=1))


def scan_settings(dialect: Dialect) -> list[ColumnElement[Any]]:
    """Columns setting `SCAN_SETTINGS` for the transaction (none on SQLite)."""
    return sqld.local_settings(dialect, SCAN_SETTINGS)


def as_list(collected: Any) -> list[Any]:
    """Collected values (`sqld.collect`) as read back: an array, or SQLite's JSON text."""
    if isinstance(collected, str):
        return json.loads(collected)
    return list(collected or ())


async def exact_summary(
    conn: AsyncConnection,
    dialect: Dialect,
    conditions: Sequence[ColumnElement[bool]],
    measures: Sequence[ExactMeasure],
    quantiles: Sequence[float],
    sampling: Sampling | None,
    brackets: dict[tuple[str, float], Bracket] | None = None,
) -> ExactSummary:
    """Count, totals and quantiles of `measures` over the rows `conditions` select. Without
    `sampling`, every value is gathered; `brackets` replaces the sample (tests)."""
    level = dialect.snapshot_isolation
    if level is not None and not conn.in_transaction():
        await conn.execution_options(isolation_level=level)
    if brackets is None and sampling is not None:
        brackets = await sample_brackets(conn, dialect, sampling, measures, quantiles)
    elif settings := scan_settings(dialect):
        await conn.execute(select(*settings))
    if brackets is None:
        brackets = {(m.name, q): WHOLE for m in measures for q in quantiles}
    scan = _Scan(dialect, conditions, measures, quantiles, brackets)
    row = (await conn.execute(scan.statement())).one()
    n = int(row[0])
    totals = {m.name: m.decode(row[1 + i]) if n else 0 for i, m in enumerate(measures)}
    if n == 0:
        return ExactSummary(0, totals)
    values: dict[tuple[str, float], float] = {}
    missed: dict[int, list[float]] = {}
    for i, m in enumerate(measures):
        for q in quantiles:
            low, high, t = sketch.neighbour_ranks(q, n)
            lower = scan.neighbour(row, i, q, low, upper=False)
            higher = lower if high == low else scan.neighbour(row, i, q, high, upper=True)
            if lower is None or higher is None:
                missed.setdefault(i, []).append(q)
            else:
                values[(m.name, q)] = sketch.interpolate(lower, higher, t)
    for i, qs in missed.items():
        values.update(await _ordered(conn, dialect, conditions, measures[i], qs))
    return ExactSummary(n, totals, values, sum(len(qs) for qs in missed.values()))


class _Scan:
    """The one statement over the rows: count, sums, and per quantile with bracket [lo, hi]
    the count below lo; a point bracket (lo = hi) also counts the values at most hi, any
    other gathers the values within it, from which both neighbours of the quantile's ranks
    are picked: in SQL on PostgreSQL (NULL or above hi when the bracket holds fewer values than
    the rank needs) and here on SQLite."""

    def __init__(
        self,
        dialect: Dialect,
        conditions: Sequence[ColumnElement[bool]],
        measures: Sequence[ExactMeasure],
        quantiles: Sequence[float],
        brackets: dict[tuple[str, float], Bracket],
    ) -> None:
        self.dialect, self.measures, self.quantiles = dialect, measures, quantiles
        self.brackets = brackets
        self.in_sql = dialect.arrays
        # no fence (OFFSET 0) to compute each measure once per row: it would keep the scan
        # from parallel workers, and the measures are columns or a sum of two
        rows = select(*(m.expr.label(f"m{i}") for i, m in enumerate(measures))).where(*conditions)
        self.rows = rows.subquery("measured")
        self.columns: list[ColumnElement[Any]] = [func.count()]
        self.columns += [func.sum(self.value(i)) for i in range(len(measures))]
        self.counts: dict[tuple[int, str, int], int] = {}
        self.gathers: dict[int, int] = {}
        self.picks: dict[tuple[int, float], int] = {}
        self.sorted: dict[int, list[int]] = {}
        for i in range(len(measures)):
            self._measure(i)

    def value(self, i: int) -> ColumnElement[Any]:
        return self.rows.c[f"m{i}"]

    def bound(self, i: int, value: int) -> ColumnElement[Any]:
        return literal(self.measures[i].encode(value), self.value(i).type)

    def within(self, i: int, b: Bracket) -> ColumnElement[bool]:
        v = self.value(i)
        low = v >= self.bound(i, b.lo) if b.lo is not None else true()
        return and_(low, v <= self.bound(i, b.hi) if b.hi is not None else true())

    def _count(self, i: int, op: str, value: int) -> None:
        if (i, op, value) not in self.counts:
            v, bound = self.value(i), self.bound(i, value)
            self.columns.append(func.count().filter(v < bound if op == "<" else v <= bound))
            self.counts[(i, op, value)] = len(self.columns) - 1

    def _measure(self, i: int) -> None:
        name = self.measures[i].name
        wanted = [self.brackets[(name, q)] for q in self.quantiles]
        for b in wanted:
            if b.lo is not None:
                self._count(i, "<", b.lo)
            if b.is_point:
                assert b.lo is not None  # a point has both ends
                self._count(i, "<=", b.lo)
        ranges = [b for b in wanted if not b.is_point]
        if ranges:
            gathered: ColumnElement[Any] = sqld.collect(self.dialect, self.value(i))
            if WHOLE not in ranges:
                gathered = gathered.filter(or_(*(self.within(i, b) for b in ranges)))
            self.columns.append(gathered)
            self.gathers[i] = len(self.columns) - 1

    def statement(self) -> Select[Any]:
        summed = (
            select(*(c.label(f"a{j}") for j, c in enumerate(self.columns)))
            .select_from(self.rows)
            .subquery("summed")
        )
        out: list[ColumnElement[Any]] = [summed.c[f"a{j}"] for j in range(len(self.columns))]
        if not self.in_sql:
            return select(*out)
        n = summed.c.a0
        for i, m in enumerate(self.measures):
            for q in self.quantiles:
                b = self.brackets[(m.name, q)]
                if b.is_point:
                    continue
                rank = sqld.floor_nonnegative(self.dialect, literal(q, Float) * (n - 1))
                below = summed.c[f"a{self.counts[(i, '<', b.lo)]}"] if b.lo is not None else 0
                k = case((rank >= below, rank - below), else_=0)
                gathered = summed.c[f"a{self.gathers[i]}"]
                self.picks[(i, q)] = len(out)
                low = self.bound(i, b.lo) if b.lo is not None else None
                # the values of rank floor(h) and the next (rank ceil(h) when h is fractional)
                out.append(sqld.nth_collected(self.dialect, gathered, low, k, width=2))
        return select(*out)

    def neighbour(self, row: Sequence[Any], i: int, q: float, rank: int, upper: bool) -> int | None:
        """The value of `rank` (floor(h), or with `upper` floor(h) + 1), None when the bracket
        missed it."""
        m = self.measures[i]
        b = self.brackets[(m.name, q)]
        below = row[self.counts[(i, "<", b.lo)]] if b.lo is not None else 0
        if rank < below:
            return None
        if b.is_point:
            assert b.lo is not None  # a point has both ends
            return b.lo if rank < row[self.counts[(i, "<=", b.lo)]] else None
        if self.in_sql:
            pair = as_list(row[self.picks[(i, q)]])
            picked = pair[int(upper)] if len(pair) > int(upper) else None
            value = None if picked is None else m.decode(picked)
            return None if value is None or (b.hi is not None and value > b.hi) else value
        if i not in self.sorted:
            self.sorted[i] = sorted(as_list(row[self.gathers[i]]))
        gathered = self.sorted[i]
        start = bisect.bisect_left(gathered, b.lo) if b.lo is not None else 0
        end = bisect.bisect_right(gathered, b.hi) if b.hi is not None else len(gathered)
        at = start + rank - below
        return gathered[at] if at < end else None


async def _ordered(
    conn: AsyncConnection,
    dialect: Dialect,
    conditions: Sequence[ColumnElement[bool]],
    measure: ExactMeasure,
    quantiles: Sequence[float],
) -> dict[tuple[str, float], float]:
    """Quantiles of one measure by ordering every value (when a bracket missed): both
    neighbours of each, interpolated here."""
    matching = select(measure.expr.label("v")).where(*conditions).cte("matching")
    n = select(func.count().label("n")).select_from(matching).cte("counted").c.n
    picks = [
        sqld.exact_quantile(dialect, matching, n, "v", q, upper)
        for q in quantiles
        for upper in (False, True)
    ]
    row = (await conn.execute(select(select(n).scalar_subquery(), *picks))).one()
    out = {}
    for j, q in enumerate(quantiles):
        _, _, t = sketch.neighbour_ranks(q, int(row[0]))
        lower, higher = (measure.decode(v) for v in row[1 + 2 * j : 3 + 2 * j])
        out[(measure.name, q)] = sketch.interpolate(lower, higher, t)
    return out
