"""Dashboard query benchmark: p50/p95 per field over HTTP, planned versus forced raw.

    python bench/query.py --database-url postgresql://postgres@127.0.0.1:5432/tallyql_bench
    python bench/query.py --database-url sqlite:////tmp/tallyql-bench.db --events 2000000
    python bench/query.py --database-url ... --events 300000 --mix --rounds 9

`--mix` times `MIX` instead: realistic questions beyond the fields above (filter and dimension
combinations from every view: tabs, drill-downs, custom queries, the request log), each over
LAST_7D and LAST_30D, and prints every question's p95, where each of its measure groups was
answered (explain: a rollup, else raw events and why) and the mix's overall p95. `--mix-raw`
times the same questions on raw events (`X-Tallyql-Plan: raw`), as a question that no rollup
covers is read: the figure before a rollup was added for it.

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

_BREAKDOWN = """query($r: TimeRangeInput!, $f: EventFilter) {{ breakdown(dimension: {dim},
    metrics: [{metrics}], range: $r, filter: $f) {{ totalCount nodes {{ key values }} }} }}"""
_SERIES = """query($r: TimeRangeInput!, $f: EventFilter) {{ timeseries(metrics: [{metrics}],
    range: $r, filter: $f{group}) {{ buckets series {{ metric group values }} }} }}"""
_CUSTOM = """query($r: TimeRangeInput!, $f: EventFilter) {{ metrics(query: {{metrics: [{metrics}],
    range: $r, filter: $f, dimensions: [{dims}], limit: 1000}}) {{ totalRows rows {{ keys
    values }} }} }}"""
_OVERVIEW = """query($r: TimeRangeInput!, $f: EventFilter) { overview(range: $r, filter: $f) {
    totalRequests successRate errorRate avgLatencyMs p50LatencyMs p95LatencyMs p99LatencyMs
    totalTokens costUsd modelsUsed activeTools } }"""
_LOG = """query($r: TimeRangeInput!, $f: EventFilter) { requests(range: $r, filter: $f,
    first: 50) { totalCount edges { cursor node { id timestamp model status latencyMs } } } }"""
_AGENTS = """query($r: TimeRangeInput!, $f: EventFilter) { agents(range: $r, filter: $f) {
    nodes { agentId runs successRate requests errors } } }"""
_AGENTS_VIEW = """query($r: TimeRangeInput!, $f: EventFilter) { agents(range: $r, filter: $f,
    first: 25) { totalCount nodes { agentId runs successRate avgRunDurationMs requests errors
    totalTokens costUsd instances nodes { node requests errorRate costUsd avgLatencyMs
    avgRunDurationMs } } } }"""
_GATEWAYS = """query($r: TimeRangeInput!, $f: EventFilter) { gateways(range: $r, filter: $f) {
    nodes { gateway requests uniqueCallers requestBytes } } }"""
LAT = "REQUESTS, P95_LATENCY_MS, AVG_LATENCY_MS"
LLM = {"kinds": ["LLM_CALL"]}
TOOL = {"kinds": ["TOOL_CALL"]}
ERR = {"statuses": ["ERROR"]}
MIX: dict[str, tuple[str, dict[str, object] | None]] = {
    # the examples
    "latency_by_model_llm": (_BREAKDOWN.format(dim="MODEL", metrics=LAT), LLM),
    "custom_gateway_status_p95": (
        _CUSTOM.format(
            metrics="REQUESTS, P95_LATENCY_MS", dims="{dimension: GATEWAY}, {dimension: STATUS}"
        ),
        None,
    ),
    "agents_byok": (_AGENTS, {"isByok": True}),
    # the agents view (its nodes too) filtered by what the agents called
    "agents_model": (_AGENTS_VIEW, {"models": ["gpt-4o"]}),
    "agents_provider": (_AGENTS, {"providers": ["anthropic"]}),
    "agents_gateway": (_AGENTS, {"gateways": ["gw-eu-west"]}),
    "log_status_model": (_LOG, {"statuses": ["ERROR"], "models": ["gpt-4o"]}),
    # overview tab with filters
    "overview_model": (_OVERVIEW, {"models": ["gpt-4o"]}),
    "overview_provider": (_OVERVIEW, {"providers": ["anthropic"]}),
    "overview_gateway": (_OVERVIEW, {"gateways": ["gw-eu-west"]}),
    "overview_tool": (_OVERVIEW, {"tools": ["search_code"]}),
    "overview_byok": (_OVERVIEW, {"isByok": True}),
    # models and providers drill-downs
    "models_p99_by_provider_err": (
        _BREAKDOWN.format(dim="PROVIDER", metrics="REQUESTS, P99_LATENCY_MS"),
        ERR,
    ),
    "ttft_by_model": (
        _BREAKDOWN.format(dim="MODEL", metrics="REQUESTS, P95_TTFT_MS, AVG_TTFT_MS"),
        LLM,
    ),
    "status_code_by_model": (
        _CUSTOM.format(
            metrics="REQUESTS, ERRORS", dims="{dimension: MODEL}, {dimension: STATUS_CODE}"
        ),
        LLM,
    ),
    "status_class_by_gateway": (
        _CUSTOM.format(
            metrics="REQUESTS, P95_LATENCY_MS",
            dims="{dimension: GATEWAY}, {dimension: STATUS_CLASS}",
        ),
        None,
    ),
    "error_types_by_provider": (
        _CUSTOM.format(
            metrics="ERRORS, P95_LATENCY_MS", dims="{dimension: PROVIDER}, {dimension: ERROR_TYPE}"
        ),
        ERR,
    ),
    "billing_by_model": (
        _CUSTOM.format(
            metrics="COST_USD, REQUESTS", dims="{dimension: BILLING_MODE}, {dimension: MODEL}"
        ),
        None,
    ),
    "cost_source_by_provider": (
        _BREAKDOWN.format(dim="COST_SOURCE", metrics="COST_USD, REQUESTS"),
        {"providers": ["openai", "anthropic"]},
    ),
    "request_type_latency": (_BREAKDOWN.format(dim="REQUEST_TYPE", metrics=LAT), None),
    "protocol_by_gateway": (
        _CUSTOM.format(
            metrics="REQUESTS, P95_LATENCY_MS", dims="{dimension: PROTOCOL}, {dimension: GATEWAY}"
        ),
        None,
    ),
    "model_series_p95_gateway": (
        _SERIES.format(
            metrics="P95_LATENCY_MS, REQUESTS", group=", groupBy: MODEL, limitGroups: 5"
        ),
        {"gateways": ["gw-us-east"]},
    ),
    "series_errors_byok": (
        _SERIES.format(metrics="ERROR_RATE, P95_LATENCY_MS", group=""),
        {"isByok": True},
    ),
    # tools, MCP and security
    "tool_latency_by_server": (
        _CUSTOM.format(
            metrics="REQUESTS, P95_LATENCY_MS, ERROR_RATE",
            dims="{dimension: TOOL}, {dimension: MCP_SERVER}",
        ),
        TOOL,
    ),
    "tool_errors_by_type": (
        _CUSTOM.format(metrics="ERRORS", dims="{dimension: TOOL}, {dimension: ERROR_TYPE}"),
        ERR,
    ),
    "policy_blocks_by_tool": (
        _CUSTOM.format(metrics="BLOCKED, REQUESTS", dims="{dimension: POLICY}, {dimension: TOOL}"),
        {"statuses": ["BLOCKED"]},
    ),
    "mcp_p99": (_BREAKDOWN.format(dim="MCP_SERVER", metrics="REQUESTS, P99_LATENCY_MS"), TOOL),
    "tool_series_server": (
        _SERIES.format(metrics="REQUESTS, P95_LATENCY_MS", group=", groupBy: TOOL, limitGroups: 5"),
        {"mcpServers": ["github"]},
    ),
    # departments, weekly patterns, distinct counts
    "department_cost": (_BREAKDOWN.format(dim="DEPARTMENT", metrics="COST_USD, REQUESTS"), LLM),
    "hour_of_day_p95_model": (
        _CUSTOM.format(metrics="REQUESTS, P95_LATENCY_MS", dims="{dimension: HOUR_OF_DAY}"),
        {"models": ["gpt-4o-mini"]},
    ),
    "unique_models_by_gateway": (
        _BREAKDOWN.format(dim="GATEWAY", metrics="UNIQUE_MODELS, REQUESTS"),
        None,
    ),
    "unique_tools_by_status": (_BREAKDOWN.format(dim="STATUS", metrics="UNIQUE_TOOLS"), TOOL),
    # high-cardinality questions (their own rollups)
    "users_by_model": (
        _BREAKDOWN.format(dim="USER", metrics="COST_USD, REQUESTS"),
        {"models": ["gpt-4o"]},
    ),
    "gateways_view_status": (_GATEWAYS, ERR),
    # the request log
    "log_unfiltered": (_LOG, None),
    "log_errors": (_LOG, ERR),
    "log_tool": (_LOG, {"tools": ["read_file"]}),
    "log_gateway_code": (_LOG, {"gateways": ["openrouter"], "statusCodes": [429]}),
    "log_user": (_LOG, {"users": ["user-007"]}),
}
MIX_PRESETS = ("LAST_7D", "LAST_30D")


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


def time_query(
    client: httpx.Client,
    server: Server,
    query: str,
    preset: str,
    raw: bool,
    filter: dict[str, object] | None = None,
) -> float:
    headers = {"Authorization": f"Bearer {server.key}"}
    if raw:
        headers["X-Tallyql-Plan"] = "raw"
    variables: dict[str, object] = {"r": {"preset": preset}}
    if filter is not None:
        variables["f"] = filter
    started = time.perf_counter()
    response = client.post(
        f"{server.url}/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    elapsed = time.perf_counter() - started
    body = response.json()
    if "errors" in body:
        raise SystemExit(f"query failed: {body['errors']}")
    return elapsed * 1000


def sources(
    client: httpx.Client, server: Server, query: str, preset: str, filter: dict[str, object] | None
) -> str:
    """Where explain says the question's measure groups were answered: rollups by name, raw
    events with their reason."""
    headers = {"Authorization": f"Bearer {server.key}", "X-Tallyql-Explain": "1"}
    variables: dict[str, object] = {"r": {"preset": preset}, "f": filter}
    body = client.post(
        f"{server.url}/graphql", json={"query": query, "variables": variables}, headers=headers
    ).json()
    plans = body.get("extensions", {}).get("plans", [])
    seen = dict.fromkeys(
        p["source"].split(":")[-1] if p["source"] != "raw" else f"RAW ({p['reason']})"
        for p in plans
    )
    return ", ".join(seen) or "-"


def run_mix(
    client: httpx.Client, server: Server, rounds: int, names: list[str], raw: bool = False
) -> None:
    print(f"\n{'question':<28} {'range':<9} {'p50 ms':>8} {'p95 ms':>8}  answered from")
    everything: list[float] = []
    for preset in MIX_PRESETS:
        for name in names:
            query, flt = MIX[name]
            time_query(client, server, query, preset, raw, flt)  # warm up
            times = [time_query(client, server, query, preset, raw, flt) for _ in range(rounds)]
            everything += times
            print(
                f"{name:<28} {preset:<9} {statistics.median(times):>8.1f} "
                f"{percentile(times, 0.95):>8.1f}  {sources(client, server, query, preset, flt)}",
                flush=True,
            )
    print(
        f"\nmix: {len(names)} questions x {len(MIX_PRESETS)} ranges, overall p50 "
        f"{statistics.median(everything):.1f} ms, p95 {percentile(everything, 0.95):.1f} ms"
    )


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
    parser.add_argument("--mix", action="store_true", help="Time the MIX questions instead.")
    parser.add_argument(
        "--mix-raw",
        action="store_true",
        help="With --mix: time every question on raw events (X-Tallyql-Plan: raw), as a "
        "question no rollup covers is read.",
    )
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
    names = args.only.split(",") if args.only else list(MIX if args.mix else QUERIES)
    server = start_server(url, env)
    try:
        with httpx.Client(timeout=600) as client:
            if args.mix:
                run_mix(client, server, args.rounds, names, raw=args.mix_raw)
                return
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
    finally:
        print(f"\nserver peak RSS: {server.peak_rss_mb():.0f} MB ({events:,} events, {url})")
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)


if __name__ == "__main__":
    main()
