"""Hostile tenant benchmark: another workspace's overview latency while one key attacks.

    python bench/hostile.py --database-url postgresql://postgres@127.0.0.1:5432/tallyql_hostile
    python bench/hostile.py --database-url sqlite:////tmp/tallyql-hostile.db

Loads demo traffic into two workspaces (`tallyql demo`; `--no-load` on a database loaded before),
starts `tallyql serve`, times the victim's `overview(LAST_7D)` alone, then again while
`--attackers` clients of the hostile workspace send, over and over, the worst requests of
issue 14 §1: 30 aliases of a heavy time series (four metrics, 83 days, HOUR, grouped by
SESSION, compared with the previous period), metrics by WEEK x SESSION x TAG x MODEL over ten
years, and sessionStats from year 1 to 9999. Prints the victim's p50/p95/max, its errors,
and the attackers' answers by status and error code. The requirement: the victim's p95 under
200 ms, no victim error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from support import free_port, tallyql  # bench/ is the script's directory

OVERVIEW = """{ overview(range: {preset: LAST_7D}) {
  totalRequests successRate p95LatencyMs costUsd activeUsers modelsUsed } }"""
HEAVY_SERIES = (
    "query($r: TimeRangeInput!) { "
    + " ".join(
        f"t{i}: timeseries(metrics: [REQUESTS, COST_USD, P95_LATENCY_MS, UNIQUE_USERS], "
        "range: $r, granularity: HOUR, groupBy: SESSION, compareToPrevious: true) { buckets }"
        for i in range(30)
    )
    + " }"
)
HEAVY_METRICS = """query($r: TimeRangeInput!) { metrics(query: {metrics: [REQUESTS, COST_USD],
  range: $r, granularity: WEEK, dimensions: [{dimension: SESSION}, {dimension: TAG},
  {dimension: MODEL}], limit: 100}) { totalRows } }"""
MILLENNIA = """{ a: sessionStats(range: {start: "0001-01-01T00:00:00Z",
  end: "9999-12-31T00:00:00Z"}) { sessions } b: sessionStats(range: {start:
  "0001-01-01T00:00:00Z", end: "9999-12-31T00:00:00Z"}) { sessions } c: sessionStats(range:
  {start: "0001-01-01T00:00:00Z", end: "9999-12-31T00:00:00Z"}) { sessions } }"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def key_for(workspace: str, env: dict[str, str]) -> str:
    out = tallyql(
        "keys", "create", "--workspace", workspace, "--role", "viewer", "--name", "bench", env=env
    )
    return out.strip().splitlines()[-1]


async def victim_loop(
    client: httpx.AsyncClient, key: str, seconds: float, timings: list[float], errors: Counter
) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        response = await client.post(
            "/graphql", json={"query": OVERVIEW}, headers={"Authorization": f"Bearer {key}"}
        )
        timings.append(time.perf_counter() - started)
        body = response.json()
        if response.status_code != 200 or "errors" in body:
            errors[str(response.status_code)] += 1
        await asyncio.sleep(0.05)  # a dashboard polling, not a flood


async def attacker(
    client: httpx.AsyncClient, key: str, stop: asyncio.Event, seen: Counter, kinds: list[str]
) -> None:
    now = datetime.now(UTC)
    days83 = {"start": (now - timedelta(days=83)).isoformat(), "end": now.isoformat()}
    ten_years = {"start": (now - timedelta(days=3652)).isoformat(), "end": now.isoformat()}
    every = {
        "series": (HEAVY_SERIES, {"r": days83}),
        "metrics": (HEAVY_METRICS, {"r": ten_years}),
        "millennia": (MILLENNIA, {}),
    }
    requests = [every[name] for name in kinds]
    i = 0
    while not stop.is_set():
        query, variables = requests[i % len(requests)]
        i += 1
        try:
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
        except httpx.HTTPError as exc:
            seen[type(exc).__name__] += 1
            continue
        codes = {e.get("extensions", {}).get("code") for e in response.json().get("errors", [])}
        seen[f"{response.status_code} {','.join(sorted(c or '?' for c in codes)) or 'ok'}"] += 1


async def run(
    base: str, victim: str, hostile: str, seconds: float, attackers: int, kinds: list[str]
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await victim_loop(client, victim, 2, [], Counter())  # warm-up
        alone: list[float] = []
        await victim_loop(client, victim, seconds, alone, Counter())
        stop = asyncio.Event()
        seen: Counter = Counter()
        tasks = [
            asyncio.create_task(attacker(client, hostile, stop, seen, kinds))
            for _ in range(attackers)
        ]
        await asyncio.sleep(1)
        attacked: list[float] = []
        errors: Counter = Counter()
        await victim_loop(client, victim, seconds, attacked, errors)
        stop.set()
        await asyncio.gather(*tasks)
    for name, values in (("alone", alone), ("under attack", attacked)):
        p50, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
        print(
            f"victim overview {name}: n={len(values)} p50={p50:.1f} ms p95={p95:.1f} ms "
            f"max={max(values) * 1000:.1f} ms"
        )
    print(f"victim errors under attack: {dict(errors) or 0}")
    print(f"attacker answers: {dict(seen)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", type=int, default=200_000, help="demo events per workspace")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--no-load", action="store_true", help="the workspaces are loaded")
    parser.add_argument(
        "--requests",
        default="series,metrics,millennia",
        help="the attackers' requests, in turn (comma-separated: series, metrics, millennia)",
    )
    args = parser.parse_args()
    env = {**os.environ, "TALLYQL_DATABASE_URL": args.database_url}
    for workspace, seed in () if args.no_load else (("victim", "1"), ("hostile", "2")):
        tallyql(
            "demo", "--events", str(args.events), "--days", "90", "--seed", seed,
            "--workspace", workspace, env=env,
        )  # fmt: skip
    victim, hostile = key_for("victim", env), key_for("hostile", env)
    port = free_port()
    server = subprocess.Popen(
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
        kinds = args.requests.split(",")
        asyncio.run(run(base, victim, hostile, args.seconds, args.attackers, kinds))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
