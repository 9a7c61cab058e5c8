"""Rollup compaction (PostgreSQL): staged batch aggregates move into the rollup tables.

The writer appends each batch's hour aggregates to its fold group's delta table
(`folds.staging_statements`); this job folds every delta into the group's rollup tables
at every grain, one statement per group (`DELETE ... RETURNING` feeding the upserts; for
histograms, feeding the blob merge of `histograms.py` in the same transaction), so a row
is counted in the delta or in the rollup, never both and never neither, in every snapshot.
Queries read rollups and deltas together, so how often it runs changes speed, not answers.
Compaction aggregates many batches at once: a key that every batch touches (the current hour's
totals, say) is upserted once per run instead of once per batch.

One process compacts at a time (a transaction-level advisory lock, which rebuilds take too).

One workspace's rows cannot stop the others': when a run fails, each workspace with staged
rows is compacted on its own, and a workspace whose rows still fail is quarantined (left out
of runs, retried every `QUARANTINE_RETRY_SECONDS`, reported in /health). Its staged rows stay
where queries read them, so its answers are unchanged; only its rollup rows wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import text

from tallyql.clock import clock
from tallyql.storage.database import Database
from tallyql.storage.jobs import PeriodicJob, describe
from tallyql.storage.locks import Lock, hold
from tallyql.storage.rollups.declarations import DELTA_TABLES
from tallyql.storage.rollups.folds import compact_histograms, compaction_statements
from tallyql.storage.rollups.histograms import SqlAlchemyRunner

log = logging.getLogger(__name__)

REPORT = "rollup_compaction"
HISTOGRAM_EVERY = 10
"""Runs between two compactions of the histogram deltas. A histogram row is a blob, rewritten
whole at each merge: compacting the day's and week's latency histograms every second rewrote
megabytes a second under load. Staged histogram rows are a blob per batch, hour and key, so
queries merge ten seconds of them at no visible cost."""
RUN_SPACING = 4.0
"""The server's job pauses this many times its last run's duration between runs, within
[interval, `MAX_PAUSE_INTERVALS` intervals]. Under load runs grow longer, so they come less
often and each folds more batches: every key that those batches share (the current hour's
rows of every rollup, at every grain) is upserted once per run, not once per second, and the
cost per event falls (`bench/writer_steps.py`, see the commit). Histogram deltas are still
folded every `HISTOGRAM_EVERY` intervals of time, as queries merge their blobs in Python."""
MAX_PAUSE_INTERVALS = 3.0
"""The longest pause, in intervals: what queries read from deltas stays a few seconds'
worth, and a job busy more than a fifth of the time cannot stretch its own pauses without
end (a longer pause makes a longer run, which made a longer pause)."""
WORK_MEM = "64MB"
"""A compaction run's memory for sorts and hashes (the writer's batches take as much)."""
QUARANTINE_RETRY_SECONDS = 60.0
"""How often a quarantined workspace's staged rows are tried again."""
FAILING_AFTER = 3
"""Consecutive failed runs after which /health reports the job as failing."""
BEHIND_AFTER_RUNS = 30
"""Intervals without a successful run, while batches are committed, after which /health
reports the job as falling behind."""


async def vacuum_deltas(db: Database) -> None:
    """Vacuum the delta tables (PostgreSQL). Every row staged in them is deleted within
    seconds, and queries read them whole: left to autovacuum, which visits a database once a
    minute at best (and never when it is off), a busy server's deltas fill with dead rows that
    every compaction and every dashboard query scans. A few milliseconds when done often."""
    if not db.dialect.staged_deltas:
        return
    async with db.writer.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"VACUUM {', '.join(DELTA_TABLES)}"))


def _where(skip: Collection[int], only: int | None) -> str:
    """The delta rows a run moves: one workspace's, or all but the quarantined ones'."""
    if only is not None:
        return f"workspace_id = {int(only)}"
    if skip:
        return f"workspace_id NOT IN ({', '.join(str(int(w)) for w in sorted(skip))})"
    return ""


async def compact(
    db: Database,
    wait: bool = False,
    histograms: bool = True,
    skip: Collection[int] = (),
    only: int | None = None,
) -> int | None:
    """Move every staged delta row into the rollup tables (`histograms`: the histogram deltas
    too); the number of rows moved, or None when another process holds the lock (and `wait`
    is false). `skip`: workspaces left out; `only`: the one workspace compacted. SQLite has
    no deltas: 0."""
    if not db.dialect.staged_deltas:
        return 0
    where = _where(skip, only)
    statements = compaction_statements(where)
    async with db.write() as conn:
        if not await hold(conn, Lock.COMPACTION, wait=wait):
            return None
        # a run aggregates tens of thousands of delta rows for each rollup table: hashed in
        # memory (with the default 4MB, the hour aggregates of the wider groups spilled to
        # disk), as the writer's batches are
        await conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        moved = 0
        for sql in statements:
            moved += int((await conn.execute(text(sql))).scalar_one())
        if histograms:
            moved += await compact_histograms(SqlAlchemyRunner(conn), where)
    return moved


async def staged_workspaces(db: Database) -> set[int]:
    """The workspaces with rows in any delta table."""
    union = " UNION ".join(f"SELECT DISTINCT workspace_id FROM {t}" for t in DELTA_TABLES)
    async with db.read() as conn:
        return {int(r[0]) for r in (await conn.execute(text(union))).all()}


