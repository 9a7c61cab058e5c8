"""Rollup compaction (PostgreSQL): staged batch aggregates move into the rollup tables.

The writer appends each batch's hour aggregates to its fold group's delta table
(`rollup_folds.staging_statements`); this job folds every delta into the group's rollup tables
at every grain, one statement per group (`DELETE ... RETURNING` feeding the upserts; for
histograms, feeding the blob merge of `histogram_fold.py` in the same transaction), so a row
is counted in the delta or in the rollup, never both and never neither, in every snapshot.
Queries read rollups and deltas together, so how often it runs changes speed, not answers.
Compaction aggregates many batches at once: a key that every batch touches (the current hour's
totals, say) is upserted once per run instead of once per batch.

One process compacts at a time (a transaction-level advisory lock, which rebuilds take too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from tallyql.clock import clock
from tallyql.storage.database import Database
from tallyql.storage.histogram_fold import SqlAlchemyRunner
from tallyql.storage.rollup_folds import compact_histograms, compaction_statements
from tallyql.storage.rollups import DELTA_TABLES

log = logging.getLogger(__name__)

REPORT = "rollup_compaction"
HISTOGRAM_EVERY = 10
"""Runs between two compactions of the histogram deltas. A histogram row is a blob, rewritten
whole at each merge: compacting the day's and week's latency histograms every second rewrote
megabytes a second under load. Staged histogram rows are a blob per batch, hour and key, so
queries merge ten seconds of them at no visible cost."""
LOCK_ID = 0x7A11_7004
"""Advisory lock held by a compaction, and by a rebuild (which must not interleave)."""


async def vacuum_deltas(db: Database) -> None:
    """Vacuum the delta tables (PostgreSQL). Every row staged in them is deleted within
    seconds, and queries read them whole: left to autovacuum, which visits a database once a
    minute at best (and never when it is off), a busy server's deltas fill with dead rows that
    every compaction and every dashboard query scans. A few milliseconds when done often."""
    if not db.is_postgres:
        return
    async with db.writer.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"VACUUM {', '.join(DELTA_TABLES)}"))


async def compact(db: Database, wait: bool = False, histograms: bool = True) -> int | None:
    """Move every staged delta row into the rollup tables (`histograms`: the histogram deltas
    too); the number of rows moved, or None when another process holds the lock (and `wait`
    is false). SQLite has no deltas: 0."""
    if not db.is_postgres:
        return 0
    statements = compaction_statements()
    async with db.write() as conn:
        if wait:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
        else:
            got = await conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": LOCK_ID})
            if not got.scalar_one():
                return None
        moved = 0
        for sql in statements:
            moved += int((await conn.execute(text(sql))).scalar_one())
        if histograms:
            moved += await compact_histograms(SqlAlchemyRunner(conn))
    return moved


class CompactionJob:
    """Compacts every `interval` seconds and reports its last run in /health."""

    def __init__(
        self,
        db: Database,
        interval: float,
        reports: dict[str, dict[str, Any]],
        histogram_every: int = HISTOGRAM_EVERY,
        activity: Callable[[], int] | None = None,
    ) -> None:
        """`activity`: a count this process's writer raises with every committed batch (the
        only writer of deltas); while it stands still after a complete run, runs are skipped,
        so an idle server stops spending a few statements a second on empty deltas."""
        self.db = db
        self.activity = activity
        self._settled_at: int | None = None
        """The activity count at the start of the last run that compacted everything."""
        self.histogram_every = max(1, histogram_every)
        self.interval = interval
        self.reports = reports
        self.runs = 0
        self.rows_moved = 0

    async def run_once(self) -> None:
        started = time.perf_counter()
        report: dict[str, Any] = {"last_run": clock.now().isoformat()}
        mark = self.activity() if self.activity is not None else None
        complete = self.runs % self.histogram_every == 0
        try:
            moved = await compact(self.db, histograms=complete)
            self.runs += 1
            if moved is None:
                report |= {"ok": True, "skipped": "another process holds the compaction lock"}
            else:
                self.rows_moved += moved
                report |= {"ok": True, "rows_moved": moved}
                if complete:
                    self._settled_at = mark
                    await vacuum_deltas(self.db)
        except Exception as exc:
            log.exception("rollup compaction failed")
            report |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        report |= {
            "seconds": round(time.perf_counter() - started, 4),
            "runs": self.runs,
            "rows_moved_total": self.rows_moved,
        }
        self.reports[REPORT] = report

    @property
    def settled(self) -> bool:
        """Nothing committed here since a run that compacted everything."""
        return self.activity is not None and self._settled_at == self.activity()

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.settled:
                await self.run_once()
