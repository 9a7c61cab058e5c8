"""Dashboard query benchmark: p50/p95 per field over HTTP, planned versus forced raw.

    python bench/query.py --database-url postgresql://postgres@127.0.0.1:5432/tallyql_bench
    python bench/query.py --database-url sqlite:////tmp/tallyql-bench.db --events 2000000

Loads demo traffic (`tallyql demo`, skipped when the workspace already holds enough events),
starts `tallyql serve` on that database, and times each dashboard query from an HTTP client,
LAST_30D and LAST_90D, `--rounds` times; then the same queries with `X-Tallyql-Plan: raw`
(`--raw-rounds` times, they are slow) and prints the ratio and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
from support import free_port, tallyql  # bench/ is the script's directory

QUERIES: dict[str, str] = {
    "overview": """query($r: TimeRangeInput!) { overview(range: $r) {
        totalRequests successRate errorRate avgLatencyMs p50LatencyMs p95LatencyMs p99LatencyMs
        totalTokens costUsd uniqueCallers activeUsers activeAgents activeTools modelsUsed
        previous { totalRequests costUsd p95LatencyMs } } }""",
    "timeseries": """query($r: TimeRangeInput!) { timeseries(
        metrics: [REQUESTS, COST_USD, ERROR_RATE, P95_LATENCY_MS], range: $r) {
        buckets series { metric values } } }""",
    "timeseries_by_model": """query($r: TimeRangeInput!) { timeseries(
        metrics: [COST_USD, REQUESTS], range: $r, groupBy: MODEL, limitGroups: 8) {
        buckets series { metric group isOther values } } }""",
    "breakdown_models": """query($r: TimeRangeInput!) { breakdown(dimension: MODEL,
        metrics: [REQUESTS, COST_USD, TOTAL_TOKENS, ERROR_RATE, AVG_LATENCY_MS, P95_LATENCY_MS],
        range: $r) { totalCount nodes { key values } } }""",
    "breakdown_users": """query($r: TimeRangeInput!) { breakdown(dimension: USER,
        metrics: [COST_USD, REQUESTS, TOTAL_TOKENS], range: $r, first: 20) {
        totalCount nodes { key values } } }""",
    "breakdown_providers": """query($r: TimeRangeInput!) { breakdown(dimension: PROVIDER,
        metrics: [COST_USD, REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHE_READ_TOKENS],
        range: $r) { totalCount nodes { key values } } }""",
    "sessions_by_cost": """query($r: TimeRangeInput!) { sessions(range: $r, orderBy: COST,
        first: 10) { nodes { id userId agentId costUsd totalTokens requestCount durationMs
        models { provider model costUsd } } pageInfo { hasNextPage endCursor } } }""",
    "session_stats": """query($r: TimeRangeInput!) { sessionStats(range: $r) { sessions
        costUsd { p50 avg p95 } totalTokens { p50 avg p95 } durationMs { p50 avg p95 }
        requests { p50 avg p95 } } }""",
    "tool_usage": """query($r: TimeRangeInput!) { toolUsage(range: $r) {
        executions errorRate uniqueTools activeAgentInstances activeUsers mcpServers
        executionsOverTime { buckets series { values } } hourlyDistribution
        topTools { nodes { tool mcpServer calls errorRate avgLatencyMs } }
        topAgentInstances { nodes { agentInstanceId agentId userId calls } }
        topUsers { nodes { userId calls } }
        topMcpServers { nodes { mcpServer tools calls } } } }""",
    "security": """query($r: TimeRangeInput!) { security(range: $r) {
        blockedCalls blockedRate blockedOverTime { buckets series { values } }
        topBlockedTools { nodes { tool mcpServer calls } }
        topBlockedAgentInstances { nodes { agentInstanceId userId calls } }
        topBlockedUsers { nodes { userId calls } }
        topBlockedMcpServers { nodes { mcpServer calls } }
        topPolicies { nodes { policyId policyName policyDescription blockedCalls } } } }""",
}
PRESETS = ("LAST_30D", "LAST_90D")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    key: str

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")


def ensure_postgres_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import asyncio

    import asyncpg

    base, _, name = url.rpartition("/")

    async def create() -> None:
        conn = await asyncpg.connect(f"{base}/postgres")
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


def demo_events(url: str, env: dict[str, str]) -> int:
    import asyncio

    from sqlalchemy import text

    from tallyql.storage.database import Database

    async def count() -> int:
        db = Database(url)
        try:
            async with db.read() as conn:
                exists = await conn.execute(text("SELECT id FROM workspaces WHERE name = 'demo'"))
                row = exists.first()
                if row is None:
                    return 0
                result = await conn.execute(
                    text("SELECT count(*) FROM events WHERE workspace_id = :w"), {"w": row[0]}
                )
                return int(result.scalar_one())
        except Exception:
            return 0
        finally:
            await db.dispose()

    return asyncio.run(count())


def start_server(url: str, env: dict[str, str]) -> Server:
    key = (
        tallyql(
            "keys", "create", "--workspace", "demo", "--role", "admin", "--name", "bench", env=env
        )
        .strip()
        .splitlines()[-1]
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tallyql", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return Server(process, base, key)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start")


def time_query(client: httpx.Client, server: Server, query: str, preset: str, raw: bool) -> float:
    headers = {"Authorization": f"Bearer {server.key}"}
    if raw:
        headers["X-Tallyql-Plan"] = "raw"
    started = time.perf_counter()
    response = client.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": {"r": {"preset": preset}}},
        headers=headers,
    )
    elapsed = time.perf_counter() - started
    body = response.json()
    if "errors" in body:
        raise SystemExit(f"query failed: {body['errors']}")
    return elapsed * 1000


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it (of 20
    rounds, p95 is the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/tallyql_bench"
    )
    parser.add_argument("--events", type=int, default=None, help="10M on PostgreSQL, 2M on SQLite")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--raw-rounds", type=int, default=3)
    parser.add_argument("--only", default=None, help="Comma-separated query names.")
    args = parser.parse_args()
    url = args.database_url
    events = args.events or (10_000_000 if url.startswith("postgres") else 2_000_000)
    env = {**os.environ, "TALLYQL_DATABASE_URL": url, "TALLYQL_LOG_LEVEL": "warning"}
    ensure_postgres_database(url)
    have = demo_events(url, env)
    if have < events:
        print(f"loading {events - have:,} more demo events over {args.days} days ...", flush=True)
        started = time.perf_counter()
        print(tallyql("demo", "--events", str(events), "--days", str(args.days), env=env).strip())
        print(f"load took {time.perf_counter() - started:.0f} s", flush=True)
    names = args.only.split(",") if args.only else list(QUERIES)
    server = start_server(url, env)
    try:
        with httpx.Client(timeout=600) as client:
            print(
                f"\n{'query':<22} {'range':<9} {'p50 ms':>8} {'p95 ms':>8} "
                f"{'raw p50':>9} {'raw/planned':>11}"
            )
            for preset in PRESETS:
                for name in names:
                    query = QUERIES[name]
                    time_query(client, server, query, preset, raw=False)  # warm up
                    planned = [
                        time_query(client, server, query, preset, raw=False)
                        for _ in range(args.rounds)
                    ]
                    raw = [
                        time_query(client, server, query, preset, raw=True)
                        for _ in range(args.raw_rounds)
                    ]
                    p50, p95 = statistics.median(planned), percentile(planned, 0.95)
                    raw_p50 = statistics.median(raw) if raw else float("nan")
                    print(
                        f"{name:<22} {preset:<9} {p50:>8.1f} {p95:>8.1f} {raw_p50:>9.1f} "
                        f"{raw_p50 / p50:>10.1f}x",
                        flush=True,
                    )
        print(f"\nserver peak RSS: {server.peak_rss_mb():.0f} MB ({events:,} events, {url})")
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)


if __name__ == "__main__":
    main()
