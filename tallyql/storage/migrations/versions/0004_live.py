"""Live features: webhooks and deliveries, budgets and threshold crossings, alert rules and
firings, the outbox of oversized bus messages; on PostgreSQL a trigger that announces every
committed audit event with NOTIFY (so that every replica's subscribers see it).

Revision ID: 0004_live
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallyql.storage.types import JsonValue, UtcDateTime

revision = "0004_live"
down_revision = "0002"
branch_labels = None
depends_on = None

AUDIT_CHANNEL = "tallyql_audit"


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("webhook_id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("lease_until", UtcDateTime()),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("attempt_log", JsonValue(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("delivered_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_ws_created",
        "webhook_deliveries",
        ["workspace_id", "created_at", "id"],
    )
    op.create_table(
        "budgets",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("amount_nanousd", sa.BigInteger, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("scope_type", sa.Text, nullable=False),
        sa.Column("scope_value", sa.Text),
        sa.Column("filter", JsonValue(), nullable=False),
        sa.Column("thresholds", JsonValue(), nullable=False),
        sa.Column("webhook_ids", JsonValue(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_table(
        "budget_crossings",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("budget_id", sa.Text, nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("crossed_at", UtcDateTime(), nullable=False),
        sa.Column("spend_nanousd", sa.BigInteger, nullable=False),
        sa.Column("amount_nanousd", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "budget_id", "period_start", "threshold"),
    )
    op.create_table(
        "alert_rules",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("window_seconds", sa.Integer, nullable=False),
        sa.Column("filter", JsonValue(), nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("cooldown_seconds", sa.Integer, nullable=False),
        sa.Column("webhook_ids", JsonValue(), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("state_version", sa.Integer, nullable=False),
        sa.Column("current_firing_id", sa.Text),
        sa.Column("last_value", sa.Float),
        sa.Column("last_evaluated_at", UtcDateTime()),
        sa.Column("last_fired_at", UtcDateTime()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_table(
        "alert_firings",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("rule_id", sa.Text, nullable=False),
        sa.Column("rule_name", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("window_seconds", sa.Integer, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("fired_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime()),
        sa.Column("resolved_value", sa.Float),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_index("ix_alert_firings_ws_fired", "alert_firings", ["workspace_id", "fired_at"])
    op.create_table(
        "live_outbox",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # NOTIFY is delivered at commit, so listeners hear only of committed audit events;
        # the payload is the row's key (receivers read the row), far below 8000 bytes.
        op.execute(
            f"""
            CREATE FUNCTION tallyql_audit_notify() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify(
                    '{AUDIT_CHANNEL}',
                    json_build_object('w', NEW.workspace_id, 'id', NEW.id)::text
                );
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER tallyql_audit_notify AFTER INSERT ON audit_events"
            " FOR EACH ROW EXECUTE FUNCTION tallyql_audit_notify()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS tallyql_audit_notify ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS tallyql_audit_notify()")
    for table in (
        "live_outbox",
        "alert_firings",
        "alert_rules",
        "budget_crossings",
        "budgets",
        "webhook_deliveries",
        "webhooks",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
