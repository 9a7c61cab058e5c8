"""Ingest throughput of a real `tallyql serve` over POST /v1/events.

Starts the server as a subprocess against a database (a temporary SQLite file by default; for a
postgresql:// URL a scratch database is created next to the one named and dropped afterwards),
creates an ingest key with `tallyql keys create`, pre-serialises N realistic demo events in
batches with orjson, then sends them from several concurrent clients and prints durable
events/s (each 200 means the call's events are committed) and the server's peak RSS.

    .venv/bin/python bench/ingest.py                                   # SQLite, 200,000 events
    .venv/bin/python bench/ingest.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ingest.py --otlp     # the same events as OTLP spans to /v1/traces
    .venv/bin/python bench/ingest.py --otlp-sdk --processes 4 --events 40000 --days 30
        # the real OpenTelemetry SDK exporter (OTLPSpanExporter) from 4 processes, batches of 512
    .venv/bin/python bench/ingest.py --otlp-sdk --processes 8 --rate 20000 --events 200000
        # BatchSpanProcessor (default settings) in 8 processes offered 20,000 spans/s in all

The events span `--days` (7 by default: each commit then touches many hours of rollup rows,
the costly case; a gateway sending live traffic is closer to `--days 0.04`, one hour).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import orjson
from otlp_bodies import (
    otlp_body,
    otlp_json_body,
    rejected_spans,
)  # bench/ is the script's directory
from otlp_sdk import Plan, run_clients
from support import admin, cpu_seconds, free_port, peak_rss_mib, tallyql

from tallyql.demo.generator import generate_batches
from tallyql.storage.rollups.declarations import DELTA_TABLES

body_spans: dict[int, int] = {}
"""Spans in each OTLP body (by the body's id), for the accepted count."""


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    calls: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    """CPU seconds of this process (the HTTP clients), which shares the machine's cores."""
    database_cpu: float | None = None
    """CPU seconds of the PostgreSQL backends serving the server (None on SQLite)."""
    drained: tuple[float, float, float] | None = None
    """PostgreSQL: (seconds, server CPU, database CPU) from the start until the compaction
    job had folded every delta row staged meanwhile: what the events cost in all."""


async def backend_pids(admin_url: str, database: str) -> list[int]:
    """The PostgreSQL server processes connected to `database` (they run on this machine)."""
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


def total_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, PermissionError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server did not become healthy:\n{log.read_text()}")


async def send(
    url: str,
    key: str,
    bodies: list[bytes],
    clients: int,
    warmup: int,
    pid: int,
    otlp: bool = False,
    database: tuple[str, str] | None = None,
    otlp_json: bool = False,
    gzipped: bool = False,
) -> Outcome:
    """Warm-up calls first (not timed), then every other body from `clients` workers."""
    media = "application/x-protobuf" if otlp and not otlp_json else "application/json"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": media}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    outcome = Outcome()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def post(body: bytes) -> None:
            path = "/v1/traces" if otlp else "/v1/events"
            response = await client.post(path, content=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"HTTP {response.status_code}: {response.text[:500]}")
            if otlp:  # the answer counts rejected spans only; the rest are stored or duplicates
                rejected = rejected_spans(response.content, otlp_json)
                result = {"accepted": body_spans[id(body)] - rejected, "duplicates": 0}
                result["rejected"] = rejected
            else:
                result = orjson.loads(response.content)
            outcome.accepted += result["accepted"]
            outcome.duplicates += result["duplicates"]
            outcome.rejected += result["rejected"]
            outcome.calls += 1

        await asyncio.gather(*(post(b) for b in bodies[:warmup]))
        outcome.accepted = outcome.duplicates = outcome.rejected = outcome.calls = 0
        queue = iter(bodies[warmup:])

        async def worker() -> None:
            for body in queue:  # a shared iterator: each body goes to one worker
                await post(body)

        pids = await backend_pids(*database) if database else []
        db_before = total_cpu(pids)
        cpu_before = cpu_seconds(pid)
        client_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        outcome.seconds = time.perf_counter() - started
        outcome.server_cpu = cpu_seconds(pid) - cpu_before
        outcome.client_cpu = time.process_time() - client_before
        if database:
            outcome.database_cpu = total_cpu(pids) - db_before
            if await drain(*database):
                new = set(await backend_pids(*database)) - set(pids)
                outcome.drained = (
                    time.perf_counter() - started,
                    cpu_seconds(pid) - cpu_before,
                    total_cpu(pids) - db_before + total_cpu(list(new)),
                )
    return outcome


async def drain(admin_url: str, database: str, patience: float = 120.0) -> bool:
    """Wait until the server's compaction job has folded every staged delta row (PostgreSQL);
    False when it has not within `patience` seconds."""
    conn = await asyncpg.connect(f"{admin_url.rpartition('/')[0]}/{database}")
    union = " UNION ALL ".join(f"SELECT 1 FROM {t}" for t in DELTA_TABLES)
    try:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if not await conn.fetchval(f"SELECT EXISTS ({union})"):
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--events", type=int, default=200_000, help="events timed")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument(
        "--batch", type=int, default=None, help="events per call (1,000; --otlp-sdk: 512)"
    )
    parser.add_argument(
        "--days",
        type=float,
        default=7,
        help="days of traffic the events span (a live gateway's events span seconds: try 0.04)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-log", action="store_true", help="print the server's log")
    parser.add_argument(
        "--otlp", action="store_true", help="send OTLP protobuf spans to /v1/traces instead"
    )
    parser.add_argument(
        "--otlp-json", action="store_true", help="with --otlp: OTLP/JSON instead of protobuf"
    )
    parser.add_argument("--gzip", action="store_true", help="gzip the request bodies")
    parser.add_argument(
        "--otlp-sdk",
        action="store_true",
        help="send spans with the real OpenTelemetry SDK exporter (OTLPSpanExporter, "
        "HTTP/protobuf) from --processes processes",
    )
    parser.add_argument("--processes", type=int, default=4, help="--otlp-sdk: client processes")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="--otlp-sdk: offered spans/s in all, created through a BatchSpanProcessor with its "
        "default settings in each process (without it: export batches back to back)",
    )
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 512 if args.otlp_sdk else 1_000

    workdir = Path(tempfile.mkdtemp(prefix="tallyql-bench-"))
    scratch_admin: str | None = None
    scratch_name = f"tallyql_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if args.database_url is None:
        database_url = f"sqlite:///{workdir / 'bench.db'}"
    elif args.database_url.startswith(("postgresql://", "postgres://")):
        scratch_admin = args.database_url
        asyncio.run(admin(scratch_admin, f'CREATE DATABASE "{scratch_name}"'))
        database_url = f"{args.database_url.rpartition('/')[0]}/{scratch_name}"
    else:
        database_url = args.database_url
    env = {**os.environ, "TALLYQL_DATA_DIR": str(workdir), "TALLYQL_LOG_LEVEL": "warning"}
    process: subprocess.Popen[bytes] | None = None
    try:
        out = tallyql(
            "keys", "create", "--workspace", "bench", "--role", "ingest",
            "--database-url", database_url, env=env,
        )  # fmt: skip
        key = out.strip().splitlines()[-1]

        if args.otlp_sdk:
            sdk_bench(args, database_url, key, env, workdir, scratch_admin, scratch_name)
            return
        warmup = args.clients
        total = args.events + warmup * args.batch
        t0 = time.perf_counter()
        encode = (otlp_json_body if args.otlp_json else otlp_body) if args.otlp else orjson.dumps
        bodies = []
        for batch in generate_batches(total, args.days, seed=args.seed, batch_size=args.batch):
            bodies.append(gzip.compress(encode(batch)) if args.gzip else encode(batch))
            body_spans[id(bodies[-1])] = len(batch)
        body_bytes = sum(len(b) for b in bodies[warmup:])
        print(
            f"prepared {total:,} events in {len(bodies)} bodies "
            f"({body_bytes / max(args.events, 1):.0f} B/event) in {time.perf_counter() - t0:.1f} s"
        )

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = workdir / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "tallyql", "serve", "--port", str(port),
                 "--database-url", database_url],
                stdout=sink, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        wait_healthy(url, process, log)

        outcome = asyncio.run(
            send(
                url,
                key,
                bodies,
                args.clients,
                warmup,
                process.pid,
                otlp=args.otlp,
                otlp_json=args.otlp_json,
                gzipped=args.gzip,
                database=(scratch_admin, scratch_name) if scratch_admin else None,
            )
        )
        rss = peak_rss_mib(process.pid)
        health = httpx.get(f"{url}/health", timeout=10).json()
        timed = outcome.accepted + outcome.duplicates + outcome.rejected
        unit, path = ("spans", "/v1/traces") if args.otlp else ("events", "/v1/events")
        dialect = health["database"]["dialect"]
        writer = health["writer"]
        print(
            f"database      {dialect} ({database_url if scratch_admin is None else scratch_name})\n"
            f"sent          {timed:,} events in {outcome.calls} calls of {args.batch} "
            f"from {args.clients} clients (+{warmup} warm-up calls)\n"
            f"accepted      {outcome.accepted:,} (duplicates {outcome.duplicates}, "
            f"rejected {outcome.rejected})\n"
            f"elapsed       {outcome.seconds:.2f} s\n"
            f"throughput    {timed / outcome.seconds:,.0f} {unit}/s "
            f"(durable: each 200 is committed; POST {path})\n"
            f"writer        {writer['batches']} transactions, "
            f"{writer['events_committed'] / max(writer['batches'], 1):,.0f} events each\n"
            f"server CPU    {outcome.server_cpu / timed * 1e6:.1f} us/event "
            f"({outcome.server_cpu / outcome.seconds:.0%} of one core; PostgreSQL's "
            f"processes not included)\n"
            + f"client CPU    {outcome.client_cpu / timed * 1e6:.1f} us/event (this process)\n"
            + (
                f"database CPU  {outcome.database_cpu / timed * 1e6:.1f} us/event "
                f"({outcome.database_cpu / outcome.seconds:.0%} of one core, its backends)\n"
                if outcome.database_cpu is not None
                else ""
            )
            + (
                f"drained       {outcome.drained[0]:.2f} s until compaction had folded every "
                f"staged row: server CPU {outcome.drained[1] / timed * 1e6:.1f}, database CPU "
                f"{outcome.drained[2] / timed * 1e6:.1f} us/event in all\n"
                if outcome.drained is not None
                else ""
            )
            + f"machine load  {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} CPUs)\n"
            f"peak RSS      {rss:,.0f} MiB (server VmHWM)"
        )
        if outcome.rejected or timed != args.events:
            raise SystemExit("some events were rejected or not sent")
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            if args.keep_log:
                print((workdir / "server.log").read_text())
        if scratch_admin is not None:
            asyncio.run(
                admin(scratch_admin, f'DROP DATABASE IF EXISTS "{scratch_name}" WITH (FORCE)')
            )
        shutil.rmtree(workdir, ignore_errors=True)


