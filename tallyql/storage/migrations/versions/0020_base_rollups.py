"""The `base` rollups: sums and latency/TTFT histograms keyed by every low-cardinality dimension;
and `agent_modes`, agents by BYOK and billing mode.

Revision ID: 0020_base_rollups
Revises: 0013_departments
Create Date: 2026-12-06

`rollup_base_<grain>`, `histogram_base_<grain>` and `rollup_agent_modes_<grain>` are created
and filled from the raw events in one scan: the events are aggregated once into a temporary
table by hour, the base and agent keys and the latency and TTFT buckets, and every table at
every grain is summed from that table's far fewer rows. Periods whose raw events retention
purged get no rows; no question read a rollup there before (the new rollups come last and
answer only what read raw events), so no answer changes.

On PostgreSQL the `base` fold group replaces the `models` and `tools` groups (both keep a
subset of its keys): their staged delta rows are first compacted into their rollup tables and
`rollup_delta_base` replaces their delta tables (`rollup_delta_agent_modes` is new); the
histogram delta is compacted likewise (its blobs merged here) and recreated with the base keys.
Everything below is a snapshot of `tallyql.storage.rollups` at this revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0020_base_rollups"
down_revision = "0013_departments"
branch_labels = None
depends_on = None

BASE: tuple[str, ...] = (
    "provider",
    "model",
    "kind",
    "status",
    "status_code",
    "error_type",
    "request_type",
    "cost_source",
    "is_byok",
    "billing_mode",
    "gateway",
    "protocol",
    "tool",
    "mcp_server",
    "policy_id",
    "policy_name",
    "department",
)
AGENT_MODES = ("agent_id", "agent_instance_id", "kind", "status", "is_byok", "billing_mode")
SCANNED = tuple(dict.fromkeys((*BASE, *AGENT_MODES)))
"""The keys of the one aggregate of the events every new table is summed from."""
MODELS = BASE[:10]
TOTALS = ("provider", "kind", "status", "is_byok", "billing_mode")
TOOLS = ("tool", "mcp_server", "kind", "status", "error_type", "policy_id", "policy_name")
OLD_GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "models": (("models", MODELS), ("totals", TOTALS)),
    "tools": (("tools", TOOLS),),
}
"""PostgreSQL, before this revision: each sum delta table and the rollups it feeds."""
NEW_GROUP = (("models", MODELS), ("totals", TOTALS), ("tools", TOOLS))
"""PostgreSQL, at this revision: the rollups `rollup_delta_base` feeds, besides base."""
HISTOGRAMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all", ()),
    ("kinds", ("kind", "status")),
    ("models", ("provider", "model")),
)
OLD_HISTOGRAM_DIMS = ("kind", "status", "provider", "model")
NEW_HISTOGRAM_DIMS = tuple(dict.fromkeys((*OLD_HISTOGRAM_DIMS, *BASE)))
SUMS = (
    "requests",
    "errors",
    "blocked",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "latency_sum",
    "latency_count",
    "ttft_sum",
    "ttft_count",
    "request_bytes",
    "response_bytes",
)
EVENT_SUMS = (
    "count(*)",
    "sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END)",
    "sum(CASE WHEN status = 'blocked' THEN 1 ELSE 0 END)",
    "sum(input_tokens)",
    "sum(output_tokens)",
    "sum(cache_read_tokens)",
    "sum(cache_write_tokens)",
    "sum(reasoning_tokens)",
    "sum(cost_nanousd)",
    "sum(COALESCE(latency_ms, 0))",
    "count(latency_ms)",
    "sum(COALESCE(ttft_ms, 0))",
    "count(ttft_ms)",
    "sum(COALESCE(request_bytes, 0))",
    "sum(COALESCE(response_bytes, 0))",
)
"""The writer's sums of each column of SUMS over events."""
FLOATS = {"latency_sum", "ttft_sum"}
FILLFACTOR: dict[str, Any] = {"postgresql_with": {"fillfactor": 70}}
DAY = 86400
WEEK = 7 * DAY
WEEK_ORIGIN = 4 * DAY  # 1970-01-05, a Monday
GRAINS: dict[str, tuple[int, int]] = {"h": (3600, 0), "d": (DAY, 0), "w": (WEEK, WEEK_ORIGIN)}
"""Each grain's length and origin in epoch seconds."""
TEMP = "_base_backfill"
CHUNK = 5_000
ENTRY = 10  # a blob entry: a big-endian int16 bucket and, after all buckets, a uint64 count