class CompactionJob(PeriodicJob):
    """Compacts every `interval` seconds; quarantines a workspace whose staged rows cannot be
    compacted instead of failing every run."""

    name = REPORT
    failing_after = FAILING_AFTER

    def __init__(
        self,
        db: Database,
        interval: float,
        reports: dict[str, dict[str, Any]],
        histogram_every: int = HISTOGRAM_EVERY,
        activity: Callable[[], int] | None = None,
        quarantine_retry_seconds: float = QUARANTINE_RETRY_SECONDS,
        run_spacing: float = 0.0,
    ) -> None:
        """`activity`: a count this process's writer raises with every committed batch (the
        only writer of deltas); while it stands still after a complete run, runs are skipped,
        so an idle server stops spending a few statements a second on empty deltas.
        `run_spacing`: see `RUN_SPACING` (0: every `interval` seconds, however long runs
        take)."""
        super().__init__(
            interval,
            reports,
            first_run_delay=interval,
            behind_after=max(30.0, BEHIND_AFTER_RUNS * interval),
        )
        self.db = db
        self.activity = activity
        self._settled_at: int | None = None
        """The activity count at the start of the last run that compacted everything."""
        self.histogram_every = max(1, histogram_every)
        self.run_spacing = run_spacing
        self._intervals = 0.0
        """Intervals of time that the runs since the last histogram fold stood for."""
        self._weight = 1.0
        """Intervals that the pause before the next run stands for (more when stretched)."""
        self.rows_moved = 0
        self.quarantine_retry_seconds = quarantine_retry_seconds
        self.quarantined: dict[int, dict[str, Any]] = {}
        """Workspace id -> since (ISO time), error, next retry (monotonic seconds)."""

    async def work(self) -> dict[str, Any]:
        mark = self.activity() if self.activity is not None else None
        self._intervals += self._weight
        complete = self.runs == 1 or self._intervals >= self.histogram_every  # first run too
        if complete:
            self._intervals = 0.0
        await self._retry_quarantined(complete)
        skip = set(self.quarantined)
        try:
            moved = await compact(self.db, histograms=complete, skip=skip)
        except Exception as exc:
            log.warning(
                "rollup compaction failed (%s); compacting workspace by workspace", describe(exc)
            )
            moved = await self._isolate(complete, skip, exc)
        if moved is None:
            return {"skipped": "another process holds the compaction lock"}
        self.rows_moved += moved
        if complete and not self.quarantined:
            self._settled_at = mark
            await vacuum_deltas(self.db)
        return {"rows_moved": moved}

    def facts(self) -> dict[str, Any]:
        return {
            "rows_moved_total": self.rows_moved,
            "quarantined_workspaces": {
                str(w): {"since": q["since"], "error": q["error"]}
                for w, q in sorted(self.quarantined.items())
            },
        }

    async def _isolate(self, complete: bool, skip: set[int], failure: Exception) -> int | None:
        """After a failed run: compact each staged workspace alone, quarantining those that
        fail; the rows moved. Raises `failure` when even listing the workspaces fails (the
        database, not a workspace, is the problem) or when every workspace fails alike."""
        try:
            workspaces = sorted(await staged_workspaces(self.db) - skip)
        except Exception:
            raise failure from None
        moved = 0
        failed: dict[int, Exception] = {}
        for workspace in workspaces:
            try:
                count = await compact(self.db, histograms=complete, only=workspace)
            except Exception as exc:
                failed[workspace] = exc
                continue
            if count is None:
                return None  # another process took the lock meanwhile: it compacts
            moved += count
        if failed and len(failed) == len(workspaces) > 1:
            raise failure  # not one workspace's rows: something shared is wrong
        for workspace, error in failed.items():
            log.error(
                "rollup compaction of workspace %s failed (%s); quarantined, retried every %ss",
                workspace,
                describe(error),
                self.quarantine_retry_seconds,
            )
            self.quarantined[workspace] = {
                "since": clock.now().isoformat(),
                "error": describe(error),
                "retry_at": time.monotonic() + self.quarantine_retry_seconds,
            }
        return moved

    async def _retry_quarantined(self, complete: bool) -> None:
        """Try the quarantined workspaces whose retry is due; release those that compact."""
        now = time.monotonic()
        for workspace, entry in sorted(self.quarantined.items()):
            if entry["retry_at"] > now:
                continue
            try:
                moved = await compact(self.db, histograms=True, only=workspace)
            except Exception as exc:
                entry["error"] = describe(exc)
                entry["retry_at"] = now + self.quarantine_retry_seconds
                continue
            if moved is not None:
                log.info("rollup compaction of workspace %s succeeded; released", workspace)
                self.rows_moved += moved
                del self.quarantined[workspace]

    def degraded_reason(self) -> str | None:
        reasons = [super().degraded_reason()]
        if self.quarantined:
            ids = ", ".join(str(w) for w in sorted(self.quarantined))
            reasons.append(f"workspaces quarantined (their rollup rows wait): {ids}")
        return "; ".join(r for r in reasons if r) or None

    @property
    def settled(self) -> bool:
        """Nothing committed here since a run that compacted everything."""
        return self.activity is not None and self._settled_at == self.activity()

    def due(self) -> bool:
        return not self.settled

    def pause(self) -> float:
        stretched = min(self.run_spacing * self.seconds, MAX_PAUSE_INTERVALS * self.interval)
        pause = max(self.interval, stretched)
        self._weight = pause / self.interval if self.interval > 0 else 1.0
        return pause
