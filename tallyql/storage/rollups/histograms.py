"""Folds histogram buckets into the histogram rollup tables.

The sources: on SQLite the buckets of a batch's events (the writer) or of a day of raw events
(rebuilds), a row per event or per distinct key and buckets (`fold_bucket_rows`); on
PostgreSQL the histogram fold group's hour aggregate, re-aggregated by one statement for every
histogram table at every grain with its blobs built in SQL (`targets_select`, rebuilds), or the
staged delta blobs (compaction, `fold_delta_blobs`). Each table's new entries are merged with
the blobs already stored for its keys (`tallyql.histogram`) and written back. The callers hold
the only writer of these tables (SQLite's single writer connection; PostgreSQL's compaction
lock, which rebuilds take too), so the read, merge and write cannot lose a concurrent update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import text

from tallyql import histogram
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.declarations import (
    BOOL_DIMS,
    FOLD_GROUPS,
    HISTOGRAM_VALUES,
    HISTOGRAMS,
    INT_DIMS,
    FoldGroup,
    Rollup,
    grain_period_sql,
    grain_start,
)

GROUP: FoldGroup = next(g for g in FOLD_GROUPS if g.histogram)
COUNTS = tuple(c for c, _ in HISTOGRAMS)  # ("latency_n", "ttft_n"), as HISTOGRAM_VALUES


class RowRunner(Protocol):
    """A connection inside the caller's transaction, with named (:name) parameters."""

    dialect: Dialect

    async def fetch(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> list[Sequence[Any]]: ...

    async def execute(self, sql: str) -> None: ...

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]], suffix: str = ""
    ) -> None:
        """INSERT INTO table (columns) VALUES (...) suffix, once per row (values in the order
        of `columns`)."""
        ...


@dataclass(frozen=True)
class Target:
    index: int
    rollup: Rollup
    grain: str

    @property
    def table(self) -> str:
        return self.rollup.table(self.grain)

    def period_sql(self) -> str:
        return grain_period_sql(self.grain, "src.period")


TARGETS: tuple[Target, ...] = tuple(
    Target(i, r, g) for i, (r, g) in enumerate((r, g) for r in GROUP.members for g in r.grains)
)


def _absent(dim: str) -> str:
    """SQL: a placeholder of the dimension's type for a table that does not keep it (one
    UNION ALL column cannot mix text with booleans or integers on PostgreSQL)."""
    if dim in BOOL_DIMS:
        return "FALSE"
    if dim in INT_DIMS:
        return str(INT_DIMS[dim])
    return "''"


def _sql_type(dim: str) -> str:
    """PostgreSQL: the array element type of a dimension's column."""
    if dim in BOOL_DIMS:
        return "bool"
    return "int4" if dim in INT_DIMS else "text"


def targets_select(source: str, grains: tuple[str, ...] = ("h", "d", "w")) -> str:
    """PostgreSQL, over hour aggregate rows in `source` (workspace_id, period, the group's
    dimensions, bucket, latency_n, ttft_n): per target table (t) and key its blobs, built by
    the database (`tallyql.histogram`: big-endian int2send and int8send), ordered by t and key:
    rows (t, workspace_id, period, the group's dimensions, latency blob, ttft blob). Dimensions
    a table does not keep read a placeholder (`_absent`). SQLite folds its events' buckets in
    Python instead (`fold_bucket_rows`)."""
    dims = GROUP.dims
    parts = []
    for t in TARGETS:
        if t.grain not in grains or not t.rollup.kept_on(Dialect.POSTGRESQL):
            continue  # (a rollup kept on another database only: its table stays empty here)
        kept = [f"src.{d}" if d in t.rollup.dims else _absent(d) for d in dims]
        parts.append(
            f"SELECT {t.index} AS t, src.workspace_id AS workspace_id, {t.period_sql()} AS period, "
            + "".join(f"{e} AS {d}, " for e, d in zip(kept, dims, strict=True))
            + f"src.bucket AS bucket, {', '.join(f'src.{c} AS {c}' for c in COUNTS)} "
            f"FROM {source} AS src"
        )
    keys = ", ".join(("t", "workspace_id", "period", *dims))
    sums = ", ".join(f"SUM(u.{c}) AS {c}" for c in COUNTS)
    per_bucket = f"SELECT {keys}, bucket, {sums} FROM ({' UNION ALL '.join(parts)}) AS u "
    return (
        f"SELECT {keys}, {_blob_columns(COUNTS)} "
        f"FROM ({per_bucket} GROUP BY {keys}, bucket) AS b "
        f"GROUP BY {keys} ORDER BY {keys}"
    )