def _type(dim: str) -> type[sa.types.TypeEngine]:
    if dim == "is_byok":
        return sa.Boolean
    return sa.Integer if dim == "status_code" else sa.Text


def _key(dim: str) -> str:
    """The key expression of an event column (absent values: '' and -1, as the writer keeps)."""
    if dim == "is_byok":
        return dim
    return f"COALESCE({dim}, -1)" if dim == "status_code" else f"COALESCE({dim}, '')"


def period_sql(epoch: str, grain: str) -> str:
    seconds, origin = GRAINS[grain]
    return f"(({epoch} - {origin}) / {seconds} * {seconds} + {origin})"


def _sum_columns() -> list[sa.Column[Any]]:
    return [
        *(sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False) for c in SUMS),
        sa.Column("latency_max", sa.Float),
    ]


def _create_sum_table(table: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        table,
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        *_sum_columns(),
        sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
        **FILLFACTOR,
    )


def _create_histogram_table(table: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        table,
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        sa.Column("latency", sa.LargeBinary),
        sa.Column("ttft", sa.LargeBinary),
        sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
    )


def _create_sum_delta(group: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        f"rollup_delta_{group}",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        *_sum_columns(),
    )


def _create_histogram_delta(dims: tuple[str, ...]) -> None:
    op.create_table(
        "rollup_delta_histograms",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        sa.Column("latency", sa.LargeBinary),
        sa.Column("ttft", sa.LargeBinary),
    )


def compact_sql(group: str, table: str, dims: tuple[str, ...], grain: str) -> str:
    """PostgreSQL: add a sum delta table's staged hour rows to one of its rollup tables."""
    period = period_sql("period", grain)
    keys = ", ".join(("workspace_id", "period", *dims))
    sums = ", ".join(f"sum({c})" for c in SUMS)
    updates = ", ".join(
        [f"{c} = {table}.{c} + excluded.{c}" for c in SUMS]
        + [f"latency_max = GREATEST({table}.latency_max, excluded.latency_max)"]
    )
    return (
        f"INSERT INTO {table} ({keys}, {', '.join(SUMS)}, latency_max) "
        f"SELECT workspace_id, {period}, {', '.join(dims)}, {sums}, max(latency_max) "
        f"FROM rollup_delta_{group} GROUP BY workspace_id, {period}, {', '.join(dims)} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    )


def _decode(blob: bytes | None) -> dict[int, int]:
    if not blob:
        return {}
    n = len(blob) // ENTRY
    buckets = np.frombuffer(blob[: 2 * n], ">i2")
    counts = np.frombuffer(blob[2 * n :], ">u8")
    return dict(zip(buckets.tolist(), counts.tolist(), strict=True))


def _encode(counts: dict[int, int]) -> bytes | None:
    pairs = sorted((b, c) for b, c in counts.items() if c > 0)
    if not pairs:
        return None
    return (
        np.asarray([b for b, _ in pairs], ">i2").tobytes()
        + np.asarray([c for _, c in pairs], ">u8").tobytes()
    )


def _merge(blobs: Iterable[bytes | None]) -> bytes | None:
    total: dict[int, int] = {}
    for blob in blobs:
        for bucket, count in _decode(blob).items():
            total[bucket] = total.get(bucket, 0) + count
    return _encode(total)


def _compact_histogram_delta(bind: sa.Connection, delta_dims: tuple[str, ...]) -> None:
    """PostgreSQL: merge the staged histogram delta rows (keyed by `delta_dims`) into the
    histogram tables of `HISTOGRAMS` at every grain, then empty the delta."""
    rows = bind.execute(
        sa.text(
            f"SELECT workspace_id, period, {', '.join(delta_dims)}, latency, ttft "
            "FROM rollup_delta_histograms"
        )
    ).all()
    for name, dims in HISTOGRAMS:
        at = [2 + delta_dims.index(d) for d in dims]
        for grain in GRAINS:
            seconds, origin = GRAINS[grain]
            merged: dict[tuple[Any, ...], list[list[bytes | None]]] = {}
            for r in rows:
                period = (r[1] - origin) // seconds * seconds + origin
                key = (r[0], period, *(r[i] for i in at))
                blobs = merged.setdefault(key, [[], []])
                blobs[0].append(r[-2])
                blobs[1].append(r[-1])
            table = f"histogram_{name}_{grain}"
            keys = ("workspace_id", "period", *dims)
            match = " AND ".join(f"{k} = :{k}" for k in keys)
            for key, (latency, ttft) in sorted(merged.items()):
                params = dict(zip(keys, key, strict=True))
                stored = bind.execute(
                    sa.text(f"SELECT latency, ttft FROM {table} WHERE {match}"), params
                ).first()
                if stored is not None:
                    latency.append(stored[0])
                    ttft.append(stored[1])
                bind.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(keys)}, latency, ttft) "
                        f"VALUES ({', '.join(':' + k for k in keys)}, :latency, :ttft) "
                        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET latency = "
                        "excluded.latency, ttft = excluded.ttft"
                    ),
                    {**params, "latency": _merge(latency), "ttft": _merge(ttft)},
                )
    bind.execute(sa.text("DELETE FROM rollup_delta_histograms"))


