"""How long migration 0020 (the base rollups' backfill from raw events) holds an upgrade.

Loads demo events with `tallyql demo` into a scratch database (a SQLite file, or for a
postgresql:// URL a database created next to the one named), takes the rollups branch back to
0013_departments, then times the upgrade to 0020_base_rollups as `tallyql serve` runs it at
start (`storage.migrate`, on the writer connection and its pragmas), and prints the time, the
CPU of this process and of the PostgreSQL backend (less sensitive to a loaded machine), peak
RSS, PostgreSQL's temporary file bytes, and the statements that took the most time. `--keep`
keeps the scratch database for the next run (`--reuse NAME` then skips the load); `--dump FILE`
writes every new table's rows, to compare two implementations.

    .venv/bin/python bench/backfill.py --events 300000 --days 30
    .venv/bin/python bench/backfill.py --database-url postgresql://postgres@127.0.0.1:5432/test \\
        --events 300000 --days 30 --keep
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import resource
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import event, text
from support import admin, cpu_seconds, tallyql  # bench/ is the script's directory

from tallyql.storage.database import Database
from tallyql.storage.migrate import _config, upgrade

BEFORE = "0013_departments"
TARGET = "0020_base_rollups"
TABLES = [
    f"{k}_{g}" for k in ("rollup_base", "histogram_base", "rollup_agent_modes") for g in "hdw"
]


def statement_label(sql: str) -> str:
    """A statement's kind and target, e.g. 'INSERT INTO histogram_base_d'."""
    words = sql.split()
    if words[:2] == ["INSERT", "INTO"] or words[:3] == ["CREATE", "TEMP", "TABLE"]:
        return " ".join(words[: 3 if words[0] == "INSERT" else 4])
    return " ".join(words[:4])[:60]


async def timed_upgrade(db: Database) -> dict[str, Any]:
    async with db.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(_config(c), BEFORE))
    timings: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        entry = timings[statement_label(statement)]
        entry[0] += time.perf_counter() - started.pop()
        entry[1] += 1

    engine = db.writer.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    backend = None
    temp_before = 0
    async with db.write() as conn:
        if db.dialect.concurrent_writes:
            backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            temp_before = await temp_bytes(conn)
    try:
        cpu0, backend0 = time.process_time(), cpu_seconds(backend) if backend else 0.0
        t0 = time.perf_counter()
        await upgrade(db, TARGET)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        backend_cpu = cpu_seconds(backend) - backend0 if backend else None
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    spilled = None
    if backend:
        async with db.write() as conn:
            spilled = await temp_bytes(conn) - temp_before
    return {
        "seconds": seconds,
        "cpu": cpu,
        "backend_cpu": backend_cpu,
        "temp_bytes": spilled,
        "statements": sorted(timings.items(), key=lambda kv: -kv[1][0]),
    }


async def temp_bytes(conn: Any) -> int:
    """PostgreSQL's temporary file bytes written for this database so far (the statistics
    are flushed at commit, so the pool's connection may lag a second)."""
    await asyncio.sleep(1.0)
    return int(
        (
            await conn.execute(
                text("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
            )
        ).scalar_one()
    )


async def dump(db: Database, path: Path) -> None:
    rows = {}
    async with db.read() as conn:
        for table in TABLES:
            result = await conn.execute(text(f"SELECT * FROM {table}"))
            rows[table] = sorted(
                (tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in result),
                key=repr,
            )
    await asyncio.to_thread(path.write_bytes, pickle.dumps(rows))


def remove_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=None, help="postgresql:// (default: SQLite)")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--reuse", default=None, help="a kept scratch database (name or path)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--dump", type=Path, default=None, help="write the new tables' rows")
    args = parser.parse_args()
    postgres = args.database_url is not None
    name = args.reuse or (
        f"backfill_bench_{uuid.uuid4().hex[:6]}"
        if postgres
        else str(Path(tempfile.gettempdir()) / f"backfill_bench_{uuid.uuid4().hex[:6]}.db")
    )
    url = f"{args.database_url.rpartition('/')[0]}/{name}" if postgres else f"sqlite:///{name}"
    if postgres and not args.reuse:
        await admin(args.database_url, f'CREATE DATABASE "{name}"')
    try:
        if not args.reuse:
            t0 = time.perf_counter()
            env = {**os.environ, "TALLYQL_DATABASE_URL": url}
            tallyql("demo", "--events", str(args.events), "--days", str(args.days), env=env)
            print(f"loaded {args.events:,} events in {time.perf_counter() - t0:.0f} s into {name}")
        db = Database(url)
        try:
            async with db.read() as conn:
                count = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
            load = os.getloadavg()
            outcome = await timed_upgrade(db)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"upgrade {BEFORE} -> {TARGET} over {count:,} events: {outcome['seconds']:.1f} s "
                f"(this process {outcome['cpu']:.1f} s CPU, peak RSS {rss:.0f} MiB"
                + (
                    f"; PostgreSQL backend {outcome['backend_cpu']:.1f} s CPU, "
                    f"temp files {outcome['temp_bytes'] / 2**20:.0f} MiB"
                    if postgres
                    else ""
                )
                + f"); load before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}"
            )
            for label, (seconds, n) in outcome["statements"][:12]:
                print(f"  {seconds:7.2f} s  {n:5d} x  {label}")
            if args.dump:
                await dump(db, args.dump)
            await upgrade(db)  # the other heads, as `tallyql serve` would leave it
        finally:
            await db.dispose()
    finally:
        if not args.keep:
            if postgres:
                await admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                remove_sqlite(name)
        else:
            print(f"kept {name} (--reuse {name})")


if __name__ == "__main__":
    asyncio.run(main())
