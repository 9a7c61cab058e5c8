"""Versions of each UTC day's sessions (`storage/session_versions.py`).

Revision ID: 0011_session_day_versions
Revises: 0010_session_stats
Create Date: 2026-12-04

A stamp per workspace and UTC day that changes with every session touching the day, so that
session statistics may keep what they read of whole days. The days of the sessions already
stored are stamped here (the statements are a snapshot of `stamp_sql` at this revision).
"""

from __future__ import annotations

from alembic import op

revision = "0011_session_day_versions"
down_revision = "0010_session_stats"
branch_labels = None
depends_on = None

STAMP_POSTGRESQL = (
    "INSERT INTO session_day_versions (workspace_id, day, version) "
    "SELECT workspace_id, day, (random() * 9.0e18)::bigint FROM ("
    "SELECT DISTINCT s.workspace_id, d.day FROM sessions AS s "
    "CROSS JOIN LATERAL generate_series(floor(date_part('epoch', s.first_ts) / 86400)::int, "
    "floor(date_part('epoch', s.last_ts) / 86400)::int) AS d(day)) AS touched "
    "ORDER BY workspace_id, day"
)
STAMP_SQLITE = (
    "INSERT INTO session_day_versions (workspace_id, day, version) "
    "WITH RECURSIVE spans(workspace_id, day, last_day) AS ("
    "SELECT workspace_id, first_ts / 86400000000, last_ts / 86400000000 FROM sessions "
    "UNION SELECT workspace_id, day + 1, last_day FROM spans WHERE day < last_day) "
    "SELECT workspace_id, day, random() FROM (SELECT DISTINCT workspace_id, day FROM spans)"
)


def upgrade() -> None:
    op.execute(
        "CREATE TABLE session_day_versions (workspace_id INTEGER NOT NULL, day INTEGER NOT NULL, "
        "version BIGINT NOT NULL, PRIMARY KEY (workspace_id, day))"
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute(STAMP_POSTGRESQL if postgres else STAMP_SQLITE)


def downgrade() -> None:
    op.execute("DROP TABLE session_day_versions")
