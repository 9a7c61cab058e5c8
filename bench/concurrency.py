"""Concurrent dashboards while events stream in: latency, errors, server CPU and memory.

    python bench/concurrency.py --database-url postgresql://postgres@127.0.0.1:5432/tallyql_conc
    python bench/concurrency.py --seconds 60 --share both     # sharing off, then on

Loads demo traffic into the database when it holds less than `--events` (30 days), starts
`tallyql serve`, then for `--seconds` (120 by default): `--users` simulated console users
(50), each with their own viewer key, refresh the Overview view and one other view (Costs,
Requests or Sessions, by user) every `--every` seconds (5), starting at random offsets, with
the queries the console sends (tallyql/http/static/console/views/*.js) over its default range
(LAST_7D in UTC); meanwhile one client ingests `--rate` events per second (1,000) in batches
of 100 over POST /v1/events. Prints each view's p50 / p95 / max latency, errors, the ingest
rate reached, the server's CPU (share of one core) and RSS, the shared answers
(TALLYQL_SHARE_IDENTICAL_QUERIES) and the load average. `--share both` runs it twice on one
database, sharing off then on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from support import (  # bench/ is the script's directory
    cpu_seconds,
    free_port,
    peak_rss_mib,
    tallyql,
)

OVERVIEW = """query ConsoleOverview($range: TimeRangeInput!, $filter: EventFilter) {
  overview(range: $range, filter: $filter) {
    totalRequests successRate p95LatencyMs totalTokens costUsd
    activeUsers activeAgents activeTools activeGateways start end
    changes { field current previous absolute relative relativeNote }
  }
  volume: timeseries(metrics: [REQUESTS, ERRORS, COST_USD], range: $range, filter: $filter) {
    granularity buckets series { metric values }
  }
  topModels: breakdown(dimension: MODEL, metrics: [COST_USD, REQUESTS, TOTAL_TOKENS],
                       range: $range, filter: $filter, first: 5) { nodes { key values } }
  topUsers: breakdown(dimension: USER, metrics: [COST_USD, REQUESTS, TOTAL_TOKENS],
                      range: $range, filter: $filter, first: 5) { nodes { key values } }
}"""
SHARE = "key provider costUsd requests share"
COSTS = f"""query ConsoleCosts($range: TimeRangeInput!, $filter: EventFilter,
    $compare: [ModelRefInput!]!, $comparing: Boolean!) {{
  costInsights(range: $range, filter: $filter) {{
    totalUsd
    trend {{ currentUsd previousUsd direction percent percentNote }}
    projectedMonth {{ daysWithData dailyAverageUsd projectedUsd previousProjectedUsd
      changePercent changeNote }}
    topModels {{ {SHARE} }}
    topUsers {{ {SHARE} }}
    topAgents {{ {SHARE} }}
    byRequestType {{ {SHARE} }}
    recommendations {{ kind title estimatedSavingUsd provider model suggestedModel }}
  }}
  daily: dailyCostByModel(range: $range, filter: $filter, top: 7) {{
    buckets totals series {{ model isOther values totalUsd }}
  }}
  comparison: modelComparison(models: $compare, range: $range, filter: $filter)
      @include(if: $comparing) {{ provider model requests costUsd }}
}}"""
REQUESTS = """query ConsoleRequests($range: TimeRangeInput, $filter: EventFilter, $after: String) {
  requests(range: $range, filter: $filter, first: 50, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id timestamp kind status errorType provider model tool userId agentId
      totalTokens costUsd latencyMs
    }
  }
}"""
SESSIONS = """query ConsoleSessions($range: TimeRangeInput!, $filter: EventFilter,
    $orderBy: SessionOrder!, $descending: Boolean!, $after: String) {
  sessionStats(range: $range, filter: $filter) {
    sessions
    costUsd { p50 avg p95 } totalTokens { p50 avg p95 }
    durationMs { p50 avg p95 } requests { p50 avg p95 }
  }
  sessions(range: $range, filter: $filter, orderBy: $orderBy, descending: $descending,
           first: 50, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id userId agentId lastTimestamp durationMs requestCount errorCount totalTokens costUsd }
  }
}"""
RANGE = {"preset": "LAST_7D", "timezone": "UTC"}
VIEWS: dict[str, tuple[str, dict[str, Any]]] = {
    "overview": (OVERVIEW, {"range": RANGE}),
    "costs": (COSTS, {"range": RANGE, "compare": [], "comparing": False}),
    "requests": (REQUESTS, {"range": RANGE}),
    "sessions": (SESSIONS, {"range": RANGE, "orderBy": "COST", "descending": True}),
}
OTHER_VIEWS = ("costs", "requests", "sessions")
SHARED_METRIC = "tallyql_graphql_shared_answers_total"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    ingested: int = 0
    ingest_errors: int = 0


async def backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends connected to the bench's database (on this machine)."""
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


