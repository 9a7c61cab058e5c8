"""PostgreSQL: each staged rollup row records when it was staged (`staged_at`, the staging
transaction's start), so a health alert rule reads how long the oldest row has waited for
compaction from the shared database, whichever process compacts.

Revision ID: 0022_delta_staged_at
Revises: 0021_data_versions (the rollups branch's head; deltas as 0020_base_rollups left them)
Create Date: 2026-12-06

No statement names the column: the writer's and the loader's INSERTs list their columns and
take the default, compaction's DELETE ... RETURNING lists its own. Adding a column whose
default is `now()` rewrites no table (PostgreSQL 11 and later): rows staged before this
revision read as staged at the upgrade. SQLite has no delta tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_delta_staged_at"
down_revision = "0021_data_versions"
branch_labels = None
depends_on = None

DELTA_TABLES = (
    "rollup_delta_base",
    "rollup_delta_agent_modes",
    "rollup_delta_agents",
    "rollup_delta_gateways",
    "rollup_delta_tags",
    "rollup_delta_users",
    "rollup_delta_histograms",
)
"""The delta tables at revision 0020_base_rollups."""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in DELTA_TABLES:
        op.add_column(
            table,
            sa.Column(
                "staged_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.text("now()"),
            ),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in DELTA_TABLES:
        op.drop_column(table, "staged_at")
