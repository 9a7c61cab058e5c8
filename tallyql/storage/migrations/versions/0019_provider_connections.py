"""Provider connections: a workspace's OpenRouter key, read daily for its activity.

Revision ID: 0019_provider_connections
Revises: 0014_statement_snapshots (the costs branch)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019_provider_connections"
down_revision = "0014_statement_snapshots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    stamp = sa.DateTime(timezone=True) if pg else sa.BigInteger()
    op.create_table(
        "provider_connections",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("api_key", sa.Text, nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
        sa.Column("last_sync_at", stamp),
        sa.Column("last_sync_status", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("last_result", postgresql.JSONB() if pg else sa.JSON()),
        sa.Column("claimed_until", stamp),
    )


def downgrade() -> None:
    op.drop_table("provider_connections")
