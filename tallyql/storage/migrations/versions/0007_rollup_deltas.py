"""PostgreSQL: delta tables staging each fold group's hour aggregates until compaction.

Revision ID: 0007_rollup_deltas
Revises: 0006_actor_rollups
Create Date: 2026-12-03

The writer appends each batch's aggregates here instead of upserting rollup rows, so
concurrent batches take no row locks; `storage/compaction.py` moves them into the rollup
tables. The groups below are a snapshot of `tallyql.storage.rollups.FOLD_GROUPS` at this
revision. SQLite folds batches into the rollups directly and has no delta tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_rollup_deltas"
down_revision = "0006_actor_rollups"
branch_labels = None
depends_on = None

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
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
    ("tools", ("tool", "mcp_server", "kind", "status", "error_type", "policy_id", "policy_name")),
    ("gateways", ("gateway", "protocol", "caller", "api_key_id", "kind", "status")),
    ("agents", ("agent_id", "agent_instance_id", "node", "user_id", "kind", "status")),
    ("tags", ("tag", "provider", "model", "kind", "status")),
    ("users", ("user_id", "provider", "model", "kind", "status")),
)
HISTOGRAM_GROUP = ("histograms", ("kind", "status", "provider", "model"))
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


def _keys(dims: tuple[str, ...]) -> list[sa.Column]:
    return [
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        *(sa.Column(d, sa.Boolean if d == "is_byok" else sa.Text, nullable=False) for d in dims),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, dims in GROUPS:
        op.create_table(
            f"rollup_delta_{name}",
            *_keys(dims),
            *(
                sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False)
                for c in SUMS
            ),
            sa.Column("latency_max", sa.Float),
        )
    name, dims = HISTOGRAM_GROUP
    op.create_table(  # a row per batch, hour and key, with a blob per value (as in 0008)
        f"rollup_delta_{name}",
        *_keys(dims),
        sa.Column("latency", sa.LargeBinary),
        sa.Column("ttft", sa.LargeBinary),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _ in (*GROUPS, HISTOGRAM_GROUP):
        op.drop_table(f"rollup_delta_{name}")
