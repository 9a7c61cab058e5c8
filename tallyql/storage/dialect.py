"""Where SQLite and PostgreSQL differ: one `Dialect` enum, and every SQL difference as a
function of it (JSON access, tag lists, epoch arithmetic, collected values, quantiles) or a
named property (day partitions, staged deltas, LISTEN/NOTIFY, snapshots).

Everything else in tallyql's SQL is written once with SQLAlchemy Core. Code outside storage/
calls these and never compares dialect names (tests/test_dialect.py greps for it). Each
difference is one `match` ending in `assert_never`, so that a third dialect fails type checking
at every place it would have to answer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, assert_never

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
    make_url,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP, aggregate_order_by
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine import Dialect as SqlAlchemyDialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.functions import Function

from tallyql.config import normalize_database_url


class Dialect(enum.StrEnum):
    """The databases tallyql runs on (values: SQLAlchemy's backend names)."""

    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"

    @classmethod
    def of(
        cls,
        source: str | Connection | AsyncConnection | Engine | AsyncEngine | SqlAlchemyDialect,
    ) -> Dialect:
        """The dialect of a database URL (or a backend name), a connection, an engine or
        SQLAlchemy's dialect."""
        match source:
            case Dialect():
                return source
            case str() if ":" in source:
                return cls(make_url(normalize_database_url(source)).get_backend_name())
            case str():
                return cls(source)
            case SqlAlchemyDialect():
                return cls(source.name)
            case _:
                return cls(source.dialect.name)

    @property
    def day_partitions(self) -> bool:
        """Raw events, their keys and payloads are partitioned by UTC day (a partition is
        created before its first batch; retention drops whole days)."""
        match self:
            case Dialect.POSTGRESQL:
                return True
            case Dialect.SQLITE:
                return False
            case _:
                assert_never(self)

    @property
    def staged_deltas(self) -> bool:
        """The writer stages rollup deltas (hour rows a compaction moves into the rollups, read
        by queries meanwhile), so that concurrent batches never wait on a rollup row. SQLite
        has one writer: it folds each batch into the rollups at once."""
        match self:
            case Dialect.POSTGRESQL:
                return True
            case Dialect.SQLITE:
                return False
            case _:
                assert_never(self)

    @property
    def advisory_locks(self) -> bool:
        """Processes coordinate through advisory locks (`storage/locks.py`). SQLite has one
        writer per database, which already serialises them."""
        match self:
            case Dialect.POSTGRESQL:
                return True
            case Dialect.SQLITE:
                return False
            case _:
                assert_never(self)

    @property
    def notifications(self) -> bool:
        """Connections (and replicas) notify each other (LISTEN/NOTIFY); without, live feeds
        poll their tables."""
        match self:
            case Dialect.POSTGRESQL:
                return True
            case Dialect.SQLITE:
                return False
            case _:
                assert_never(self)

    @property
    def snapshot_isolation(self) -> str | None:
        """The isolation level under which a read transaction sees one snapshot, or None when
        a transaction begun by hand does already (SQLite in WAL mode: its first read fixes it;
        the driver itself begins transactions only before writes)."""
        match self:
            case Dialect.POSTGRESQL:
                return "REPEATABLE READ"
            case Dialect.SQLITE:
                return None
            case _:
                assert_never(self)

    @property
    def server(self) -> bool:
        """A database on a server, which must be created before connecting (SQLite creates
        its file on first connect)."""
        match self:
            case Dialect.POSTGRESQL:
                return True
            case Dialect.SQLITE:
                return False
            case _:
                assert_never(self)

    @property
    def concurrent_writes(self) -> bool:
        """Several connections write at once (the writer's lanes, a bulk load's days in
        parallel). SQLite has one writer."""
        match self:
            case Dialect.POSTGRESQL:
                return True
            case Dialect.SQLITE:
                return False
            case _:
                assert_never(self)

    @property
    def rowids_in_commit_order(self) -> bool:
        """Row ids grow in commit order (one writer), so that what a snapshot saw is every row
        up to the largest id it read. PostgreSQL tells by transaction ids instead (a row's
        xmin against pg_current_snapshot())."""
        match self:
            case Dialect.POSTGRESQL:
                return False
            case Dialect.SQLITE:
                return True
            case _:
                assert_never(self)

    @property
    def arrays(self) -> bool:
        """Array values and functions (unnest, array_agg): collected values are sorted and
        picked (`nth_collected`), histogram blobs built, and many rows inserted from one array
        per column, in SQL. SQLite has JSON arrays only: those are finished in Python."""
        match self:
            case Dialect.POSTGRESQL:
                return True
            case Dialect.SQLITE:
                return False
            case _:
                assert_never(self)


def json_text(dialect: Dialect, doc: ColumnElement[Any], key: str) -> ColumnElement[str]:
    """The text of a top-level JSON key (true/false for booleans, numbers as written)."""
    match dialect:
        case Dialect.POSTGRESQL:
            return doc.op("->>")(literal(key, Text))
        case Dialect.SQLITE:
            path = literal('$."' + key.replace('"', '\\"') + '"', Text)
            json_type = func.json_type(doc, path)
            return case(
                (json_type == "true", literal("true")),
                (json_type == "false", literal("false")),
                (json_type.in_(("object", "array")), func.json_extract(doc, path)),
                else_=cast(func.json_extract(doc, path), Text),
            )
        case _:
            assert_never(dialect)


def tags_overlap(
    dialect: Dialect, tags: ColumnElement[Any], wanted: Sequence[str]
) -> ColumnElement[bool]:
    """True when the tag list holds any of `wanted`."""
    match dialect:
        case Dialect.POSTGRESQL:
            return tags.op("&&", is_comparison=True)(cast(list(wanted), ARRAY(Text)))
        case Dialect.SQLITE:
            each = func.json_each(tags).table_valued("value").alias("tag_each")
            return exists(
                select(literal(1)).select_from(each).where(each.c.value.in_(list(wanted)))
            )
        case _:
            assert_never(dialect)


def tag_rows(dialect: Dialect, tags: ColumnElement[Any]) -> tuple[FromClause, ColumnElement[Any]]:
    """(table-valued FROM item, its column): one row per tag of the list `tags` (outer-join
    it to keep rows without tags)."""
    match dialect:
        case Dialect.POSTGRESQL:
            each = func.unnest(tags).table_valued("tag").render_derived(name="tag_each").lateral()
            return each, each.c.tag
        case Dialect.SQLITE:
            values = func.json_each(tags).table_valued("value", name="tag_each")
            return values, values.c.value
        case _:
            assert_never(dialect)


def epoch_seconds_int(dialect: Dialect, ts: ColumnElement[Any]) -> ColumnElement[int]:
    """Whole seconds since the epoch of a stored timestamp (SQLite stores microseconds).
    PostgreSQL's date_part is float8 (extract is numeric and much slower)."""
    match dialect:
        case Dialect.POSTGRESQL:
            return cast(func.floor(func.date_part("epoch", ts)), BigInteger)
        case Dialect.SQLITE:
            return type_coerce(ts, BigInteger) // literal(1_000_000, BigInteger)
        case _:
            assert_never(dialect)


def floor_nonnegative(dialect: Dialect, value: ColumnElement[float]) -> ColumnElement[int]:
    """floor() of a non-negative float as an integer (SQLite may lack math functions; its
    integer cast truncates, which is the floor here; PostgreSQL's cast would round)."""
    match dialect:
        case Dialect.POSTGRESQL:
            return cast(func.floor(value), BigInteger)
        case Dialect.SQLITE:
            return cast(value, BigInteger)
        case _:
            assert_never(dialect)


def as_int(dialect: Dialect, value: ColumnElement[Any]) -> ColumnElement[int]:
    """Integer sums: PostgreSQL's SUM(bigint) is numeric; cast back."""
    match dialect:
        case Dialect.POSTGRESQL:
            return cast(value, BigInteger)
        case Dialect.SQLITE:
            return value
        case _:
            assert_never(dialect)


def micros_between(
    dialect: Dialect, start: ColumnElement[Any], end: ColumnElement[Any]
) -> ColumnElement[int]:
    """Whole microseconds from one stored timestamp to another (SQLite stores microseconds)."""
    match dialect:
        case Dialect.POSTGRESQL:
            return cast(func.extract("epoch", end - start) * 1_000_000, BigInteger)
        case Dialect.SQLITE:
            return type_coerce(end - start, BigInteger)
        case _:
            assert_never(dialect)


def time_along(
    dialect: Dialect,
    start: ColumnElement[Any],
    end: ColumnElement[Any],
    fraction: ColumnElement[float],
) -> ColumnElement[Any]:
    """The stored time `fraction` of the way from `start` to `end` (both stored times)."""
    match dialect:
        case Dialect.POSTGRESQL:
            span = type_coerce(type_coerce(end - start, Float) * fraction, Interval())
            return type_coerce(start, TIMESTAMP(timezone=True)) + span
        case Dialect.SQLITE:
            span_micros = type_coerce(end, BigInteger) - type_coerce(start, BigInteger)
            return type_coerce(start, BigInteger) + cast(span_micros * fraction, BigInteger)
        case _:
            assert_never(dialect)


def local_settings(
    dialect: Dialect, settings: Sequence[tuple[str, str]]
) -> list[ColumnElement[Any]]:
    """Columns that, selected, set planner settings for the rest of the transaction
    (PostgreSQL's set_config); SQLite has no such settings: none."""
    match dialect:
        case Dialect.POSTGRESQL:
            return [func.set_config(name, value, True) for name, value in settings]
        case Dialect.SQLITE:
            return []
        case _:
            assert_never(dialect)


COLLECT_AGGREGATE = "tallyql_collect"
"""PostgreSQL: array_agg with a combine step (migration 0010), so that the scans of
`engine/query/exact_stats.py` can run in parallel workers (array_agg combines only from 16 on)."""


def collect(dialect: Dialect, value: ColumnElement[Any]) -> Function[Any]:
    """An aggregate gathering values (add `.filter(...)` to choose them), in no order: on
    PostgreSQL an array (pick from it with `nth_collected`), on SQLite a JSON array."""
    match dialect:
        case Dialect.POSTGRESQL:
            return getattr(func, COLLECT_AGGREGATE)(value)
        case Dialect.SQLITE:
            return func.json_group_array(value)
        case _:
            assert_never(dialect)


def nth_collected(
    dialect: Dialect, collected: ColumnElement[Any], low: Any, k: ColumnElement[int], width: int = 1
) -> ColumnElement[Any]:
    """Where `dialect.arrays`: the k-th (0-based, ascending) of the `collect`ed
    values that are >= `low` (None: of all), NULL when there are not that many; `k` may refer
    to the enclosing row. With `width` > 1, an array of the k-th and the following values
    (shorter, or empty, where there are not that many), sorted once. (SQLite returns its JSON
    array to be picked from.)"""
    if not dialect.arrays:
        raise NotImplementedError(f"nth_collected is not for {dialect}")
    skipped: ColumnElement[int] = literal(0, BigInteger)
    value = func.unnest(collected).column_valued("collected_value")
    if low is not None:
        skipped = select(func.count()).where(value < low).scalar_subquery()
    ordered = select(func.array_agg(aggregate_order_by(value, value))).scalar_subquery()
    if width > 1:
        return ordered[skipped + k + 1 : skipped + k + width]
    return ordered[skipped + k + 1]


def insert_ignoring_duplicates(dialect: Dialect, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING (add `.returning(...)` to learn which rows went in)."""
    match dialect:
        case Dialect.POSTGRESQL:
            return postgresql.insert(table).on_conflict_do_nothing()
        case Dialect.SQLITE:
            return sqlite.insert(table).on_conflict_do_nothing()
        case _:
            assert_never(dialect)


def exact_quantile(
    dialect: Dialect,
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
    match dialect:
        case Dialect.POSTGRESQL:
            rank: ColumnElement[Any] = func.floor(scaled)
            if upper:
                rank = func.least(rank + 1, count - 1)
            fraction = select((rank + 0.5) / func.nullif(count, 0)).scalar_subquery()
            return func.percentile_disc(fraction).within_group(source.c[column])
        case Dialect.SQLITE:
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
        case _:
            assert_never(dialect)


# Text SQL: the writer's folds are text statements run on raw driver connections.


def period_sql(dialect: Dialect, ts: str, grain_seconds: int) -> str:
    """Start of the period of `grain_seconds` holding the stored timestamp `ts`, in epoch
    seconds (ts is timestamptz / epoch micros)."""
    match dialect:
        case Dialect.POSTGRESQL:  # date_part is float8 (extract is numeric, much slower)
            return f"(floor(date_part('epoch', {ts}))::bigint / {grain_seconds} * {grain_seconds})"
        case Dialect.SQLITE:
            return f"(({ts} / {grain_seconds * 1_000_000}) * {grain_seconds})"
        case _:
            assert_never(dialect)


def day_of_sql(dialect: Dialect, ts: str) -> str:
    """The UTC day (days since the epoch) of the stored timestamp `ts`."""
    day = 86_400
    match dialect:
        case Dialect.POSTGRESQL:
            return f"floor(date_part('epoch', {ts}) / {day})::int"
        case Dialect.SQLITE:
            return f"({ts} / {day * 1_000_000})"  # epoch microseconds
        case _:
            assert_never(dialect)


def tag_join_sql(dialect: Dialect, tags: str) -> tuple[str, str]:
    """(FROM items, expression) that explode the tag list `tags` into one row per tag, and a
    row with the tag '' for an empty list."""
    match dialect:
        case Dialect.POSTGRESQL:
            return (
                f"CROSS JOIN LATERAL unnest(CASE WHEN cardinality({tags}) = 0 "
                f"THEN ARRAY['']::text[] ELSE {tags} END) AS tag_each(tag)",
                "tag_each.tag",
            )
        case Dialect.SQLITE:
            return (
                f"JOIN json_each(CASE WHEN {tags} = '[]' THEN '[\"\"]' ELSE {tags} END) "
                "AS tag_each",
                "tag_each.value",
            )
        case _:
            assert_never(dialect)


def json_object_sql(dialect: Dialect, pairs: str) -> str:
    """A JSON object of `pairs` ('key', value, ...); absent values are JSON nulls."""
    match dialect:
        case Dialect.POSTGRESQL:
            return f"jsonb_build_object({pairs})"
        case Dialect.SQLITE:
            return f"json_object({pairs})"
        case _:
            assert_never(dialect)


def greatest_least_sql(dialect: Dialect) -> tuple[str, str]:
    """Templates of the larger and the smaller of {a} and {b}, ignoring NULLs (PostgreSQL's
    GREATEST/LEAST; SQLite's max()/min() are NULL when an argument is)."""
    match dialect:
        case Dialect.POSTGRESQL:
            return "GREATEST({a}, {b})", "LEAST({a}, {b})"
        case Dialect.SQLITE:
            return (
                "max(COALESCE({a}, {b}), COALESCE({b}, {a}))",
                "min(COALESCE({a}, {b}), COALESCE({b}, {a}))",
            )
        case _:
            assert_never(dialect)


def limited_delete_sql(dialect: Dialect, table: str, where: str) -> str:
    """Delete at most :n rows of `table` matching `where` (neither database has DELETE ...
    LIMIT: pick the rows by their physical id)."""
    match dialect:
        case Dialect.POSTGRESQL:
            return (
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {table} WHERE {where} LIMIT :n))"
            )
        case Dialect.SQLITE:
            return (
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE {where} LIMIT :n)"
            )
        case _:
            assert_never(dialect)
