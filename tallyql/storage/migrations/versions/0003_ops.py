"""Indexes for the operations views and for retention.

- `ix_events_ws_policy`: a partial index on events that carry a policy (blocked or flagged
  calls, a small share of traffic), so that a policy's description as recorded is found
  without scanning the window's events. On PostgreSQL it is created on the partitioned
  parent and so on every day partition, present and future.
- `ix_payloads_ws_ts` (SQLite only): lets retention delete expired payloads in batches. On
  PostgreSQL payloads are partitioned by day and expire by dropping whole partitions.
- `ix_sessions_ws_user`: sessions of a user (and of a group's members).
- `ix_sessions_ws_cost`: `sessions(orderBy: COST)` walks sessions costliest first and stops
  after a page, instead of sorting every session of the range.

Revision ID: 0003_ops
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0003_ops"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "CREATE INDEX ix_events_ws_policy ON events (workspace_id, policy_id, ts) "
        "WHERE policy_id IS NOT NULL"
    )
    if not pg:
        op.create_index("ix_payloads_ws_ts", "payloads", ["workspace_id", "ts"])
    op.create_index("ix_sessions_ws_user", "sessions", ["workspace_id", "user_id"])
    op.create_index("ix_sessions_ws_cost", "sessions", ["workspace_id", "cost_nanousd", "id"])


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_sessions_ws_cost", table_name="sessions")
    op.drop_index("ix_sessions_ws_user", table_name="sessions")
    if not pg:
        op.drop_index("ix_payloads_ws_ts", table_name="payloads")
    op.execute("DROP INDEX IF EXISTS ix_events_ws_policy")
