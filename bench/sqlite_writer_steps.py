"""Where the SQLite writer's time goes: demo events written through the writer's own database
side (one lane, in this process, into a temporary SQLite file), each step timed.

    .venv/bin/python bench/sqlite_writer_steps.py --events 40000 --days 30
    .venv/bin/python bench/sqlite_writer_steps.py --events 40000 --days 0.04

SQLite's writer is one connection working in a thread of the server (aiosqlite), so its
events/s here bound the server's ingest over HTTP. Each statement the writer runs through
aiosqlite is timed (wall clock: SQLite works in that thread while the loop waits), labelled by
the table it writes or its first words; Python steps (the histogram step merges blobs in
Python) are timed whole, their statements included. The first batch warms up and is not
counted. PostgreSQL's writer has its own profiler, bench/writer_steps.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import text
from support import cpu_seconds, prepared_demo_events  # bench/ is the script's directory

from tallyql.services import WRITER_CONTRIBUTORS
from tallyql.storage.database import Database
from tallyql.storage.ingest.batch import BATCH_TABLE, batches_for
from tallyql.storage.ingest.record import TS
from tallyql.storage.migrate import upgrade

WHOLE = "(whole batch)"


class Timings:
    """Seconds by label, counted while `on` is set."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.on = False

    def add(self, label: str, started: float) -> None:
        if self.on:
            self.seconds[label] += time.perf_counter() - started


def statement_label(sql: str) -> str:
    written = re.search(r"INSERT INTO (?:temp\.)?(\w+)", sql)
    if written:
        return f"insert {written.group(1)}"
    if sql.lstrip().upper().startswith("WITH"):
        return "aggregate (WITH ...)"
    return sql.strip()[:40]


def time_statements(timings: Timings) -> None:
    """Time every statement run through aiosqlite from now on."""
    execute, executemany = aiosqlite.Connection.execute, aiosqlite.Connection.executemany

    async def timed_execute(self: aiosqlite.Connection, sql: str, *args: Any) -> Any:
        started = time.perf_counter()
        result = await execute(self, sql, *args)
        timings.add(statement_label(sql), started)
        return result

    async def timed_executemany(self: aiosqlite.Connection, sql: str, *args: Any) -> Any:
        started = time.perf_counter()
        result = await executemany(self, sql, *args)
        timings.add(f"{statement_label(sql)} (many)", started)
        return result

    aiosqlite.Connection.execute = timed_execute  # type: ignore[method-assign, assignment]
    aiosqlite.Connection.executemany = timed_executemany  # type: ignore[method-assign, assignment]


def timed_step(step: Any, timings: Timings) -> Any:
    """A Python step (a callable) timed whole; statements and conditional steps as they are."""
    if not callable(step):
        return step
    python_step: Callable[..., Awaitable[Any]] = step
    label = f"python step {getattr(step, '__qualname__', '?').split('.<locals>')[0]}"

    async def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await python_step(*args, **kwargs)
        timings.add(label, started)
        return result

    return run


async def run(args: argparse.Namespace) -> None:
    timings = Timings()
    time_statements(timings)
    workdir = Path(tempfile.mkdtemp(prefix="tallyql-sqlite-steps-"))
    db = Database(f"sqlite:///{workdir / 'tallyql.db'}")
    try:
        await upgrade(db)
        async with db.write() as conn:
            workspace = (
                await conn.execute(
                    text(
                        "INSERT INTO workspaces (name, created_at) "
                        "VALUES ('bench', CURRENT_TIMESTAMP) RETURNING id"
                    )
                )
            ).scalar_one()
        total = args.events + args.batch  # the first batch warms up, not counted
        events = prepared_demo_events(workspace, total, args.days, args.seed)
        batches = batches_for(db, lanes=1)
        # the steps the server's writer runs
        steps = [
            timed_step(s, timings)
            for c in WRITER_CONTRIBUTORS
            for s in c(batches.dialect, BATCH_TABLE)
        ]
        await batches.ensure_days({e.record[TS].date() for e in events})
        chunks = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
        cpu = 0.0
        for n, chunk in enumerate(chunks):
            timings.on = n > 0
            started, cpu_started = time.perf_counter(), cpu_seconds(os.getpid())
            await batches.write(chunk, steps)
            timings.add(WHOLE, started)
            if n > 0:
                cpu += cpu_seconds(os.getpid()) - cpu_started
        await batches.close()
    finally:
        await db.dispose()
        shutil.rmtree(workdir, ignore_errors=True)  # a 40,000-event run leaves about 60 MB
    counted = sum(len(c) for c in chunks[1:])
    whole = timings.seconds[WHOLE]
    print(
        f"{counted:,} events in {len(chunks) - 1} batches of {args.batch:,} over {args.days:g} "
        f"days, one lane: {counted / whole:,.0f} events/s of writer time"
    )
    # the process's CPU (every thread) while it wrote: steadier than wall clock on a machine
    # whose other processes take cores away
    print(f"process CPU while writing: {cpu / counted * 1e6:.1f} us/event")
    print(f"{'step':<52}{'us/event':>10}")
    ranked = sorted(timings.seconds.items(), key=lambda kv: -kv[1])
    for label, seconds in ranked[: args.top]:
        print(f"{label:<52}{seconds / counted * 1e6:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--days", type=float, default=30.0, help="how much time events span")
    parser.add_argument("--batch", type=int, default=2_000, help="events per transaction")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=20, help="steps printed")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
