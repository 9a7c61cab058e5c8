"""Where the PostgreSQL writer's database time goes: CPU per event of each step of a batch.

Writes demo events through the writer's own database side (`batches_for`, one lane, the
contributors `start_services` gives the writer) into a scratch database, but runs each
statement of a batch's multi-statement query on its own, reading the CPU time of the
PostgreSQL backend from /proc before and after each (the database runs on this machine). CPU
per event is far less sensitive to a loaded machine than events/s. With `--compact-every N`
the rollup compaction (and the VACUUM of the deltas) runs after every N batches, as the
compaction job does about once a second, and is counted too.

    .venv/bin/python bench/writer_steps.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/writer_steps.py --database-url URL --days 30 --batch 1350 \
        --compact-every 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
from asyncpg.connection import _ConnectionProxy
from support import admin, cpu_seconds, prepared_demo_events  # bench/ is the script's directory

from tallyql.services import WRITER_CONTRIBUTORS
from tallyql.storage.database import Database
from tallyql.storage.ingest.batch import BATCH_TABLE, batches_for
from tallyql.storage.ingest.record import TS
from tallyql.storage.migrate import upgrade
from tallyql.storage.rollups.compaction import HISTOGRAM_EVERY, compact, vacuum_deltas
from tallyql.storage.rollups.declarations import FOLD_GROUPS

STEPS = (  # (label, how the statement starts or what it holds), first match wins
    ("claim keys", "SAVEPOINT claim"),
    ("insert events", "INSERT INTO events "),
    ("insert payloads", "INSERT INTO payloads "),
    ("rollup staging", "INSERT INTO rollup_delta_"),
    ("block audit", "INSERT INTO audit_events"),
    ("sessions", "session_day_versions"),
    ("commit", "COMMIT"),
)


class Costs:
    """CPU and wall seconds by step, counted while `on` is set (the first batch warms up)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.python: dict[str, float] = defaultdict(float)
        """CPU seconds of this process (the server's share of a step), by step."""
        self.on = False

    async def time(self, label: str, pids: list[int], work: Any) -> Any:
        cpu, wall = sum(map(cpu_seconds, pids)), time.perf_counter()
        result = await work
        if self.on:
            self.cpu[label] += sum(map(cpu_seconds, pids)) - cpu
            self.wall[label] += time.perf_counter() - wall
        return result


class TimedConnection(_ConnectionProxy):
    """An asyncpg connection whose multi-statement queries run statement by statement, each
    timed (the batch's statements are joined with ';\\n'). asyncpg counts its connection
    proxies as connections (isinstance), as the storage layer needs to tell a raw asyncpg
    connection (the writer's) from an SQLAlchemy one (storage/locks.py `hold`)."""

    def __init__(self, conn: asyncpg.Connection, costs: Costs) -> None:
        self._conn = conn
        self._costs = costs
        self._pids = [conn.get_server_pid()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, query: str, *args: Any) -> str:
        if args or query in ("BEGIN", "ROLLBACK"):
            return await self._conn.execute(query, *args)
        status = ""
        for statement in query.split(";\n"):
            label = next((k for k, mark in STEPS if mark in statement), statement[:30])
            status = await self._costs.time(label, self._pids, self._conn.execute(statement))
        return status

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        label = "departments" if "department" in query else query[:30]
        return await self._costs.time(label, self._pids, self._conn.fetch(query, *args))

    async def copy_records_to_table(self, table: str, **kwargs: Any) -> str:
        work = self._conn.copy_records_to_table(table, **kwargs)
        return await self._costs.time(f"copy {table}", self._pids, work)


