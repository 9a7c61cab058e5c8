"""Webhook formats: a webhook is a signed JSON endpoint (as before), a Slack-compatible
incoming webhook, a PagerDuty Events API v2 integration or a list of email recipients.

Revision ID: 0015_webhook_formats
Revises: 0004_live (the live branch)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_webhook_formats"
down_revision = "0004_live"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("format", sa.Text, nullable=False, server_default="signed"))


def downgrade() -> None:
    op.drop_column("webhooks", "format")
