"""Initial tables: workspaces, keys, events and payloads, users and groups, sessions, audit.

On PostgreSQL, events and payloads are partitioned by day on `ts` (the writer creates the
partitions it needs; retention drops expired ones) and `event_keys` holds the idempotency key.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from tallyql.storage.types import JsonValue, TagList, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TOKENS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def _text(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.Text) for name in names]


def _bigints(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger, nullable=False) for name in names]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    partitioned: dict[str, Any] = {"postgresql_partition_by": "RANGE (ts)"} if pg else {}

    op.create_table(
        "workspaces",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_workspace_id", "api_keys", ["workspace_id"])

    op.create_table(
        "events",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer),
        *_text("error_type", "error_message", "policy_id", "policy_name", "policy_description"),
        *_text("user_id", "api_key_id", "caller_ip", "caller", "agent_id", "agent_instance_id"),
        *_text("session_id", "trace_id", "parent_id", "run_id", "node"),
        *_text("provider", "model", "tool", "mcp_server", "gateway", "protocol"),
        *_text("request_type", "billing_mode"),
        sa.Column("is_byok", sa.Boolean, nullable=False),
        *_bigints(*TOKENS, "cost_nanousd"),
        sa.Column("cost_source", sa.Text, nullable=False),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("latency_bucket", sa.SmallInteger),
        sa.Column("ttft_bucket", sa.SmallInteger),
        sa.Column("request_bytes", sa.BigInteger),
        sa.Column("response_bytes", sa.BigInteger),
        sa.Column("has_payload", sa.Boolean, nullable=False),
        sa.Column("tags", TagList(), nullable=False),
        sa.Column("metadata", JsonValue(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        # On PostgreSQL uniqueness of (workspace_id, id) lives in event_keys, which also
        # finds an event's ts for lookups by id; SQLite enforces it here.
        *([] if pg else [sa.PrimaryKeyConstraint("workspace_id", "id")]),
        **partitioned,
    )
    op.create_index("ix_events_ws_ts", "events", ["workspace_id", "ts", "id"])
    op.create_index("ix_events_ws_session", "events", ["workspace_id", "session_id", "ts"])

    op.create_table(
        "payloads",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("request", JsonValue()),
        sa.Column("response", JsonValue()),
        sa.PrimaryKeyConstraint(
            *(("workspace_id", "event_id", "ts") if pg else ("workspace_id", "event_id"))
        ),
        **partitioned,
    )
    if pg:
        op.create_table(
            "event_keys",
            sa.Column("workspace_id", sa.Integer, nullable=False),
            sa.Column("event_id", sa.Text, nullable=False),
            sa.Column("ts", UtcDateTime(), nullable=False),
            sa.PrimaryKeyConstraint("workspace_id", "event_id"),
        )
        op.execute("CREATE INDEX ix_event_keys_ts ON event_keys USING brin (ts)")

    op.create_table(
        "users",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("display_name", sa.Text),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_table(
        "groups",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "name"),
    )
    op.create_table(
        "group_members",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("group_name", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "group_name", "user_id"),
    )
    op.create_index("ix_group_members_user", "group_members", ["workspace_id", "user_id"])

    op.create_table(
        "sessions",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        *_text("user_id", "agent_id"),
        sa.Column("first_ts", UtcDateTime(), nullable=False),
        sa.Column("last_ts", UtcDateTime(), nullable=False),
        *_bigints("requests", "errors", *TOKENS, "cost_nanousd"),
        sa.Column("latency_ms_sum", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
        postgresql_with={"fillfactor": 80},
    )
    op.create_index("ix_sessions_ws_last", "sessions", ["workspace_id", "last_ts"])
    op.create_table(
        "session_models",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        *_bigints("requests", "errors", *TOKENS, "cost_nanousd"),
        sa.Column("latency_ms_sum", sa.Float, nullable=False),
        sa.Column("latency_count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "session_id", "provider", "model"),
        postgresql_with={"fillfactor": 80},
    )

    op.create_table(
        "audit_events",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("actor_id", sa.Text),
        sa.Column("actor_type", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("resource_type", sa.Text, nullable=False),
        sa.Column("resource_id", sa.Text),
        sa.Column("source_ip", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("details", JsonValue(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_index("ix_audit_ws_ts", "audit_events", ["workspace_id", "ts", "id"])


def downgrade() -> None:
    for table in (
        "audit_events",
        "session_models",
        "sessions",
        "group_members",
        "groups",
        "users",
        "event_keys",
        "payloads",
        "events",
        "api_keys",
        "workspaces",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
