"""Price overrides: a workspace's own per-model prices, winning over genai-prices.

Revision ID: 0005_costs
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallyql.storage.types import UtcDateTime

revision = "0005_costs"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_overrides",
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id"), primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("provider", sa.Text),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_match", sa.Text, nullable=False),
        sa.Column("effective_from", UtcDateTime()),
        sa.Column("effective_until", UtcDateTime()),
        sa.Column("input_mtok", sa.Float, nullable=False),
        sa.Column("output_mtok", sa.Float, nullable=False),
        sa.Column("cache_read_mtok", sa.Float),
        sa.Column("cache_write_mtok", sa.Float),
        sa.Column("reasoning_mtok", sa.Float),
        sa.Column("description", sa.Text),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_price_overrides_updated", "price_overrides", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_price_overrides_updated", "price_overrides")
    op.drop_table("price_overrides")
