"""Tables of the live features: webhooks and their delivery log, budgets and their threshold
crossings, alert rules and their firings, and the outbox of oversized bus messages.

Migration 0004_live creates exactly these. Every key starts with `workspace_id`, except the
outbox, which belongs to the cluster rather than to a workspace.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, Table, Text

from tallyql.storage.tables import metadata
from tallyql.storage.types import JsonValue, UtcDateTime

webhooks = Table(
    "webhooks",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),  # the HMAC key (PagerDuty: the routing key)
    Column("description", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    # signed | slack | pagerduty | email (webhooks/formats.py)
    Column("format", Text, nullable=False, server_default="signed"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("webhook_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes that are signed and sent
    Column("status", Text, nullable=False),  # pending | sending | succeeded | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("lease_until", UtcDateTime()),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("attempt_log", JsonValue(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime()),
)
Index(
    "ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at
)
Index(
    "ix_webhook_deliveries_ws_created",
    webhook_deliveries.c.workspace_id,
    webhook_deliveries.c.created_at,
    webhook_deliveries.c.id,
)

budgets = Table(
    "budgets",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("amount_nanousd", BigInteger, nullable=False),
    Column("period", Text, nullable=False),  # day | week | month
    Column("timezone", Text, nullable=False),
    Column("scope_type", Text, nullable=False),
    Column("scope_value", Text),
    Column("filter", JsonValue(), nullable=False),  # EventFilterSpec as JSON (scope FILTER)
    Column("thresholds", JsonValue(), nullable=False),  # percents, ascending
    Column("webhook_ids", JsonValue(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

budget_crossings = Table(
    "budget_crossings",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("budget_id", Text, primary_key=True),
    Column("period_start", UtcDateTime(), primary_key=True),
    Column("threshold", Integer, primary_key=True),
    Column("crossed_at", UtcDateTime(), nullable=False),
    Column("spend_nanousd", BigInteger, nullable=False),
    Column("amount_nanousd", BigInteger, nullable=False),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("window_seconds", Integer, nullable=False),
    Column("filter", JsonValue(), nullable=False),
    Column("operator", Text, nullable=False),  # gt | gte | lt | lte | eq
    # day | week | month: measured from the local period's start (in `timezone`) to now;
    # null: over the trailing window_seconds
    Column("calendar", Text),
    Column("timezone", Text, nullable=False, server_default="UTC"),
    Column("threshold", Float, nullable=False),
    Column("cooldown_seconds", Integer, nullable=False),
    Column("webhook_ids", JsonValue(), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("state", Text, nullable=False),  # ok | firing
    Column("state_version", Integer, nullable=False),
    Column("current_firing_id", Text),
    Column("last_value", Float),
    Column("last_evaluated_at", UtcDateTime()),
    Column("last_fired_at", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # a health rule (alerts/health.py) watches the server, not the workspace's events:
    # writer_stall_seconds | writer_backlog_events | compaction_lag_seconds | jobs_degraded;
    # `metric` then repeats it (the column predates health rules and is NOT NULL)
    Column("health", Text),
)

alert_firings = Table(
    "alert_firings",
    metadata,
    Column("workspace_id", Integer, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("rule_id", Text, nullable=False),
    Column("rule_name", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("operator", Text, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("window_seconds", Integer, nullable=False),
    Column("value", Float),
    Column("fired_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime()),
    Column("resolved_value", Float),
    Column("health", Text),  # the health condition of a health rule; `metric` repeats it
)
Index("ix_alert_firings_ws_fired", alert_firings.c.workspace_id, alert_firings.c.fired_at)

live_outbox = Table(
    "live_outbox",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("body", Text, nullable=False),
)
