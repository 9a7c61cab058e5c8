"""Migration 0020 (base rollups): its one-scan backfill equals what the writer keeps, and a
round trip through its downgrade compacts staged PostgreSQL deltas rather than dropping them."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import text

from tallyql import histogram
from tallyql.storage.migrate import _config, upgrade
from tallyql.storage.rollups.compaction import compact
from tests.conftest import Api
from tests.support.helpers import iso, llm

MIGRATION = importlib.import_module("tallyql.storage.migrations.versions.0020_base_rollups")


def _events(
    start: datetime, count: int = 150, step: timedelta = timedelta(minutes=41)
) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        event = llm(
            f"b{i}",
            timestamp=iso(start + step * i),
            model=("m1", "m2", "m3")[i % 3],
            provider=("openai", "anthropic")[i % 2],
            latency_ms=0.5 * (i % 37) + 3,  # halves: float sums exact in any order
            status=("success", "error", "blocked", "success")[i % 4],
            status_code=(200, 429, None)[i % 3],
            gateway=("gw1", "gw2", None)[i % 3],
            is_byok=i % 5 == 0,
            billing_mode=("byok", "platform")[i % 2],
        )
        if i % 4 == 1:
            event.update(kind="tool_call", tool=("t1", "t2")[i % 2], mcp_server="srv")
            event.update(policy_id="p1", policy_name="PII guard")
        if i % 6 == 0:
            event["ttft_ms"] = 1.5 + i % 4
        if i % 4 == 2:
            event.update(kind="agent_run", agent_id=("a1", "a2")[i % 3 == 0])
            event["agent_instance_id"] = f"a-{i % 7}"
        if event["status_code"] is None:
            del event["status_code"]
        if event["gateway"] is None:
            del event["gateway"]
        out.append(event)
    return out


async def _rows(api: Api, table: str) -> list[tuple[Any, ...]]:
    dims = MIGRATION.AGENT_MODES if "agent_modes" in table else MIGRATION.BASE
    keys = ", ".join(("workspace_id", "period", *dims))
    async with api.services.db.read() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY {keys}"))).all()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]


def _week_edges(start: datetime) -> list[dict[str, Any]]:
    """Events at the last microsecond before the first Monday 00:00 UTC after `start`, at it,
    and one week later: the backfill's batches are weeks, each event must land in exactly one."""
    monday = (start + timedelta(days=7 - start.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    moments = (monday - timedelta(microseconds=1), monday, monday + timedelta(days=7))
    return [
        llm(f"edge{i}", timestamp=iso(t), latency_ms=2.5 + i, ttft_ms=1.0, status_code=500)
        for i, t in enumerate(moments)
    ]


async def test_backfill_equals_what_the_writer_keeps(api: Api) -> None:
    """Over three workspaces' events spread across several weeks (the backfill's batches),
    every row of every new table, sums and histogram blobs, is what ingest kept."""
    start = datetime.now(UTC) - timedelta(days=24)
    acme, beta, gamma = [await api.key(w) for w in ("acme", "beta", "gamma")]
    assert (await api.ingest(acme, _events(start)))["accepted"] == 150
    spread = _events(start, count=130, step=timedelta(minutes=263))  # 23.7 days
    assert (await api.ingest(beta, spread + _week_edges(start)))["accepted"] == 133
    assert (await api.ingest(gamma, _events(start + timedelta(days=9), 40)))["accepted"] == 40
    db = api.services.db
    await compact(db, wait=True)  # PostgreSQL: staged deltas (histograms too) into the tables
    tables = [
        f"{kind}_{g}"
        for kind in ("rollup_base", "histogram_base", "rollup_agent_modes")
        for g in "hdw"
    ]
    kept = {t: await _rows(api, t) for t in tables}
    assert all(len(rows) > 10 for rows in kept.values()), {t: len(r) for t, r in kept.items()}
    weeks = {r[1] for r in kept["rollup_base_w"]}
    assert len(weeks) >= 4, weeks  # several batches
    assert len({r[0] for r in kept["histogram_base_w"]}) == 3
    async with db.write() as conn:
        for table in tables:
            await conn.execute(text(f"DELETE FROM {table}"))
        await conn.run_sync(MIGRATION.backfill)
    for table in tables:
        assert await _rows(api, table) == kept[table], table


def _downgrade(connection: Any, revision: str) -> None:
    command.downgrade(_config(connection), revision)


async def _totals(api: Api) -> dict[str, tuple[int, int]]:
    """Per rollup table, its requests (sum tables) or latency values counted (histograms)."""
    out: dict[str, tuple[int, int]] = {}
    async with api.services.db.read() as conn:
        for name in ("models", "totals", "tools", "base", "agent_modes"):
            for grain in "hdw":
                table = f"rollup_{name}_{grain}"
                row = (
                    await conn.execute(
                        text(f"SELECT sum(requests), sum(cost_nanousd) FROM {table}")
                    )
                ).one()
                out[table] = (int(row[0] or 0), int(row[1] or 0))
        for name in ("all", "kinds", "models", "base"):
            for grain in "hdw":
                table = f"histogram_{name}_{grain}"
                blobs = (await conn.execute(text(f"SELECT latency, ttft FROM {table}"))).all()
                out[table] = tuple(  # type: ignore[assignment]
                    int(
                        sum(histogram.decode(bytes(b[i]) if b[i] else None)[1].sum() for b in blobs)
                    )
                    for i in (0, 1)
                )
    return out


async def test_round_trip_keeps_staged_deltas(api: Api) -> None:
    key = await api.key()
    start = datetime.now(UTC) - timedelta(days=5)
    events = _events(start)
    assert (await api.ingest(key, events))["accepted"] == 150
    await compact(api.services.db, wait=True)
    before = await _totals(api)
    # a batch left staged (PostgreSQL): the migration's downgrade and upgrade compact it
    late = llm("late", timestamp=iso(start + timedelta(days=1)), latency_ms=7.0, cost_usd=1.0)
    late_tool = llm(
        "late-tool", kind="tool_call", tool="t1", latency_ms=9.0, ttft_ms=2.0, cost_usd=0.0
    )
    assert (await api.ingest(key, [late, late_tool]))["accepted"] == 2
    async with api.services.db.write() as conn:
        await conn.run_sync(_downgrade, "0013_departments")
    await upgrade(api.services.db)
    await compact(api.services.db, wait=True)
    after = await _totals(api)
    for table, (a, b) in before.items():
        if table.startswith("rollup_"):
            assert after[table] == (a + 2, b + 1_000_000_000), table
        else:  # two more latencies, one more TTFT
            assert after[table] == (a + 2, b + 1), table
    assert before["rollup_base_h"][0] == len(events)
