"""Histogram rollups keyed like the sum rollups of the gateways, tools and models views, and
gateways by model: `histogram_gateways_<grain>`, `histogram_tools_<grain>`,
`histogram_model_details_<grain>` and `histogram_gateway_models_<grain>`.

Revision ID: 0026_histogram_rollups
Revises: 0025_unusual_events_index (the rollups branch's head)
Create Date: 2026-12-06

Percentile questions outside the small histograms (none, kind and status, provider and model)
read `histogram_base`, which keeps every low-cardinality column: on 10M demo events 1,440
rows a day (the new tables: 65, 98, 355 and 396), and a month of P95 latency by gateway and
status merged 40,000 of its blobs in Python. The new tables come before `base` in the
planner's order.

They are filled from `histogram_base` at the same grain (every column they keep is one of its
keys), not from raw events: they then hold exactly what every question they now answer read
before, periods whose raw events retention purged included. On PostgreSQL the staged histogram
delta is left alone: its rows were never in `histogram_base`, and compaction folds them into
every histogram table, these included. The compaction lock keeps a compaction of an older
server out meanwhile. Everything below is a snapshot of `tallyql.storage.rollups` at this
revision.

They are kept on PostgreSQL only (`rollups.declarations.AT_SCALE`): on SQLite the tables are
made, so that every database has the same tables, and left empty; no writer fills them and no
question reads them there.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0026_histogram_rollups"
down_revision = "0025_unusual_events_index"
branch_labels = None
depends_on = None

BASE: tuple[str, ...] = (
    "provider",
    "model",
    "kind",
    "status",
    "status_code",
    "error_type",
    "request_type",
    "cost_source",
    "is_byok",
    "billing_mode",
    "gateway",
    "protocol",
    "tool",
    "mcp_server",
    "policy_id",
    "policy_name",
    "department",
)
GATEWAYS = ("gateway", "protocol", "kind", "status", "status_code")
NEW: dict[str, tuple[str, ...]] = {
    "gateways": GATEWAYS,
    "tools": ("tool", "mcp_server", "kind", "status", "error_type", "policy_id", "policy_name"),
    "model_details": BASE[:10],
    "gateway_models": (*GATEWAYS, "provider", "model"),
}
GRAINS = ("h", "d", "w")
CHUNK_SECONDS = {"h": 86400, "d": 14 * 86400, "w": 8 * 7 * 86400}
"""Base rows read at a time: their periods' span per grain (a day of hours, two weeks of days,
eight weeks)."""
VALUES = ("latency", "ttft")
COMPACTION_LOCK = 0x7A11_7004


def _type(dim: str) -> type[sa.types.TypeEngine]:
    if dim == "is_byok":
        return sa.Boolean
    return sa.Integer if dim == "status_code" else sa.Text


def _entries(
    blobs: Sequence[bytes | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every entry of the blobs (big-endian int16 buckets, then as many big-endian uint64
    counts): (index of its blob, bucket, count)."""
    owners, buckets, counts = [], [], []
    for i, blob in enumerate(blobs):
        if not blob:
            continue
        n = len(blob) // 10
        buckets.append(np.frombuffer(blob, ">i2", count=n).astype(np.int64))
        counts.append(np.frombuffer(blob, ">u8", count=n, offset=2 * n).astype(np.uint64))
        owners.append(np.full(n, i, np.int64))
    if not owners:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint64)
    return np.concatenate(owners), np.concatenate(buckets), np.concatenate(counts)


def _combine(
    keys: np.ndarray, buckets: np.ndarray, counts: np.ndarray, n_keys: int
) -> list[bytes | None]:
    """The blob of each of `n_keys` histograms from entries (key index, bucket, count)."""
    if len(keys) == 0:
        return [None] * n_keys
    order = np.lexsort((buckets, keys))
    keys, buckets, counts = keys[order], buckets[order], counts[order]
    starts = np.flatnonzero(
        np.concatenate(([True], (keys[1:] != keys[:-1]) | (buckets[1:] != buckets[:-1])))
    )
    keys, buckets, sums = keys[starts], buckets[starts], np.add.reduceat(counts, starts)
    keep = sums > 0
    keys, buckets, sums = keys[keep], buckets[keep], sums[keep]
    bounds = np.searchsorted(keys, np.arange(n_keys + 1)).tolist()
    b16, c64 = buckets.astype(">i2"), sums.astype(">u8")
    return [
        b16[lo:hi].tobytes() + c64[lo:hi].tobytes() if hi > lo else None
        for lo, hi in pairwise(bounds)
    ]


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _fill(bind: sa.Connection, grain: str) -> None:
    """Each new table at `grain` from `histogram_base` at the same grain, a span of periods at
    a time."""
    first, last = bind.execute(
        sa.text(f"SELECT min(period), max(period) FROM histogram_base_{grain}")
    ).one()
    if first is None:
        return
    columns = ", ".join(("workspace_id", "period", *BASE, *VALUES))
    lo = first
    while lo <= last:
        hi = lo + CHUNK_SECONDS[grain]
        rows = bind.execute(
            sa.text(
                f"SELECT {columns} FROM histogram_base_{grain} WHERE period >= :lo AND period < :hi"
            ),
            {"lo": lo, "hi": hi},
        ).all()
        lo = hi
        if not rows:
            continue
        first_value = 2 + len(BASE)
        entries = [_entries([_bytes(r[first_value + v]) for r in rows]) for v in range(len(VALUES))]
        for name, dims in NEW.items():
            at = [2 + BASE.index(d) for d in dims]
            index: dict[tuple[Any, ...], int] = {}
            key_of_row = np.fromiter(
                (index.setdefault((r[0], r[1], *(r[i] for i in at)), len(index)) for r in rows),
                np.int64,
                len(rows),
            )
            merged = [
                _combine(key_of_row[owners], buckets, counts, len(index))
                for owners, buckets, counts in entries
            ]
            keys = ("workspace_id", "period", *dims)
            insert = sa.text(
                f"INSERT INTO histogram_{name}_{grain} ({', '.join(keys)}, latency, ttft) "
                f"VALUES ({', '.join(':' + k for k in keys)}, :latency, :ttft)"
            )
            new_rows = [
                dict(zip((*keys, *VALUES), (*key, *(m[k] for m in merged)), strict=True))
                for key, k in index.items()
            ]
            bind.execute(insert, new_rows)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(f"SELECT pg_advisory_xact_lock({COMPACTION_LOCK})"))
    for name, dims in NEW.items():
        for grain in GRAINS:
            op.create_table(
                f"histogram_{name}_{grain}",
                sa.Column("workspace_id", sa.Integer, nullable=False),
                sa.Column("period", sa.BigInteger, nullable=False),
                *(sa.Column(d, _type(d), nullable=False) for d in dims),
                sa.Column("latency", sa.LargeBinary),
                sa.Column("ttft", sa.LargeBinary),
                sa.PrimaryKeyConstraint("workspace_id", "period", *dims),
            )
    if bind.dialect.name != "postgresql":
        return  # kept on PostgreSQL only (rollups.declarations AT_SCALE): empty tables here
    for grain in GRAINS:
        _fill(bind, grain)


def downgrade() -> None:
    for name in NEW:
        for grain in GRAINS:
            op.drop_table(f"histogram_{name}_{grain}")