def backfill_statements(dialect: str) -> list[str]:
    """The one scan of the events: per workspace, hour, base key and (latency, TTFT) bucket
    pair, the writer's sums, the latency maximum and the count, into a temporary table."""
    epoch = "floor(date_part('epoch', ts))::bigint" if dialect == "postgresql" else "(ts / 1000000)"
    hour = period_sql(epoch, "h")
    keys = ", ".join(f"{_key(d)} AS {d}" for d in SCANNED)
    sums = ", ".join(f"{e} AS {c}" for e, c in zip(EVENT_SUMS, SUMS, strict=True))
    group = ", ".join(("workspace_id", hour, *(_key(d) for d in SCANNED)))
    return [
        f"DROP TABLE IF EXISTS {TEMP}",
        f"CREATE TEMP TABLE {TEMP} AS SELECT workspace_id, {hour} AS period, {keys}, "
        f"latency_bucket AS lb, ttft_bucket AS tb, {sums}, max(latency_ms) AS latency_max, "
        f"count(*) AS n FROM events GROUP BY {group}, latency_bucket, ttft_bucket",
    ]


def sums_sql(name: str, dims: tuple[str, ...], grain: str) -> str:
    """Fill `rollup_<name>_<grain>` from the temporary table."""
    period = period_sql("period", grain)
    keys = ", ".join(("workspace_id", "period", *dims))
    return (
        f"INSERT INTO rollup_{name}_{grain} ({keys}, {', '.join(SUMS)}, latency_max) "
        f"SELECT workspace_id, {period}, {', '.join(dims)}, "
        f"{', '.join(f'sum({c})' for c in SUMS)}, max(latency_max) FROM {TEMP} "
        f"GROUP BY workspace_id, {period}, {', '.join(dims)}"
    )


def buckets_sql(grain: str) -> str:
    """Per key of `histogram_base_<grain>` and bucket, the latency and TTFT counts."""
    period = period_sql("period", grain)
    keys = ", ".join(("workspace_id", "period", *BASE))
    per_value = " UNION ALL ".join(
        f"SELECT workspace_id, {period} AS period, {', '.join(BASE)}, {column} AS bucket, "
        f"{'n' if value == 'latency' else '0'} AS latency_n, "
        f"{'n' if value == 'ttft' else '0'} AS ttft_n FROM {TEMP} WHERE {column} IS NOT NULL"
        for value, column in (("latency", "lb"), ("ttft", "tb"))
    )
    return (
        f"SELECT {keys}, bucket, sum(latency_n) AS latency_n, sum(ttft_n) AS ttft_n "
        f"FROM ({per_value}) AS v GROUP BY {keys}, bucket"
    )


