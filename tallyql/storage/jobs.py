"""The one shape of a periodic background job, and its `/health` report.

A job subclasses `PeriodicJob`, names itself (its key under `/health` `jobs`) and writes
`work()`: one run, returning that run's facts, raising when it fails. The base owns the rest:

- the loop: a first run after `first_run_delay`, then one every `interval` seconds (the pause
  runs from the end of a run, so a slow run never overlaps the next); `notify()` wakes it
  early; cancelling the task stops it, and `stopped()` then cleans up;
- failures: a failed run is logged (with its traceback the first time in a row) and counted,
  and the loop goes on; `failing_after` failures in a row mark the job degraded, as does no
  successful run for `behind_after` seconds while the job has work (`due()`);
- the report, one format for every job (written to `reports[name]` after every run and before
  every pause, so a job shows from the moment its loop starts):

      ok                    the last run succeeded (true before the first run)
      last_run              start of the last run (ISO 8601 UTC), null before the first
      last_success          start of the last successful run
      last_error            the latest failure: its class and first line (kept after recovery)
      last_error_at         when it happened
      consecutive_failures  failed runs since the last success
      runs, failures        runs and failed runs since the process started
      seconds               how long the last run took
      next_run              when the next run starts at the latest
      degraded              why /health calls the job degraded; absent when it is well
      ...                   the job's facts: the last successful run's (`work()`'s return)
                            and the standing ones (`facts()`)

How to add one: subclass, set `name` (and `failing_after` if two or three failures in a row
are not the right alarm), write `work()`, and start it with `Services.start(job)`
(services.py: an interval of 0 or less leaves it off). Models: storage/standbys.py
`StandbyChecks` (the smallest), retention.py, storage/rollups/compaction.py (extra degraded
reasons, skipped runs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any, ClassVar

from tallyql.clock import clock

log = logging.getLogger(__name__)

Report = dict[str, Any]


def describe(exc: BaseException) -> str:
    """A short reason for reports: the error's class and first line."""
    first = str(exc).strip().split("\n", 1)[0]
    return f"{type(exc).__name__}: {first[:300]}"


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


class PeriodicJob:
    name: ClassVar[str]
    """The job's key in `/health` `jobs` and its task's name."""
    failing_after: ClassVar[int] = 3
    """Consecutive failed runs after which /health reports the job degraded."""

    def __init__(
        self,
        interval: float,
        reports: dict[str, Report] | None,
        first_run_delay: float = 0.0,
        behind_after: float | None = None,
    ) -> None:
        """`reports`: where the report goes (services.reports, shown by /health); None keeps
        it to the job. `behind_after`: seconds without a successful run, while `due()`, after
        which the job is degraded as falling behind (None: never)."""
        self.interval = interval
        self.reports = reports
        self.first_run_delay = first_run_delay
        self.behind_after = behind_after
        self.runs = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_run: datetime | None = None
        self.last_success: datetime | None = None
        self._last_success = time.monotonic()
        """Monotonic time of the last success (or of the job's creation), for the lag."""
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.seconds = 0.0
        self._facts: Report = {}
        self._next_run: datetime | None = None
        self._wake = asyncio.Event()

    # -- what a job writes ---------------------------------------------------------------------

    async def work(self) -> Report:
        """One run; its facts for the report. Raises when the run fails."""
        raise NotImplementedError

    def facts(self) -> Report:
        """Standing facts added to every report (totals, state); none by default."""
        return {}

    def due(self) -> bool:
        """Whether a run has anything to do (False: the loop skips it)."""
        return True

    def pause(self) -> float:
        """Seconds from the end of a run to the start of the next."""
        return self.interval

    async def stopped(self) -> None:
        """Cleanup when the loop is cancelled."""

    def degraded_reason(self) -> str | None:
        """Why /health should call this job degraded, or None. Jobs with more reasons
        extend it."""
        if self.consecutive_failures >= self.failing_after:
            return f"failed {self.consecutive_failures} runs in a row"
        lag = time.monotonic() - self._last_success
        if self.behind_after is not None and self.due() and lag > self.behind_after:
            return f"no successful run for {lag:.0f} s while it has work (falling behind)"
        return None

    # -- what the base does --------------------------------------------------------------------

    def notify(self) -> None:
        """Run now rather than at the end of the pause."""
        self._wake.set()

    async def run_once(self) -> Report:
        """One run with its bookkeeping; never raises (a failure is logged and counted)."""
        started = time.perf_counter()
        self.last_run = clock.now()
        self.runs += 1
        try:
            self._facts = await self.work()
        except Exception as exc:
            self._failed(exc)
        else:
            self.consecutive_failures = 0
            self.last_success = self.last_run
            self._last_success = time.monotonic()
        self.seconds = time.perf_counter() - started
        return self.publish()

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error, self.last_error_at = describe(exc), clock.now()
        self._facts = {}
        if self.consecutive_failures == 1:
            log.exception("%s failed; the next run retries", self.name)
        else:
            log.warning(
                "%s failed again (%d in a row): %s",
                self.name,
                self.consecutive_failures,
                self.last_error,
            )

    def report(self) -> Report:
        report: Report = {
            "ok": self.consecutive_failures == 0,
            "last_run": iso(self.last_run),
            "last_success": iso(self.last_success),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "consecutive_failures": self.consecutive_failures,
            "runs": self.runs,
            "failures": self.failures,
            "seconds": round(self.seconds, 4),
            "next_run": iso(self._next_run),
            **self._facts,
            **self.facts(),
        }
        reason = self.degraded_reason()
        if reason:
            report["degraded"] = reason
        return report

    def publish(self) -> Report:
        """Build the report and hand it to /health."""
        report = self.report()
        if self.reports is not None:
            self.reports[self.name] = report
        return report

    async def run_forever(self) -> None:
        try:
            await self._wait(self.first_run_delay)
            while True:
                if self.due():
                    await self.run_once()
                await self._wait(self.pause())
        finally:
            await self.stopped()

    async def _wait(self, seconds: float) -> None:
        self._next_run = clock.now() + timedelta(seconds=seconds)
        self.publish()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()
