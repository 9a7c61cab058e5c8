"""The steps that keep rollups current: one fold per fold group (`rollups.FOLD_GROUPS`).

A step is an SQL statement, or for the histogram group a Python step (`HistogramStep`) that
reads the group's aggregate (on SQLite the events' buckets) and merges it into the histogram
blobs (`histograms.py`).

- `rollup_steps`: aggregate a source of events and fold it into every rollup at every grain
  now (rebuilds, and the SQLite writer, whose single connection never runs two batches at once).
- `staging_statements`: the PostgreSQL writer's part: each group's hour aggregate appended to
  its delta table, in one statement. Plain inserts take no row locks, so the writer's
  concurrent batches (and other replicas') never wait for each other's commit.
- `compaction_statements` and `compact_histograms`: move the deltas into the rollup tables
  (`storage/rollups/compaction.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tallyql.storage.dialect import Dialect, period_sql, tag_join_sql
from tallyql.storage.rollups.declarations import (
    BOOL_DIMS,
    FOLD_GROUPS,
    HISTOGRAM_VALUES,
    HISTOGRAMS,
    HOUR,
    INT_DIMS,
    MAX_MEASURES,
    SUM_MEASURES,
    TAG,
    FoldGroup,
    Rollup,
    grain_period_sql,
)
from tallyql.storage.rollups.fold import Fold
from tallyql.storage.rollups.histograms import (
    ANY_BUCKET,
    BUCKET_ARRAYS,
    DELTA_COLUMNS,
    RowRunner,
    blob_columns,
    blob_select,
    fold_bucket_rows,
    fold_delta_blobs,
    fold_histogram_rows,
    targets_select,
)
from tallyql.storage.rollups.histograms import (
    GROUP as HISTOGRAM_GROUP,
)
from tallyql.storage.rollups.upsert import Aggregate, AggregateUpsert


def _key_exprs(dims: tuple[str, ...], dialect: Dialect) -> tuple[tuple[tuple[str, str], ...], str]:
    """(keys, joins) of an hour aggregate of events by `dims`."""
    joins = ""
    keys: list[tuple[str, str]] = [
        ("workspace_id", "src.workspace_id"),
        ("period", period_sql(dialect, "src.ts", HOUR)),
    ]
    for dim in dims:
        if dim == TAG:
            joins, expr = tag_join_sql(dialect, "src.tags")
            keys.append((TAG, expr))
        elif dim in BOOL_DIMS:
            keys.append((dim, f"src.{dim}"))
        elif dim in INT_DIMS:
            keys.append((dim, f"COALESCE(src.{dim}, {INT_DIMS[dim]})"))
        else:
            keys.append((dim, f"COALESCE(src.{dim}, '')"))
    return tuple(keys), joins


def _histogram_source(dims: tuple[str, ...]) -> Callable[[str], str]:
    def relation(source: str) -> str:
        """The latency and TTFT buckets of `source` as rows (workspace_id, ts, dims..., hb,
        hl, ht)."""
        columns = ", ".join(f"src.{c}" for c in ("workspace_id", "ts", *dims))
        parts = [
            f"SELECT {columns}, src.{bucket} AS hb, {int(column == 'latency_n')} AS hl, "
            f"{int(column == 'ttft_n')} AS ht FROM {source} AS src WHERE src.{bucket} IS NOT NULL"
            for column, bucket in HISTOGRAMS
        ]
        return "(" + " UNION ALL ".join(parts) + ")"

    return relation


def _member(rollup: Rollup, grain: str) -> AggregateUpsert:
    """`rollup` at `grain`, fed from its group's hour aggregate."""
    period = grain_period_sql(grain, "src.period")
    keys = (
        ("workspace_id", "src.workspace_id"),
        ("period", period),
        *((d, f"src.{d}") for d in rollup.dims),
    )
    if rollup.histogram:
        return AggregateUpsert(
            table=rollup.table(grain),
            keys=(*keys, ("bucket", "src.bucket")),
            sums=tuple((c, f"src.{c}") for c, _ in HISTOGRAMS),
        )
    return AggregateUpsert(
        table=rollup.table(grain),
        keys=keys,
        sums=tuple((c, f"src.{c}") for c, _ in SUM_MEASURES),
        maxes=tuple((c, f"src.{c}") for c, _ in MAX_MEASURES),
    )


