"""Chargeback statements of closed periods, kept as issued (and as restated after repricing).

Revision ID: 0014_statement_snapshots
Revises: 0005_costs (the costs branch)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014_statement_snapshots"
down_revision = "0005_costs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    body = postgresql.JSONB() if dialect == "postgresql" else sa.JSON()
    issued_at = sa.DateTime(timezone=True) if dialect == "postgresql" else sa.BigInteger()
    op.create_table(
        "statement_snapshots",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("period_start", sa.Text, primary_key=True),
        sa.Column("timezone", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("issued_at", issued_at, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("body", body, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("statement_snapshots")
