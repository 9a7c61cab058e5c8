"""Histogram rollups as one row per period and key with a blob per value, not a row per bucket.

Revision ID: 0008_histogram_blobs
Revises: 0007_rollup_deltas
Create Date: 2026-12-03

`hist_<name>_<grain>` (one row per bucket) becomes `histogram_<name>_<grain>` with `latency` and
`ttft` blobs: the non-empty buckets ascending as big-endian int16, then their counts as
big-endian uint64 (the encoding of `tallyql.histogram` at this revision). Existing rows are
converted, then the old tables dropped.
"""

from __future__ import annotations

from itertools import groupby

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0008_histogram_blobs"
down_revision = "0007_rollup_deltas"
branch_labels = None
depends_on = None

HISTOGRAMS = (("all", ()), ("kinds", ("kind", "status")), ("models", ("provider", "model")))
GRAINS = ("h", "d")
SPAN = {"h": 2 * 86400, "d": 30 * 86400}
"""Periods converted at once: about a million bucket rows of a very busy workspace."""
CHUNK = 2_000


def _encode(buckets: list[int], counts: list[int]) -> bytes | None:
    pairs = [(b, c) for b, c in zip(buckets, counts, strict=True) if c > 0]
    if not pairs:
        return None
    return (
        np.asarray([b for b, _ in pairs], ">i2").tobytes()
        + np.asarray([c for _, c in pairs], ">u8").tobytes()
    )


def _convert(
    bind: sa.Connection, old: str, new: str, keys: tuple[str, ...], p0: int, p1: int
) -> None:
    """The rows of periods [p0, p1) (a bounded number, read at once)."""
    rows = bind.execute(
        sa.text(
            f"SELECT {', '.join(keys)}, bucket, latency_n, ttft_n FROM {old} "
            f"WHERE period >= :p0 AND period < :p1 ORDER BY {', '.join(keys)}, bucket"
        ),
        {"p0": p0, "p1": p1},
    ).all()
    width = len(keys)
    out: list[dict[str, object]] = []
    for key, group in groupby(rows, key=lambda r: tuple(r[:width])):
        entries = list(group)
        buckets = [r[width] for r in entries]
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "latency": _encode(buckets, [r[width + 1] for r in entries]),
                "ttft": _encode(buckets, [r[width + 2] for r in entries]),
            }
        )
    insert = sa.text(
        f"INSERT INTO {new} ({', '.join(keys)}, latency, ttft) "
        f"VALUES ({', '.join(':' + k for k in keys)}, :latency, :ttft)"
    )
    for i in range(0, len(out), CHUNK):
        bind.execute(insert, out[i : i + CHUNK])


def upgrade() -> None:
    bind = op.get_bind()
    for name, dims in HISTOGRAMS:
        for grain in GRAINS:
            new = f"histogram_{name}_{grain}"
            keys = ("workspace_id", "period", *dims)
            op.create_table(
                new,
                sa.Column("workspace_id", sa.Integer, nullable=False),
                sa.Column("period", sa.BigInteger, nullable=False),
                *(sa.Column(d, sa.Text, nullable=False) for d in dims),
                sa.Column("latency", sa.LargeBinary),
                sa.Column("ttft", sa.LargeBinary),
                sa.PrimaryKeyConstraint(*keys),
            )
            old = f"hist_{name}_{grain}"
            first, last = bind.execute(sa.text(f"SELECT min(period), max(period) FROM {old}")).one()
            span = SPAN[grain]
            start = first
            while first is not None and start <= last:
                _convert(bind, old, new, keys, start, start + span)
                start += span
            op.drop_table(old)


def downgrade() -> None:
    raise NotImplementedError("histogram blobs cannot be turned back into bucket rows here")
