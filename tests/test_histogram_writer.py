"""The histogram rollups hold, byte for byte, the blobs of an independent recomputation from
the raw events: after batches whose events are spread over nine days (so that each batch
merges into hour, day and week rows earlier batches wrote, across a week edge) in several
workspaces, and again after a rebuild from raw events. The recomputation is plain Python:
buckets from `sketch.bucket_of` of each event's values, counted per key, and the blob layout
of `tallyql.histogram` (big-endian int16 buckets, then big-endian uint64 counts) packed with
`struct`."""

from __future__ import annotations

import random
import struct
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from tallyql import sketch
from tallyql.demo.generator import generate_batches
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.compaction import compact
from tallyql.storage.rollups.declarations import (
    BOOL_DIMS,
    HISTOGRAM_ROLLUPS,
    HISTOGRAM_VALUES,
    INT_DIMS,
    LOW_CARDINALITY,
    WEEK,
    grain_start,
)
from tallyql.storage.rollups.rebuild import rebuild
from tallyql.storage.tables import events as events_table
from tests.conftest import Api

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAYS = 9  # always crosses a Monday 00:00 UTC: rows of two weeks at least
WORKSPACES = ("acme", "globex", "initech")
BATCH = 120

Key = tuple[Any, ...]


def _blob(counts: Counter[int]) -> bytes | None:
    buckets = sorted(b for b, n in counts.items() if n)
    if not buckets:
        return None
    return b"".join(struct.pack(">h", b) for b in buckets) + b"".join(
        struct.pack(">Q", counts[b]) for b in buckets
    )


def _absent(dim: str) -> Any:
    if dim in BOOL_DIMS:
        return False
    return INT_DIMS.get(dim, "")


async def _expected(api: Api, dialect: Dialect) -> dict[str, dict[Key, list[bytes | None]]]:
    """Every histogram table kept on `dialect`, recomputed from the raw events."""
    columns = [events_table.c[c] for c in ("workspace_id", "ts", *LOW_CARDINALITY)]
    values = [events_table.c.latency_ms, events_table.c.ttft_ms]
    async with api.services.db.read() as conn:
        rows = (await conn.execute(select(*columns, *values))).all()
    out: dict[str, dict[Key, list[bytes | None]]] = {}
    for rollup in HISTOGRAM_ROLLUPS:
        if not rollup.kept_on(dialect):
            continue
        for grain in rollup.grains:
            counted: dict[Key, list[Counter[int]]] = defaultdict(lambda: [Counter(), Counter()])
            for row in rows:
                m = row._mapping
                buckets = [sketch.bucket_of(v) for v in (m["latency_ms"], m["ttft_ms"])]
                if all(b is None for b in buckets):
                    continue
                dims = (_absent(d) if m[d] is None else m[d] for d in rollup.dims)
                period = grain_start(grain, int(m["ts"].timestamp()))
                key = (m["workspace_id"], period, *dims)
                for counter, bucket in zip(counted[key], buckets, strict=True):
                    if bucket is not None:
                        counter[bucket] += 1
            out[rollup.table(grain)] = {k: [_blob(c) for c in v] for k, v in counted.items()}
    return out


async def _stored(api: Api, tables: list[str]) -> dict[str, dict[Key, list[bytes | None]]]:
    out = {}
    async with api.services.db.read() as conn:
        for table in tables:
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            width = len(rows[0]) - len(HISTOGRAM_VALUES) if rows else 0
            out[table] = {
                tuple(r[:width]): [None if v is None else bytes(v) for v in r[width:]] for r in rows
            }
    return out


async def test_histogram_rollups_equal_a_recomputation_from_raw_events(api: Api) -> None:
    dialect = api.services.db.dialect
    keys = [await api.key(w) for w in WORKSPACES]
    events = [e for b in generate_batches(2400, DAYS, seed=11, end=END) for e in b]
    random.Random(5).shuffle(events)  # every batch spans the nine days
    accepted = Counter[int]()
    for n, i in enumerate(range(0, len(events), BATCH)):
        batch = events[i : i + BATCH]
        # the first workspace gets every batch, the second one in two, the third one in three
        for w in (w for w, every in enumerate((1, 2, 3)) if n % every == 0):
            accepted[w] += (await api.ingest(keys[w], batch))["accepted"]
    assert accepted == {0: 2400, 1: 1200, 2: 840}
    if dialect.staged_deltas:
        await compact(api.services.db, wait=True)

    expected = await _expected(api, dialect)
    tables = sorted(expected)
    assert len(tables) == 3 * sum(r.kept_on(dialect) for r in HISTOGRAM_ROLLUPS)
    weeks = {k[1] for k in expected["histogram_all_w"]}
    assert len(weeks) >= 2 and max(weeks) - min(weeks) >= WEEK
    assert await _stored(api, tables) == expected

    await rebuild(api.services.db, END - timedelta(days=DAYS + 1), END + timedelta(days=1))
    assert await _stored(api, tables) == expected
