"""The semantic layer: every metric and dimension the API can ask for.

A metric names the base measures it needs and how to finish them into a value:
- sums and maxima of rollup columns (`SUM_MEASURES`/`MAX_MEASURES` in
  storage/rollups/declarations.py),
- a histogram ("latency" or "ttft") and a quantile,
- or a count of distinct values of an event column.
A dimension names the event column it groups by (or a derived value). Adding a metric or a
dimension is one entry here (plus a test).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tallyql.money import NANO_PER_USD
from tallyql.storage.rollups.declarations import LOW_CARDINALITY


class Metric(Enum):
    REQUESTS = "REQUESTS"
    ERRORS = "ERRORS"
    BLOCKED = "BLOCKED"
    SUCCESS_RATE = "SUCCESS_RATE"
    ERROR_RATE = "ERROR_RATE"
    INPUT_TOKENS = "INPUT_TOKENS"
    OUTPUT_TOKENS = "OUTPUT_TOKENS"
    CACHE_READ_TOKENS = "CACHE_READ_TOKENS"
    CACHE_WRITE_TOKENS = "CACHE_WRITE_TOKENS"
    REASONING_TOKENS = "REASONING_TOKENS"
    TOTAL_TOKENS = "TOTAL_TOKENS"
    COST_USD = "COST_USD"
    AVG_LATENCY_MS = "AVG_LATENCY_MS"
    P50_LATENCY_MS = "P50_LATENCY_MS"
    P95_LATENCY_MS = "P95_LATENCY_MS"
    P99_LATENCY_MS = "P99_LATENCY_MS"
    MAX_LATENCY_MS = "MAX_LATENCY_MS"
    AVG_TTFT_MS = "AVG_TTFT_MS"
    P95_TTFT_MS = "P95_TTFT_MS"
    REQUEST_BYTES = "REQUEST_BYTES"
    RESPONSE_BYTES = "RESPONSE_BYTES"
    UNIQUE_USERS = "UNIQUE_USERS"
    UNIQUE_CALLERS = "UNIQUE_CALLERS"
    UNIQUE_SESSIONS = "UNIQUE_SESSIONS"
    UNIQUE_MODELS = "UNIQUE_MODELS"
    UNIQUE_AGENTS = "UNIQUE_AGENTS"
    UNIQUE_AGENT_INSTANCES = "UNIQUE_AGENT_INSTANCES"
    UNIQUE_TOOLS = "UNIQUE_TOOLS"
    UNIQUE_MCP_SERVERS = "UNIQUE_MCP_SERVERS"
    UNIQUE_GATEWAYS = "UNIQUE_GATEWAYS"


Values = Mapping[str, float]


def _ratio(num: str, den: str, scale: float = 1.0) -> Callable[[Values], float | None]:
    def compute(v: Values) -> float | None:
        d = v.get(den, 0)
        return v.get(num, 0) / d * scale if d else None

    return compute


def _sum(*names: str, divisor: int = 1) -> Callable[[Values], float | None]:
    """Sums of integer columns stay integers (exact, printed without a fraction); divided
    ones, like nano-USD to USD, become floats. Divided, not multiplied by 1/divisor: 60e9 nano-
    USD is 60.0 USD, where 60e9 * 1e-9 would be 60.00000000000001."""
    if divisor == 1:
        return lambda v: sum(v.get(n, 0) for n in names)
    return lambda v: sum(v.get(n, 0) for n in names) / divisor


PERCENTILE_NOTE = (
    ", ms: linear interpolation between the closest ranks (PostgreSQL percentile_cont); "
    "within 1% relative error (DDSketch), exact with X-Tallyql-Plan: raw."
)


@dataclass(frozen=True)
class MetricDef:
    metric: Metric
    description: str
    measures: tuple[str, ...] = ()
    compute: Callable[[Values], float | None] | None = None
    histogram: str | None = None  # "latency" | "ttft"
    quantile: float | None = None
    distinct: str | None = None  # event column counted distinct
    additive: bool = False  # sums across groups and buckets

    @property
    def zero_when_empty(self) -> bool:
        """Empty buckets read 0 for counts and sums, null for ratios, averages, latencies."""
        return self.additive or self.distinct is not None


def _additive(metric: Metric, description: str, measure: str, divisor: int = 1) -> MetricDef:
    return MetricDef(metric, description, (measure,), _sum(measure, divisor=divisor), additive=True)


def _distinct(metric: Metric, description: str, column: str) -> MetricDef:
    return MetricDef(metric, description, distinct=column)


def _percentile(metric: Metric, description: str, histogram: str, q: float) -> MetricDef:
    return MetricDef(metric, description, histogram=histogram, quantile=q)


MIXES = (
    " Over every event the filter selects: across kinds it mixes LLM and tool calls with agent "
    "runs (whose latency is their duration); name kinds in the filter to measure one."
)

METRICS: dict[Metric, MetricDef] = {
    d.metric: d
    for d in (
        _additive(
            Metric.REQUESTS,
            "Events (count) of the kinds the filter selects (every kind without one).",
            "requests",
        ),
        _additive(Metric.ERRORS, "Events with status error (count).", "errors"),
        _additive(Metric.BLOCKED, "Events with status blocked by a policy (count).", "blocked"),
        MetricDef(
            Metric.SUCCESS_RATE,
            "Share of events with status success (0 to 1).",
            ("requests", "errors", "blocked"),
            lambda v: (
                (v["requests"] - v["errors"] - v["blocked"]) / v["requests"]
                if v.get("requests")
                else None
            ),
        ),
        MetricDef(
            Metric.ERROR_RATE,
            "Share of events with status error (0 to 1).",
            ("errors", "requests"),
            _ratio("errors", "requests"),
        ),
        _additive(
            Metric.INPUT_TOKENS, "Input tokens (count), cached ones included.", "input_tokens"
        ),
        _additive(
            Metric.OUTPUT_TOKENS, "Output tokens (count), reasoning included.", "output_tokens"
        ),
        _additive(
            Metric.CACHE_READ_TOKENS, "Input tokens read from cache (count).", "cache_read_tokens"
        ),
        _additive(
            Metric.CACHE_WRITE_TOKENS,
            "Input tokens written to cache (count).",
            "cache_write_tokens",
        ),
        _additive(
            Metric.REASONING_TOKENS, "Output tokens spent reasoning (count).", "reasoning_tokens"
        ),
        MetricDef(
            Metric.TOTAL_TOKENS,
            "Input plus output tokens (count).",
            ("input_tokens", "output_tokens"),
            _sum("input_tokens", "output_tokens"),
            additive=True,
        ),
        _additive(
            Metric.COST_USD,
            "Cost in USD (caller-provided, else priced at ingest).",
            "cost_nanousd",
            divisor=NANO_PER_USD,
        ),
        MetricDef(
            Metric.AVG_LATENCY_MS,
            "Mean latency in ms of the selected events that report one." + MIXES,
            ("latency_sum", "latency_count"),
            _ratio("latency_sum", "latency_count"),
        ),
        _percentile(
            Metric.P50_LATENCY_MS, "Median latency" + PERCENTILE_NOTE + MIXES, "latency", 0.50
        ),
        _percentile(
            Metric.P95_LATENCY_MS, "P95 latency" + PERCENTILE_NOTE + MIXES, "latency", 0.95
        ),
        _percentile(
            Metric.P99_LATENCY_MS, "P99 latency" + PERCENTILE_NOTE + MIXES, "latency", 0.99
        ),
        MetricDef(
            Metric.MAX_LATENCY_MS,
            "Largest latency in ms." + MIXES,
            ("latency_max",),
            lambda v: v.get("latency_max"),
        ),
        MetricDef(
            Metric.AVG_TTFT_MS,
            "Mean time to first token in ms of the selected events that report one.",
            ("ttft_sum", "ttft_count"),
            _ratio("ttft_sum", "ttft_count"),
        ),
        _percentile(Metric.P95_TTFT_MS, "P95 time to first token" + PERCENTILE_NOTE, "ttft", 0.95),
        _additive(Metric.REQUEST_BYTES, "Request body bytes (sum).", "request_bytes"),
        _additive(Metric.RESPONSE_BYTES, "Response body bytes (sum).", "response_bytes"),
        _distinct(Metric.UNIQUE_USERS, "Distinct end users (count).", "user_id"),
        _distinct(
            Metric.UNIQUE_CALLERS, "Distinct callers: API key, else client IP (count).", "caller"
        ),
        _distinct(Metric.UNIQUE_SESSIONS, "Distinct sessions (count).", "session_id"),
        _distinct(Metric.UNIQUE_MODELS, "Distinct models (count).", "model"),
        _distinct(Metric.UNIQUE_AGENTS, "Distinct agents (count).", "agent_id"),
        _distinct(
            Metric.UNIQUE_AGENT_INSTANCES, "Distinct agent instances (count).", "agent_instance_id"
        ),
        _distinct(Metric.UNIQUE_TOOLS, "Distinct tools (count).", "tool"),
        _distinct(Metric.UNIQUE_MCP_SERVERS, "Distinct MCP servers (count).", "mcp_server"),
        _distinct(Metric.UNIQUE_GATEWAYS, "Distinct gateways (count).", "gateway"),
    )
}
assert set(METRICS) == set(Metric), "every Metric needs a definition"


class Dimension(Enum):
    PROVIDER = "PROVIDER"
    MODEL = "MODEL"
    KIND = "KIND"
    STATUS = "STATUS"
    STATUS_CODE = "STATUS_CODE"
    STATUS_CLASS = "STATUS_CLASS"
    ERROR_TYPE = "ERROR_TYPE"
    USER = "USER"
    GROUP = "GROUP"
    DEPARTMENT = "DEPARTMENT"
    AGENT = "AGENT"
    AGENT_INSTANCE = "AGENT_INSTANCE"
    NODE = "NODE"
    TOOL = "TOOL"
    MCP_SERVER = "MCP_SERVER"
    GATEWAY = "GATEWAY"
    PROTOCOL = "PROTOCOL"
    API_KEY = "API_KEY"
    CALLER = "CALLER"
    REQUEST_TYPE = "REQUEST_TYPE"
    BILLING_MODE = "BILLING_MODE"
    BYOK = "BYOK"
    POLICY = "POLICY"
    POLICY_NAME = "POLICY_NAME"
    COST_SOURCE = "COST_SOURCE"
    TAG = "TAG"
    SESSION = "SESSION"
    HOUR_OF_DAY = "HOUR_OF_DAY"
    DAY_OF_WEEK = "DAY_OF_WEEK"
    METADATA = "METADATA"
    WORKSPACE = "WORKSPACE"


@dataclass(frozen=True)
class DimensionDef:
    dimension: Dimension
    description: str
    column: str | None = None  # event column (None for derived dimensions)
    high_cardinality: bool = False


def _dim(d: Dimension, description: str, column: str | None, high: bool = False) -> DimensionDef:
    return DimensionDef(d, description, column, high)


DIMENSIONS: dict[Dimension, DimensionDef] = {
    d.dimension: d
    for d in (
        _dim(Dimension.PROVIDER, "Model provider.", "provider"),
        _dim(Dimension.MODEL, "Model.", "model"),
        _dim(Dimension.KIND, "llm_call, tool_call, agent_run, http_request.", "kind"),
        _dim(Dimension.STATUS, "success, error, blocked.", "status"),
        _dim(
            Dimension.STATUS_CODE,
            "HTTP status code the event reported (e.g. 200, 429); null without one.",
            "status_code",
        ),
        _dim(
            Dimension.STATUS_CLASS,
            "Class of the HTTP status code: 1xx, 2xx, 3xx, 4xx or 5xx; null without a code "
            "or for a code outside 100-599.",
            "status_code",
        ),
        _dim(Dimension.ERROR_TYPE, "Error class.", "error_type"),
        _dim(Dimension.USER, "End user.", "user_id", high=True),
        _dim(
            Dimension.GROUP,
            "User group, by its current members: a user in several groups counts in each, so "
            "rows can add up to more than the total (see rowsOverlap).",
            "user_id",
        ),
        _dim(
            Dimension.DEPARTMENT,
            "The department (cost centre) the event's user had when the event was stored; "
            "null for events without a user or whose user had none. Rows sum to the total.",
            "department",
        ),
        _dim(Dimension.AGENT, "Agent.", "agent_id"),
        _dim(Dimension.AGENT_INSTANCE, "Agent instance.", "agent_instance_id"),
        _dim(Dimension.NODE, "Pipeline node.", "node"),
        _dim(Dimension.TOOL, "Tool.", "tool"),
        _dim(Dimension.MCP_SERVER, "MCP server.", "mcp_server"),
        _dim(Dimension.GATEWAY, "Gateway.", "gateway"),
        _dim(Dimension.PROTOCOL, "Protocol.", "protocol"),
        _dim(Dimension.API_KEY, "The caller's API key id.", "api_key_id", high=True),
        _dim(Dimension.CALLER, "Caller: API key id, else ip:<address>.", "caller", high=True),
        _dim(Dimension.REQUEST_TYPE, "Request type.", "request_type"),
        _dim(Dimension.BILLING_MODE, "Billing mode.", "billing_mode"),
        _dim(Dimension.BYOK, "true when the caller brought their own key.", "is_byok"),
        _dim(Dimension.POLICY, "Policy that blocked or flagged the call.", "policy_id"),
        _dim(Dimension.POLICY_NAME, "The policy's name when it acted.", "policy_name"),
        _dim(Dimension.COST_SOURCE, "provided, computed, unpriced.", "cost_source"),
        _dim(Dimension.TAG, "Tag (an event counts once per tag).", "tag"),
        _dim(Dimension.SESSION, "Session.", "session_id", high=True),
        _dim(Dimension.HOUR_OF_DAY, "Local hour 0-23 in the range's time zone.", None),
        _dim(Dimension.DAY_OF_WEEK, "Local weekday, 0 = Monday.", None),
        _dim(Dimension.METADATA, "A metadata key's value (give metadataKey).", None, high=True),
        _dim(
            Dimension.WORKSPACE,
            "Workspace id (across workspaces with an operator admin key).",
            "workspace_id",
        ),
    )
}
assert set(DIMENSIONS) == set(Dimension), "every Dimension needs a definition"


COVERED_DIMENSIONS = frozenset(
    {
        *(d for d, spec in DIMENSIONS.items() if spec.column in LOW_CARDINALITY),
        Dimension.HOUR_OF_DAY,
        Dimension.DAY_OF_WEEK,
        Dimension.WORKSPACE,
    }
)
"""The coverage rule's dimensions: any question grouped by these alone, filtered only on the
low-cardinality filters (`filters.COVERED_FILTERS`), with buckets on whole UTC hours, is
answered from rollups (sums, percentiles and distinct counts of low-cardinality columns), raw
events being read only at the window's ragged edges (tests/test_coverage.py checks it)."""
assert not any(DIMENSIONS[d].high_cardinality for d in COVERED_DIMENSIONS)


