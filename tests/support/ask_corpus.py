"""Questions and the queries they must become, asked at `NOW` in the demo world (seed 7).

Each intent has several phrasings (typos and time zones among them); each expected query is
written out whole, in MetricsQueryInput's input shape, as a careful analyst would write it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tallyql.demo.catalog import build_world
from tallyql.engine.interpret import KnownValues

NOW = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)
"""A Sunday: this week began Monday 2026-11-30, last week on 2026-11-23."""
WORLD = build_world(7)
KNOWN = KnownValues(
    {
        "models": tuple(m.name for m in WORLD.models),
        "providers": tuple(sorted({m.provider for m in WORLD.models})),
        "users": tuple(u.id for u in WORLD.users),
        "groups": tuple(WORLD.groups),
        "agents": tuple(a.id for a in WORLD.agents),
        "tools": tuple(t.name for t in WORLD.tools),
        "mcpServers": tuple(WORLD.mcp_servers),
        "gateways": tuple(g.id for g in WORLD.gateways),
    },
    {u.display_name: u.id for u in WORLD.users},
    metadata_keys=("env", "feature", "method", "route", "team"),  # the demo's metadata
)


def P(preset: str, tz: str = "UTC") -> dict[str, Any]:
    return {"preset": preset, "timezone": tz}


def E(start: str, end: str, tz: str = "UTC") -> dict[str, Any]:
    return {"start": start, "end": end, "timezone": tz}


def Q(
    metrics: list[str],
    rng: dict[str, Any],
    dims: tuple[str, ...] = (),
    metadata_key: str | None = None,
    filt: dict[str, list[str]] | None = None,
    gran: str | None = None,
    desc: bool | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    query: dict[str, Any] = {"metrics": metrics, "range": rng}
    if dims:
        query["dimensions"] = [
            {"dimension": d} | ({"metadataKey": metadata_key} if d == "METADATA" else {})
            for d in dims
        ]
    if filt:
        query["filter"] = filt
    if gran:
        query["granularity"] = gran
    if desc is not None:
        query["orderBy"] = [{"metric": metrics[0], "descending": desc}]
    if limit is not None:
        query["limit"] = limit
    return query


D30 = P("LAST_30D")
LAST_WEEK = E("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z")
YESTERDAY = E("2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z")
NOVEMBER = E("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
LAST_MONTH = NOVEMBER
ALL = 10_000

INTENTS: list[tuple[dict[str, Any], list[str]]] = [
    (
        Q(["COST_USD"], P("LAST_7D"), dims=("METADATA",), metadata_key="feature", limit=20),
        [
            "cost by feature in the last 7 days",
            "cost by metadata feature in the last 7 days",
            "spend per feature past 7 days",
            "cost for each Feature in the last 7 days",
        ],
    ),
    (
        Q(["REQUESTS"], P("TODAY"), dims=("METADATA",), metadata_key="env", limit=20),
        ["requests by env today", "requests by metadata env today"],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH"), dims=("METADATA",), metadata_key="route", limit=20),
        ["cost by metadata route this month", "spend per route this month"],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH"), filt={"groups": ["sales"], "models": ["gpt-4o"]}),
        [
            "what did the sales team spend on gpt-4o this month?",
            "sales team spend on GPT-4o this month",
            "how much did the sales group spend on gpt 4o this month",
            "cost of gpt-4o for the sales team month to date",
            "Sales team cost on gtp-4o this month",
        ],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH"), dims=("MODEL",)),
        [
            "cost by model this month",
            "spend per model this month",
            "how much did each model cost this month",
            "dollars by model mtd",
            "costs broken down by model this month",
        ],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH", "Europe/Paris"), dims=("MODEL",)),
        [
            "cost by model this month in Europe/Paris",
            "spend per model this month europe/paris",
        ],
    ),
    (
        Q(["COST_USD"], D30, gran="DAY"),
        [
            "daily cost over the last 30 days",
            "cost per day for the past 30 days",
            "spend trend last 30 days",
            "daily spend in the last thirty days",
        ],
    ),
    (
        Q(["TOTAL_TOKENS"], LAST_WEEK, dims=("USER",), desc=True, limit=5),
        [
            "top 5 users by tokens last week",
            "top five users by tokens last week",
            "which 5 users used the most tokens last week",
            "top 5 people by token usage last week",
        ],
    ),
    (
        Q(
            ["TOTAL_TOKENS"],
            E("2026-11-22T23:00:00Z", "2026-11-29T23:00:00Z", "Europe/Paris"),
            dims=("USER",),
            desc=True,
            limit=5,
        ),
        [
            "top 5 users by tokens last week in Europe/Paris",
            "top 5 users by tokens last week europe/paris",
        ],
    ),
    (
        Q(["P95_LATENCY_MS"], P("TODAY"), dims=("MODEL",), desc=True, limit=10),
        [
            "slowest models today",
            "which models are the slowest today",
            "slowest llms today",
        ],
    ),
    (
        Q(["P95_LATENCY_MS"], P("TODAY"), dims=("MODEL",), desc=False, limit=10),
        ["fastest models today", "which models are fastest today"],
    ),
    (
        Q(["ERRORS"], YESTERDAY, dims=("TOOL",), filt={"kinds": ["TOOL_CALL"]}),
        [
            "failed tool calls by tool yesterday",
            "tool call errors per tool yesterday",
            "how many tool calls failed yesterday by tool",
            "errors of tool calls for each tool yesterday",
        ],
    ),
    (
        Q(["COST_USD"], D30, dims=("MODEL",), desc=True, limit=1),
        [
            "which model is the most expensive",
            "what model costs the most",
            "which model was the costliest in the last 30 days",
        ],
    ),
    (
        Q(["COST_USD"], D30, dims=("MODEL",), desc=False, limit=5),
        [
            "5 cheapest models in the last 30 days",
            "bottom 5 models by cost last 30 days",
            "the 5 least expensive models over the past 30 days",
        ],
    ),
    (
        Q(["INPUT_TOKENS", "OUTPUT_TOKENS"], LAST_WEEK, gran="DAY"),
        [
            "input and output tokens per day last week",
            "daily input and output tokens last week",
            "prompt tokens and completion tokens by day last week",
        ],
    ),
    (
        Q(["INPUT_TOKENS", "OUTPUT_TOKENS"], P("THIS_MONTH"), dims=("MODEL",)),
        [
            "input and output tokens by model this month",
            "prompt and completion tokens per model this month",
        ],
    ),
    (
        Q(["REQUESTS"], P("LAST_7D"), dims=("PROVIDER",)),
        [
            "requests by provider in the last 7 days",
            "calls per provider past week",
            "traffic by vendor in the past 7 days",
            "how many requests per provider over the last seven days",
        ],
    ),
    (
        Q(["COST_USD"], P("LAST_24H"), dims=("PROVIDER",)),
        [
            "cost by provider in the last 24 hours",
            "spend per provider past 24 hours",
            "cost per provider over the last day",
        ],
    ),
    (
        Q(["COST_USD"], D30, dims=("REQUEST_TYPE",)),
        [
            "cost by request type",
            "spend per request type in the last 30 days",
            "cost for each request type last 30 days",
        ],
    ),
    (
        Q(["COST_USD"], NOVEMBER, dims=("GROUP",)),
        [
            "spend by team in november",
            "cost per team in November 2026",
            "how much did each team spend in nov",
            "cost by group during november",
        ],
    ),
    (
        Q(["COST_USD"], NOVEMBER, dims=("DEPARTMENT",)),
        ["spend by department in november", "cost per department in november"],
    ),
    (
        Q(["COST_USD"], LAST_MONTH, filt={"providers": ["anthropic"]}),
        [
            "anthropic spend last month",
            "how much did we spend on anthropic last month",
            "cost of Anthropic last month",
            "anthropc cost last month",
        ],
    ),
    (
        Q(["REQUESTS"], P("THIS_WEEK"), filt={"agents": ["agent-support-bot"]}),
        [
            "how many requests did the support bot make this week",
            "requests of agent-support-bot this week",
            "support bot agent calls this week",
        ],
    ),
    (
        Q(["COST_USD"], P("THIS_WEEK"), dims=("AGENT",)),
        [
            "cost by agent this week",
            "spend per agent this week",
            "how much did each agent cost this week",
        ],
    ),
    (
        Q(["REQUESTS"], P("TODAY"), dims=("TOOL",), filt={"kinds": ["TOOL_CALL"]}),
        [
            "tool calls by tool today",
            "how many tool calls per tool today",
            "tool calls for each tool today",
        ],
    ),
    (
        Q(["REQUESTS"], P("TODAY"), dims=("MCP_SERVER",), filt={"kinds": ["TOOL_CALL"]}),
        ["tool calls by mcp server today", "tool calls per MCP server today"],
    ),
    (
        Q(["REQUESTS"], P("THIS_WEEK"), filt={"mcpServers": ["github"], "kinds": ["TOOL_CALL"]}),
        ["github tool calls this week", "tool calls to github this week"],
    ),
    (
        Q(["P95_LATENCY_MS"], P("LAST_24H"), filt={"tools": ["query"]}),
        ["latency of the query tool in the last 24 hours", "query tool latency past 24 hours"],
    ),
    (
        Q(["REQUESTS"], P("LAST_24H"), dims=("GATEWAY",)),
        [
            "requests by gateway in the last 24 hours",
            "requests for each gateway over the past 24 hours",
            "traffic per gateway last 24 hours",
        ],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH"), filt={"gateways": ["openrouter"]}),
        ["cost through openrouter this month", "openrouter spend this month"],
    ),
    (
        Q(["REQUESTS"], P("TODAY"), filt={"gateways": ["gw-eu-west"]}),
        ["requests through gw-eu-west today", "eu west gateway requests today"],
    ),
    (
        Q(["ERROR_RATE"], P("LAST_7D"), dims=("MODEL",)),
        [
            "error rate by model over the last 7 days",
            "failure rate per model past week",
            "error rate for each model in the past 7 days",
        ],
    ),
    (
        Q(["ERRORS"], P("LAST_7D"), dims=("PROVIDER",), filt={"errorTypes": ["RATE_LIMIT"]}),
        [
            "rate limits by provider past week",
            "rate limit errors per provider in the last 7 days",
            "how often were we rate limited per provider in the last 7 days",
        ],
    ),
    (
        Q(["ERRORS"], P("TODAY"), dims=("ERROR_TYPE",)),
        ["errors by error type today", "failures per error type today"],
    ),
    (
        Q(["ERRORS"], P("TODAY"), filt={"errorTypes": ["TIMEOUT"]}),
        ["timeouts today", "how many timeouts today"],
    ),
    (
        Q(["UNIQUE_USERS"], P("TODAY")),
        ["how many unique users today", "distinct users today", "active users today"],
    ),
    (
        Q(["UNIQUE_USERS"], P("THIS_MONTH"), gran="DAY"),
        ["active users per day this month", "daily active users this month"],
    ),
    (
        Q(["REQUESTS"], P("LAST_7D"), dims=("HOUR_OF_DAY",)),
        ["requests by hour of day over the last 7 days", "traffic by time of day past 7 days"],
    ),
    (
        Q(["COST_USD"], P("LAST_30D"), dims=("DAY_OF_WEEK",)),
        ["cost by day of week over the last 30 days", "spend by weekday in the past 30 days"],
    ),
    (
        Q(["TOTAL_TOKENS"], D30, dims=("MODEL",), gran="DAY", limit=ALL),
        [
            "tokens over time by model",
            "daily tokens per model",
            "token usage by model per day in the last 30 days",
        ],
    ),
    (
        Q(["COST_USD"], P("THIS_QUARTER"), dims=("GROUP",), gran="WEEK", limit=ALL),
        ["cost per team per week this quarter", "weekly spend by team this quarter"],
    ),
    (
        Q(["REQUESTS"], P("TODAY"), gran="HOUR"),
        ["requests per hour today", "hourly requests today", "requests over time today"],
    ),
    (
        Q(["COST_USD"], P("THIS_YEAR"), gran="MONTH"),
        ["monthly cost this year", "cost per month this year", "spend by month ytd"],
    ),
    (
        Q(
            ["COST_USD"],
            E("2026-11-01T00:00:00Z", "2026-11-16T00:00:00Z"),
            filt={"models": ["claude-sonnet-4-5"]},
        ),
        [
            "claude sonnet 4.5 cost between nov 1 and nov 15",
            "cost of claude-sonnet-4-5 from 2026-11-01 to 2026-11-15",
            "claude-sonnet-4-5 spend between 1 november and 15 november",
        ],
    ),
    (
        Q(["COST_USD"], E("2026-11-01T00:00:00Z", "2026-12-06T10:30:00Z"), dims=("MODEL",)),
        ["cost by model since 2026-11-01", "spend per model since november 1"],
    ),
    (
        Q(["REQUESTS"], E("2026-12-03T10:30:00Z", "2026-12-06T10:30:00Z"), dims=("MODEL",)),
        ["requests by model in the last 3 days", "requests per model past three days"],
    ),
    (
        Q(["REQUESTS"], P("LAST_1H"), dims=("MODEL",)),
        ["requests by model in the last hour", "calls per model past hour"],
    ),
    (
        Q(["REQUESTS"], E("2026-12-06T04:30:00Z", "2026-12-06T10:30:00Z"), gran="HOUR"),
        ["requests per hour over the last 6 hours", "hourly requests in the past 6 hours"],
    ),
    (
        Q(["COST_USD"], E("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"), dims=("PROVIDER",)),
        ["cost by provider in october", "spend per provider in October 2026"],
    ),
    (
        Q(["COST_USD"], E("2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z")),
        ["total cost in september", "how much did we spend in sept"],
    ),
    (
        Q(["COST_USD"], E("2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z"), dims=("MODEL",)),
        ["cost by model last quarter", "spend per model in the previous quarter"],
    ),
    (
        Q(["COST_USD"], E("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z")),
        ["total spend last year", "how much did we spend last year"],
    ),
    (
        Q(["COST_USD"], E("2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z")),
        ["cost on 2026-12-04", "spend on december 4"],
    ),
    (
        Q(["COST_USD"], P("TODAY", "America/New_York"), filt={"users": ["user-001"]}),
        [
            "Chloe Muller cost today in America/New_York",
            "how much did user-001 spend today America/New_York",
        ],
    ),
    (
        Q(["COST_USD"], LAST_WEEK, dims=("USER",), desc=True, limit=10),
        ["top users by cost last week", "biggest spenders by user last week"],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH"), dims=("USER",), limit=20),
        ["cost per user this month", "spend by user this month"],
    ),
    (
        Q(["REASONING_TOKENS"], P("LAST_7D"), dims=("MODEL",)),
        ["reasoning tokens by model in the last 7 days", "thinking tokens per model past week"],
    ),
    (
        Q(["CACHE_READ_TOKENS"], P("THIS_WEEK"), dims=("PROVIDER",)),
        ["cached tokens by provider this week", "cache reads per provider this week"],
    ),
    (
        Q(["P99_LATENCY_MS"], P("TODAY"), dims=("PROVIDER",)),
        ["p99 latency by provider today", "tail latency per provider today"],
    ),
    (
        Q(["P50_LATENCY_MS"], P("LAST_24H"), filt={"models": ["gpt-4o-mini"]}),
        ["median latency of gpt-4o-mini in the last 24 hours", "gpt-4o-mini p50 past 24 hours"],
    ),
    (
        Q(["AVG_TTFT_MS"], P("TODAY"), dims=("MODEL",)),
        ["time to first token by model today", "ttft per model today"],
    ),
    (
        Q(["BLOCKED"], P("LAST_7D"), dims=("POLICY",)),
        ["blocked calls by policy in the last 7 days", "blocks per policy past 7 days"],
    ),
    (
        Q(["UNIQUE_SESSIONS"], P("TODAY"), dims=("AGENT",)),
        ["sessions by agent today", "conversations per agent today"],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH"), filt={"models": ["gpt-4.1-mini"], "groups": ["data"]}),
        [
            "cost of gpt-4.1-mini for the data team this month",
            "data team gpt 4.1 mini spend this month",
        ],
    ),
    (
        Q(["COST_USD"], P("THIS_MONTH"), filt={"providers": ["openai", "anthropic"]}),
        ["spend on openai and anthropic this month", "openai or anthropic cost this month"],
    ),
    (
        Q(
            ["COST_USD"],
            P("THIS_MONTH"),
            dims=("PROVIDER",),
            filt={"providers": ["anthropic", "openai"]},
        ),
        [
            "anthropic vs openai cost this month",
            "spend on anthropic versus openai this month",
            "anthropic compared to openai spend this month",
        ],
    ),
    (
        Q(
            ["P95_LATENCY_MS"],
            P("LAST_7D"),
            dims=("MODEL",),
            filt={"models": ["gpt-4o", "claude-sonnet-4-5"]},
        ),
        [
            "gpt-4o vs claude sonnet 4.5 latency past week",
            "latency of gpt-4o against claude-sonnet-4-5 in the last 7 days",
        ],
    ),
    (
        Q(["REQUESTS"], P("THIS_MONTH"), dims=("STATUS",)),
        ["requests by status this month", "calls per outcome this month"],
    ),
    (
        Q(["REQUESTS"], P("TODAY"), filt={"kinds": ["AGENT_RUN"]}),
        ["how many agent runs today", "agent runs today"],
    ),
    (
        Q(["COST_USD"], P("TODAY"), filt={"models": ["gemini-2.5-flash"]}),
        [
            "gemini 2.5 flash cost today",
            "gemini-2.5-flsh spend today",
            "cost of Gemini-2.5-Flash today",
        ],
    ),
    (
        Q(["COST_USD"], P("LAST_7D"), filt={"tools": ["search_code"]}),
        ["search_code cost in the last 7 days", "serch_code spend past 7 days"],
    ),
]
"""(expected query, phrasings)."""

TOP_OVER_TIME: list[tuple[dict[str, Any], tuple[int, bool, str], list[str]]] = [
    (
        Q(["COST_USD"], P("THIS_MONTH"), dims=("MODEL",), gran="DAY", desc=True, limit=ALL),
        (3, True, "models"),
        [
            "top 3 models by cost over time this month",
            "top three models by daily cost this month",
            "top 3 models by cost per day this month",
        ],
    ),
    (
        Q(["TOTAL_TOKENS"], P("LAST_7D"), dims=("USER",), gran="DAY", desc=True, limit=ALL),
        (5, True, "users"),
        [
            "top 5 users by tokens per day in the last 7 days",
            "top 5 users by daily tokens past week",
        ],
    ),
    (
        Q(["REQUESTS"], P("TODAY"), dims=("PROVIDER",), gran="HOUR", desc=False, limit=ALL),
        (2, False, "providers"),
        [
            "bottom 2 providers by requests per hour today",
            "bottom two providers by hourly requests today",
        ],
    ),
]
"""Top N over time: (the query before the groups are chosen, (N, descending, the filter
field that keeps them), phrasings). The answerer ranks the groups over the whole range."""

CASES: list[tuple[str, dict[str, Any]]] = [(q, want) for want, qs in INTENTS for q in qs]

NONSENSE: list[str] = [
    "",
    "   ",
    "asdf qwer zxcv",
    "hello",
    "what is the meaning of life",
    "'; DROP TABLE events; --",
    "<script>alert(1)</script>",
    "{__schema{types{name}}}",
    "a" * 400,
    "\x00\x01\x02",
    "🙂🙂🙂",
    "blorp flurb gazorp wibble",
    "SELECT * FROM events",
    "tell me a joke about penguins please",
]
"""Input that must come back not understood, with suggestions, and never as an error."""
