"""Turns a planned measure group into one SQL statement for either dialect.

The pieces of the plan (raw events, hour, day and week rows) of each grain become one
pre-aggregated SELECT of (bucket index, dimension keys, measures); these are combined with
UNION ALL and folded again outside. Everything the caller supplies travels as bound
parameters; the only SQL text built here is integer arithmetic and fixed column names. The
values that move with the window (the pieces' bounds, `piece_params`, and the buckets',
`Bucketing.params`) are bound by name, so that a statement serves every window of its shape
(`statement_cache.py`).

An exact histogram plan (the forced raw path) orders each group's values instead, with window
functions on both databases, and returns only the values at the ranks the percentiles
interpolate between (`exact_percentiles`): at most two rows per percentile and group, however
many events, so the server's memory stays bounded (the database sorts, spilling to disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    LargeBinary,
    Select,
    and_,
    bindparam,
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
from sqlalchemy.sql.selectable import Alias

from tallyql.engine.query.buckets import Bucketing, epoch_seconds
from tallyql.engine.query.filters import EventFilterSpec, filter_conditions
from tallyql.engine.query.planner import Grain, Piece, Plan
from tallyql.engine.query.registry import Dimension, DimensionRef, other_key
from tallyql.engine.query.scope import Scope
from tallyql.storage import dialect as sqld
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.declarations import (
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


class GroupKind(Enum):
    """What one statement computes."""

    MEASURES = "measures"  # sums and maxima of base measures
    HISTOGRAM = "histogram"  # a latency or TTFT histogram, for percentiles
    DISTINCT = "distinct"  # a count of distinct values of one column


@dataclass(frozen=True)
class GroupSpec:
    """What one statement computes: sums/maxima, a histogram, or a distinct count."""

    kind: GroupKind
    measures: tuple[str, ...] = ()
    histogram: str | None = None  # "latency" | "ttft"
    quantiles: tuple[float, ...] = ()
    distinct: str | None = None


def _time_expr(grain: Grain, src: FromClause, dialect: Dialect) -> ColumnElement[int]:
    """Integer epoch seconds of a row of this grain's table."""
    if grain is not Grain.RAW:
        return src.c.period
    return sqld.epoch_seconds_int(dialect, src.c.ts)


_EVENTS_SRC = events.alias("src")
_ROLLUP_SRC = {name: table.alias("src") for name, table in ROLLUP_TABLES.items()}
_DELTA_SRC = {name: DELTA_TABLES[GROUP_OF[name].delta_table].alias("src") for name in ROLLUP_TABLES}


def _sources(plan: Plan, dialect: Dialect) -> list[tuple[Grain, list[Piece], FromClause]]:
    """The plan's pieces by table, as (grain, pieces, `src`) (aliases are immutable, so built
    once): raw events (each edge of the window on its own, an index range scan), each grain's
    rollup table (its pieces before and after the coarser middle in one SELECT), and on
    PostgreSQL, once for all the rollup pieces (they are contiguous), the rollup's delta of
    batches not yet compacted:
    hour rows keeping every column the rollup keeps, whose periods place them in hour, day and
    week pieces alike."""
    out: list[tuple[Grain, list[Piece], FromClause]] = []
    by_grain: dict[Grain, list[Piece]] = {}
    for piece in plan.pieces:
        if piece.grain is Grain.RAW or plan.rollup is None:
            out.append((Grain.RAW, [piece], _EVENTS_SRC))  # an index range scan each
        else:
            by_grain.setdefault(piece.grain, []).append(piece)
    for grain, pieces in by_grain.items():
        assert plan.rollup is not None  # pieces go by grain only with a rollup
        out.append((grain, pieces, _ROLLUP_SRC[plan.rollup.table(grain)]))
    rolled = [p for p in plan.pieces if p.grain is not Grain.RAW]
    if rolled and plan.rollup is not None and dialect.staged_deltas:
        span = Piece(Grain.HOUR, rolled[0].start, rolled[-1].end)
        out.append((Grain.HOUR, [span], _DELTA_SRC[plan.rollup.table(rolled[0].grain)]))
    return out


