"""Each workspace's data version (`storage/data_versions.py`): `data_versions`.

Revision ID: 0021_data_versions
Revises: 0020_base_rollups
Create Date: 2026-12-06

A new table only: workspaces start at version 0, and the first change after this revision
moves them on (nothing kept by a reader outlives a process, so no earlier answer is kept
under version 0).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_data_versions"
down_revision = "0020_base_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_versions",
        sa.Column("workspace_id", sa.Integer, primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("data_versions")
