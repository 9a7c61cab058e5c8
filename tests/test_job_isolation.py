"""One workspace's data cannot stop a background job for the others (issue 14, section 2).

Two events with `latency_ms: 1e308` were accepted and overflowed the float sums of PostgreSQL's
rollup compaction, which then failed every second for every workspace while /health said ok.
They are now refused at ingest; and should staged rows still fail to compact, the compactor
quarantines their workspace, compacts the others, and /health reports it as degraded.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from tallyql.config import Settings
from tallyql.storage.rollups import compaction
from tallyql.storage.rollups.compaction import REPORT, CompactionJob
from tallyql.storage.rollups.declarations import DELTA_TABLES
from tests.conftest import Api, running_api
from tests.support.helpers import llm, workspace_id_of

MODELS_DELTA = next(t for t in DELTA_TABLES if "latency_sum" in DELTA_TABLES[t].columns)


async def _delta_counts(api: Api) -> dict[int, int]:
    """Staged delta rows per workspace, over every delta table."""
    counts: dict[int, int] = {}
    async with api.services.db.read() as conn:
        for table in DELTA_TABLES:
            rows = await conn.execute(
                text(f"SELECT workspace_id, count(*) FROM {table} GROUP BY workspace_id")
            )
            for workspace, count in rows.all():
                counts[workspace] = counts.get(workspace, 0) + count
    return counts


async def _poison(api: Api, workspace: int) -> None:
    """Stage two copies of a workspace's delta rows whose latency sums overflow a double
    when added (what two accepted 1e308 latencies used to stage)."""
    columns = [c.name for c in DELTA_TABLES[MODELS_DELTA].columns]
    chosen = ", ".join("1e308" if c == "latency_sum" else c for c in columns)
    async with api.services.db.write() as conn:
        for _ in range(2):
            await conn.execute(
                text(
                    f"INSERT INTO {MODELS_DELTA} ({', '.join(columns)}) "
                    f"SELECT {chosen} FROM {MODELS_DELTA} WHERE workspace_id = {workspace} "
                    "AND latency_sum < 1e300"
                )
            )


async def _requests(api: Api, key: str) -> int:
    data = await api.data(key, "{ overview(range: {preset: LAST_24H}) { totalRequests } }")
    return int(data["overview"]["totalRequests"])


async def test_huge_latencies_are_refused_and_a_poisoned_workspace_is_quarantined(
    settings: Settings, db_kind: str
) -> None:
    async with running_api(replace(settings, rollup_compaction_seconds=0), db_kind) as api:
        alpha, beta = await api.key("alpha"), await api.key("beta")
        assert (await api.ingest(alpha, [llm(f"a{i}", latency_ms=120.0) for i in range(3)]))[
            "accepted"
        ] == 3
        assert (await api.ingest(beta, [llm(f"b{i}", latency_ms=80.0) for i in range(4)]))[
            "accepted"
        ] == 4
        # the reproduction of the issue: refused one by one, the call itself succeeds
        result = await api.ingest(
            alpha, [llm("huge1", latency_ms=1e308), llm("huge2", latency_ms=1e308), llm("a3")]
        )
        assert result["accepted"] == 1 and result["rejected"] == 2
        assert [(e["index"], e["field"]) for e in result["errors"]] == [
            (0, "latency_ms"),
            (1, "latency_ms"),
        ]
        assert await _requests(api, alpha) == 4
        assert await _requests(api, beta) == 4

        alpha_id = await workspace_id_of(api.services, alpha)
        beta_id = await workspace_id_of(api.services, beta)
        job = CompactionJob(api.services.db, 1.0, api.services.reports)
        if db_kind == "postgresql":
            await _poison(api, alpha_id)
            await job.run_once()
            report = api.services.reports[REPORT]
            assert report["ok"] is True
            assert list(report["quarantined_workspaces"]) == [str(alpha_id)]
            assert "out of range" in report["quarantined_workspaces"][str(alpha_id)]["error"]
            staged = await _delta_counts(api)
            assert staged.get(beta_id, 0) == 0  # beta's rows went on into the rollups
            assert staged[alpha_id] > 0  # alpha's wait, where queries still read them
            assert await _requests(api, beta) == 4
            health = await api.client.get("/health")
            assert health.status_code == 503
            assert health.json()["status"] == "degraded"
            assert any("quarantined" in r and str(alpha_id) in r for r in health.json()["reasons"])
            # new batches of beta keep being compacted while alpha is quarantined
            await api.ingest(beta, [llm("b-late")])
            await job.run_once()
            assert (await _delta_counts(api)).get(beta_id, 0) == 0
            # once the bad rows are gone, the retry releases alpha
            async with api.services.db.write() as conn:
                await conn.execute(text(f"DELETE FROM {MODELS_DELTA} WHERE latency_sum >= 1e300"))
            job.quarantined[alpha_id]["retry_at"] = 0.0
            await job.run_once()
            assert job.quarantined == {}
            assert (await _delta_counts(api)).get(alpha_id, 0) == 0
        else:
            await job.run_once()  # SQLite folds rollups in the writer: nothing is staged
            assert api.services.reports[REPORT]["rows_moved"] == 0
        assert "degraded" not in api.services.reports[REPORT]
        health = await api.client.get("/health")
        assert health.status_code == 200, health.json()
        assert health.json()["reasons"] == []
        assert await _requests(api, alpha) == 4
        assert await _requests(api, beta) == (5 if db_kind == "postgresql" else 4)


async def test_a_job_failing_run_after_run_degrades_health_with_its_reason(
    settings: Settings, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_api(replace(settings, rollup_compaction_seconds=0), db_kind) as api:
        job = CompactionJob(api.services.db, 1.0, api.services.reports)

        async def broken(*args: Any, **kwargs: Any) -> int:
            raise RuntimeError("connection reset\nwith detail")

        async def unlisted(*args: Any) -> set[int]:
            raise RuntimeError("still down")

        monkeypatch.setattr(compaction, "compact", broken)
        monkeypatch.setattr(compaction, "staged_workspaces", unlisted)
        for run in range(1, compaction.FAILING_AFTER + 1):
            await job.run_once()
            report = api.services.reports[REPORT]
            assert report["ok"] is False
            assert report["last_error"] == "RuntimeError: connection reset"
            assert report["consecutive_failures"] == run
            assert job.quarantined == {}  # the database failed, not a workspace
        health = await api.client.get("/health")
        assert health.status_code == 503
        assert health.json()["reasons"] == [
            f"{REPORT}: failed {compaction.FAILING_AFTER} runs in a row"
        ]
        monkeypatch.undo()
        await job.run_once()
        assert api.services.reports[REPORT]["consecutive_failures"] == 0
        assert (await api.client.get("/health")).status_code == 200


async def test_a_compactor_falling_behind_says_so(settings: Settings, db_kind: str) -> None:
    async with running_api(replace(settings, rollup_compaction_seconds=0), db_kind) as api:
        batches = [0]
        job = CompactionJob(api.services.db, 1.0, api.services.reports, activity=lambda: batches[0])
        await job.run_once()
        assert job.settled and job.degraded_reason() is None
        # batches keep being committed while no run has succeeded for a minute
        batches[0] += 1
        job._last_success = time.monotonic() - 60
        reason = job.degraded_reason()
        assert reason is not None and reason.startswith("no successful run for 60 s")
        assert "falling behind" in reason
        await job.run_once()  # a successful run catches up
        assert job.degraded_reason() is None


async def test_a_retention_job_failing_twice_degrades_health(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tallyql import retention

    job = api.services.retention
    assert job is not None

    async def broken(*args: Any) -> None:
        raise RuntimeError("purge refused")

    monkeypatch.setattr(job, "_purge_once", broken)
    for run in range(1, retention.FAILING_AFTER + 1):
        report = await job.run_once()
        assert report["ok"] is False and report["consecutive_failures"] == run
    health = await api.client.get("/health")
    assert health.status_code == 503
    assert health.json()["reasons"] == [
        f"retention: failed {retention.FAILING_AFTER} runs in a row"
    ]
    monkeypatch.undo()
    report = await job.run_once()
    assert report["ok"] is True and "degraded" not in report
    assert (await api.client.get("/health")).status_code == 200