async def user(
    client: httpx.AsyncClient, key: str, other: str, every: float, stop: float, tally: Tally
) -> None:
    await asyncio.sleep(random.uniform(0, every))
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < stop:
        tick = time.monotonic()
        for view in ("overview", other):  # the console loads the view, then the user moves on
            query, variables = VIEWS[view]
            started = time.perf_counter()
            failed = None
            try:
                response = await client.post(
                    "/graphql", json={"query": query, "variables": variables}, headers=headers
                )
                if response.status_code != 200:
                    failed = f"{view}: HTTP {response.status_code} {response.text[:200]}"
                elif "errors" in response.json():
                    failed = f"{view}: {response.json()['errors'][:1]}"
            except httpx.HTTPError as exc:
                failed = f"{view}: {type(exc).__name__} {exc}"
            tally.latencies.setdefault(view, []).append((time.perf_counter() - started) * 1000)
            if failed is not None:
                tally.errors[view] = tally.errors.get(view, 0) + 1
                if len(tally.examples) < 5:
                    tally.examples.append(failed)
        await asyncio.sleep(max(0.0, every - (time.monotonic() - tick)))


def live_events(n: int, run: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    models = (("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku"), ("openai", "gpt-4o"))
    events = []
    for i in range(n):
        provider, model = models[i % len(models)]
        events.append(
            {
                "id": f"conc-{run}-{uuid.uuid4().hex}",
                "timestamp": now,
                "provider": provider,
                "model": model,
                "user_id": f"user-{random.randrange(200)}",
                "session_id": f"conc-{run}-s{random.randrange(500)}",
                "input_tokens": random.randrange(50, 2000),
                "output_tokens": random.randrange(10, 500),
                "latency_ms": random.randrange(100, 4000),
                "status": "success" if random.random() > 0.03 else "error",
            }
        )
    return events


async def ingester(
    client: httpx.AsyncClient, key: str, rate: int, stop: float, tally: Tally, run: str
) -> None:
    """`rate` events a second in batches of 100, sent on schedule without waiting for the
    previous answer (at most 16 calls in flight, as several gateways would)."""
    batch = 100
    interval = batch / rate
    headers = {"Authorization": f"Bearer {key}"}
    in_flight = asyncio.Semaphore(16)

    async def send() -> None:
        try:
            response = await client.post(
                "/v1/events", json=live_events(batch, run), headers=headers
            )
            if response.status_code == 200:
                tally.ingested += response.json()["accepted"]
            else:
                tally.ingest_errors += 1
        except httpx.HTTPError:
            tally.ingest_errors += 1
        finally:
            in_flight.release()

    sent: list[asyncio.Task[None]] = []
    next_at = time.monotonic()
    while time.monotonic() < stop:
        await in_flight.acquire()
        sent.append(asyncio.create_task(send()))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*sent)


async def create_keys(url: str, users: int) -> tuple[list[str], str]:
    from tallyql.auth.keys import KeyService
    from tallyql.auth.principal import Role
    from tallyql.storage.database import Database

    db = Database(url)
    try:
        keys = KeyService(db)
        viewers = [(await keys.create("demo", Role.VIEWER, f"user {n}"))[0] for n in range(users)]
        ingest, _ = await keys.create("demo", Role.INGEST, "concurrency bench")
        return viewers, ingest
    finally:
        await db.dispose()