ALL_GRAINS = ("h", "d", "w")


def _fold(group: FoldGroup, dialect: Dialect, grains: tuple[str, ...] = ALL_GRAINS) -> Fold:
    keys, joins = _key_exprs(group.dims, dialect)
    if group.histogram:  # its tables are merged in Python (`histograms.py`)
        aggregate = Aggregate(
            keys=(*keys, ("bucket", "src.hb")),
            sums=(("latency_n", "src.hl"), ("ttft_n", "src.ht")),
            joins=joins,
        )
        return Fold(group.name, aggregate, (), relation=_histogram_source(group.dims))
    aggregate = Aggregate(keys=keys, sums=SUM_MEASURES, maxes=MAX_MEASURES, joins=joins)
    targets = tuple(_member(r, g) for r in group.members for g in r.grains if g in grains)
    return Fold(group.name, aggregate, targets)


_FOLDS: dict[Dialect, tuple[tuple[FoldGroup, Fold], ...]] = {
    dialect: tuple((g, _fold(g, dialect)) for g in FOLD_GROUPS) for dialect in Dialect
}

HistogramStep = Callable[[RowRunner, dict[str, Any]], Awaitable[None]]
Step = str | HistogramStep
"""A writer step over the batch's staged events (`batch.BATCH_TABLE`): an aggregating
statement, or (SQLite only) a Python step given the batch's row runner and parameters."""


def histogram_step(
    dialect: Dialect, source: str, fresh: bool = False, grains: tuple[str, ...] = ALL_GRAINS
) -> HistogramStep:
    """Aggregate `source` by the histogram group and merge it into every histogram table of
    `grains` (`fresh`: they hold nothing for its keys yet)."""
    if not dialect.arrays:  # SQLite: the events' buckets, grouped in Python
        rows_query = bucket_rows_select(source, grouped=fresh)

        async def sqlite_step(run: RowRunner, params: dict[str, Any]) -> None:
            await fold_bucket_rows(run, await run.fetch(rows_query, params), fresh, grains)

        return sqlite_step
    fold = next(f for g, f in _FOLDS[dialect] if g.histogram)
    query = f"WITH agg AS ({fold.select(source)}) {targets_select('agg', grains)}"

    async def step(run: RowRunner, params: dict[str, Any]) -> None:
        await fold_histogram_rows(run, await run.fetch(query, params), fresh)

    return step


def bucket_rows_select(source: str, grouped: bool = False) -> str:
    """SQLite: a row (workspace_id, hour, the histogram group's dimensions, latency bucket,
    ttft bucket, events) per event of `source` with a bucket (`fold_bucket_rows`), its events
    being 1; `grouped`: per distinct such row instead, with its number of events (a rebuild
    reads a whole day of events)."""
    keys, joins = _key_exprs(HISTOGRAM_GROUP.dims, Dialect.SQLITE)
    columns = [e for _, e in keys] + [f"src.{bucket}" for _, bucket in HISTOGRAMS]
    events = "COUNT(*)" if grouped else "1"
    query = f"SELECT {', '.join(columns)}, {events} FROM {source} AS src {joins} WHERE {ANY_BUCKET}"
    if grouped:
        query += f" GROUP BY {', '.join(str(i) for i in range(1, len(columns) + 1))}"
    return query


def rollup_steps(
    dialect: Dialect, source: str, fresh: bool = False, grains: tuple[str, ...] = ALL_GRAINS
) -> list[Step]:
    """Steps folding the events of `source` into every rollup and histogram at `grains`."""
    steps: list[Step] = []
    for group, fold in _FOLDS[dialect]:
        if group.histogram:
            steps.append(histogram_step(dialect, source, fresh, grains))
        else:
            if grains != ALL_GRAINS:
                fold = _fold(group, dialect, grains)
            steps += fold.statements(dialect, source)
    return steps


def weeks_from_days_statements(dialect: Dialect, where: str) -> list[str]:
    """Upserts of the sum rollups' week rows from their day rows matching `where` (SQL over
    `src`): a week is the sum of its days."""
    out = []
    for group in FOLD_GROUPS:
        if group.histogram:
            continue
        for rollup in group.members:
            upsert = _member(rollup, "w")
            out.append(
                AggregateUpsert(
                    table=upsert.table,
                    keys=upsert.keys,
                    sums=upsert.sums,
                    maxes=upsert.maxes,
                    where=where,
                ).sql(dialect, rollup.table("d"))
            )
    return out


