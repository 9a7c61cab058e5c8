"""Faster exact session statistics: a stored duration, a covering index, a parallel aggregate.

Revision ID: 0010_session_stats
Revises: 0009_week_rollups
Create Date: 2026-12-03

- `sessions.duration_us`, generated from first_ts and last_ts (whole microseconds): the
  statistics compare and sum an integer instead of an interval (SQLite: a virtual column).
- PostgreSQL: ix_sessions_ws_last carries the statistics' columns, so the scan of a window's
  sessions reads the index only; and the aggregate `tallyql_collect`, array_agg with a combine
  step (array_cat), which lets that scan run in parallel workers.
"""

from __future__ import annotations

from alembic import op

revision = "0010_session_stats"
down_revision = "0009_week_rollups"
branch_labels = None
depends_on = None

COVERED = "first_ts, requests, input_tokens, output_tokens, cost_nanousd, duration_us"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute(
            "ALTER TABLE sessions ADD COLUMN duration_us BIGINT "
            "GENERATED ALWAYS AS (last_ts - first_ts) VIRTUAL"
        )
        return
    op.execute(
        "ALTER TABLE sessions ADD COLUMN duration_us BIGINT GENERATED ALWAYS AS "
        "((extract(epoch FROM (last_ts - first_ts)) * 1000000)::bigint) STORED"
    )
    op.execute("DROP INDEX ix_sessions_ws_last")
    op.execute(
        f"CREATE INDEX ix_sessions_ws_last ON sessions (workspace_id, last_ts) INCLUDE ({COVERED})"
    )
    op.execute(
        "CREATE AGGREGATE tallyql_collect(anycompatible) (SFUNC = array_append, "
        "STYPE = anycompatiblearray, COMBINEFUNC = array_cat, PARALLEL = SAFE)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP AGGREGATE tallyql_collect(anycompatible)")
        op.execute("DROP INDEX ix_sessions_ws_last")
        op.execute("CREATE INDEX ix_sessions_ws_last ON sessions (workspace_id, last_ts)")
    op.execute("ALTER TABLE sessions DROP COLUMN duration_us")
