"""Scheduled reports: definitions, runs (one per scheduled moment, claimed in the database)
and their files.

Revision ID: 0017_reports
Revises: 0016_alert_calendar_windows (the live branch: reports notify webhooks)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017_reports"
down_revision = "0016_alert_calendar_windows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    json = postgresql.JSONB() if pg else sa.JSON()
    stamp = sa.DateTime(timezone=True) if pg else sa.BigInteger()
    blob = postgresql.BYTEA() if pg else sa.LargeBinary()
    op.create_table(
        "reports",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("schedule", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("range", sa.Text, nullable=False),
        sa.Column("filter", json, nullable=False),
        sa.Column("sections", json, nullable=False),
        sa.Column("formats", json, nullable=False),
        sa.Column("recipients", json, nullable=False),
        sa.Column("webhook_ids", json, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("next_run_at", stamp),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
    )
    op.create_index("ix_reports_due", "reports", ["enabled", "next_run_at"])
    op.create_table(
        "report_runs",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("due_at", stamp, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("range_start", stamp, nullable=False),
        sa.Column("range_end", stamp, nullable=False),
        sa.Column("started_at", stamp, nullable=False),
        sa.Column("finished_at", stamp),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("size_bytes", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("delivery", json, nullable=False),
        sa.Column("expires_at", stamp, nullable=False),
        sa.UniqueConstraint("workspace_id", "report_id", "due_at", name="uq_report_runs_due"),
    )
    op.create_index("ix_report_runs_report", "report_runs", ["workspace_id", "report_id"])
    op.create_table(
        "report_files",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("format", sa.Text, primary_key=True),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("content", blob, nullable=False),
        sa.Column("expires_at", stamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("report_files")
    op.drop_index("ix_report_runs_report", table_name="report_runs")
    op.drop_table("report_runs")
    op.drop_index("ix_reports_due", table_name="reports")
    op.drop_table("reports")