def stored_events(database_url: str) -> int:
    """Events in the database (the durable count)."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM events"))
        finally:
            await conn.close()

    return asyncio.run(count())


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def sdk_bench(
    args: argparse.Namespace,
    database_url: str,
    key: str,
    env: dict[str, str],
    workdir: Path,
    scratch_admin: str | None,
    scratch_name: str,
) -> None:
    """--otlp-sdk: the real SDK exporter from processes; durable spans/s, ack latency, CPU."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tallyql", "serve", "--port", str(port),
             "--database-url", database_url],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_healthy(url, process, log)
        plan = Plan(url, key, 0, args.batch, args.days, None)
        warm = run_clients(
            Plan(url, key, args.batch, args.batch, args.days, None), args.processes, args.seed + 7
        )[0]  # not timed: connections, caches and the first partitions
        warm_spans = sum(r.exported for r in warm)
        plan.spans = args.events // args.processes
        plan.rate = args.rate / args.processes if args.rate else None
        database = (scratch_admin, scratch_name) if scratch_admin else None
        pids = asyncio.run(backend_pids(*database)) if database else []
        marks: dict[str, float] = {}

        def before() -> None:
            marks["server"] = cpu_seconds(process.pid)
            marks["database"] = total_cpu(pids)

        results, seconds = run_clients(plan, args.processes, args.seed, before)
        server_cpu = cpu_seconds(process.pid) - marks["server"]
        database_cpu = total_cpu(pids) - marks["database"] if database else None
        rss = peak_rss_mib(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        if args.keep_log:
            print(log.read_text())
    created = sum(r.created for r in results)
    exported = sum(r.exported for r in results)
    failed = sum(r.failed for r in results)
    stored = stored_events(database_url) - warm_spans
    latencies = [t for r in results for t in r.latencies]
    mode = (
        f"BatchSpanProcessor (defaults), {args.rate:,.0f} spans/s offered"
        if args.rate
        else f"OTLPSpanExporter.export, batches of {args.batch}"
    )
    print(
        f"database      {'sqlite' if database_url.startswith('sqlite') else 'postgresql'}\n"
        f"clients       {args.processes} processes, {mode}; spans over {args.days:g} days\n"
        f"spans         {created:,} created, {exported:,} acknowledged, {failed:,} in failed "
        f"exports, {created - exported - failed:,} never exported (dropped by the SDK's "
        f"processor: its queue was full), {stored:,} stored ({created - stored:,} lost)\n"
        f"elapsed       {seconds:.2f} s\n"
        f"throughput    {stored / seconds:,.0f} spans/s durable (each acknowledged export "
        f"is committed)\n"
        f"ack latency   p50 {quantile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {quantile(latencies, 0.99) * 1000:.1f} ms ({len(latencies)} exports)\n"
        f"server CPU    {server_cpu / max(stored, 1) * 1e6:.1f} us/span "
        f"({server_cpu / seconds:.0%} of one core)\n"
        + (
            f"database CPU  {database_cpu / max(stored, 1) * 1e6:.1f} us/span "
            f"({database_cpu / seconds:.0%} of one core, its backends)\n"
            if database_cpu is not None
            else ""
        )
        + f"machine load  {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} CPUs)\n"
        f"peak RSS      {rss:,.0f} MiB (server VmHWM)"
    )
    if stored != created:
        raise SystemExit("some spans were not stored")


if __name__ == "__main__":
    main()