BUCKET_ARRAYS = tuple(
    f"array_agg(src.{bucket}) FILTER (WHERE src.{bucket} IS NOT NULL) AS {name}"
    for (_, bucket), name in zip(HISTOGRAMS, HISTOGRAM_VALUES, strict=True)
)
"""Aggregate columns over events `src`: the buckets of each counted value, in an array named
like its blob (NULL when no event has one), for `blob_columns`."""
ANY_BUCKET = " OR ".join(f"src.{bucket} IS NOT NULL" for _, bucket in HISTOGRAMS)


def blob_columns(arrays: str) -> str:
    """PostgreSQL: each counted value's blob (big-endian int2send and int8send, as
    `tallyql.histogram` encodes) from its bucket array in the row `arrays` (`BUCKET_ARRAYS`),
    named like it; NULL for an empty array. A key's few buckets are counted and sorted on
    their own."""
    return ", ".join(
        "(SELECT string_agg(int2send(u.b::int2), ''::bytea ORDER BY u.b) || "
        "string_agg(int8send(u.n), ''::bytea ORDER BY u.b) "
        f"FROM (SELECT v.b, count(*) AS n FROM unnest({arrays}.{name}) AS v(b) GROUP BY v.b) "
        f"AS u) AS {name}"
        for name in HISTOGRAM_VALUES
    )


def blob_select(source: str, keys: Sequence[tuple[str, str]], joins: str = "") -> str:
    """PostgreSQL, over events in `source` (named `src`; `joins`: FROM items after it): one
    row per hour and key, the key being `keys` ((column, SQL over `src`): workspace_id,
    period, the group's dimensions), with its blobs (`blob_columns`); keys whose events have
    neither bucket are left out.

    The events' buckets are gathered per key by one hashed aggregate into an array per
    counted value (`BUCKET_ARRAYS`). Counting the buckets per key and bucket first (two scans
    of the batch, one per value, and an aggregate by seventeen dimensions and the bucket before
    the one by key) took more than half of the batch's staging statement at 0.04 days of
    timestamps."""
    names = ", ".join(c for c, _ in keys)
    grouped = ", ".join(f"{e} AS {c}" for c, e in keys)
    group_by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    return (
        f"SELECT {names}, {blob_columns('a')} FROM (SELECT {grouped}, {', '.join(BUCKET_ARRAYS)} "
        f"FROM {source} AS src {joins} WHERE {ANY_BUCKET} GROUP BY {group_by}) AS a"
    )


DELTA_COLUMNS = ("workspace_id", "period", *GROUP.dims, *HISTOGRAM_VALUES)
"""The histogram delta table's columns: a blob per value for each batch, hour and key."""


def _blob_columns(names: Sequence[str]) -> str:
    """PostgreSQL, over per-bucket rows `b` (bucket and the COUNTS): each counted value's blob
    of the group's rows (big-endian int2send and int8send, as `tallyql.histogram` encodes),
    named as `names`."""
    return ", ".join(
        f"string_agg(int2send(b.bucket::int2), ''::bytea ORDER BY b.bucket) "
        f"FILTER (WHERE b.{c} > 0) || string_agg(int8send(b.{c}::int8), ''::bytea "
        f"ORDER BY b.bucket) FILTER (WHERE b.{c} > 0) AS {name}"
        for c, name in zip(COUNTS, names, strict=True)
    )


Entries = tuple[npt.NDArray[np.int64], npt.NDArray[np.integer], npt.NDArray[np.integer]]
"""A counted value's histogram entries: (index of its hour key, bucket, count), in any order
and with repeats."""


