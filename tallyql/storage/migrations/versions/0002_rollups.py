"""Rollup tables (hour and UTC-day grain) and latency/TTFT histogram tables.

The rollup declarations below are a snapshot of `tallyql.storage.rollups.ROLLUPS` at this
revision; a later change to the declarations comes with a migration of its own.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROLLUPS_V1: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("totals", ("provider", "kind", "status", "is_byok", "billing_mode")),
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
    ("tags", ("tag", "provider", "model", "kind", "status")),
    ("gateways", ("gateway", "protocol", "caller", "api_key_id", "kind", "status")),
    ("users", ("user_id", "provider", "model", "kind", "status")),
    ("agents", ("agent_id", "agent_instance_id", "node", "user_id", "kind", "status")),
)
HISTOGRAMS_V1: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("all", (), ("h", "d")),
    ("kinds", ("kind", "status"), ("h", "d")),
    ("models", ("provider", "model"), ("h", "d")),
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
# Rows are updated in place batch after batch: leave room on each page for HOT updates.
FILLFACTOR: dict[str, Any] = {"postgresql_with": {"fillfactor": 70}}


def _dims(dims: tuple[str, ...]) -> list[sa.Column]:
    return [sa.Column(d, sa.Boolean if d == "is_byok" else sa.Text, nullable=False) for d in dims]


def upgrade() -> None:
    for name, dims in ROLLUPS_V1:
        for grain in ("h", "d"):
            op.create_table(
                f"rollup_{name}_{grain}",
                sa.Column("workspace_id", sa.Integer, nullable=False),
                sa.Column("period", sa.BigInteger, nullable=False),
                *_dims(dims),
                *(
                    sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False)
                    for c in SUMS
                ),
                sa.Column("latency_max", sa.Float),
                sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
                **FILLFACTOR,
            )
    for name, dims, grains in HISTOGRAMS_V1:
        for grain in grains:
            op.create_table(
                f"hist_{name}_{grain}",
                sa.Column("workspace_id", sa.Integer, nullable=False),
                sa.Column("period", sa.BigInteger, nullable=False),
                *_dims(dims),
                sa.Column("bucket", sa.SmallInteger, nullable=False),
                sa.Column("latency_n", sa.BigInteger, nullable=False),
                sa.Column("ttft_n", sa.BigInteger, nullable=False),
                sa.PrimaryKeyConstraint("workspace_id", "period", *dims, "bucket"),
                **FILLFACTOR,
            )


def downgrade() -> None:
    for name, _ in ROLLUPS_V1:
        for grain in ("h", "d"):
            op.drop_table(f"rollup_{name}_{grain}")
    for name, _, grains in HISTOGRAMS_V1:
        for grain in grains:
            op.drop_table(f"hist_{name}_{grain}")
