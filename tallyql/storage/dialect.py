"""Where SQLite and PostgreSQL differ: JSON access, tag lists, epoch arithmetic.

Everything else in tallyql's SQL is written once with SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Insert,
    Integer,
    Interval,
    Table,
    Text,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP, aggregate_order_by
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.functions import Function


def is_postgres(dialect: str) -> bool:
    return dialect == "postgresql"


def json_text(dialect: str, doc: ColumnElement[Any], key: str) -> ColumnElement[str]:
    """The text of a top-level JSON key (true/false for booleans, numbers as written)."""
    if is_postgres(dialect):
        return doc.op("->>")(literal(key, Text))
    path = literal('$."' + key.replace('"', '\\"') + '"', Text)
    json_type = func.json_type(doc, path)
    return case(
        (json_type == "true", literal("true")),
        (json_type == "false", literal("false")),
        (json_type.in_(("object", "array")), func.json_extract(doc, path)),
        else_=cast(func.json_extract(doc, path), Text),
    )


def tags_overlap(
    dialect: str, tags: ColumnElement[Any], wanted: Sequence[str]
) -> ColumnElement[bool]:
    """True when the tag list holds any of `wanted`."""
    if is_postgres(dialect):
        return tags.op("&&")(cast(list(wanted), ARRAY(Text)))
    each = func.json_each(tags).table_valued("value").alias("tag_each")
    return exists(select(literal(1)).select_from(each).where(each.c.value.in_(list(wanted))))


def epoch_seconds_int(dialect: str, ts: ColumnElement[Any]) -> ColumnElement[int]:
    """Whole seconds since the epoch of a stored timestamp (SQLite stores microseconds).
    PostgreSQL's date_part is float8 (extract is numeric and much slower)."""
    if is_postgres(dialect):
        return cast(func.floor(func.date_part("epoch", ts)), BigInteger)
    return type_coerce(ts, BigInteger) // literal(1_000_000, BigInteger)


def floor_nonnegative(dialect: str, value: ColumnElement[float]) -> ColumnElement[int]:
    """floor() of a non-negative float as an integer (SQLite may lack math functions; its
    integer cast truncates, which is the floor here; PostgreSQL's cast would round)."""
    if is_postgres(dialect):
        return cast(func.floor(value), BigInteger)
    return cast(value, BigInteger)


def as_int(dialect: str, value: ColumnElement[Any]) -> ColumnElement[int]:
    """Integer sums: PostgreSQL's SUM(bigint) is numeric; cast back."""
    return cast(value, BigInteger) if is_postgres(dialect) else value


def micros_between(
    dialect: str, start: ColumnElement[Any], end: ColumnElement[Any]
) -> ColumnElement[int]:
    """Whole microseconds from one stored timestamp to another (SQLite stores microseconds)."""
    if is_postgres(dialect):
        return cast(func.extract("epoch", end - start) * 1_000_000, BigInteger)
    return type_coerce(end - start, BigInteger)


def time_along(
    dialect: str,
    start: ColumnElement[Any],
    end: ColumnElement[Any],
    fraction: ColumnElement[float],
) -> ColumnElement[Any]:
    """The stored time `fraction` of the way from `start` to `end` (both stored times)."""
    if is_postgres(dialect):
        span = type_coerce(type_coerce(end - start, Float) * fraction, Interval())
        return type_coerce(start, TIMESTAMP(timezone=True)) + span
    span_micros = type_coerce(end, BigInteger) - type_coerce(start, BigInteger)
    return type_coerce(start, BigInteger) + cast(span_micros * fraction, BigInteger)


COLLECT_AGGREGATE = "tallyql_collect"
"""PostgreSQL: array_agg with a combine step (migration 0010), so that the scans of
`engine/query/exact_stats.py` can run in parallel workers (array_agg combines only from 16 on)."""


def collect(dialect: str, value: ColumnElement[Any]) -> Function[Any]:
    """An aggregate gathering values (add `.filter(...)` to choose them), in no order: on
    PostgreSQL an array (pick from it with `nth_collected`), on SQLite a JSON array."""
    if is_postgres(dialect):
        return getattr(func, COLLECT_AGGREGATE)(value)
    return func.json_group_array(value)


def nth_collected(
    dialect: str, collected: ColumnElement[Any], low: Any, k: ColumnElement[int], width: int = 1
) -> ColumnElement[Any]:
    """PostgreSQL: the k-th (0-based, ascending) of the `collect`ed values that are >= `low`
    (None: of all), NULL when there are not that many; `k` may refer to the enclosing row.
    With `width` > 1, an array of the k-th and the following values (shorter, or empty, where
    there are not that many), sorted once. (SQLite returns its JSON array to be picked from.)"""
    if not is_postgres(dialect):
        raise NotImplementedError("nth_collected is for PostgreSQL")
    skipped: ColumnElement[int] = literal(0, BigInteger)
    value = func.unnest(collected).column_valued("collected_value")
    if low is not None:
        skipped = select(func.count()).where(value < low).scalar_subquery()
    ordered = select(func.array_agg(aggregate_order_by(value, value))).scalar_subquery()
    if width > 1:
        return ordered[skipped + k + 1 : skipped + k + width]
    return ordered[skipped + k + 1]


def insert_ignoring_duplicates(dialect: str, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING (add `.returning(...)` to learn which rows went in)."""
    if is_postgres(dialect):
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def exact_quantile(
    dialect: str,
    source: FromClause,
    count: ColumnElement[int],
    column: str,
    q: float,
    upper: bool = False,
) -> ColumnElement[Any]:
    """The value of rank floor(q * (n - 1)) (0-based, ascending, in float8 arithmetic), or with
    `upper` of the next rank (at most n - 1): the two neighbours that the q-quantile
    interpolates between (`tallyql.sketch.exact_quantile`), of `column` over the n rows of
    `source`, where `count` is n as a column of a one-row CTE (read once, by an init plan).

    PostgreSQL: an aggregate over `source`, percentile_disc at (rank + 0.5) / n, whose first
    position reaching that fraction is exactly rank + 1, so that every quantile of a statement
    is read in one pass over `source`. SQLite: a scalar subquery that orders and offsets (give
    it a CTE, so that the rows are computed once). NULL over no rows."""
    scaled = literal(q, Float) * (count - 1)
    if is_postgres(dialect):
        rank: ColumnElement[Any] = func.floor(scaled)
        if upper:
            rank = func.least(rank + 1, count - 1)
        fraction = select((rank + 0.5) / func.nullif(count, 0)).scalar_subquery()
        return func.percentile_disc(fraction).within_group(source.c[column])
    offset_value: ColumnElement[Any] = cast(scaled, Integer)
    if upper:
        offset_value = func.min(offset_value + 1, count - 1)  # SQLite's scalar min
    offset = select(offset_value).scalar_subquery()
    return (
        select(source.c[column])
        .order_by(source.c[column])
        .limit(1)
        .offset(offset)
        .scalar_subquery()
    )
