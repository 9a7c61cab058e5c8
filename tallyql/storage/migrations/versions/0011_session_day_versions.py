"""Versions of each UTC day's sessions (`storage/session_versions.py`).

Revision ID: 0011_session_day_versions
Revises: 0010_session_stats
Create Date: 2026-12-04

A stamp per workspace and UTC day that changes with every session touching the day, so that
session statistics may keep what they read of whole days. The days of the sessions already
stored are stamped here.
"""

from __future__ import annotations

from alembic import op

from tallyql.storage.session_versions import stamp_sql

revision = "0011_session_day_versions"
down_revision = "0010_session_stats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE session_day_versions (workspace_id INTEGER NOT NULL, day INTEGER NOT NULL, "
        "version BIGINT NOT NULL, PRIMARY KEY (workspace_id, day))"
    )
    op.execute(stamp_sql(op.get_bind().dialect.name, "sessions AS s"))


def downgrade() -> None:
    op.execute("DROP TABLE session_day_versions")