def histogram_sql_postgresql(grain: str) -> str:
    """PostgreSQL: fill `histogram_base_<grain>`, the blobs built by the database (big-endian
    int2send and int8send, the encoding of `tallyql.histogram`)."""
    keys = ", ".join(("workspace_id", "period", *BASE))
    blobs = ", ".join(
        f"string_agg(int2send(b.bucket::int2), ''::bytea ORDER BY b.bucket) "
        f"FILTER (WHERE b.{c} > 0) || string_agg(int8send(b.{c}::int8), ''::bytea "
        f"ORDER BY b.bucket) FILTER (WHERE b.{c} > 0)"
        for c in ("latency_n", "ttft_n")
    )
    return (
        f"INSERT INTO histogram_base_{grain} ({keys}, latency, ttft) "
        f"SELECT {keys}, {blobs} FROM ({buckets_sql(grain)}) AS b GROUP BY {keys}"
    )


def _histogram_rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """SQLite: `buckets_sql` rows ordered by key and bucket, as rows of blobs."""
    width = 2 + len(BASE)
    names = ("workspace_id", "period", *BASE)
    out = []
    for key, entries in groupby(rows, key=lambda r: tuple(r[:width])):
        per_bucket = list(entries)
        out.append(
            {
                **dict(zip(names, key, strict=True)),
                "latency": _encode({r[width]: r[width + 1] for r in per_bucket}),
                "ttft": _encode({r[width]: r[width + 2] for r in per_bucket}),
            }
        )
    return out


def backfill(bind: sa.Connection) -> None:
    """Fill every new table at every grain from one scan of the events."""
    dialect = bind.dialect.name
    for statement in backfill_statements(dialect):
        bind.execute(sa.text(statement))
    for grain in GRAINS:
        bind.execute(sa.text(sums_sql("base", BASE, grain)))
        bind.execute(sa.text(sums_sql("agent_modes", AGENT_MODES, grain)))
        if dialect == "postgresql":
            bind.execute(sa.text(histogram_sql_postgresql(grain)))
            continue
        keys = ("workspace_id", "period", *BASE)
        order = ", ".join((*keys, "bucket"))
        rows = bind.execute(sa.text(f"{buckets_sql(grain)} ORDER BY {order}")).all()
        insert = sa.text(
            f"INSERT INTO histogram_base_{grain} ({', '.join(keys)}, latency, ttft) "
            f"VALUES ({', '.join(':' + k for k in keys)}, :latency, :ttft)"
        )
        blobs = _histogram_rows(rows)
        for i in range(0, len(blobs), CHUNK):
            bind.execute(insert, blobs[i : i + CHUNK])
    bind.execute(sa.text(f"DROP TABLE IF EXISTS {TEMP}"))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for group, members in OLD_GROUPS.items():
            for member, dims in members:
                for grain in GRAINS:
                    op.execute(compact_sql(group, f"rollup_{member}_{grain}", dims, grain))
            op.drop_table(f"rollup_delta_{group}")
        _compact_histogram_delta(bind, OLD_HISTOGRAM_DIMS)
        op.drop_table("rollup_delta_histograms")
        _create_histogram_delta(NEW_HISTOGRAM_DIMS)
        _create_sum_delta("base", BASE)
        _create_sum_delta("agent_modes", AGENT_MODES)
    for grain in GRAINS:
        _create_sum_table(f"rollup_base_{grain}", BASE)
        _create_sum_table(f"rollup_agent_modes_{grain}", AGENT_MODES)
        _create_histogram_table(f"histogram_base_{grain}", BASE)
    backfill(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for member, dims in NEW_GROUP:
            for grain in GRAINS:
                op.execute(compact_sql("base", f"rollup_{member}_{grain}", dims, grain))
        op.drop_table("rollup_delta_base")
        op.drop_table("rollup_delta_agent_modes")
        for group, members in OLD_GROUPS.items():
            _create_sum_delta(group, members[0][1])
        _compact_histogram_delta(bind, NEW_HISTOGRAM_DIMS)
        op.drop_table("rollup_delta_histograms")
        _create_histogram_delta(OLD_HISTOGRAM_DIMS)
    for grain in GRAINS:
        op.drop_table(f"rollup_base_{grain}")
        op.drop_table(f"histogram_base_{grain}")
        op.drop_table(f"rollup_agent_modes_{grain}")
