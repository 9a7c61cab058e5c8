"""The periodic job base (tallyql/storage/jobs.py): its loop, failure counting and report."""

from __future__ import annotations

import asyncio
from typing import Any

from tallyql.storage.jobs import PeriodicJob

FORMAT = {
    "ok",
    "last_run",
    "last_success",
    "last_error",
    "last_error_at",
    "consecutive_failures",
    "runs",
    "failures",
    "seconds",
    "next_run",
}


class Flaky(PeriodicJob):
    """Fails while `failing` is set; counts what it did."""

    name = "flaky"
    failing_after = 2

    def __init__(self, interval: float, reports: dict[str, dict[str, Any]]) -> None:
        super().__init__(interval, reports, first_run_delay=interval)
        self.failing = False
        self.done = 0
        self.stopped_once = False

    async def work(self) -> dict[str, Any]:
        if self.failing:
            raise RuntimeError("refused\nsecond line")
        self.done += 1
        return {"done_this_run": 1}

    def facts(self) -> dict[str, Any]:
        return {"done_total": self.done}

    async def stopped(self) -> None:
        self.stopped_once = True


async def test_a_failure_is_counted_the_loop_goes_on_and_repeated_failures_degrade() -> None:
    reports: dict[str, dict[str, Any]] = {}
    job = Flaky(60.0, reports)
    first = await job.run_once()
    assert set(first) == FORMAT | {"done_this_run", "done_total"}
    assert first["ok"] is True and first["runs"] == 1 and first["last_error"] is None
    assert first["last_success"] == first["last_run"] and "degraded" not in first
    job.failing = True
    for run in (1, 2):
        report = await job.run_once()
        assert report["ok"] is False and report["consecutive_failures"] == run
        assert report["last_error"] == "RuntimeError: refused"
        assert "done_this_run" not in report  # a failed run has no facts of its own
        assert report["last_success"] == first["last_run"]
    assert reports["flaky"] == report
    assert report["degraded"] == "failed 2 runs in a row"
    assert (report["runs"], report["failures"], report["done_total"]) == (3, 2, 1)
    job.failing = False
    recovered = await job.run_once()
    assert recovered["ok"] is True and recovered["consecutive_failures"] == 0
    assert "degraded" not in recovered
    assert recovered["last_error"] == "RuntimeError: refused"  # kept: it flapped
    assert (recovered["runs"], recovered["failures"], recovered["done_total"]) == (4, 2, 2)


async def test_the_loop_waits_its_first_delay_wakes_on_notify_and_cleans_up_on_cancel() -> None:
    reports: dict[str, dict[str, Any]] = {}
    job = Flaky(60.0, reports)
    task = asyncio.create_task(job.run_forever())
    await asyncio.sleep(0.05)
    # reported as soon as the loop starts, before its first run (due in a minute)
    assert reports["flaky"]["runs"] == 0 and reports["flaky"]["last_run"] is None
    assert reports["flaky"]["next_run"] is not None and job.done == 0
    job.failing = True
    job.notify()
    await asyncio.sleep(0.05)
    assert job.consecutive_failures == 1 and not task.done()  # a failure does not stop it
    job.failing = False
    job.notify()
    await asyncio.sleep(0.05)
    assert job.done == 1 and reports["flaky"]["ok"] is True and reports["flaky"]["runs"] == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert job.stopped_once
