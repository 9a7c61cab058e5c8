"""The words of the semantic layer: how people name each metric and dimension in a question.

Declared beside the registry (`registry.py`), as data, for the question interpreter
(`interpret.py`). Each metric and dimension carries a label (how answers name it) and its
phrases; a phrase is matched as whole words, longest first, so "output tokens" wins over
"tokens". Adding a metric or a dimension means adding its words here too (the asserts below
fail otherwise), plus a question for it in tests/support/ask_corpus.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from tallyql.engine.buckets import Granularity
from tallyql.engine.registry import Dimension, Metric


@dataclass(frozen=True)
class Words:
    label: str
    """How an interpretation names it ("Cost in USD")."""
    phrases: tuple[str, ...]
    """Lower-case phrases that name it in a question."""


METRIC_WORDS: dict[Metric, Words] = {
    Metric.REQUESTS: Words(
        "Requests", ("requests", "request", "calls", "call", "events", "traffic", "usage")
    ),
    Metric.ERRORS: Words(
        "Errors",
        ("errors", "error", "failed", "failures", "failure", "failing", "fails", "failed calls"),
    ),
    Metric.BLOCKED: Words("Blocked calls", ("blocked", "blocks", "blocked calls", "denied")),
    Metric.SUCCESS_RATE: Words("Success rate", ("success rate", "success ratio", "reliability")),
    Metric.ERROR_RATE: Words(
        "Error rate", ("error rate", "failure rate", "error ratio", "fail rate", "errors rate")
    ),
    Metric.INPUT_TOKENS: Words(
        "Input tokens", ("input tokens", "prompt tokens", "input", "prompt")
    ),
    Metric.OUTPUT_TOKENS: Words(
        "Output tokens",
        ("output tokens", "completion tokens", "output", "completion"),
    ),
    Metric.CACHE_READ_TOKENS: Words(
        "Cache read tokens", ("cache read tokens", "cached tokens", "cache reads", "cache hits")
    ),
    Metric.CACHE_WRITE_TOKENS: Words(
        "Cache write tokens", ("cache write tokens", "cache writes", "cache creation tokens")
    ),
    Metric.REASONING_TOKENS: Words(
        "Reasoning tokens", ("reasoning tokens", "thinking tokens", "reasoning", "thinking")
    ),
    Metric.TOTAL_TOKENS: Words("Total tokens", ("total tokens", "tokens", "token", "token usage")),
    Metric.COST_USD: Words(
        "Cost in USD",
        (
            "cost",
            "costs",
            "spend",
            "spent",
            "spending",
            "dollars",
            "usd",
            "money",
            "expensive",
            "cheapest",
            "costliest",
            "bill",
            "price",
            "charges",
            "spenders",
            "spender",
        ),
    ),
    Metric.AVG_LATENCY_MS: Words(
        "Mean latency in ms",
        ("average latency", "avg latency", "mean latency", "average response time"),
    ),
    Metric.P50_LATENCY_MS: Words(
        "Median latency in ms", ("median latency", "p50 latency", "p50", "median response time")
    ),
    Metric.P95_LATENCY_MS: Words(
        "P95 latency in ms",
        (
            "p95 latency",
            "p95",
            "latency",
            "latencies",
            "slowest",
            "fastest",
            "slow",
            "fast",
            "response time",
            "response times",
            "duration",
        ),
    ),
    Metric.P99_LATENCY_MS: Words("P99 latency in ms", ("p99 latency", "p99", "tail latency")),
    Metric.MAX_LATENCY_MS: Words(
        "Largest latency in ms", ("max latency", "maximum latency", "worst latency")
    ),
    Metric.AVG_TTFT_MS: Words(
        "Mean time to first token in ms",
        ("time to first token", "ttft", "average ttft", "first token"),
    ),
    Metric.P95_TTFT_MS: Words("P95 time to first token in ms", ("p95 ttft",)),
    Metric.REQUEST_BYTES: Words("Request bytes", ("request bytes", "request size", "bytes sent")),
    Metric.RESPONSE_BYTES: Words(
        "Response bytes", ("response bytes", "response size", "bytes received")
    ),
    Metric.UNIQUE_USERS: Words(
        "Distinct users",
        ("unique users", "distinct users", "active users", "how many users", "number of users"),
    ),
    Metric.UNIQUE_CALLERS: Words("Distinct callers", ("unique callers", "distinct callers")),
    Metric.UNIQUE_SESSIONS: Words(
        "Distinct sessions", ("sessions", "unique sessions", "conversations", "how many sessions")
    ),
    Metric.UNIQUE_MODELS: Words(
        "Distinct models", ("unique models", "distinct models", "how many models")
    ),
    Metric.UNIQUE_AGENTS: Words(
        "Distinct agents", ("unique agents", "distinct agents", "how many agents")
    ),
    Metric.UNIQUE_AGENT_INSTANCES: Words(
        "Distinct agent instances", ("unique agent instances", "distinct agent instances")
    ),
    Metric.UNIQUE_TOOLS: Words("Distinct tools", ("unique tools", "distinct tools")),
    Metric.UNIQUE_MCP_SERVERS: Words(
        "Distinct MCP servers", ("unique mcp servers", "distinct mcp servers")
    ),
    Metric.UNIQUE_GATEWAYS: Words("Distinct gateways", ("unique gateways", "distinct gateways")),
}
assert set(METRIC_WORDS) == set(Metric), "every Metric needs its words"

ASCENDING_WORDS = frozenset({"cheapest", "fastest", "least", "fewest", "bottom", "lowest"})
"""Words that rank smallest first ("the cheapest models", "bottom 3")."""
DESCENDING_WORDS = frozenset(
    {"top", "most", "highest", "largest", "biggest", "slowest", "costliest", "expensive", "worst"}
)
"""Words that rank largest first ("top 5", "which model is the most expensive")."""

DIMENSION_WORDS: dict[Dimension, Words] = {
    Dimension.PROVIDER: Words("provider", ("provider", "providers", "vendor", "vendors")),
    Dimension.MODEL: Words("model", ("model", "models", "llm", "llms")),
    Dimension.KIND: Words("kind", ("kind", "kinds", "event kind", "type of call", "call type")),
    Dimension.STATUS: Words("status", ("status", "statuses", "outcome")),
    Dimension.STATUS_CODE: Words("status code", ("status code", "status codes", "http code")),
    Dimension.STATUS_CLASS: Words("status class", ("status class", "status classes")),
    Dimension.ERROR_TYPE: Words(
        "error type", ("error type", "error types", "error kind", "error class")
    ),
    Dimension.USER: Words("user", ("user", "users", "person", "people", "end user")),
    Dimension.GROUP: Words("group", ("group", "groups", "team", "teams")),
    Dimension.DEPARTMENT: Words(
        "department", ("department", "departments", "cost centre", "cost center")
    ),
    Dimension.AGENT: Words("agent", ("agent", "agents")),
    Dimension.AGENT_INSTANCE: Words("agent instance", ("agent instance", "agent instances")),
    Dimension.NODE: Words("node", ("node", "nodes", "pipeline node", "step", "steps")),
    Dimension.TOOL: Words("tool", ("tool", "tools")),
    Dimension.MCP_SERVER: Words(
        "MCP server", ("mcp server", "mcp servers", "mcp", "server", "servers")
    ),
    Dimension.GATEWAY: Words("gateway", ("gateway", "gateways")),
    Dimension.PROTOCOL: Words("protocol", ("protocol", "protocols")),
    Dimension.API_KEY: Words("API key", ("api key", "api keys", "key", "keys")),
    Dimension.CALLER: Words("caller", ("caller", "callers", "client", "clients")),
    Dimension.REQUEST_TYPE: Words(
        "request type", ("request type", "request types", "type of request")
    ),
    Dimension.BILLING_MODE: Words("billing mode", ("billing mode", "billing modes")),
    Dimension.BYOK: Words("own key", ("byok", "own key")),
    Dimension.POLICY: Words("policy", ("policy", "policies")),
    Dimension.POLICY_NAME: Words("policy name", ("policy name", "policy names")),
    Dimension.COST_SOURCE: Words("cost source", ("cost source", "cost sources")),
    Dimension.TAG: Words("tag", ("tag", "tags")),
    Dimension.SESSION: Words("session", ("session", "conversation")),
    Dimension.HOUR_OF_DAY: Words(
        "hour of day",
        ("hour of day", "hour of the day", "time of day", "by hour of day", "per hour of day"),
    ),
    Dimension.DAY_OF_WEEK: Words(
        "day of week",
        ("day of week", "day of the week", "weekday", "weekdays", "by day of week", "by weekday"),
    ),
    Dimension.METADATA: Words("metadata key", ("metadata",)),
    Dimension.WORKSPACE: Words("workspace", ("workspace", "workspaces")),
}
assert set(DIMENSION_WORDS) == set(Dimension), "every Dimension needs its words"

GROUPING_CUES: tuple[str, ...] = (
    "broken down by",
    "split by",
    "grouped by",
    "for each",
    "for every",
    "each",
    "per",
    "by",
    "across",
    "which",
    "what",
)
"""Words before a dimension that make it a grouping ("by model", "for each gateway")."""

GRANULARITY_WORDS: dict[str, Granularity] = {
    "per minute": Granularity.MINUTE,
    "by minute": Granularity.MINUTE,
    "per hour": Granularity.HOUR,
    "by hour": Granularity.HOUR,
    "hourly": Granularity.HOUR,
    "each hour": Granularity.HOUR,
    "per day": Granularity.DAY,
    "by day": Granularity.DAY,
    "daily": Granularity.DAY,
    "each day": Granularity.DAY,
    "day by day": Granularity.DAY,
    "per week": Granularity.WEEK,
    "by week": Granularity.WEEK,
    "weekly": Granularity.WEEK,
    "each week": Granularity.WEEK,
    "per month": Granularity.MONTH,
    "by month": Granularity.MONTH,
    "monthly": Granularity.MONTH,
    "each month": Granularity.MONTH,
}
OVER_TIME_WORDS: tuple[str, ...] = ("over time", "trend", "trends", "timeline", "history")
"""Time buckets with the granularity the window suggests (AUTO: hours up to two days)."""

KIND_WORDS: dict[str, str] = {
    "tool calls": "TOOL_CALL",
    "tool call": "TOOL_CALL",
    "tool use": "TOOL_CALL",
    "mcp calls": "TOOL_CALL",
    "llm calls": "LLM_CALL",
    "llm call": "LLM_CALL",
    "model calls": "LLM_CALL",
    "completions": "LLM_CALL",
    "agent runs": "AGENT_RUN",
    "agent run": "AGENT_RUN",
    "runs": "AGENT_RUN",
    "http requests": "HTTP_REQUEST",
}
"""Phrases that select an event kind (EventFilter.kinds, GraphQL enum names)."""

ERROR_TYPE_WORDS: dict[str, str] = {
    "rate limits": "RATE_LIMIT",
    "rate limit": "RATE_LIMIT",
    "rate limited": "RATE_LIMIT",
    "429s": "RATE_LIMIT",
    "throttled": "RATE_LIMIT",
    "timeouts": "TIMEOUT",
    "timeout": "TIMEOUT",
    "timed out": "TIMEOUT",
    "auth errors": "AUTH_ERROR",
    "authentication errors": "AUTH_ERROR",
    "invalid requests": "INVALID_REQUEST",
    "model errors": "MODEL_ERROR",
}
"""Phrases that select an error type (EventFilter.errorTypes) and count errors."""

FILTER_NOUNS: dict[str, tuple[str, ...]] = {
    "models": ("model", "models"),
    "providers": ("provider", "providers"),
    "users": ("user", "users"),
    "groups": ("team", "teams", "group", "groups", "department", "dept"),
    "agents": ("agent", "agents", "bot"),
    "tools": ("tool", "tools"),
    "mcpServers": ("mcp", "server", "servers"),
    "gateways": ("gateway", "gateways", "gw"),
}
"""EventFilter fields that known values fill, and the nouns that may stand beside a value
("the sales team", "the query tool"); a value that is an ordinary word needs its noun."""

FILTER_LABELS: dict[str, str] = {
    "models": "model",
    "providers": "provider",
    "users": "user",
    "groups": "group",
    "agents": "agent",
    "tools": "tool",
    "mcpServers": "MCP server",
    "gateways": "gateway",
    "kinds": "kind",
    "statuses": "status",
    "errorTypes": "error type",
}

STOPWORDS = frozenset(
    """a an the of on in at to for from and or with without me my our us we i you your show
    give tell list what whats what's which who whom how much many is are was were did do does
    has have had be been being there their it its this that these those than then please can
    could would should will all any some every each up down about into out over under per by
    as so just only also total overall spent spend used use using get got make made see view
    chart graph plot table as compared vs versus between since during within past last next
    previous current today yesterday ago days day weeks week months month hours hour years
    year quarter quarters minutes minute time times trend number amount count counts sum
    where when why top bottom most least highest lowest largest biggest smallest fewest
    more less best worst ranking rank ranked order ordered sorted sort breakdown broken split
    grouped group groups team teams across whole entire so far date dates both them they
    utc gmt local zone timezone jan feb mar apr may jun jul aug sep sept oct nov dec january
    february march april june july august september october november december month's week's
    monday tuesday wednesday thursday friday saturday sunday""".split()  # noqa: SIM905
)
"""Words that carry no meaning of their own here; anything else not understood is shown as
ignored, and too many of those make the question not understood."""

COMMON_WORDS = frozenset(
    """data query execute click navigate screenshot docs triage plan read write search fetch
    review comment analyze generate edit draft outline synthesize retrieve any prod staging
    dev""".split()  # noqa: SIM905
)
"""Known values that are also ordinary English: they filter only beside their noun ("the
data team", "the query tool") or when written exactly as stored with its dashes."""

NUMBER_WORDS: dict[str, int] = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
}

MONTHS: dict[str, int] = {
    name: i + 1
    for i, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        )
    )
    for name in names
}
