"""Scheduled reports (tallyql/reports/): their definitions, each run, and the files a run
made (kept for download until they expire); and the provider connections whose activity is
synced daily (tallyql/imports/)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, LargeBinary, Table, Text, UniqueConstraint

from tallyql.storage.tables import metadata
from tallyql.storage.types import JsonValue, UtcDateTime

reports = Table(
    "reports",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("schedule", Text, nullable=False),  # a cron expression, in `timezone`
    Column("timezone", Text, nullable=False),
    Column("range", Text, nullable=False),  # reports/model.py ReportRange
    Column("filter", JsonValue(), nullable=False),
    Column("sections", JsonValue(), nullable=False),  # [{"kind", "dimension", "top"}]
    Column("formats", JsonValue(), nullable=False),  # ["csv", "html", "pdf"]
    Column("recipients", JsonValue(), nullable=False),  # email addresses
    Column("webhook_ids", JsonValue(), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("next_run_at", UtcDateTime()),  # null while disabled
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index("ix_reports_due", reports.c.enabled, reports.c.next_run_at)

report_runs = Table(
    "report_runs",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("report_id", Text, nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),  # the scheduled moment (manual: now)
    Column("trigger", Text, nullable=False),  # schedule | manual
    Column("status", Text, nullable=False),  # running | succeeded | failed
    Column("range_start", UtcDateTime(), nullable=False),
    Column("range_end", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("duration_ms", Integer),
    Column("size_bytes", Integer),
    Column("error", Text),
    Column("delivery", JsonValue(), nullable=False),  # per channel: what happened
    Column("expires_at", UtcDateTime(), nullable=False),
    # a scheduled moment runs once, whichever replica claims it first
    UniqueConstraint("workspace_id", "report_id", "due_at", name="uq_report_runs_due"),
)
Index("ix_report_runs_report", report_runs.c.workspace_id, report_runs.c.report_id)

report_files = Table(
    "report_files",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("run_id", Text, primary_key=True),
    Column("format", Text, primary_key=True),  # csv (a zip) | html | pdf
    Column("filename", Text, nullable=False),
    Column("media_type", Text, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

# A workspace's connection to a provider's account (imports/sync.py): the key tallyql reads
# the provider's activity with, and how the last daily sync went.
provider_connections = Table(
    "provider_connections",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("provider", Text, primary_key=True),  # openrouter
    Column("api_key", Text, nullable=False),  # never shown again
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("last_sync_at", UtcDateTime()),
    Column("last_sync_status", Text),  # succeeded | failed
    Column("last_error", Text),
    Column("last_result", JsonValue()),
    Column("claimed_until", UtcDateTime()),  # a replica's sync in progress
)