async def run(args: argparse.Namespace) -> None:
    name = f"tallyql_steps_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await admin(args.database_url, f'CREATE DATABASE "{name}"')
    url = f"{args.database_url.rpartition('/')[0]}/{name}"
    costs = Costs()
    connect = asyncpg.connect

    async def timed_connect(*a: Any, **k: Any) -> TimedConnection:
        return TimedConnection(await connect(*a, **k), costs)

    db = Database(url)
    try:
        await upgrade(db)
        conn = await connect(url)
        workspace = await conn.fetchval(
            "INSERT INTO workspaces (name, created_at) VALUES ('bench', now()) RETURNING id"
        )
        total = args.events + args.batch  # the first batch warms up, not counted
        events = prepared_demo_events(workspace, total, args.days, args.seed)
        asyncpg.connect = timed_connect  # type: ignore[assignment]
        batches = batches_for(db, lanes=1)
        # the statements the server's writer runs
        steps = [s for c in WRITER_CONTRIBUTORS for s in c(batches.dialect, BATCH_TABLE)]
        await batches.ensure_days({e.record[TS].date() for e in events})
        chunks = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
        staged = 0  # delta rows the counted compactions folded
        for n, chunk in enumerate(chunks):
            costs.on = n > 0
            await batches.write(chunk, steps)
            if costs.on and args.compact_every and n % args.compact_every == 0:
                # histograms on the first run and every tenth after it, as the job does
                every = (n // args.compact_every - 1) % HISTOGRAM_EVERY == 0
                staged += await _compact(db, conn, name, costs, every)
        if args.compact_every:  # what is still staged: every event's compaction is counted
            staged += await _compact(db, conn, name, costs, True)
        counted = sum(len(c) for c in chunks[1:])
        print(
            f"{counted:,} events in {len(chunks) - 1} batches of {args.batch:,} over "
            f"{args.days:g} days, one lane; machine load {os.getloadavg()[0]:.2f}\n"
            f"{'step':<22}{'CPU us/event':>14}{'wall us/event':>15}"
        )
        for label in costs.cpu:
            cpu, wall = costs.cpu[label] / counted * 1e6, costs.wall[label] / counted * 1e6
            print(f"{label:<22}{cpu:>14.1f}{wall:>15.1f}")
        print(f"{'total':<22}{sum(costs.cpu.values()) / counted * 1e6:>14.1f}")
        for label, seconds in costs.python.items():
            print(f"{label} in the server's process: {seconds / counted * 1e6:.1f} us/event CPU")
        if staged and costs.wall.get("compaction"):
            print(
                f"compaction: {staged:,} delta rows folded, "
                f"{staged / costs.wall['compaction']:,.0f} rows/s wall, "
                f"{staged / max(costs.cpu['compaction'], 1e-9):,.0f} rows per CPU-second"
            )
        asyncpg.connect = connect  # type: ignore[assignment]
        await batches.close()
        await conn.close()
    finally:
        asyncpg.connect = connect  # type: ignore[assignment]
        await db.dispose()
        await admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _compact(
    db: Database, conn: asyncpg.Connection, name: str, costs: Costs, histograms: bool
) -> int:
    """One counted compaction run (and VACUUM of the deltas); the delta rows it folded. The
    histogram deltas (`histograms`) are folded in a second transaction, counted apart."""
    rows = "SELECT pid FROM pg_stat_activity WHERE datname = $1"
    pids = [r[0] for r in await conn.fetch(rows, name) if r[0] != conn.get_server_pid()]
    staged = await _delta_rows(conn, False)
    await costs.time("compaction", pids, compact(db, wait=True, histograms=False))
    if histograms:  # the sum deltas are empty now: this run's cost is the histograms'
        python = time.process_time()
        await costs.time("histogram compaction", pids, compact(db, wait=True))
        # their blobs are merged in the server's process, not the database's: shown apart
        costs.python["histogram merge"] += time.process_time() - python
    await costs.time("vacuum deltas", pids, vacuum_deltas(db))
    return staged


async def _delta_rows(conn: asyncpg.Connection, histograms: bool) -> int:
    """Rows staged in the rollup delta tables (`histograms`: the histogram group's too)."""
    total = 0
    for group in FOLD_GROUPS:
        if histograms or not group.histogram:
            total += await conn.fetchval(f'SELECT count(*) FROM "{group.delta_table}"')
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="postgresql:// (a scratch copy)")
    parser.add_argument("--events", type=int, default=40_000, help="events counted")
    parser.add_argument("--days", type=float, default=0.04, help="days the events span")
    parser.add_argument("--batch", type=int, default=4_000, help="events per transaction")
    parser.add_argument(
        "--compact-every", type=int, default=0, help="compact after every N batches (0: never)"
    )
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
