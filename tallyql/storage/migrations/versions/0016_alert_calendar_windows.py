"""Alert rules over calendar windows: "spend today > $100" measures from the start of the
local day (week, month) in the rule's IANA zone up to the evaluation, beside trailing windows.

Revision ID: 0016_alert_calendar_windows
Revises: 0015_webhook_formats (the live branch)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_alert_calendar_windows"
down_revision = "0015_webhook_formats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alert_rules", sa.Column("calendar", sa.Text))  # day | week | month
    op.add_column(
        "alert_rules", sa.Column("timezone", sa.Text, nullable=False, server_default="UTC")
    )


def downgrade() -> None:
    op.drop_column("alert_rules", "timezone")
    op.drop_column("alert_rules", "calendar")
