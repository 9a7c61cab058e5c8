"""Turns a planned measure group into one SQL statement for either dialect.

The pieces of the plan (raw events, hour, day and week rows) of each grain become one
pre-aggregated SELECT of (bucket index, dimension keys, measures); these are combined with
UNION ALL and folded again outside. Everything the caller supplies travels as bound
parameters; the only SQL text built here is integer arithmetic and fixed column names.

An exact histogram plan (the forced raw path) orders each group's values instead, with window
functions on both databases, and returns only the values at the ranks the percentiles
interpolate between (`exact_percentiles`): at most two rows per percentile and group, however
many events, so the server's memory stays bounded (the database sorts, spilling to disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    LargeBinary,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.sql import FromClause

from tallyql.engine.buckets import Bucketing, epoch_seconds
from tallyql.engine.filters import EventFilterSpec, filter_conditions
from tallyql.engine.planner import Piece, Plan
from tallyql.engine.registry import Dimension, DimensionRef, other_key
from tallyql.storage import dialect as sqld
from tallyql.storage.rollups import (
    BOOL_DIMS,
    DELTA_TABLES,
    GROUP_OF,
    INT_DIMS,
    MAX_MEASURES,
    ROLLUP_TABLES,
    SUM_MEASURES,
    TAG,
)
from tallyql.storage.tables import events, group_members

SUM_SQL = dict(SUM_MEASURES)


def _int(value: int) -> ColumnElement[int]:
    return literal(value, BigInteger)


MAX_SQL = dict(MAX_MEASURES)
_NULL_INT = cast(null(), BigInteger)
_NULL_BLOB = cast(null(), LargeBinary)


@dataclass(frozen=True)
class Scope:
    """Which workspaces a query reads: one or several ids, or None for every workspace."""

    workspace_ids: tuple[int, ...] | None

    @classmethod
    def of(cls, workspace_id: int) -> Scope:
        return cls((workspace_id,))


@dataclass(frozen=True)
class GroupSpec:
    """What one statement computes: sums/maxima, a histogram, or a distinct count."""

    kind: str  # "measures" | "histogram" | "distinct"
    measures: tuple[str, ...] = ()
    histogram: str | None = None  # "latency" | "ttft"
    quantiles: tuple[float, ...] = ()
    distinct: str | None = None


def _time_expr(grain: str, src: FromClause, dialect: str) -> ColumnElement[int]:
    """Integer epoch seconds of a row of this grain's table."""
    if grain != "raw":
        return src.c.period
    return sqld.epoch_seconds_int(dialect, src.c.ts)


_EVENTS_SRC = events.alias("src")
_ROLLUP_SRC = {name: table.alias("src") for name, table in ROLLUP_TABLES.items()}
_DELTA_SRC = {name: DELTA_TABLES[GROUP_OF[name].delta_table].alias("src") for name in ROLLUP_TABLES}


def _sources(plan: Plan, dialect: str) -> list[tuple[str, list[Piece], FromClause]]:
    """The plan's pieces by table, as (grain, pieces, `src`) (aliases are immutable, so built
    once): raw events (each edge of the window on its own, an index range scan), each grain's
    rollup table (its pieces before and after the coarser middle in one SELECT), and on
    PostgreSQL, once for all the rollup pieces (they are contiguous), the rollup's delta of
    batches not yet compacted:
    hour rows keeping every column the rollup keeps, whose periods place them in hour, day and
    week pieces alike."""
    out: list[tuple[str, list[Piece], FromClause]] = []
    by_grain: dict[str, list[Piece]] = {}
    for piece in plan.pieces:
        if piece.grain == "raw" or plan.rollup is None:
            out.append(("raw", [piece], _EVENTS_SRC))  # an index range scan each
        else:
            by_grain.setdefault(piece.grain, []).append(piece)
    for grain, pieces in by_grain.items():
        assert plan.rollup is not None  # pieces go by grain only with a rollup
        out.append((grain, pieces, _ROLLUP_SRC[plan.rollup.table(grain)]))
    rolled = [p for p in plan.pieces if p.grain != "raw"]
    if rolled and plan.rollup is not None and sqld.is_postgres(dialect):
        span = Piece("h", rolled[0].start, rolled[-1].end)
        out.append(("h", [span], _DELTA_SRC[plan.rollup.table(rolled[0].grain)]))
    return out


def _within(column: ColumnElement[Any], ranges: list[tuple[Any, Any]]) -> ColumnElement[bool]:
    """`column` in any of the half-open ranges (one or two: the pieces of one grain)."""
    terms = [and_(column >= a, column < b) for a, b in ranges]
    return terms[0] if len(terms) == 1 else or_(*terms)


