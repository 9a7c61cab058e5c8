"""The event contract: every field an event may carry on ingest, with its type and limits.

REST uses these snake_case names; GraphQL's `EventInput` uses the camelCase forms of the same
names. `validate.py` checks raw events against this table; `storage/tables.py` stores the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

KINDS = ("llm_call", "tool_call", "agent_run", "http_request")
STATUSES = ("success", "error", "blocked")
ERROR_TYPES = (
    "rate_limit",
    "invalid_request",
    "timeout",
    "auth_error",
    "model_error",
    "policy_blocked",
    "other",
)
COST_SOURCES = ("provided", "computed", "unpriced")
TOKEN_ACCOUNTING = ("inclusive", "exclusive")

MAX_EVENTS_PER_CALL = 10_000
MAX_TAGS = 32
MAX_METADATA_BYTES = 16_384
MAX_JSON_DEPTH = 64
"""Deepest nesting of metadata, request, response (and audit details): levels of objects and
arrays, the value itself being level 1. Encoders and PostgreSQL's jsonb recurse per level."""

# Bounds of the measures. Every stored sum (rollups, sessions) is a 64-bit integer or a double:
# with these, no arithmetic on one event can overflow, and a sum needs hundreds of thousands of
# maximal events in one rollup row before it could (see README, "Event fields").
MAX_TOKENS = 100_000_000
"""Most tokens in one token field of one event (a hundred times the largest context window)."""
MAX_DURATION_MS = 2_592_000_000.0
"""Longest latency_ms and ttft_ms: 30 days in milliseconds."""
MAX_BYTES = 1 << 30
"""Largest request_bytes and response_bytes: 1 GiB."""
MAX_COST_USD = 10_000.0
"""Largest cost of one event in USD, provided (cost_usd) or computed from its tokens."""
MAX_STATUS_CODE = 999
"""Largest status_code (HTTP-like codes are three digits)."""


class FieldType(Enum):
    TEXT = "text"
    ENUM = "enum"
    INT = "int"
    NUMBER = "number"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    TAGS = "tags"
    OBJECT = "object"
    PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class EventField:
    name: str
    type: FieldType
    doc: str
    max_length: int = 256
    choices: tuple[str, ...] = ()
    maximum: float = 0
    """INT and NUMBER fields: the largest value accepted (the smallest is 0)."""


def _text(name: str, doc: str, max_length: int = 256) -> EventField:
    return EventField(name, FieldType.TEXT, doc, max_length=max_length)


def _enum(name: str, choices: tuple[str, ...], doc: str) -> EventField:
    return EventField(name, FieldType.ENUM, doc, choices=choices)


def _int(name: str, doc: str, maximum: int) -> EventField:
    return EventField(name, FieldType.INT, doc, maximum=maximum)


def _number(name: str, doc: str, maximum: float) -> EventField:
    return EventField(name, FieldType.NUMBER, doc, maximum=maximum)


EVENT_FIELDS: tuple[EventField, ...] = (
    # identity
    _text(
        "id",
        "Client event id, unique per workspace; the idempotency key. Generated if absent.",
        128,
    ),
    EventField("timestamp", FieldType.TIMESTAMP, "RFC 3339 with offset; defaults to receive time."),
    # what
    _enum("kind", KINDS, "llm_call (default), tool_call, agent_run or http_request."),
    _enum(
        "status",
        STATUSES,
        "success, error or blocked; when absent: error if error_type is set or status_code "
        "is 400-599, else success.",
    ),
    _int(
        "status_code",
        "HTTP status code of the call; without status, 4xx/5xx mean error and name the "
        "error_type where unambiguous (429 rate_limit, 401/403 auth_error, 408/504 timeout, "
        "400/404/409/413/422 invalid_request, other 5xx other). 0 to 999.",
        MAX_STATUS_CODE,
    ),
    _enum("error_type", ERROR_TYPES, "Class of the error for status error or blocked."),
    _text("error_message", "Short error text (kept up to 2,000 characters).", 2000),
    _text("policy_id", "Policy that blocked or flagged the call."),
    _text("policy_name", "The policy's name at the time of the event."),
    _text("policy_description", "The policy's description at the time of the event.", 2000),
    # who
    _text("user_id", "End user on whose behalf the call ran."),
    _text("api_key_id", "The caller's API key id at the gateway (never the secret)."),
    _text("caller_ip", "Client IP address.", 64),
    _text("agent_id", "Agent (the definition)."),
    _text("agent_instance_id", "Running instance of the agent."),
    _text("session_id", "Conversation or session."),
    _text("trace_id", "Trace the call belongs to."),
    _text("parent_id", "Parent span or event id."),
    _text("run_id", "Agent run id."),
    _text("node", "Pipeline node of the agent."),
    # where
    _text("provider", "Model provider, e.g. openai, anthropic."),
    _text("model", "Model name as the provider knows it."),
    _text("tool", "Tool that was called."),
    _text("mcp_server", "MCP server that owns the tool."),
    _text("gateway", "Gateway that routed the call."),
    _text("protocol", "Wire protocol, e.g. openai, anthropic, mcp, a2a."),
    _text("request_type", "chat, completion, embedding, image, audio, rerank, tool, ..."),
    _text("billing_mode", "How the call is billed, e.g. platform, byok, free."),
    EventField("is_byok", FieldType.BOOL, "True when the caller brought their own provider key."),
    # measures
    _int(
        "input_tokens",
        "Input tokens including cached ones, 0 to 100,000,000 (see token_accounting).",
        MAX_TOKENS,
    ),
    _int(
        "output_tokens",
        "Output tokens including reasoning ones, 0 to 100,000,000 (see token_accounting).",
        MAX_TOKENS,
    ),
    _int(
        "cache_read_tokens",
        "Input tokens read from the provider's prompt cache (0 to 100,000,000).",
        MAX_TOKENS,
    ),
    _int(
        "cache_write_tokens",
        "Input tokens written to the provider's prompt cache (0 to 100,000,000).",
        MAX_TOKENS,
    ),
    _int("reasoning_tokens", "Output tokens spent on reasoning (0 to 100,000,000).", MAX_TOKENS),
    _enum(
        "token_accounting",
        TOKEN_ACCOUNTING,
        "inclusive (default): input includes cached, output includes reasoning. "
        "exclusive (Anthropic style): they are reported apart and tallyql adds them.",
    ),
    _number(
        "cost_usd",
        "Cost the caller already knows, in USD (0 to 10,000); wins over computed prices.",
        MAX_COST_USD,
    ),
    _number(
        "latency_ms",
        "End-to-end latency in milliseconds (0 to 30 days); for agent_run events the run's "
        "duration.",
        MAX_DURATION_MS,
    ),
    _number("ttft_ms", "Time to first token in milliseconds (0 to 30 days).", MAX_DURATION_MS),
    _int("request_bytes", "Request size in bytes (0 to 1 GiB).", MAX_BYTES),
    _int("response_bytes", "Response size in bytes (0 to 1 GiB).", MAX_BYTES),
    # free
    EventField("tags", FieldType.TAGS, f"Up to {MAX_TAGS} strings."),
    EventField("metadata", FieldType.OBJECT, "JSON object; filterable by key and value."),
    EventField("request", FieldType.PAYLOAD, "Request body (any JSON); stored apart."),
    EventField("response", FieldType.PAYLOAD, "Response body (any JSON); stored apart."),
)

FIELDS_BY_NAME: dict[str, EventField] = {f.name: f for f in EVENT_FIELDS}

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
