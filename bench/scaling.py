"""Storage and messaging figures for docs/scaling.md, measured on this machine.

    python bench/scaling.py --database-url postgresql://postgres@127.0.0.1:5432/test

Loads `--events` demo events over `--days` days into a scratch database (dropped at the end)
and prints: bytes on disk per event for events, payloads, rollups (hour, day, week and
histograms) and their indexes; rollup rows per million events; partitions per day; NOTIFY
messages per second through one connection and the largest payload PostgreSQL accepts.
`--events 0` prints the NOTIFY figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.support import admin, tallyql

SIZES = """
SELECT CASE
         WHEN c.relname LIKE 'events%' THEN 'events'
         WHEN c.relname LIKE 'payloads%' THEN 'payloads'
         WHEN c.relname LIKE 'rollup%' THEN 'rollups'
         WHEN c.relname LIKE 'session%' THEN 'sessions'
         WHEN c.relname LIKE 'event_keys%' THEN 'event_keys'
         ELSE 'other' END AS kind,
       sum(pg_relation_size(c.oid) + pg_relation_size(coalesce(c.reltoastrelid, 0)))
         FILTER (WHERE c.relkind IN ('r', 'm')) AS heap,
       sum(pg_relation_size(c.oid)) FILTER (WHERE c.relkind = 'i') AS index
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'm')
GROUP BY 1 ORDER BY 1
"""


async def measure(url: str, events: int, days: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
        stored = await conn.fetchval("SELECT count(*) FROM events")
        print(f"events stored: {stored} over {days} days")
        for row in await conn.fetch(SIZES):
            heap, index = row["heap"] or 0, row["index"] or 0
            print(
                f"  {row['kind']:<10} {heap / stored:8.1f} B/event heap+toast, "
                f"{index / stored:8.1f} B/event indexes"
            )
        tables = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'rollup%'"
            " AND relname NOT LIKE 'rollup_delta%'"
        )
        rows = 0
        for t in tables:
            rows += await conn.fetchval(f'SELECT count(*) FROM "{t["relname"]}"')
        print(
            f"rollup rows: {rows} in {len(tables)} tables = {rows / stored * 1e6:,.0f} per M events"
        )
        parts = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relname IN ('events', 'payloads')"
        )
        event_days = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relname = 'events'"
        )
        print(f"partitions: {parts} for {event_days} days = {parts / event_days:.0f} per day")
    finally:
        await conn.close()
    await notify_rates(url)


async def notify_rates(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # NOTIFY: messages per second from one connection, each in its own transaction (each
        # commit waits for its WAL flush), 200-byte payloads
        payload = "x" * 200
        n = 5000
        started = time.perf_counter()
        for _ in range(n):
            await conn.execute("SELECT pg_notify('tallyql_bench', $1)", payload)
        rate = n / (time.perf_counter() - started)
        print(f"NOTIFY: {rate:,.0f} messages/s (200-byte payloads, one per transaction)")
        # as the live relay sends them: many per statement (unnest), packed near the limit,
        # with a listener on another connection counting what arrives
        listener = await asyncpg.connect(url)
        got = 0
        done = asyncio.Event()
        total = 20 * 500

        def received(*_args: object) -> None:
            nonlocal got
            got += 1
            if got == total:
                done.set()

        await listener.add_listener("tallyql_bench_packed", received)
        # distinct payloads: PostgreSQL folds identical ones of one transaction into one
        packed = [f"{i:06d}" + "z" * 7894 for i in range(500)]
        started = time.perf_counter()
        for _ in range(20):
            await conn.execute(
                "SELECT pg_notify('tallyql_bench_packed', m) FROM unnest($1::text[]) AS m",
                packed,
            )
        await asyncio.wait_for(done.wait(), 120)
        seconds = time.perf_counter() - started
        print(
            f"NOTIFY packed: {total / seconds:,.0f} messages/s of 7,900 bytes sent 500 per "
            f"statement and received by a listener ({total * 7900 / seconds / 1e6:.1f} MB/s)"
        )
        await listener.close()
        size = 7990
        while True:
            try:
                await conn.execute("SELECT pg_notify('tallyql_bench', $1)", "y" * (size + 1))
            except asyncpg.PostgresError:
                break
            size += 1
        print(f"NOTIFY payload limit: {size} bytes (one more is refused)")
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> None:
    parts = urlsplit(args.database_url)
    database = f"tallyql_bench_scaling_{os.getpid()}"
    url = f"{parts.scheme}://{parts.netloc}/{database}"
    await admin(args.database_url, f'CREATE DATABASE "{database}"')
    try:
        env = {**os.environ, "TALLYQL_DATABASE_URL": url}
        started = time.perf_counter()
        if args.events == 0:  # NOTIFY figures only
            await notify_rates(url)
            return
        tallyql("demo", "--events", str(args.events), "--days", str(args.days), env=env)
        print(f"bulk load: {args.events / (time.perf_counter() - started):,.0f} events/s")
        await measure(url, args.events, args.days)
    finally:
        await admin(args.database_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=7)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