def staging_statements(dialect: Dialect, source: str) -> list[Step]:
    """The writer's rollup steps: staged in deltas on PostgreSQL, folded now on SQLite.

    On PostgreSQL the histogram group is keyed like a sum group (`base`: every low-cardinality
    dimension), so one aggregate of the batch feeds both deltas: its sums, and its bucket
    arrays for the blobs (`histograms.blob_columns`). Aggregating the batch by seventeen
    dimensions is most of either insert's cost."""
    if not dialect.staged_deltas:
        return rollup_steps(dialect, source)
    shared = next(
        (g for g in FOLD_GROUPS if not g.histogram and set(g.dims) == set(HISTOGRAM_GROUP.dims)),
        None,
    )
    ctes: list[str] = []
    for i, (group, fold) in enumerate(_FOLDS[dialect]):
        if group is shared:
            select = fold.aggregate.select(source, extra=BUCKET_ARRAYS)
            ctes.insert(0, f"shared AS MATERIALIZED ({select})")
            columns = ", ".join(fold.aggregate.columns)
            ctes.append(
                f"s{i} AS (INSERT INTO {group.delta_table} ({columns}) "
                f"SELECT {columns} FROM shared)"
            )
        elif group.histogram and shared is not None:
            keys = ", ".join(("workspace_id", "period", *group.dims))
            ctes.append(
                f"s{i} AS (INSERT INTO {group.delta_table} ({', '.join(DELTA_COLUMNS)}) "
                f"SELECT {keys}, {blob_columns('a')} FROM shared AS a "
                f"WHERE {' OR '.join(f'a.{v} IS NOT NULL' for v in HISTOGRAM_VALUES)})"
            )
        elif group.histogram:  # a blob per hour and key, not a row per bucket
            ctes.append(f"s{i} AS ({_histogram_staging(source)})")
        else:
            ctes.append(f"s{i} AS ({fold.stage_statement(source, group.delta_table)})")
    return [f"WITH {', '.join(ctes)} SELECT 1"]


def _histogram_staging(source: str) -> str:
    """PostgreSQL: append the hour blobs of `source` to the histogram group's delta table."""
    keys, joins = _key_exprs(HISTOGRAM_GROUP.dims, Dialect.POSTGRESQL)
    blobs = blob_select(source, keys, joins)
    return f"INSERT INTO {HISTOGRAM_GROUP.delta_table} ({', '.join(DELTA_COLUMNS)}) {blobs}"


def whole_day_statements(dialect: Dialect, source: str) -> list[Step]:
    """The writer's rollup steps for a bulk load whose batches each hold whole UTC days
    (PostgreSQL). The hour and day rows of the sum rollups are upserted directly: batches of
    different days share none of them, so concurrent lanes never wait for each other, and the
    staging and compaction of deltas (half the cost of a load) is skipped. Histograms are
    staged as usual. Week rows are left to `recompute_weeks` once the load is in."""
    if not dialect.staged_deltas:
        return rollup_steps(dialect, source)
    steps: list[Step] = []
    for group, _ in _FOLDS[dialect]:
        if not group.histogram:
            steps += _fold(group, dialect, ("h", "d")).statements(dialect, source)
    return [*steps, _histogram_staging(source)]


def compaction_statements(where: str = "") -> list[str]:
    """PostgreSQL: one statement per sum fold group moving its delta (the rows matching
    `where`, a condition on the delta's columns) into its rollup tables."""
    return [
        fold.compact_statement(group.delta_table, where)
        for group, fold in _FOLDS[Dialect.POSTGRESQL]
        if not group.histogram
    ]


async def compact_histograms(run: RowRunner, where: str = "") -> int:
    """PostgreSQL: move the histogram delta (the rows matching `where`) into the histogram
    tables; rows moved."""
    condition = f" WHERE {where}" if where else ""
    rows = await run.fetch(
        f"DELETE FROM {HISTOGRAM_GROUP.delta_table}{condition} RETURNING {', '.join(DELTA_COLUMNS)}"
    )
    await fold_delta_blobs(run, rows)
    return len(rows)
