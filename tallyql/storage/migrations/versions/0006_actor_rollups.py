"""Small rollups of who was active: users, and agents with their instances, by kind and status.

Revision ID: 0006_actor_rollups
Revises: 0002
Create Date: 2026-11-29

The tables are filled from raw events when they are created (on an empty database that costs
nothing), so that existing data reads the same through them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006_actor_rollups"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLLUPS = (
    ("user_kinds", ("user_id", "kind", "status")),
    ("agent_kinds", ("agent_id", "agent_instance_id", "kind", "status")),
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
GRAINS = {"h": 3600, "d": 86400}


def backfill_sql(dialect: str, table: str, dims: tuple[str, ...], seconds: int) -> str:
    """Fill a new rollup table from raw events (the writer's sums, in one statement)."""
    if dialect == "postgresql":
        period = f"(floor(date_part('epoch', ts))::bigint / {seconds} * {seconds})"
    else:
        period = f"((ts / {seconds * 1_000_000}) * {seconds})"
    keys = ", ".join(f"COALESCE({d}, '')" for d in dims)
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
        f"latency_max) SELECT workspace_id, {period}, {keys}, {measures} FROM events "
        f"GROUP BY workspace_id, {period}, {keys}"
    )


def upgrade() -> None:
    for name, dims in ROLLUPS:
        for grain, seconds in GRAINS.items():
            table = f"rollup_{name}_{grain}"
            op.create_table(
                table,
                sa.Column("workspace_id", sa.Integer, nullable=False),
                sa.Column("period", sa.BigInteger, nullable=False),
                *(sa.Column(d, sa.Text, nullable=False) for d in dims),
                *(
                    sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False)
                    for c in SUMS
                ),
                sa.Column("latency_max", sa.Float),
                sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
                **FILLFACTOR,
            )
            op.execute(backfill_sql(op.get_bind().dialect.name, table, dims, seconds))


def downgrade() -> None:
    for name, _ in ROLLUPS:
        for grain in GRAINS:
            op.drop_table(f"rollup_{name}_{grain}")