def _ranges(grain: Grain, pieces: list[Piece]) -> list[tuple[Any, Any]]:
    """The pieces' half-open ranges as the source's time column holds them: instants for raw
    events, epoch seconds for rollup periods."""
    if grain is Grain.RAW:
        return [(p.start, p.end) for p in pieces]
    return [(epoch_seconds(p.start), epoch_seconds(p.end)) for p in pieces]


def piece_params(plan: Plan, dialect: Dialect) -> dict[str, Any]:
    """The bounds of the plan's pieces, by the names `_within` binds them under: what changes
    from one window to the next in a statement of the same shape (with `Bucketing.params`)."""
    out: dict[str, Any] = {}
    for i, (grain, pieces, _) in enumerate(_sources(plan, dialect)):
        for j, (lo, hi) in enumerate(_ranges(grain, pieces)):
            out[f"s{i}_{j}_lo"] = lo
            out[f"s{i}_{j}_hi"] = hi
    return out


def plan_shape(plan: Plan, dialect: Dialect) -> tuple[Any, ...]:
    """What a plan's SQL depends on besides `piece_params`: its source tables and how many
    pieces each reads."""
    return (
        plan.rollup.name if plan.rollup is not None else None,
        plan.exact,
        tuple((grain, _table(src), len(pieces)) for grain, pieces, src in _sources(plan, dialect)),
    )


def _table(src: FromClause) -> str:
    """The name of the table a source reads (every source is aliased `src`)."""
    return src.element.name if isinstance(src, Alias) else src.name  # type: ignore[attr-defined]


def _within(
    column: ColumnElement[Any], ranges: list[tuple[Any, Any]], prefix: str
) -> ColumnElement[bool]:
    """`column` in any of the half-open ranges (one or two: the pieces of one grain), their
    bounds bound by name (`piece_params`)."""
    terms = [
        and_(
            column >= bindparam(f"{prefix}_{j}_lo", a, type_=column.type),
            column < bindparam(f"{prefix}_{j}_hi", b, type_=column.type),
        )
        for j, (a, b) in enumerate(ranges)
    ]
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


Join = tuple[FromClause, ColumnElement[bool]]
"""A table to outer-join to a piece's source, and on what."""


