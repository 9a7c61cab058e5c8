"""Turns a planned measure group into one SQL statement for either dialect.

Each piece of the plan (raw events, hour rows, day rows) becomes a pre-aggregated SELECT of
(bucket index, dimension keys, measures); the pieces are combined with UNION ALL and folded
again outside. Everything the caller supplies travels as bound parameters; the only SQL text
built here is integer arithmetic and fixed column names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    LargeBinary,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.sql import FromClause

from tallyql.engine.buckets import Bucketing, epoch_seconds
from tallyql.engine.filters import EventFilterSpec, filter_conditions
from tallyql.engine.planner import Piece, Plan
from tallyql.engine.registry import OTHER, Dimension, DimensionRef
from tallyql.storage import dialect as sqld
from tallyql.storage.rollups import (
    BOOL_DIMS,
    DELTA_TABLES,
    GROUP_OF,
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


def _time_expr(piece: Piece, src: FromClause, dialect: str) -> ColumnElement[int]:
    """Integer epoch seconds of a row of this piece."""
    if piece.grain != "raw":
        return src.c.period
    return sqld.epoch_seconds_int(dialect, src.c.ts)


_EVENTS_SRC = events.alias("src")
_ROLLUP_SRC = {name: table.alias("src") for name, table in ROLLUP_TABLES.items()}
_DELTA_SRC = {name: DELTA_TABLES[GROUP_OF[name].delta_table].alias("src") for name in ROLLUP_TABLES}


def _sources(plan: Plan, dialect: str) -> list[tuple[Piece, FromClause]]:
    """Each piece with its table as `src` (aliases are immutable, so built once): raw events
    or a rollup table; and on PostgreSQL, once for all the rollup pieces (they are contiguous),
    the rollup's delta of batches not yet compacted: hour rows keeping every column the rollup
    keeps, whose periods place them in hour, day and week pieces alike."""
    out: list[tuple[Piece, FromClause]] = []
    rolled: list[Piece] = []
    for piece in plan.pieces:
        if piece.grain == "raw" or plan.rollup is None:
            out.append((piece, _EVENTS_SRC))
        else:
            table = plan.rollup.table(piece.grain)
            out.append((piece, _ROLLUP_SRC[table]))
            rolled.append(piece)
    if rolled and sqld.is_postgres(dialect):
        span = Piece("h", rolled[0].start, rolled[-1].end)
        out.append((span, _DELTA_SRC[plan.rollup.table(rolled[0].grain)]))  # type: ignore[union-attr]
    return out


def _fold(expr: ColumnElement[Any], keep: tuple[str | None, ...]) -> ColumnElement[Any]:
    """Values outside `keep` become OTHER (NULL stays NULL when NULL is kept)."""
    kept = [k for k in keep if k is not None]
    return case(
        (expr.in_(kept), expr) if kept else (literal(False), expr),
        (expr.is_(None), null() if None in keep else literal(OTHER)),
        else_=literal(OTHER),
    )


class PieceCompiler:
    """Builds the SELECT of one piece."""

    def __init__(
        self,
        piece: Piece,
        plan: Plan,
        group: GroupSpec,
        bucketing: Bucketing,
        dimensions: Sequence[DimensionRef],
        spec: EventFilterSpec,
        scope: Scope,
        dialect: str,
        src: FromClause,
    ) -> None:
        self.piece = piece
        self.plan = plan
        self.group = group
        self.bucketing = bucketing
        self.dimensions = dimensions
        self.spec = spec
        self.scope = scope
        self.dialect = dialect
        self.raw = piece.grain == "raw"
        self.src = src
        self.t = _time_expr(piece, self.src, dialect)
        self.from_: FromClause = self.src

    def _text_dim(self, column: str) -> ColumnElement[Any]:
        col = self.src.c[column]
        if self.raw or column in BOOL_DIMS or column == "workspace_id":
            return col
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
        return _fold(expr, ref.keep) if ref.keep is not None else expr

    def conditions(self) -> list[ColumnElement[bool]]:
        src = self.src
        if self.scope.workspace_ids is None:
            out: list[ColumnElement[bool]] = []
        elif len(self.scope.workspace_ids) == 1:
            out = [src.c.workspace_id == self.scope.workspace_ids[0]]
        else:
            out = [src.c.workspace_id.in_(self.scope.workspace_ids)]
        piece = self.piece
        if self.raw:
            out += [src.c.ts >= piece.start, src.c.ts < piece.end]
            out += filter_conditions(self.spec, src.c, self.dialect)
        else:
            out += [
                src.c.period >= epoch_seconds(piece.start),
                src.c.period < epoch_seconds(piece.end),
            ]
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
            if not self.raw and group.histogram in self.src.c:
                blob = self.src.c[group.histogram]
                conditions.append(blob.is_not(None))
                columns = [*keys, _NULL_INT.label("hb"), _NULL_INT.label("n"), blob.label("blob")]
                return select(*columns).select_from(self.from_).where(*conditions)
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
        out = []
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
        PieceCompiler(p, plan, group, bucketing, dimensions, spec, scope, dialect, src).select()
        for p, src in _sources(plan, dialect)
    ]
    union = parts[0].subquery("u") if len(parts) == 1 else union_all(*parts).subquery("u")
    keys = [union.c.b, *(union.c[f"d{i}"] for i in range(len(dimensions)))]
    if group.kind == "measures":
        columns = [
            (func.max if m in MAX_SQL else func.sum)(union.c[m]).label(m) for m in group.measures
        ]
        return select(*keys, *columns).group_by(*keys)
    if group.kind == "histogram":
        return select(*union.c)
    return select(*keys, func.count(union.c.v.distinct()).label("n")).group_by(*keys)