def _fold(
    expr: ColumnElement[Any], keep: tuple[Any, ...], dimension: Dimension
) -> ColumnElement[Any]:
    """Values outside `keep` become the dimension's other key (NULL stays NULL when NULL is
    kept). Booleans are compared as they are but come back as 0 and 1, so that the CASE has
    one type; Python's True == 1 finds them under the kept keys alike."""
    other = other_key(dimension)
    kept = [k for k in keep if k is not None]
    value = cast(expr, Integer) if dimension is Dimension.BYOK else expr
    return case(
        (expr.in_(kept), value) if kept else (literal(False), value),
        (expr.is_(None), null() if None in keep else literal(other)),
        else_=literal(other),
    )


class PieceCompiler:
    """Builds the SELECT of the pieces of one grain."""

    def __init__(
        self,
        grain: str,
        pieces: list[Piece],
        plan: Plan,
        group: GroupSpec,
        bucketing: Bucketing,
        dimensions: Sequence[DimensionRef],
        spec: EventFilterSpec,
        scope: Scope,
        dialect: str,
        src: FromClause,
    ) -> None:
        self.pieces = pieces
        self.plan = plan
        self.group = group
        self.bucketing = bucketing
        self.dimensions = dimensions
        self.spec = spec
        self.scope = scope
        self.dialect = dialect
        self.raw = grain == "raw"
        self.src = src
        self.t = _time_expr(grain, self.src, dialect)
        self.from_: FromClause = self.src

    def _text_dim(self, column: str) -> ColumnElement[Any]:
        col = self.src.c[column]
        if self.raw or column in BOOL_DIMS or column == "workspace_id":
            return col
        if column in INT_DIMS:
            return func.nullif(col, INT_DIMS[column])
        return func.nullif(col, "")

    def _tag_dim(self) -> ColumnElement[Any]:
        if not self.raw:
            return func.nullif(self.src.c[TAG], "")
        if sqld.is_postgres(self.dialect):
            each = (
                func.unnest(literal_column("src.tags"))
                .table_valued("tag")
                .render_derived(name="tag_each")
                .lateral()
            )
            self.from_ = self.from_.outerjoin(each, true())
            return each.c.tag
        each = func.json_each(literal_column("src.tags")).table_valued("value", name="tag_each")
        self.from_ = self.from_.outerjoin(each, true())
        return each.c.value

    def dimension(self, ref: DimensionRef) -> ColumnElement[Any]:
        d = ref.dimension
        if d is Dimension.GROUP:
            gm = group_members.alias("gm")
            self.from_ = self.from_.outerjoin(
                gm,
                and_(
                    gm.c.workspace_id == self.src.c.workspace_id,
                    gm.c.user_id == self.src.c.user_id,
                ),
            )
            expr: ColumnElement[Any] = gm.c.group_name
        elif d is Dimension.TAG:
            expr = self._tag_dim()
        elif d is Dimension.METADATA:
            expr = sqld.json_text(self.dialect, self.src.c.metadata, ref.metadata_key or "")
        elif d is Dimension.STATUS_CLASS:
            # rollups keep absent codes as -1, which no range below holds: NULL, as raw
            code = self.src.c.status_code
            expr = case(
                *(
                    (and_(code >= _int(c * 100), code < _int(c * 100 + 100)), literal(f"{c}xx"))
                    for c in range(1, 6)
                ),
                else_=null(),
            )
        elif d is Dimension.HOUR_OF_DAY:
            local = self.t + self.bucketing.offset_expr(self.t)
            expr = (local % _int(86400)) // _int(3600)
        elif d is Dimension.DAY_OF_WEEK:
            local = self.t + self.bucketing.offset_expr(self.t)
            expr = (local // _int(86400) + _int(3)) % _int(7)
        else:
            column = ref.definition.column
            assert column is not None
            expr = self._text_dim(column)
        return _fold(expr, ref.keep, d) if ref.keep is not None else expr

    def conditions(self) -> list[ColumnElement[bool]]:
        src = self.src
        if self.scope.workspace_ids is None:
            out: list[ColumnElement[bool]] = []
        elif len(self.scope.workspace_ids) == 1:
            out = [src.c.workspace_id == self.scope.workspace_ids[0]]
        else:
            out = [src.c.workspace_id.in_(self.scope.workspace_ids)]
        if self.raw:
            out.append(_within(src.c.ts, [(p.start, p.end) for p in self.pieces]))
            out += filter_conditions(self.spec, src.c, self.dialect)
        else:
            ranges = [(epoch_seconds(p.start), epoch_seconds(p.end)) for p in self.pieces]
            out.append(_within(src.c.period, ranges))
            out += filter_conditions(replace(self.spec, tags=()), src.c, self.dialect)
            if self.spec.tags:
                out.append(src.c[TAG].in_(list(self.spec.tags)))
        return out

    def select(self) -> Select[Any]:
        bucket = self.bucketing.index_expr(self.t).label("b")
        dims = [self.dimension(ref).label(f"d{i}") for i, ref in enumerate(self.dimensions)]
        keys: list[ColumnElement[Any]] = [bucket, *dims]
        constant_bucket = self.bucketing.constant
        group = self.group
        conditions = self.conditions()
        if group.kind == "measures":
            columns = [*keys, *self._measure_columns()]
        elif group.kind == "histogram":
            # rows (keys..., hb, n, blob): a blob per rollup row, merged in Python with the
            # (bucket, count) rows of raw events and of PostgreSQL's row-per-bucket deltas
            assert group.histogram is not None
            if self.plan.exact:  # (keys..., v): every value, ordered and picked outside
                value = self.src.c[f"{group.histogram}_ms"]
                conditions.append(value.is_not(None))
                return select(*keys, value.label("v")).select_from(self.from_).where(*conditions)
            if not self.raw and group.histogram in self.src.c:
                blob = self.src.c[group.histogram]
                conditions.append(blob.is_not(None))
                columns = [*keys, _NULL_INT.label("hb"), _NULL_INT.label("n"), blob.label("blob")]
                return select(*columns).select_from(self.from_).where(*conditions)
            n: ColumnElement[Any]
            if self.raw:
                hb = self.src.c[f"{group.histogram}_bucket"]
                n = func.count()
                conditions.append(hb.is_not(None))
            else:
                hb = self.src.c.bucket
                n = func.sum(self.src.c[f"{group.histogram}_n"])
                conditions.append(self.src.c[f"{group.histogram}_n"] > 0)
            keys.append(hb.label("hb"))
            columns = [*keys, cast(n, BigInteger).label("n"), _NULL_BLOB.label("blob")]
        else:
            assert group.distinct is not None
            value = self.src.c[group.distinct]
            conditions.append(value.is_not(None) if self.raw else value != "")
            keys.append(value.label("v"))
            columns = keys
        query = select(*columns).select_from(self.from_).where(*conditions)
        group_by = keys[1:] if constant_bucket else keys
        if group_by:
            return query.group_by(*group_by)
        return query.having(func.count() > 0)  # no rows: no group (not one row of NULLs)

    def _measure_columns(self) -> list[ColumnElement[Any]]:
        out: list[ColumnElement[Any]] = []
        for m in self.group.measures:
            if m in MAX_SQL:
                expr = literal_column(MAX_SQL[m]) if self.raw else self.src.c[m]
                out.append(func.max(expr).label(m))
            else:
                expr = literal_column(SUM_SQL[m]) if self.raw else self.src.c[m]
                out.append(func.sum(expr).label(m))
        return out


def compile_group(
    plan: Plan,
    group: GroupSpec,
    bucketing: Bucketing,
    dimensions: Sequence[DimensionRef],
    spec: EventFilterSpec,
    scope: Scope,
    dialect: str,
) -> Select[Any]:
    """One statement: the pieces' SELECTs under UNION ALL, folded by bucket and keys."""
    parts = [
        PieceCompiler(
            grain, pieces, plan, group, bucketing, dimensions, spec, scope, dialect, src
        ).select()
        for grain, pieces, src in _sources(plan, dialect)
    ]
    union = parts[0].subquery("u") if len(parts) == 1 else union_all(*parts).subquery("u")
    keys = [union.c.b, *(union.c[f"d{i}"] for i in range(len(dimensions)))]
    if plan.exact:
        return exact_percentiles(union, keys, group.quantiles, dialect)
    if group.kind == "measures":
        columns = [
            (func.max if m in MAX_SQL else func.sum)(union.c[m]).label(m) for m in group.measures
        ]
        return select(*keys, *columns).group_by(*keys)
    if group.kind == "histogram":
        return select(*union.c)
    return select(*keys, func.count(union.c.v.distinct()).label("n")).group_by(*keys)


def exact_percentiles(
    values: FromClause,
    keys: Sequence[ColumnElement[Any]],
    quantiles: Sequence[float],
    dialect: str,
) -> Select[Any]:
    """Rows (keys..., n, r, v): per group of `keys`, its count n and the values v of 0-based
    ascending rank r = floor(q * (n - 1)) and the next, for each q (`tallyql.sketch` then
    interpolates between them). The ranks are float8 arithmetic on both databases, as
    `sketch.neighbour_ranks` computes them."""
    partition = list(keys)
    ranked = select(
        *keys,
        values.c.v,
        (func.row_number().over(partition_by=partition, order_by=values.c.v) - 1).label("r"),
        func.count().over(partition_by=partition).label("n"),
    ).subquery("ranked")
    n, r = ranked.c.n, ranked.c.r
    wanted = []
    for q in dict.fromkeys(quantiles):
        low = sqld.floor_nonnegative(dialect, literal(q, Float) * (n - 1))
        wanted += [r == low, r == low + 1]
    out_keys = [ranked.c[k.name] for k in keys]
    return select(*out_keys, n, r, ranked.c.v).where(or_(*wanted))
