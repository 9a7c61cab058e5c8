"""Rollups kept by the writer (staged deltas plus compaction on PostgreSQL, direct folds on
SQLite) hold exactly what a rebuild from raw events computes, whatever the interleaving of
ingest and compaction; queries answer the same before and after compaction."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import text

from tallyql.config import Settings
from tallyql.demo.generator import generate_batches
from tallyql.storage.database import Database
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups import compaction
from tallyql.storage.rollups.compaction import (
    HISTOGRAM_EVERY,
    MAX_PAUSE_INTERVALS,
    RUN_SPACING,
    CompactionJob,
    compact,
)
from tallyql.storage.rollups.declarations import (
    DELTA_TABLES,
    FLOAT_MEASURES,
    HISTOGRAM_ROLLUPS,
    ROLLUP_TABLES,
    ROLLUPS,
)
from tallyql.storage.rollups.rebuild import rebuild
from tests.conftest import Api, running_api

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
FLOATS = {*FLOAT_MEASURES}

DASHBOARD = """query($r: TimeRangeInput!) {
  overview(range: $r) { totalRequests errorRate p95LatencyMs costUsd activeUsers activeAgents }
  breakdown(dimension: MODEL, metrics: [REQUESTS, COST_USD, P95_LATENCY_MS], range: $r) {
    nodes { key values } }
  tags: breakdown(dimension: TAG, metrics: [REQUESTS], range: $r, first: 50) {
    nodes { key values } }
  timeseries(metrics: [REQUESTS, TOTAL_TOKENS], range: $r, granularity: HOUR) {
    series { values } }
}"""
RANGE = {
    "start": (END - timedelta(days=3)).isoformat(),
    "end": (END + timedelta(hours=1)).isoformat(),
}


def _batches(count: int, size: int) -> list[list[dict[str, Any]]]:
    return list(generate_batches(count, 2, seed=7, end=END, batch_size=size))


async def _table_rows(api: Api) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with api.services.db.read() as conn:
        for name, table in sorted(ROLLUP_TABLES.items()):
            keys = ", ".join(c.name for c in table.primary_key.columns)
            rows = (await conn.execute(text(f"SELECT * FROM {name} ORDER BY {keys}"))).all()
            out[name] = [tuple(r) for r in rows]
    return out


KEPT_ON = {r.table(g): r.dialects for r in (*ROLLUPS, *HISTOGRAM_ROLLUPS) for g in r.grains}


def _assert_same_rows(
    kept: dict[str, list[tuple[Any, ...]]], rebuilt: dict[str, Any], dialect: Dialect
) -> None:
    """Every rollup kept on `dialect` holds rows, the same kept as rebuilt; the others (kept
    on another database only) hold none."""
    for name, table in ROLLUP_TABLES.items():
        floats = [i for i, c in enumerate(table.columns) if c.name in FLOATS]
        assert len(kept[name]) == len(rebuilt[name]), name
        assert bool(kept[name]) == (dialect in KEPT_ON[name]), name
        for a, b in zip(kept[name], rebuilt[name], strict=True):
            exact = [v for i, v in enumerate(a) if i not in floats]
            assert exact == [v for i, v in enumerate(b) if i not in floats], (name, a, b)
            for i in floats:
                assert math.isclose(a[i], b[i], rel_tol=1e-9, abs_tol=1e-9), (name, a, b)


async def _delta_rows(api: Api) -> int:
    if api.services.db.dialect is not Dialect.POSTGRESQL:
        return 0
    async with api.services.db.read() as conn:
        counts = [
            (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
            for t in DELTA_TABLES
        ]
    return sum(counts)


async def test_compaction_racing_ingest_equals_a_rebuild(api: Api) -> None:
    key = await api.key()
    batches = _batches(3000, 150)
    stop = asyncio.Event()
    runs = 0

    async def compact_continuously() -> None:
        nonlocal runs
        while not stop.is_set():
            await compact(api.services.db, wait=True)
            runs += 1
            await asyncio.sleep(0)

    compactor = asyncio.create_task(compact_continuously())
    results = await asyncio.gather(*(api.ingest(key, b) for b in batches))
    stop.set()
    await compactor
    assert sum(r["accepted"] for r in results) == 3000
    assert runs > 0

    staged = await api.data(key, DASHBOARD, {"r": RANGE})
    await compact(api.services.db, wait=True)
    assert await _delta_rows(api) == 0
    assert await api.data(key, DASHBOARD, {"r": RANGE}) == staged
    assert staged["overview"]["totalRequests"] == 3000

    kept = await _table_rows(api)
    await rebuild(api.services.db, END - timedelta(days=4), END + timedelta(days=1))
    _assert_same_rows(kept, await _table_rows(api), api.services.db.dialect)
    assert await api.data(key, DASHBOARD, {"r": RANGE}) == staged


async def test_staged_deltas_answer_like_compacted_rollups(
    settings: Settings, db_kind: str
) -> None:
    """With compaction off, PostgreSQL answers from deltas alone; a retried batch stages
    nothing; after compaction the answers and the rollup rows are those of a rebuild."""
    async with running_api(replace(settings, rollup_compaction_seconds=0), db_kind) as api:
        key = await api.key()
        batches = _batches(1200, 300)
        for batch in batches:
            assert (await api.ingest(key, batch))["accepted"] == 300
        staged_rows = await _delta_rows(api)
        again = await api.ingest(key, batches[0])
        assert again == {"accepted": 0, "duplicates": 300, "rejected": 0, "errors": []}
        assert await _delta_rows(api) == staged_rows
        if db_kind == "postgresql":
            assert staged_rows > 0
            assert not any((await _table_rows(api)).values())  # nothing compacted yet
        staged = await api.data(key, DASHBOARD, {"r": RANGE})
        assert staged["overview"]["totalRequests"] == 1200

        await compact(api.services.db, wait=True)
        assert await _delta_rows(api) == 0
        assert await api.data(key, DASHBOARD, {"r": RANGE}) == staged
        kept = await _table_rows(api)
        await rebuild(api.services.db, END - timedelta(days=4), END + timedelta(days=1))
        _assert_same_rows(kept, await _table_rows(api), api.services.db.dialect)


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_sqlite_folds_rollups_in_the_writers_transaction_without_a_job(
    api: Api, db_kind: str
) -> None:
    """SQLite only (PostgreSQL stages deltas, the tests below): no compaction job, no delta
    tables, and the rollups hold what a rebuild computes as soon as the batch commits."""
    assert "rollup_compaction" not in api.services.background_status()
    assert "rollup_compaction" not in (await api.client.get("/health")).json()["jobs"]
    key = await api.key()
    assert (await api.ingest(key, _batches(60, 60)[0]))["accepted"] == 60
    async with api.services.db.read() as conn:
        names = {r[0] for r in await conn.execute(text("SELECT name FROM sqlite_master"))}
    assert not names & set(DELTA_TABLES)
    answered = await api.data(key, DASHBOARD, {"r": RANGE})
    assert answered["overview"]["totalRequests"] == 60
    kept = await _table_rows(api)
    await rebuild(api.services.db, END - timedelta(days=4), END + timedelta(days=1))
    _assert_same_rows(kept, await _table_rows(api), api.services.db.dialect)
    assert await api.data(key, DASHBOARD, {"r": RANGE}) == answered


@pytest.mark.parametrize("db_kind", ["postgresql"])
async def test_compaction_reports_in_health_on_postgresql(api: Api, db_kind: str) -> None:
    key = await api.key()
    await api.ingest(key, _batches(50, 50)[0])
    for _ in range(50):
        report = api.services.job_reports().get("rollup_compaction")
        if report and report.get("rows_moved_total"):
            break
        await asyncio.sleep(0.1)
    health = (await api.client.get("/health")).json()
    assert health["jobs"]["rollup_compaction"]["ok"] is True
    assert health["jobs"]["rollup_compaction"]["rows_moved_total"] > 0
    assert await _delta_rows(api) == 0


@pytest.mark.parametrize("db_kind", ["postgresql"])
async def test_an_idle_compactor_skips_until_a_batch_commits_on_postgresql(
    settings: Settings, db_kind: str
) -> None:
    """PostgreSQL only (SQLite has no deltas, no job: the test above): after a run that
    compacted everything (histograms included), nothing runs until this process's writer
    commits again; then runs resume until the histograms are folded too."""
    async with running_api(replace(settings, rollup_compaction_seconds=0), db_kind) as api:
        writer = api.services.writer
        job = CompactionJob(
            api.services.db, 0.01, {}, histogram_every=3, activity=lambda: writer.stats.batches
        )
        key = await api.key()
        assert not job.settled  # never ran: deltas of an earlier process may wait
        await job.run_once()  # run 0 folds histograms too
        assert job.settled
        await api.ingest(key, _batches(40, 40)[0])
        assert not job.settled and await _delta_rows(api) > 0
        task = asyncio.create_task(job.run_forever())
        try:
            for _ in range(200):
                if job.settled:
                    break
                await asyncio.sleep(0.01)
            assert job.settled and job.runs == 4  # runs 1 and 2 skip histograms, 3 folds them
            assert await _delta_rows(api) == 0
            await asyncio.sleep(0.1)
            assert job.runs == 4  # idle: no more runs
        finally:
            task.cancel()


async def test_pauses_stretch_under_load_but_histograms_keep_their_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No database: the job's schedule alone (its runs' compaction is recorded, not done).
    A pause is RUN_SPACING times the last run's duration, within [interval,
    MAX_PAUSE_INTERVALS intervals]; histogram deltas are folded on the first run and then
    once HISTOGRAM_EVERY intervals of pauses have passed, however few runs they took."""
    folds: list[bool] = []

    async def fake_compact(db: Any, histograms: bool = True, **_: Any) -> int:
        folds.append(histograms)
        return 0

    async def no_vacuum(db: Any) -> None:
        return None

    monkeypatch.setattr(compaction, "compact", fake_compact)
    monkeypatch.setattr(compaction, "vacuum_deltas", no_vacuum)
    interval = 0.5
    job = CompactionJob(cast(Database, None), interval, {}, run_spacing=RUN_SPACING)

    async def cycle(run_seconds: float) -> float:
        await job.run_once()
        job.seconds = run_seconds  # as if the run had taken that long
        return job.pause()

    quick = [await cycle(0.01) for _ in range(HISTOGRAM_EVERY + 1)]
    assert quick == [interval] * (HISTOGRAM_EVERY + 1)
    assert folds == [True, *[False] * (HISTOGRAM_EVERY - 1), True]  # every tenth run
    assert await cycle(0.2) == pytest.approx(RUN_SPACING * 0.2)
    folds.clear()
    longest = MAX_PAUSE_INTERVALS * interval
    slow = [await cycle(10.0) for _ in range(8)]
    assert slow == [longest] * 8
    # each stretched pause stands for MAX_PAUSE_INTERVALS intervals of the ten
    every = math.ceil(HISTOGRAM_EVERY / MAX_PAUSE_INTERVALS)
    assert folds.index(True) < every
    first = folds.index(True)
    assert folds[first + 1 : first + every] == [False] * (every - 1)
    assert folds[first + every] is True