async def fold_delta_blobs(run: RowRunner, rows: Sequence[Sequence[Any]]) -> int:
    """Merge staged delta rows (workspace_id, hour, the group's dimensions, latency blob,
    ttft blob) into every histogram table at every grain; the number of rows written."""
    n_dims = len(GROUP.dims)
    # every entry of every row's blobs, once: (row, bucket, count) per counted value
    entries = [
        histogram.decode_many([_bytes(r[2 + n_dims + i]) for r in rows])
        for i in range(len(HISTOGRAM_VALUES))
    ]
    return await _fold_entries(run, rows, entries, TARGETS)


_NO_BUCKET = 1 << 20
"""Stands for a missing bucket in an int32 array (buckets are int16)."""


async def fold_bucket_rows(
    run: RowRunner,
    rows: Sequence[Sequence[Any]],
    fresh: bool = False,
    grains: tuple[str, ...] = ("h", "d", "w"),
) -> int:
    """SQLite: merge rows (workspace_id, hour, the group's dimensions, latency bucket, ttft
    bucket, events), each counting `events` events of that hour and key in those buckets (a
    bucket may be None), into every histogram table kept here at `grains`; the number of rows
    written. `fresh`: the tables hold nothing for these keys (a rebuild deleted them).

    The rows are a batch's events as they are (`folds.bucket_rows_select`): grouping them in
    Python by key, once, and deriving every table's keys from those few hour keys is cheaper
    than the database aggregating each of the twelve tables' rows by key and bucket (bench/
    sqlite_writer_steps.py --days 30: 84 us of the 107 us per event the step took)."""
    if not rows:
        return 0
    width = 2 + len(GROUP.dims)
    index: dict[tuple[Any, ...], int] = {}
    owners = np.fromiter(
        (index.setdefault(tuple(r[:width]), len(index)) for r in rows), np.int64, len(rows)
    )
    counts = np.fromiter((r[width + len(COUNTS)] for r in rows), np.uint64, len(rows))
    entries: list[Entries] = []
    for i in range(len(COUNTS)):
        buckets = np.fromiter(
            (_NO_BUCKET if r[width + i] is None else r[width + i] for r in rows),
            np.int32,
            len(rows),
        )
        kept = buckets != _NO_BUCKET
        entries.append((owners[kept], buckets[kept], counts[kept]))
    targets = [t for t in TARGETS if t.grain in grains and t.rollup.kept_on(run.dialect)]
    return await _fold_entries(run, list(index), entries, targets, fresh)


async def _fold_entries(
    run: RowRunner,
    keys: Sequence[Sequence[Any]],
    entries: Sequence[Entries],
    targets: Sequence[Target],
    fresh: bool = False,
) -> int:
    """Merge histogram entries (one `Entries` per counted value, owned by `keys`: (workspace_id,
    hour, the group's dimensions...)) into the blobs of `targets`; the number of rows written.
    `fresh`: the tables hold nothing for these keys, skip reading them."""
    written = 0
    hours = {k[1] for k in keys}
    for target in targets:
        dims = _dims_getter([2 + GROUP.dims.index(d) for d in target.rollup.dims])
        starts = {h: grain_start(target.grain, h) for h in hours}
        index: dict[tuple[Any, ...], int] = {}
        key_of_row = np.fromiter(
            (index.setdefault((k[0], starts[k[1]], *dims(k)), len(index)) for k in keys),
            np.int64,
            len(keys),
        )
        stored = (
            []
            if fresh
            else [
                (index[key], blobs)
                for key, blobs in (await _stored(run, target, index)).items()
                if key in index
            ]
        )
        key_of_stored = np.fromiter((k for k, _ in stored), np.int64, len(stored))
        merged = []
        for i, (owners, buckets, counts) in enumerate(entries):
            of_keys = key_of_row[owners]
            if stored:
                s_owners, s_buckets, s_counts = histogram.decode_many([b[i] for _, b in stored])
                of_keys = np.concatenate([of_keys, key_of_stored[s_owners]])
                buckets = np.concatenate([buckets, s_buckets])
                counts = np.concatenate([counts, s_counts])
            merged.append(histogram.combine_entries(of_keys, buckets, counts, len(index)))
        new = {key: [m[k] for m in merged] for key, k in index.items()}
        await _write(run, target, new)
        written += len(new)
    return written


