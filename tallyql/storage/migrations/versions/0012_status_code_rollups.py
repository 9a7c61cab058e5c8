"""The HTTP status code as a key of the `models` and `gateways` rollups (and their deltas).

Revision ID: 0012_status_code_rollups
Revises: 0011_session_day_versions
Create Date: 2026-12-06

Each table is rebuilt with `status_code` in its key (-1 for an event without one). Periods
that the kept raw events cover in full are refilled from them, exactly as the writer would
have kept them; older periods (whose events retention may have purged while their rollup rows
remain) keep their rows under -1, as events without a code. On PostgreSQL the groups' staged
delta rows are first compacted into the old tables (the group `models` also feeds `totals`)
and the delta tables recreated with the new key. The rollups below are a snapshot of
`tallyql.storage.rollups` at this revision.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012_status_code_rollups"
down_revision = "0011_session_day_versions"
branch_labels = None
depends_on = None

ROLLUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "models",
        (
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
        ),
    ),
    ("gateways", ("gateway", "protocol", "caller", "api_key_id", "kind", "status", "status_code")),
)
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
FLOATS = {"latency_sum", "ttft_sum"}
FILLFACTOR: dict[str, Any] = {"postgresql_with": {"fillfactor": 70}}
DAY = 86400
WEEK = 7 * DAY
WEEK_ORIGIN = 4 * DAY  # 1970-01-05, a Monday
GRAINS: dict[str, tuple[int, int]] = {"h": (3600, 0), "d": (DAY, 0), "w": (WEEK, WEEK_ORIGIN)}
"""Each grain's length and origin in epoch seconds."""
ABSENT = -1
MEMBERS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "models": (
        ROLLUPS[0],
        ("totals", ("provider", "kind", "status", "is_byok", "billing_mode")),
    ),
    "gateways": (ROLLUPS[1],),
}
"""PostgreSQL: the rollups each delta table feeds, with their keys before this revision."""


def compact_sql(group: str, table: str, dims: tuple[str, ...], grain: str) -> str:
    """Add a delta table's staged hour rows to a rollup table of the old shape."""
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


def _type(dim: str) -> type[sa.types.TypeEngine]:
    if dim == "is_byok":
        return sa.Boolean
    return sa.Integer if dim == "status_code" else sa.Text


def _key(dim: str) -> str:
    if dim == "is_byok":
        return dim
    return f"COALESCE({dim}, {ABSENT})" if dim == "status_code" else f"COALESCE({dim}, '')"


def epoch_sql(dialect: str, ts: str) -> str:
    """Epoch seconds (integer) of a timestamp column (timestamptz / epoch micros)."""
    if dialect == "postgresql":
        return f"floor(date_part('epoch', {ts}))::bigint"
    return f"({ts} / 1000000)"


def period_sql(epoch: str, grain: str) -> str:
    seconds, origin = GRAINS[grain]
    return f"(({epoch} - {origin}) / {seconds} * {seconds} + {origin})"


def backfill_sql(dialect: str, table: str, dims: tuple[str, ...], grain: str) -> str:
    """Fill a rebuilt rollup table from raw events, in periods after each workspace's first
    event's period (the writer's sums, in one statement)."""
    period = period_sql(epoch_sql(dialect, "ts"), grain)
    first = period_sql(epoch_sql(dialect, "min(ts)"), grain)
    keys = ", ".join(_key(d) for d in dims)
    measures = (
        "count(*), sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'blocked' THEN 1 ELSE 0 END), sum(input_tokens), "
        "sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), "
        "sum(reasoning_tokens), sum(cost_nanousd), sum(COALESCE(latency_ms, 0)), "
        "count(latency_ms), sum(COALESCE(ttft_ms, 0)), count(ttft_ms), "
        "sum(COALESCE(request_bytes, 0)), sum(COALESCE(response_bytes, 0)), max(latency_ms)"
    )
    return (
        f"INSERT INTO {table} (workspace_id, period, {', '.join(dims)}, {', '.join(SUMS)}, "
        f"latency_max) SELECT e.workspace_id, {period}, {keys}, {measures} FROM events AS e "
        f"JOIN (SELECT workspace_id AS ws, {first} AS first_period FROM events "
        "GROUP BY workspace_id) AS f ON f.ws = e.workspace_id "
        f"WHERE {period} > f.first_period GROUP BY e.workspace_id, {period}, {keys}"
    )


