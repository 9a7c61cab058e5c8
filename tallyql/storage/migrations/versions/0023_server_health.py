"""The server's own health in the shared database, for health alert rules: a heartbeat row per
process; alert rules and firings gain `health` (the health condition a rule watches; null: a
metric rule).

Revision ID: 0023_server_health
Revises: 0017_reports (the live branch: alert rules)
Create Date: 2026-12-06

New tables and nullable columns only: nothing stored before this revision changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0023_server_health"
down_revision = "0017_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    json = postgresql.JSONB() if pg else sa.JSON()
    stamp = sa.DateTime(timezone=True) if pg else sa.BigInteger()
    op.create_table(
        "server_heartbeats",
        sa.Column("instance_id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", stamp, nullable=False),
        sa.Column("heartbeat_at", stamp, nullable=False),
        sa.Column("writer_pending_events", sa.BigInteger, nullable=False),
        sa.Column("writer_oldest_pending_at", stamp),
        sa.Column("writer_last_commit_at", stamp),
        sa.Column("writer_events_committed", sa.BigInteger, nullable=False),
        sa.Column("degraded", json, nullable=False),
    )
    # writer_stall_seconds | writer_backlog_events | compaction_lag_seconds | jobs_degraded
    op.add_column("alert_rules", sa.Column("health", sa.Text))
    op.add_column("alert_firings", sa.Column("health", sa.Text))


def downgrade() -> None:
    op.drop_column("alert_firings", "health")
    op.drop_column("alert_rules", "health")
    op.drop_table("server_heartbeats")