def _dims_getter(positions: Sequence[int]) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """The values at `positions` of a row, as a sequence (itemgetter's C loop: the keys of
    every table are built from each hour key, seventeen dimensions for `base`)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    if positions:
        return itemgetter(slice(positions[0], positions[0] + 1))
    return lambda _row: ()


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


async def fold_histogram_rows(
    run: RowRunner, rows: Sequence[Sequence[Any]], fresh: bool = False
) -> int:
    """PostgreSQL: merge `targets_select` rows (t, workspace_id, period, the group's
    dimensions, latency blob, ttft blob) into the histogram tables; the number of rows written.
    `fresh`: the tables hold nothing for these keys (a rebuild deleted them), skip reading."""
    n_dims = len(GROUP.dims)
    written = 0
    for t_index, table_rows in groupby(rows, key=lambda r: r[0]):
        target = TARGETS[t_index]
        dim_at = [3 + GROUP.dims.index(d) for d in target.rollup.dims]
        new: dict[tuple[Any, ...], list[bytes | None]] = {
            (r[1], r[2], *(r[i] for i in dim_at)): [_bytes(v) for v in r[3 + n_dims :]]
            for r in table_rows
        }
        if not fresh:
            for key, stored in (await _stored(run, target, new)).items():
                if key in new:
                    new[key] = [
                        histogram.merge_blobs((a, b)) for a, b in zip(stored, new[key], strict=True)
                    ]
        await _write(run, target, new)
        written += len(new)
    return written


async def _stored(
    run: RowRunner, target: Target, keys: dict[tuple[Any, ...], Any]
) -> dict[tuple[Any, ...], list[bytes | None]]:
    """The stored blobs of the table's rows of these keys (and on PostgreSQL of other keys in
    their workspaces and periods)."""
    if not run.dialect.arrays:
        return await _stored_by_key(run, target, keys)
    out: dict[tuple[Any, ...], list[bytes | None]] = {}
    by_workspace: dict[int, list[int]] = {}
    for key in keys:
        by_workspace.setdefault(key[0], []).append(key[1])
    columns = ", ".join(("workspace_id", "period", *target.rollup.dims, *HISTOGRAM_VALUES))
    for ws, periods in by_workspace.items():
        rows = await run.fetch(
            f"SELECT {columns} FROM {target.table} "
            "WHERE workspace_id = :ws AND period >= :p0 AND period <= :p1",
            {"ws": ws, "p0": min(periods), "p1": max(periods)},
        )
        width = 2 + len(target.rollup.dims)
        for row in rows:
            out[tuple(row[:width])] = [bytes(v) if v is not None else None for v in row[width:]]
    return out


async def _stored_by_key(
    run: RowRunner, target: Target, keys: dict[tuple[Any, ...], Any]
) -> dict[tuple[Any, ...], list[bytes | None]]:
    """SQLite: the stored blobs of the table's rows of exactly these keys, looked up by primary
    key from a temporary table of the keys. Reading every row of the keys' periods instead
    read, for each batch of a live stream, the whole current week of the `base` week table
    (thousands of rows at 10M events), most of which the batch does not touch."""
    if not keys:
        return {}
    key_columns = ("workspace_id", "period", *target.rollup.dims)
    temp = f"_histogram_keys_{target.rollup.name}"
    await run.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} ({', '.join(key_columns)})")
    await run.execute(f"DELETE FROM temp.{temp}")
    await run.insert_many(f"temp.{temp}", key_columns, list(keys))
    matched = " AND ".join(f"t.{c} = k.{c}" for c in key_columns)
    columns = ", ".join(f"t.{c}" for c in (*key_columns, *HISTOGRAM_VALUES))
    # CROSS JOIN: SQLite keeps the keys outer, each a primary key lookup in the table
    rows = await run.fetch(
        f"SELECT {columns} FROM temp.{temp} AS k CROSS JOIN {target.table} AS t ON {matched}"
    )
    width = len(key_columns)
    return {
        tuple(row[:width]): [bytes(v) if v is not None else None for v in row[width:]]
        for row in rows
    }


async def _write(
    run: RowRunner, target: Target, blobs: dict[tuple[Any, ...], list[bytes | None]]
) -> None:
    if not blobs:
        return
    keys = ("workspace_id", "period", *target.rollup.dims)
    columns = (*keys, *HISTOGRAM_VALUES)
    sets = ", ".join(f"{c} = excluded.{c}" for c in HISTOGRAM_VALUES)
    conflict = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"
    ordered = sorted(blobs.items())
    if run.dialect.arrays:  # one statement: a row per array element
        types = ("int4", "int8", *(_sql_type(d) for d in target.rollup.dims), "bytea", "bytea")
        arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(columns, types, strict=True))
        values = list(zip(*((*key, *blobs) for key, blobs in ordered), strict=True))
        await run.fetch(
            f"INSERT INTO {target.table} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({arrays}) {conflict} RETURNING 1",
            {c: list(v) for c, v in zip(columns, values, strict=True)},
        )
        return
    rows = [(*key, *values) for key, values in ordered]
    await run.insert_many(target.table, columns, rows, conflict)


class SqlAlchemyRunner:
    """A RowRunner over an SQLAlchemy async connection (compaction and rebuilds)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn  # sqlalchemy.ext.asyncio.AsyncConnection
        self.dialect = Dialect.of(conn)

    async def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        return list((await self.conn.execute(text(sql), params or {})).all())

    async def execute(self, sql: str) -> None:
        await self.conn.execute(text(sql))

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]], suffix: str = ""
    ) -> None:
        if not rows:  # (SQLAlchemy would run the statement once, without values)
            return
        names = [f"v{i}" for i in range(len(columns))]
        values = ", ".join(f":{n}" for n in names)
        await self.conn.execute(
            text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) {suffix}"),
            [dict(zip(names, row, strict=True)) for row in rows],
        )


