"""Migrations that add rollups fill them from raw events exactly as the writer would have."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.compaction import compact
from tests.conftest import Api
from tests.support.helpers import llm

BACKFILL = importlib.import_module("tallyql.storage.migrations.versions.0006_actor_rollups")


def _events() -> list[dict[str, object]]:
    start = datetime.now(UTC) - timedelta(days=3)
    out = []
    for i in range(80):
        event = llm(
            f"e{i}",
            timestamp=(start + timedelta(minutes=53 * i)).isoformat(),
            latency_ms=10.0 + i,
            cost_usd=0.001 * i,
            status=("error", "success", "blocked", "success")[i % 4],
        )
        if i % 3:
            event["user_id"] = f"u{i % 5}"
        if i % 2:
            event.update(kind="agent_run", agent_id=f"a{i % 3}", agent_instance_id=f"a-{i % 7}")
        if i % 5 == 0:
            event.pop("latency_ms")
            event["ttft_ms"] = 3.5
        out.append(event)
    return out


async def test_backfill_equals_what_the_writer_keeps(api: Api) -> None:
    key = await api.key()
    assert (await api.ingest(key, _events()))["accepted"] == 80
    db = api.services.db
    await compact(db, wait=True)  # PostgreSQL: staged batch aggregates into the rollup tables
    dialect = db.dialect
    for name, dims in BACKFILL.ROLLUPS:
        for grain, seconds in BACKFILL.GRAINS.items():
            table = f"rollup_{name}_{grain}"
            order = ", ".join(("workspace_id", "period", *dims))
            async with db.read() as conn:
                kept = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))).all()
            assert len(kept) > 3, table
            async with db.write() as conn:
                await conn.execute(text(f"DELETE FROM {table}"))
                await conn.execute(text(BACKFILL.backfill_sql(dialect, table, dims, seconds)))
            async with db.read() as conn:
                filled = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))).all()
            assert filled == kept, table


STAMPS = importlib.import_module("tallyql.storage.migrations.versions.0011_session_day_versions")


async def test_the_stamp_backfill_covers_every_day_that_sessions_span(api: Api) -> None:
    key = await api.key()
    start = datetime(2026, 11, 10, 22, tzinfo=UTC)
    events = [
        llm("a0", timestamp=start.isoformat(), session_id="a"),
        llm("a1", timestamp=(start + timedelta(days=2, hours=1)).isoformat(), session_id="a"),
        llm("b0", timestamp=(start + timedelta(days=5)).isoformat(), session_id="b"),
    ]
    await api.ingest(key, events)
    db = api.services.db
    async with db.write() as conn:
        written = (await conn.execute(text("SELECT day FROM session_day_versions"))).scalars()
        written = sorted(written)
        await conn.execute(text("DELETE FROM session_day_versions"))
        await conn.execute(
            text(
                STAMPS.STAMP_POSTGRESQL if db.dialect is Dialect.POSTGRESQL else STAMPS.STAMP_SQLITE
            )
        )
        rows = (await conn.execute(text("SELECT day, version FROM session_day_versions"))).all()
    first = (start - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert written == [first, first + 1, first + 2, first + 5]  # what the writer stamped
    assert sorted(day for day, _ in rows) == written  # the backfill, the same days
    assert all(version is not None for _, version in rows)
