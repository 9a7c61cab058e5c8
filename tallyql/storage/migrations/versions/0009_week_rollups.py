"""Week grain (Monday 00:00 UTC) for every rollup and histogram rollup, filled from day rows.

Revision ID: 0009_week_rollups
Revises: 0008_histogram_blobs
Create Date: 2026-12-03

A window of 30 or 90 days then reads a dozen week rows per key instead of 30 or 90 day rows.
The rollups below are a snapshot of `tallyql.storage.rollups` at this revision.
"""

from __future__ import annotations

from itertools import groupby

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0009_week_rollups"
down_revision = "0008_histogram_blobs"
branch_labels = None
depends_on = None

DAY = 86400
WEEK = 7 * DAY
WEEK_ORIGIN = 4 * DAY  # 1970-01-05, a Monday
ROLLUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("totals", ("provider", "kind", "status", "is_byok", "billing_mode")),
    ("user_kinds", ("user_id", "kind", "status")),
    ("agent_kinds", ("agent_id", "agent_instance_id", "kind", "status")),
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
HISTOGRAMS = (("all", ()), ("kinds", ("kind", "status")), ("models", ("provider", "model")))
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
WEEK_OF = f"((period - {WEEK_ORIGIN}) / {WEEK} * {WEEK} + {WEEK_ORIGIN})"


def _dim(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean if name == "is_byok" else sa.Text, nullable=False)


def _sum(name: str) -> sa.Column:
    return sa.Column(name, sa.Float if name in FLOATS else sa.BigInteger, nullable=False)


def _merge(blobs: list[bytes | None]) -> bytes | None:
    """The sum of day histogram blobs (int16 buckets, then uint64 counts, big-endian)."""
    buckets, counts = [], []
    for blob in blobs:
        if blob:
            blob = bytes(blob)
            n = len(blob) // 10
            buckets.append(np.frombuffer(blob, ">i2", count=n).astype(np.int32))
            counts.append(np.frombuffer(blob, ">u8", count=n, offset=2 * n))
    if not buckets:
        return None
    unique, inverse = np.unique(np.concatenate(buckets), return_inverse=True)
    summed = np.zeros(len(unique), np.uint64)
    np.add.at(summed, inverse, np.concatenate(counts))
    return unique.astype(">i2").tobytes() + summed.astype(">u8").tobytes()


def _histogram_weeks(bind: sa.Connection, name: str, dims: tuple[str, ...]) -> None:
    keys = ("workspace_id", "period", *dims)
    rows = bind.execute(
        sa.text(
            f"SELECT workspace_id, {WEEK_OF} AS week, {''.join(d + ', ' for d in dims)}"
            f"latency, ttft FROM histogram_{name}_d ORDER BY 1, 2" + "".join(f", {d}" for d in dims)
        )
    ).all()
    width = len(keys)
    out = []
    for key, group in groupby(rows, key=lambda r: tuple(r[:width])):
        entries = list(group)
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "latency": _merge([r[width] for r in entries]),
                "ttft": _merge([r[width + 1] for r in entries]),
            }
        )
    insert = sa.text(
        f"INSERT INTO histogram_{name}_w ({', '.join(keys)}, latency, ttft) "
        f"VALUES ({', '.join(':' + k for k in keys)}, :latency, :ttft)"
    )
    for i in range(0, len(out), 2000):
        bind.execute(insert, out[i : i + 2000])


def upgrade() -> None:
    bind = op.get_bind()
    for name, dims in ROLLUPS:
        table = f"rollup_{name}_w"
        op.create_table(
            table,
            sa.Column("workspace_id", sa.Integer, nullable=False),
            sa.Column("period", sa.BigInteger, nullable=False),
            *(_dim(d) for d in dims),
            *(
                sa.Column(c, sa.Float if c in FLOATS else sa.BigInteger, nullable=False)
                for c in SUMS
            ),
            sa.Column("latency_max", sa.Float),
            sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
        )
        keys = ", ".join(dims)
        comma = ", " if dims else ""
        bind.execute(
            sa.text(
                f"INSERT INTO {table} (workspace_id, period{comma}{keys}, {', '.join(SUMS)}, "
                f"latency_max) SELECT workspace_id, {WEEK_OF}{comma}{keys}, "
                + ", ".join(f"SUM({c})" for c in SUMS)
                + f", MAX(latency_max) FROM rollup_{name}_d "
                f"GROUP BY workspace_id, {WEEK_OF}{comma}{keys}"
            )
        )
    for name, dims in HISTOGRAMS:
        op.create_table(
            f"histogram_{name}_w",
            sa.Column("workspace_id", sa.Integer, nullable=False),
            sa.Column("period", sa.BigInteger, nullable=False),
            *(_dim(d) for d in dims),
            sa.Column("latency", sa.LargeBinary),
            sa.Column("ttft", sa.LargeBinary),
            sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
        )
        _histogram_weeks(bind, name, dims)


def downgrade() -> None:
    for name, _ in ROLLUPS:
        op.drop_table(f"rollup_{name}_w")
    for name, _ in HISTOGRAMS:
        op.drop_table(f"histogram_{name}_w")
