"""Departments (cost centres): a user's `department`, and the one each event's user had when
the event was stored.

Revision ID: 0013_departments
Revises: 0012_status_code_rollups
Create Date: 2026-12-06

Events stored before this revision have none (no user had one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_departments"
down_revision = "0012_status_code_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("department", sa.Text))
    op.add_column("events", sa.Column("department", sa.Text))


def downgrade() -> None:
    op.drop_column("events", "department")
    op.drop_column("users", "department")