class PieceCompiler:
    """Builds the SELECT of the pieces of one grain."""

    def __init__(
        self,
        grain: Grain,
        pieces: list[Piece],
        plan: Plan,
        group: GroupSpec,
        bucketing: Bucketing,
        dimensions: Sequence[DimensionRef],
        spec: EventFilterSpec,
        scope: Scope,
        dialect: Dialect,
        src: FromClause,
        prefix: str,
    ) -> None:
        self.grain = grain
        self.prefix = prefix
        """Of the names its pieces' bounds are bound under."""
        self.pieces = pieces
        self.plan = plan
        self.group = group
        self.bucketing = bucketing
        self.dimensions = dimensions
        self.spec = spec
        self.scope = scope
        self.dialect = dialect
        self.raw = grain is Grain.RAW
        self.src = src
        self.t = _time_expr(grain, self.src, dialect)

    def _text_dim(self, column: str) -> ColumnElement[Any]:
        col = self.src.c[column]
        if self.raw or column in BOOL_DIMS or column == "workspace_id":
            return col
        if column in INT_DIMS:
            return func.nullif(col, INT_DIMS[column])
        return func.nullif(col, "")

    def _tag_dim(self) -> tuple[ColumnElement[Any], list[Join]]:
        if not self.raw:
            return func.nullif(self.src.c[TAG], ""), []
        each, tag = sqld.tag_rows(self.dialect, literal_column("src.tags"))
        return tag, [(each, true())]

    def dimension(self, ref: DimensionRef) -> tuple[ColumnElement[Any], list[Join]]:
        """The dimension's value, and the tables to outer-join to the source for it (an
        event has one row per group of its user, or per tag)."""
        d = ref.dimension
        joins: list[Join] = []
        if d is Dimension.GROUP:
            gm = group_members.alias("gm")
            on = and_(
                gm.c.workspace_id == self.src.c.workspace_id,
                gm.c.user_id == self.src.c.user_id,
            )
            joins.append((gm, on))
            expr: ColumnElement[Any] = gm.c.group_name
        elif d is Dimension.TAG:
            expr, joins = self._tag_dim()
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
        return (_fold(expr, ref.keep, d) if ref.keep is not None else expr), joins

    def conditions(self) -> list[ColumnElement[bool]]:
        src = self.src
        if self.scope.workspace_ids is None:
            out: list[ColumnElement[bool]] = []
        elif len(self.scope.workspace_ids) == 1:
            out = [src.c.workspace_id == self.scope.workspace_ids[0]]
        else:
            out = [src.c.workspace_id.in_(self.scope.workspace_ids)]
        ranges = _ranges(self.grain, self.pieces)
        if self.raw:
            out.append(_within(src.c.ts, ranges, self.prefix))
            out += filter_conditions(self.spec, src.c, self.dialect)
        else:
            out.append(_within(src.c.period, ranges, self.prefix))
            out += filter_conditions(replace(self.spec, tags=()), src.c, self.dialect)
            if self.spec.tags:
                out.append(src.c[TAG].in_(list(self.spec.tags)))
        return out

    def select(self) -> Select[Any]:
        bucket = self.bucketing.index_expr(self.t).label("b")
        keys: list[ColumnElement[Any]] = [bucket]
        from_: FromClause = self.src
        for i, ref in enumerate(self.dimensions):
            expr, joins = self.dimension(ref)
            keys.append(expr.label(f"d{i}"))
            for target, on in joins:
                from_ = from_.outerjoin(target, on)
        constant_bucket = self.bucketing.constant
        group = self.group
        conditions = self.conditions()
        if group.kind is GroupKind.MEASURES:
            columns = [*keys, *self._measure_columns()]
        elif group.kind is GroupKind.HISTOGRAM:
            # rows (keys..., hb, n, blob): a blob per rollup or delta row (one per period and
            # key), merged in Python with the (bucket, count) rows of raw events
            assert group.histogram is not None
            if self.plan.exact:  # (keys..., v): every value, ordered and picked outside
                value = self.src.c[f"{group.histogram}_ms"]
                conditions.append(value.is_not(None))
                return select(*keys, value.label("v")).select_from(from_).where(*conditions)
            if not self.raw:
                blob = self.src.c[group.histogram]
                conditions.append(blob.is_not(None))
                columns = [*keys, _NULL_INT.label("hb"), _NULL_INT.label("n"), blob.label("blob")]
                return select(*columns).select_from(from_).where(*conditions)
            hb = self.src.c[f"{group.histogram}_bucket"]
            conditions.append(hb.is_not(None))
            keys.append(hb.label("hb"))
            columns = [*keys, cast(func.count(), BigInteger).label("n"), _NULL_BLOB.label("blob")]
        else:
            assert group.distinct is not None
            value = self.src.c[group.distinct]
            conditions.append(value.is_not(None) if self.raw else value != "")
            keys.append(value.label("v"))
            columns = keys
        query = select(*columns).select_from(from_).where(*conditions)
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
    dialect: Dialect,
) -> Select[Any]:
    """One statement: the pieces' SELECTs under UNION ALL, folded by bucket and keys."""
    parts = [
        PieceCompiler(
            grain, pieces, plan, group, bucketing, dimensions, spec, scope, dialect, src, f"s{i}"
        ).select()
        for i, (grain, pieces, src) in enumerate(_sources(plan, dialect))
    ]
    union = parts[0].subquery("u") if len(parts) == 1 else union_all(*parts).subquery("u")
    keys = [union.c.b, *(union.c[f"d{i}"] for i in range(len(dimensions)))]
    if plan.exact:
        return exact_percentiles(union, keys, group.quantiles, dialect)
    if group.kind is GroupKind.MEASURES:
        columns = [
            (func.max if m in MAX_SQL else func.sum)(union.c[m]).label(m) for m in group.measures
        ]
        return select(*keys, *columns).group_by(*keys)
    if group.kind is GroupKind.HISTOGRAM:
        return select(*union.c)
    return select(*keys, func.count(union.c.v.distinct()).label("n")).group_by(*keys)


def exact_percentiles(
    values: FromClause,
    keys: Sequence[ColumnElement[Any]],
    quantiles: Sequence[float],
    dialect: Dialect,
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
