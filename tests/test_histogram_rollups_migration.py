"""Migration 0026 (histogram rollups keyed like the tools, gateways and models views, kept on
PostgreSQL only): its fill from `histogram_base` equals what compaction keeps; on SQLite the
writer leaves the tables empty."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tallyql.storage.rollups.compaction import compact
from tests.conftest import Api
from tests.support.helpers import iso, llm

MIGRATION = importlib.import_module("tallyql.storage.migrations.versions.0026_histogram_rollups")


def _events(start: datetime) -> list[dict[str, Any]]:
    """Ten days of calls over two models, two gateways, tools and statuses; latencies spread
    over many sketch buckets, TTFT on some."""
    out = []
    for i in range(240):
        event = llm(
            f"h{i}",
            timestamp=iso(start + timedelta(minutes=59 * i)),
            model=("m1", "m2", "m3")[i % 3],
            provider=("openai", "anthropic")[i % 2],
            latency_ms=1.7 ** (i % 19) + 0.25,
            status=("success", "error", "success")[i % 3],
            status_code=(200, 429, 503, 200)[i % 4],
            is_byok=i % 5 == 0,
            billing_mode=("byok", "platform")[i % 2],
        )
        if i % 3:
            event["gateway"] = ("gw1", "gw2")[i % 2]
        if i % 4 == 1:
            event.update(kind="tool_call", tool=("t1", "t2")[i % 2], mcp_server="srv")
            event.update(policy_id="p1", policy_name="PII guard")
        if event["status"] == "error":
            event["error_type"] = ("timeout", "rate_limit")[i % 2]
        if i % 6 == 0:
            event["ttft_ms"] = 1.5 + i % 11
        out.append(event)
    return out


async def _rows(api: Api, table: str, dims: tuple[str, ...]) -> list[tuple[Any, ...]]:
    keys = ", ".join(("workspace_id", "period", *dims))
    async with api.services.db.read() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY {keys}"))).all()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]


async def test_fill_from_base_equals_what_the_writer_keeps(api: Api) -> None:
    key = await api.key()
    start = datetime.now(UTC) - timedelta(days=11)
    result = await api.ingest(key, _events(start))
    assert result["accepted"] == 240, result
    db = api.services.db
    await compact(db, wait=True)  # PostgreSQL: the staged histograms into every table
    tables = {
        f"histogram_{name}_{grain}": dims
        for name, dims in MIGRATION.NEW.items()
        for grain in MIGRATION.GRAINS
    }
    kept = {t: await _rows(api, t, dims) for t, dims in tables.items()}
    if not db.dialect.staged_deltas:  # SQLite: not kept there (declarations.AT_SCALE)
        assert kept == {t: [] for t in tables}
        async with db.read() as conn:  # while the base histogram holds these events
            base = await conn.execute(text("SELECT count(*) FROM histogram_base_h"))
            assert base.scalar_one() > 100
        return
    assert all(len(rows) >= 2 for rows in kept.values()), {t: len(r) for t, r in kept.items()}
    assert len(kept["histogram_gateways_h"]) > 100
    async with db.write() as conn:
        for table in tables:
            await conn.execute(text(f"DELETE FROM {table}"))
        for grain in MIGRATION.GRAINS:
            await conn.run_sync(MIGRATION._fill, grain)
    for table, dims in tables.items():
        assert await _rows(api, table, dims) == kept[table], table
