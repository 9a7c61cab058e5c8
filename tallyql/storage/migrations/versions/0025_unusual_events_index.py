"""PostgreSQL: a partial index of the events that did not succeed or carry an HTTP error code,
`ix_events_ws_ts_unusual` on (workspace_id, ts, id), for the request log filtered by them.

Revision ID: 0025_unusual_events_index
Revises: 0024_agent_models
Create Date: 2026-12-06

A page of the log filtered by a rare status code (or an error status with a model) reads, in
each hour the rollups say holds a match, every event of that hour from (workspace_id, ts, id)
and drops nearly all of them: on 10M demo events the first page of openrouter's 429s read 28
hours of about 4,600 events each for 51 rows (150 ms). Such filters imply the index's predicate
(`status_code IN (429)` implies `status_code >= 400`, `status IN ('error')` implies
`status <> 'success'`), so PostgreSQL walks the same hours over about 3 % of the events, in the
same order. The index holds only those events, so ingest maintains it for them only.

Created on the partitioned `events` table, it reaches every day partition, those made later
included. SQLite is left alone: its planner uses a partial index only when the query repeats
the predicate's terms, which the log's filters do not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_unusual_events_index"
down_revision = "0024_agent_models"
branch_labels = None
depends_on = None

NAME = "ix_events_ws_ts_unusual"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        sa.text(
            f"CREATE INDEX IF NOT EXISTS {NAME} ON events (workspace_id, ts, id) "
            "WHERE status <> 'success' OR status_code >= 400"
        )
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(sa.text(f"DROP INDEX IF EXISTS {NAME}"))