@dataclass(frozen=True)
class DimensionRef:
    """A dimension as used in a query: METADATA carries its key; `keep` folds every value
    not listed into OTHER (timeseries' top groups plus an "other" series)."""

    dimension: Dimension
    metadata_key: str | None = None
    keep: tuple[Any, ...] | None = None

    @property
    def definition(self) -> DimensionDef:
        return DIMENSIONS[self.dimension]


OTHER = "\uffffother"
"""The group key of values folded into "other" (text dimensions)."""
OTHER_NUMBER = -1
"""The group key of values folded into "other" for dimensions whose values are numbers or
booleans (no hour, weekday, status code or workspace id is negative; booleans fold as 0 and
1): one SQL expression cannot mix a text sentinel with them (PostgreSQL refuses the CASE)."""
NUMERIC_DIMENSIONS = frozenset(
    {
        Dimension.BYOK,
        Dimension.STATUS_CODE,
        Dimension.HOUR_OF_DAY,
        Dimension.DAY_OF_WEEK,
        Dimension.WORKSPACE,
    }
)


OVERLAPPING_DIMENSIONS = frozenset({Dimension.GROUP, Dimension.TAG})
"""Dimensions under which one event can count in several rows (a user in several groups, an
event with several tags): their rows' additive figures can sum to more than the total."""


def other_key(dimension: Dimension) -> str | int:
    """The key under which `dimension`'s folded values come back."""
    return OTHER_NUMBER if dimension in NUMERIC_DIMENSIONS else OTHER