async def run_users(args: argparse.Namespace, base: str, pid: int, share: bool) -> None:
    viewers, ingest_key = await create_keys(args.database_url, args.users)
    tally = Tally()
    # idle connections are dropped after 4 s, before uvicorn closes them (5 s): else a user
    # refreshing every 5 s races the server's close and sees a ReadError no server caused
    limits = httpx.Limits(
        max_connections=args.users + 20,
        max_keepalive_connections=args.users + 20,
        keepalive_expiry=4.0,
    )
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        for query, variables in VIEWS.values():  # warm up: caches, pools
            await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {viewers[0]}"},
            )
        stop = time.monotonic() + args.seconds
        load_before = os.getloadavg()
        backends = await backend_pids(args.database_url)
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        db_before = total_cpu(backends)
        run = uuid.uuid4().hex[:8]
        tasks = [
            user(client, key, OTHER_VIEWS[n % len(OTHER_VIEWS)], args.every, stop, tally)
            for n, key in enumerate(viewers)
        ]
        peak_rss = 0.0

        async def sample_rss() -> None:
            nonlocal peak_rss
            while time.monotonic() < stop:
                peak_rss = max(peak_rss, rss_mib(pid))
                await asyncio.sleep(1)

        await asyncio.gather(
            *tasks, ingester(client, ingest_key, args.rate, stop, tally, run), sample_rss()
        )
        wall = time.monotonic() - wall_before
        cpu = cpu_seconds(pid) - cpu_before
        backends_after = await backend_pids(args.database_url)
        db_cpu = total_cpu(backends_after) - db_before  # backends opened meanwhile: whole
        metrics = (await client.get("/metrics")).text
    shared = [
        line
        for line in metrics.splitlines()
        if line.startswith("tallyql_graphql_shared_answers_total")
    ]
    every = [lat for values in tally.latencies.values() for lat in values]
    errors = sum(tally.errors.values())
    print(f"\n== sharing {'on' if share else 'off'}: {args.users} users, {wall:.0f} s ==")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    print(f"{'view':<10} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'errors':>7}")
    for view, values in sorted(tally.latencies.items()):
        print(
            f"{view:<10} {len(values):>8} {percentile(values, 0.5):>8.0f} "
            f"{percentile(values, 0.95):>8.0f} {max(values):>8.0f} "
            f"{tally.errors.get(view, 0):>7}"
        )
    print(
        f"{'all':<10} {len(every):>8} {percentile(every, 0.5):>8.0f} "
        f"{percentile(every, 0.95):>8.0f} {max(every):>8.0f} {errors:>7}"
    )
    for example in tally.examples:
        print(f"  error: {example}")
    print(
        f"ingested {tally.ingested:,} events ({tally.ingested / wall:,.0f}/s, "
        f"{tally.ingest_errors} failed calls)"
    )
    print(
        f"server CPU {cpu / wall:.0%} of a core; RSS peak during the run {peak_rss:.0f} MiB "
        f"(process peak {peak_rss_mib(pid):.0f} MiB); PostgreSQL backends' CPU "
        f"{db_cpu / wall:.0%} of a core"
    )
    for line in shared:
        print(line)


def load_if_needed(args: argparse.Namespace, env: dict[str, str]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from query import demo_events, ensure_postgres_database

    ensure_postgres_database(args.database_url)
    have = demo_events(args.database_url, env)
    if have < args.events:
        print(f"loading {args.events - have:,} demo events over 30 days ...", flush=True)
        tallyql("demo", "--events", str(args.events), "--days", "30", env=env)


def serve(args: argparse.Namespace, env: dict[str, str], share: bool) -> None:
    port = free_port()
    env = {**env, "TALLYQL_SHARE_IDENTICAL_QUERIES": "true" if share else "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tallyql", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("server did not start")
        asyncio.run(run_users(args, base, process.pid, share))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/tallyql_conc"
    )
    parser.add_argument("--events", type=int, default=500_000, help="demo events loaded first")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between refreshes")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=int, default=1000, help="events ingested per second")
    parser.add_argument("--share", choices=("on", "off", "both"), default="on")
    args = parser.parse_args()
    env = {
        **os.environ,
        "TALLYQL_DATABASE_URL": args.database_url,
        "TALLYQL_LOG_LEVEL": "warning",
    }
    load_if_needed(args, env)
    for share in {"on": [True], "off": [False], "both": [False, True]}[args.share]:
        serve(args, env, share)


if __name__ == "__main__":
    main()