def keep_sql(dialect: str, table: str, old: str, dims: tuple[str, ...], grain: str) -> str:
    """Copy the old rows of periods no refill covers, under an absent status code (a join
    with the first periods, computed once, rather than a subquery per row)."""
    first = period_sql(epoch_sql(dialect, "min(ts)"), grain)
    columns = [d for d in dims if d != "status_code"]
    kept = ", ".join(("workspace_id", "period", *columns, *SUMS, "latency_max"))
    return (
        f"INSERT INTO {table} ({kept}, status_code) SELECT {kept}, {ABSENT} FROM {old} AS o "
        f"LEFT JOIN (SELECT workspace_id AS ws, {first} AS first_period FROM events "
        "GROUP BY workspace_id) AS f ON f.ws = o.workspace_id "
        "WHERE f.ws IS NULL OR o.period <= f.first_period"
    )


def _create(table: str, dims: tuple[str, ...]) -> None:
    op.create_table(
        table,
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, _type(d), nullable=False) for d in dims),
        *(sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False) for c in SUMS),
        sa.Column("latency_max", sa.Float),
        sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
        **FILLFACTOR,
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for group, members in MEMBERS.items():
            for member, member_dims in members:
                old_dims = tuple(d for d in member_dims if d != "status_code")
                for grain in GRAINS:
                    op.execute(compact_sql(group, f"rollup_{member}_{grain}", old_dims, grain))
            op.execute(f"DELETE FROM rollup_delta_{group}")
    for name, dims in ROLLUPS:
        for grain in GRAINS:
            table = f"rollup_{name}_{grain}"
            old = f"{table}_old"
            op.rename_table(table, old)
            if dialect == "postgresql":  # the primary key's index keeps its name otherwise
                op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
            _create(table, dims)
            op.execute(keep_sql(dialect, table, old, dims, grain))
            op.execute(backfill_sql(dialect, table, dims, grain))
            op.drop_table(old)
        if dialect == "postgresql":
            delta = f"rollup_delta_{name}"
            op.drop_table(delta)
            op.create_table(
                delta,
                sa.Column("workspace_id", sa.Integer, nullable=False),
                sa.Column("period", sa.BigInteger, nullable=False),
                *(sa.Column(d, _type(d), nullable=False) for d in dims),
                *(
                    sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False)
                    for c in SUMS
                ),
                sa.Column("latency_max", sa.Float),
            )


def downgrade() -> None:
    """Fold the status codes back together: each table's rows summed over `status_code`."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for group, members in MEMBERS.items():
            for member, member_dims in members:
                for grain in GRAINS:
                    op.execute(compact_sql(group, f"rollup_{member}_{grain}", member_dims, grain))
            op.execute(f"DELETE FROM rollup_delta_{group}")
    for name, dims in ROLLUPS:
        narrow = tuple(d for d in dims if d != "status_code")
        for grain in GRAINS:
            table = f"rollup_{name}_{grain}"
            old = f"{table}_old"
            op.rename_table(table, old)
            if dialect == "postgresql":
                op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
            _create(table, narrow)
            keys = ", ".join(("workspace_id", "period", *narrow))
            sums = ", ".join(f"sum({c})" for c in SUMS)
            op.execute(
                f"INSERT INTO {table} ({keys}, {', '.join(SUMS)}, latency_max) "
                f"SELECT {keys}, {sums}, max(latency_max) FROM {old} GROUP BY {keys}"
            )
            op.drop_table(old)
        if dialect == "postgresql":
            delta = f"rollup_delta_{name}"
            op.drop_table(delta)
            op.create_table(
                delta,
                sa.Column("workspace_id", sa.Integer, nullable=False),
                sa.Column("period", sa.BigInteger, nullable=False),
                *(sa.Column(d, _type(d), nullable=False) for d in narrow),
                *(
                    sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False)
                    for c in SUMS
                ),
                sa.Column("latency_max", sa.Float),
            )
