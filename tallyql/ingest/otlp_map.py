"""Maps OTLP spans to tallyql events (the REST contract of `fields.py`).

GenAI semantic-convention attributes (`gen_ai.*`) come first, OpenInference names
(`llm.model_name`, `llm.token_count.prompt`, ...) are the fallback. The span id (hex) is the
event id, so a re-sent span is a duplicate, never a second event; the span's duration is the
latency. A span that carries none of the recognised attributes is skipped (`None`).
A span becomes a row of field values (`fastpath.EventRow`), never a dict: the ingest fast path
checks rows with the same types and limits as REST events, and only a row that fails goes to
the detailed validator (as a dict), which names what is wrong.

Token counts are stored inclusive (input holds cached tokens, output holds reasoning tokens);
when a span reports more cached than input tokens (or more reasoning than output tokens) the
instrumentation counted them apart, and they are added.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tallyql.ingest.fastpath import (
    AGENT,
    CACHE_READ,
    CACHE_WRITE,
    COST,
    ERROR_MESSAGE,
    ERROR_TYPE,
    ID,
    INPUT,
    KIND,
    LATENCY,
    METADATA,
    MODEL,
    OUTPUT,
    PARENT,
    PROVIDER,
    REASONING,
    REQUEST_TYPE,
    ROW_WIDTH,
    SESSION,
    STATUS,
    STATUS_CODE,
    TIMESTAMP,
    TOOL,
    TRACE,
    TTFT,
    USER,
)
from tallyql.ingest.otlp_decode import STATUS_ERROR, OtlpSpan, is_finite_number

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)

OPENINFERENCE_KINDS = {
    "LLM": ("llm_call", "chat"),
    "EMBEDDING": ("llm_call", "embedding"),
    "RERANKER": ("llm_call", "rerank"),
    "TOOL": ("tool_call", "tool"),
    "RETRIEVER": ("tool_call", "retrieval"),
    "AGENT": ("agent_run", "agent"),
}
OPERATIONS = {
    "chat": ("llm_call", "chat"),
    "text_completion": ("llm_call", "completion"),
    "generate_content": ("llm_call", "chat"),
    "embeddings": ("llm_call", "embedding"),
    "execute_tool": ("tool_call", "tool"),
    "invoke_agent": ("agent_run", "agent"),
    "create_agent": ("agent_run", "agent"),
    "invoke_workflow": ("agent_run", "workflow"),
}
PROVIDERS = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "ibm.watsonx.ai": "ibm",
}
ERROR_TYPES = {
    "timeout": "timeout",
    "rate_limit": "rate_limit",
    "ratelimiterror": "rate_limit",
    "429": "rate_limit",
    "authenticationerror": "auth_error",
    "permissiondeniederror": "auth_error",
    "401": "auth_error",
    "403": "auth_error",
    "badrequesterror": "invalid_request",
    "invalid_request": "invalid_request",
    "400": "invalid_request",
    "404": "invalid_request",
    "422": "invalid_request",
}
_METADATA_KEYS = (
    "gen_ai.agent.name",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.tool.call.id",
    "gen_ai.tool.type",
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "server.address",
)
_RESOURCE_METADATA = ("service.name", "service.version", "deployment.environment.name")
_OPENINFERENCE_HINTS = ("llm.model_name", "llm.provider", "llm.system", "tool.name")


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def is_genai(attrs: dict[str, Any]) -> bool:
    """True when a span carries GenAI (or OpenInference LLM/tool/agent) attributes."""
    for key in attrs:
        if key.startswith(("gen_ai.", "llm.token_count.")) or key in _OPENINFERENCE_HINTS:
            return True
    # any attribute value type may arrive (a list is unhashable)
    kind = attrs.get("openinference.span.kind")
    return isinstance(kind, str) and kind in OPENINFERENCE_KINDS


def _kind(attrs: dict[str, Any]) -> tuple[str, str | None]:
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation in OPERATIONS:
        return OPERATIONS[operation]
    oi_kind = attrs.get("openinference.span.kind")
    if isinstance(oi_kind, str) and oi_kind in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[oi_kind]
    if _first(attrs, "gen_ai.tool.name", "tool.name") and not _first(
        attrs, "gen_ai.request.model", "gen_ai.response.model", "llm.model_name"
    ):
        return "tool_call", "tool"
    return "llm_call", operation if isinstance(operation, str) else None


def _provider(attrs: dict[str, Any]) -> Any:
    value = _first(attrs, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
    if isinstance(value, str):
        lowered = value.lower()
        return PROVIDERS.get(lowered, lowered)
    return value


def _error_type(attrs: dict[str, Any]) -> str:
    raw = attrs.get("error.type")
    if raw is None:
        raw = attrs.get("http.response.status_code")
    key = str(raw).lower().rsplit(".", 1)[-1] if raw is not None else ""
    if key in ERROR_TYPES:
        return ERROR_TYPES[key]
    if "timeout" in key:
        return "timeout"
    if "ratelimit" in key or "rate_limit" in key:
        return "rate_limit"
    return "other"


def _status_code(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if type(value) is int else None


def _error_message(span: OtlpSpan) -> str | None:
    if span.status_message:
        return span.status_message
    for name, attrs in span.events:
        if name == "exception" and isinstance(attrs.get("exception.message"), str):
            return attrs["exception.message"]
    return None


_TOKENS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        INPUT,
        ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    ),
    (
        OUTPUT,
        (
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        ),
    ),
    (
        CACHE_READ,
        (
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
        ),
    ),
    (
        CACHE_WRITE,
        (
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
            "llm.token_count.prompt_details.cache_write",
        ),
    ),
    (
        REASONING,
        (
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens",
            "llm.token_count.completion_details.reasoning",
        ),
    ),
)


def _tokens(attrs: dict[str, Any], row: list[Any]) -> None:
    well_formed = True
    for position, names in _TOKENS:
        value = _first(attrs, *names)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        row[position] = value
        if type(value) is not int:
            well_formed = False
    if not well_formed:
        return  # leave malformed counts to the validator, which names the field
    input_tokens = row[INPUT] or 0
    cached = (row[CACHE_READ] or 0) + (row[CACHE_WRITE] or 0)
    if cached > input_tokens:
        row[INPUT] = input_tokens + cached
    output_tokens = row[OUTPUT] or 0
    reasoning = row[REASONING] or 0
    if reasoning > output_tokens:
        row[OUTPUT] = output_tokens + reasoning


def _start(ns: int) -> datetime:
    """The span's start as aware UTC, to the microsecond (as RFC 3339 text would carry it)."""
    try:
        return _EPOCH + timedelta(microseconds=ns // 1000)
    except OverflowError:
        return _LATEST  # past year 9999: the validator rejects it as too far in the future


def span_row(span: OtlpSpan) -> list[Any] | None:
    """The event of a GenAI span as a row of field values (`fastpath.EventRow`, validated by
    the same rules as a REST event), or None for a span without GenAI attributes."""
    attrs = span.attributes
    if not is_genai(attrs):
        return None
    get = attrs.get
    row: list[Any] = [None] * ROW_WIDTH
    row[KIND], row[REQUEST_TYPE] = _kind(attrs)
    row[ID] = span.span_id
    start = span.start_ns
    if start > 0:
        row[TIMESTAMP] = _start(start)
        if span.end_ns >= start:
            row[LATENCY] = (span.end_ns - start) / 1_000_000
    row[PROVIDER] = _provider(attrs)
    row[MODEL] = _first(attrs, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
    row[SESSION] = _first(attrs, "gen_ai.conversation.id", "session.id")
    row[USER] = _first(attrs, "user.id", "enduser.id")
    row[AGENT] = _first(attrs, "gen_ai.agent.id", "gen_ai.agent.name")
    row[TOOL] = _first(attrs, "gen_ai.tool.name", "tool.name")
    row[TRACE] = span.trace_id
    row[PARENT] = span.parent_id
    row[STATUS_CODE] = _status_code(_first(attrs, "http.response.status_code", "http.status_code"))
    _tokens(attrs, row)
    ttft = get("gen_ai.response.time_to_first_chunk")
    if is_finite_number(ttft):
        row[TTFT] = ttft * 1000
    cost = _first(attrs, "gen_ai.usage.cost", "llm.cost.total")
    if is_finite_number(cost):
        row[COST] = cost
    if span.status_code == STATUS_ERROR or get("error.type") is not None:
        row[STATUS] = "error"
        row[ERROR_TYPE] = _error_type(attrs)
        message = _error_message(span)
        if message:
            row[ERROR_MESSAGE] = message[:2000]
    metadata: dict[str, Any] = {"span.name": span.name} if span.name else {}
    if span.scope:
        metadata["otel.scope.name"] = span.scope
    resource = span.resource
    for key in _RESOURCE_METADATA:
        if resource.get(key) is not None:
            metadata[key] = resource[key]
    for key in _METADATA_KEYS:
        value = get(key)
        if value is not None:
            metadata[key] = value
    row[METADATA] = metadata
    return row
