"""Coding agents' OTLP metrics: `metric_series` and `metric_points` (POST /v1/metrics).

Revision ID: 0018_otlp_metrics
Revises: 0013_departments
Create Date: 2026-12-06

New tables only: nothing stored before this revision changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallyql.storage.types import JsonValue, UtcDateTime

revision = "0018_otlp_metrics"
down_revision = "0013_departments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_series",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("monotonic", sa.Boolean, nullable=False),
        sa.Column("attributes", JsonValue(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_metric_series_name", "metric_series", ["workspace_id", "name"])
    op.create_table(
        "metric_points",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("series_id", sa.Text, primary_key=True),
        sa.Column("start_ns", sa.BigInteger, primary_key=True),
        sa.Column("time_ns", sa.BigInteger, primary_key=True),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("count", sa.BigInteger),
        sa.Column("buckets", JsonValue()),
        sa.Column("bounds", JsonValue()),
        sa.Column("min", sa.Float),
        sa.Column("max", sa.Float),
        sa.Column("raw_value", sa.Float),
        sa.Column("raw_count", sa.BigInteger),
        sa.Column("raw_buckets", JsonValue()),
    )
    op.create_index("ix_metric_points_ts", "metric_points", ["workspace_id", "ts"])


def downgrade() -> None:
    op.drop_table("metric_points")
    op.drop_table("metric_series")
