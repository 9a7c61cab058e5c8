"""Rollups, declared as data: a name and the event dimensions each keeps.

Every rollup exists at two grains, hour (`_h`) and UTC day (`_d`); its period column holds the
period's start in epoch seconds. Each row holds counts, token and cost sums, latency and TTFT
sums and counts, the latency maximum and byte sums. Absent text dimensions are stored as ''
(keys cannot be NULL).

Histogram rollups keep log-bucketed latency and TTFT counts (see `tallyql.sketch`), so
percentiles merge across rows. A histogram row holds one bucket, so these tables only pay off
with few dimensions: none at all (the overview and plain time series), kind and status, and
provider and model.

The writer folds each batch's new events in with the statements below (the database does the
aggregation); `rebuild_statements` recomputes a time range from raw events.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, SmallInteger, Table, Text

from tallyql.storage.tables import EVENT_TOKEN_COLUMNS, metadata
from tallyql.storage.upsert import AggregateUpsert

HOUR = 3600
DAY = 86400
GRAINS: dict[str, int] = {"h": HOUR, "d": DAY}

# Measure columns of every rollup row: (column, SQL over an event row, merge).
SUM_MEASURES: tuple[tuple[str, str], ...] = (
    ("requests", "1"),
    ("errors", "CASE WHEN src.status = 'error' THEN 1 ELSE 0 END"),
    ("blocked", "CASE WHEN src.status = 'blocked' THEN 1 ELSE 0 END"),
    *((c, f"src.{c}") for c in EVENT_TOKEN_COLUMNS),
    ("cost_nanousd", "src.cost_nanousd"),
    ("latency_sum", "COALESCE(src.latency_ms, 0)"),
    ("latency_count", "CASE WHEN src.latency_ms IS NULL THEN 0 ELSE 1 END"),
    ("ttft_sum", "COALESCE(src.ttft_ms, 0)"),
    ("ttft_count", "CASE WHEN src.ttft_ms IS NULL THEN 0 ELSE 1 END"),
    ("request_bytes", "COALESCE(src.request_bytes, 0)"),
    ("response_bytes", "COALESCE(src.response_bytes, 0)"),
)
MAX_MEASURES: tuple[tuple[str, str], ...] = (("latency_max", "src.latency_ms"),)
FLOAT_MEASURES = frozenset({"latency_sum", "ttft_sum", "latency_max"})
HISTOGRAMS = (("latency_n", "latency_bucket"), ("ttft_n", "ttft_bucket"))

TAG = "tag"  # the exploded tags dimension: one row per tag ('' for untagged events)
BOOL_DIMS = frozenset({"is_byok"})


@dataclass(frozen=True)
class Rollup:
    name: str
    dims: tuple[str, ...]
    grains: tuple[str, ...] = ("h", "d")
    histogram: bool = False

    def table(self, grain: str) -> str:
        prefix = "hist" if self.histogram else "rollup"
        return f"{prefix}_{self.name}_{grain}"


# Smallest first: the planner takes the first rollup that covers a question. Each keeps what a
# view needs and no more (every extra key multiplies rows): e.g. tool-usage questions about
# agent instances or users read `agents` or `users` with a kind filter, not `tools`.
ROLLUPS: tuple[Rollup, ...] = (
    Rollup("totals", ("provider", "kind", "status", "is_byok", "billing_mode")),
    # Who was active, without what they called: distinct users, agents and agent instances and
    # the per-user and per-instance views read a few hundred rows a day here instead of the
    # thousands of `users` and `agents`.
    Rollup("user_kinds", ("user_id", "kind", "status")),
    Rollup("agent_kinds", ("agent_id", "agent_instance_id", "kind", "status")),
    Rollup(
        "models",
        (
            "provider",
            "model",
            "kind",
            "status",
            "error_type",
            "request_type",
            "cost_source",
            "is_byok",
            "billing_mode",
        ),
    ),
    Rollup(
        "tools", ("tool", "mcp_server", "kind", "status", "error_type", "policy_id", "policy_name")
    ),
    Rollup("tags", (TAG, "provider", "model", "kind", "status")),
    Rollup("gateways", ("gateway", "protocol", "caller", "api_key_id", "kind", "status")),
    Rollup("users", ("user_id", "provider", "model", "kind", "status")),
    Rollup("agents", ("agent_id", "agent_instance_id", "node", "user_id", "kind", "status")),
)

# Smallest first as well.
HISTOGRAM_ROLLUPS: tuple[Rollup, ...] = (
    Rollup("all", (), histogram=True),
    Rollup("kinds", ("kind", "status"), histogram=True),
    Rollup("models", ("provider", "model"), histogram=True),
)


def _dim_column(name: str) -> Column:
    if name in BOOL_DIMS:
        return Column(name, Boolean, primary_key=True)
    return Column(name, Text, primary_key=True)


def _table(rollup: Rollup, grain: str) -> Table:
    if rollup.histogram:
        measures = [
            Column("bucket", SmallInteger, primary_key=True),
            *(Column(c, BigInteger, nullable=False) for c, _ in HISTOGRAMS),
        ]
    else:
        measures = [
            *(
                Column(c, Float if c in FLOAT_MEASURES else BigInteger, nullable=False)
                for c, _ in SUM_MEASURES
            ),
            *(Column(c, Float) for c, _ in MAX_MEASURES),
        ]
    return Table(
        rollup.table(grain),
        metadata,
        Column("workspace_id", Integer, primary_key=True),
        Column("period", BigInteger, primary_key=True),
        *(_dim_column(d) for d in rollup.dims),
        *measures,
    )


ROLLUP_TABLES: dict[str, Table] = {
    r.table(g): _table(r, g) for r in (*ROLLUPS, *HISTOGRAM_ROLLUPS) for g in r.grains
}


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


def _keys(rollup: Rollup, dialect: str, grain: str) -> tuple[tuple[tuple[str, str], ...], str]:
    joins = ""
    keys: list[tuple[str, str]] = [
        ("workspace_id", "src.workspace_id"),
        ("period", period_expr(dialect, GRAINS[grain])),
    ]
    for dim in rollup.dims:
        if dim == TAG:
            joins, expr = _tag_join(dialect)
            keys.append((TAG, expr))
        elif dim in BOOL_DIMS:
            keys.append((dim, f"src.{dim}"))
        else:
            keys.append((dim, f"COALESCE(src.{dim}, '')"))
    return tuple(keys), joins


def _histogram_source(source: str, rollup: Rollup) -> str:
    """The latency and TTFT buckets of `source` as rows (workspace_id, ts, dims..., hb, hl, ht)."""
    columns = ", ".join(f"src.{c}" for c in ("workspace_id", "ts", *rollup.dims))
    parts = [
        f"SELECT {columns}, src.{bucket} AS hb, {int(column == 'latency_n')} AS hl, "
        f"{int(column == 'ttft_n')} AS ht FROM {source} AS src WHERE src.{bucket} IS NOT NULL"
        for column, bucket in HISTOGRAMS
    ]
    return "(" + " UNION ALL ".join(parts) + ")"


def rollup_statements(dialect: str, source: str, grains: tuple[str, ...] = ("h", "d")) -> list[str]:
    """Aggregating upserts folding the events of `source` into every rollup and histogram
    (at the given grains)."""
    statements = []
    for rollup in ROLLUPS:
        for grain in rollup.grains:
            if grain not in grains:
                continue
            keys, joins = _keys(rollup, dialect, grain)
            statements.append(
                AggregateUpsert(
                    table=rollup.table(grain),
                    keys=keys,
                    sums=SUM_MEASURES,
                    maxes=MAX_MEASURES,
                    joins=joins,
                ).sql(dialect, source)
            )
    for rollup in HISTOGRAM_ROLLUPS:
        histogram_source = _histogram_source(source, rollup)
        for grain in rollup.grains:
            if grain not in grains:
                continue
            keys, joins = _keys(rollup, dialect, grain)
            statements.append(
                AggregateUpsert(
                    table=rollup.table(grain),
                    keys=(*keys, ("bucket", "src.hb")),
                    sums=(("latency_n", "src.hl"), ("ttft_n", "src.ht")),
                    joins=joins,
                ).sql(dialect, histogram_source)
            )
    return statements


def day_from_hour_statements(dialect: str, where: str) -> list[str]:
    """Upserts folding hour rows (those matching `where`, SQL over `src`) into day rows, for
    every rollup kept at both grains: sums of sums, maxima of maxima."""
    statements = []
    for rollup in (*ROLLUPS, *HISTOGRAM_ROLLUPS):
        if not {"h", "d"} <= set(rollup.grains):
            continue
        keys = (
            ("workspace_id", "src.workspace_id"),
            ("period", f"(src.period / {DAY} * {DAY})"),
            *((d, f"src.{d}") for d in rollup.dims),
        )
        if rollup.histogram:
            keys = (*keys, ("bucket", "src.bucket"))
            sums = tuple((c, f"src.{c}") for c, _ in HISTOGRAMS)
            maxes: tuple[tuple[str, str], ...] = ()
        else:
            sums = tuple((c, f"src.{c}") for c, _ in SUM_MEASURES)
            maxes = tuple((c, f"src.{c}") for c, _ in MAX_MEASURES)
        statements.append(
            AggregateUpsert(
                table=rollup.table("d"), keys=keys, sums=sums, maxes=maxes, where=where
            ).sql(dialect, rollup.table("h"))
        )
    return statements