class SqliteRunner:
    """A RowRunner over the SQLite writer's raw aiosqlite connection (the batch transaction)."""

    dialect = Dialect.SQLITE

    def __init__(self, conn: Any) -> None:
        self.conn = conn  # aiosqlite.Connection

    async def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        cursor = await self.conn.execute(sql, params or {})
        return list(await cursor.fetchall())

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)

    async def insert_many(
        self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]], suffix: str = ""
    ) -> None:
        # positional parameters: sqlite3 binds a tuple about twice as fast as a dict by name
        values = ", ".join("?" * len(columns))
        await self.conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) {suffix}", rows
        )


async def weeks_from_days(run: RowRunner, w0: int, w1: int, workspace_id: int | None) -> int:
    """Recompute the histogram week rows of weeks [w0, w1) from their day rows (the caller
    deleted those week rows); the number of rows written."""
    written = 0
    for rollup in GROUP.members:
        if not {"d", "w"} <= set(rollup.grains) or not rollup.kept_on(run.dialect):
            continue
        target = Target(-1, rollup, "w")
        dims = rollup.dims
        where = "period >= :w0 AND period < :w1"
        params: dict[str, Any] = {"w0": w0, "w1": w1}
        if workspace_id is not None:
            where += " AND workspace_id = :ws"
            params["ws"] = workspace_id
        week = grain_period_sql("w", "period")
        rows = await run.fetch(
            f"SELECT workspace_id, {week}, {''.join(d + ', ' for d in dims)}"
            f"{', '.join(HISTOGRAM_VALUES)} FROM {rollup.table('d')} WHERE {where} "
            f"ORDER BY {', '.join(('1', '2', *dims))}",
            params,
        )
        width = 2 + len(dims)
        weeks = {
            key: [
                histogram.merge_blobs(bytes(r[width + i]) if r[width + i] else None for r in group)
                for i in range(len(HISTOGRAM_VALUES))
            ]
            for key, group in (
                (k, list(g)) for k, g in groupby(rows, key=lambda r: tuple(r[:width]))
            )
        }
        await _write(run, target, weeks)
        written += len(weeks)
    return written
