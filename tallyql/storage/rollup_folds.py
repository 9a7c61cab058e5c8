"""The statements that keep rollups current: one fold per fold group (`rollups.FOLD_GROUPS`).

- `rollup_statements`: aggregate a source of events and upsert every rollup at both grains now
  (rebuilds, and the SQLite writer, whose single connection never runs two batches at once).
- `staging_statements`: the PostgreSQL writer's part: each group's hour aggregate appended to
  its delta table, in one statement. Plain inserts take no row locks, so the writer's
  concurrent batches (and other replicas') never wait for each other's commit.
- `compaction_statements`: move the deltas into the rollup tables (`storage/compaction.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from tallyql.storage.fold import Fold, fold_statements
from tallyql.storage.rollups import (
    BOOL_DIMS,
    DAY,
    FOLD_GROUPS,
    HISTOGRAMS,
    HOUR,
    MAX_MEASURES,
    SUM_MEASURES,
    TAG,
    FoldGroup,
    Rollup,
)
from tallyql.storage.upsert import Aggregate, AggregateUpsert


def period_expr(dialect: str, grain_seconds: int) -> str:
    """Start of the event's period in epoch seconds (ts is timestamptz / epoch micros)."""
    if dialect == "postgresql":  # date_part is float8 (extract is numeric, much slower)
        return f"(floor(date_part('epoch', src.ts))::bigint / {grain_seconds} * {grain_seconds})"
    return f"((src.ts / {grain_seconds * 1_000_000}) * {grain_seconds})"


def _tag_join(dialect: str) -> tuple[str, str]:
    """(FROM items, expression) that explode an event's tags into one row per tag."""
    if dialect == "postgresql":
        return (
            "CROSS JOIN LATERAL unnest(CASE WHEN cardinality(src.tags) = 0 "
            "THEN ARRAY['']::text[] ELSE src.tags END) AS tag_each(tag)",
            "tag_each.tag",
        )
    return (
        "JOIN json_each(CASE WHEN src.tags = '[]' THEN '[\"\"]' ELSE src.tags END) AS tag_each",
        "tag_each.value",
    )


def _key_exprs(dims: tuple[str, ...], dialect: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """(keys, joins) of an hour aggregate of events by `dims`."""
    joins = ""
    keys: list[tuple[str, str]] = [
        ("workspace_id", "src.workspace_id"),
        ("period", period_expr(dialect, HOUR)),
    ]
    for dim in dims:
        if dim == TAG:
            joins, expr = _tag_join(dialect)
            keys.append((TAG, expr))
        elif dim in BOOL_DIMS:
            keys.append((dim, f"src.{dim}"))
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
    period = "src.period" if grain == "h" else f"(src.period / {DAY} * {DAY})"
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


def _fold(group: FoldGroup, dialect: str) -> Fold:
    keys, joins = _key_exprs(group.dims, dialect)
    targets = tuple(_member(r, g) for r in group.members for g in r.grains)
    if group.histogram:
        aggregate = Aggregate(
            keys=(*keys, ("bucket", "src.hb")),
            sums=(("latency_n", "src.hl"), ("ttft_n", "src.ht")),
            joins=joins,
        )
        return Fold(group.name, aggregate, targets, relation=_histogram_source(group.dims))
    aggregate = Aggregate(keys=keys, sums=SUM_MEASURES, maxes=MAX_MEASURES, joins=joins)
    return Fold(group.name, aggregate, targets)


_FOLDS: dict[str, tuple[tuple[FoldGroup, Fold], ...]] = {
    dialect: tuple((g, _fold(g, dialect)) for g in FOLD_GROUPS)
    for dialect in ("postgresql", "sqlite")
}


def rollup_statements(dialect: str, source: str) -> list[str]:
    """Statements folding the events of `source` into every rollup and histogram, both grains."""
    return fold_statements(tuple(f for _, f in _FOLDS[dialect]), dialect, source)


def staging_statements(dialect: str, source: str) -> list[str]:
    """The writer's rollup statements: staged in deltas on PostgreSQL, folded now on SQLite."""
    if dialect != "postgresql":
        return rollup_statements(dialect, source)
    inserts = [
        f"s{i} AS ({fold.stage_statement(source, group.delta_table)})"
        for i, (group, fold) in enumerate(_FOLDS[dialect])
    ]
    return [f"WITH {', '.join(inserts)} SELECT 1"]


def compaction_statements() -> list[str]:
    """PostgreSQL: one statement per fold group moving its delta into its rollup tables."""
    return [fold.compact_statement(group.delta_table) for group, fold in _FOLDS["postgresql"]]
