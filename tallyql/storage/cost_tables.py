"""Tables of the cost features: a workspace's own model prices (`price_overrides`)."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, Table, Text

from tallyql.storage.tables import metadata
from tallyql.storage.types import UtcDateTime

PRICE_RATE_COLUMNS = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "reasoning_mtok",
)
"""USD per million tokens; input and output are required, the others fall back to them."""

price_overrides = Table(
    "price_overrides",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), primary_key=True),
    Column("id", Text, primary_key=True),
    Column("provider", Text),  # NULL: any provider (compared case-insensitively)
    Column("model", Text, nullable=False),  # exact name, or a regex when model_regex is true
    Column("model_match", Text, nullable=False),  # exact | regex
    Column("effective_from", UtcDateTime()),  # NULL: since always
    Column("effective_until", UtcDateTime()),  # NULL: open-ended; exclusive
    Column("input_mtok", Float, nullable=False),
    Column("output_mtok", Float, nullable=False),
    Column("cache_read_mtok", Float),
    Column("cache_write_mtok", Float),
    Column("reasoning_mtok", Float),
    Column("description", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index("ix_price_overrides_updated", price_overrides.c.updated_at)
