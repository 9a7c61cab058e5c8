"""The previous OTLP mapping, kept as the plain-Python reference of a span's meaning: each
GenAI span became a REST event dict (the contract of `fields.py`), which went through the
REST body path (orjson, then msgspec or the detailed validator). `tallyql.ingest.otlp_map`
now builds rows straight from the decoded spans; tests compare the two.

GenAI semantic-convention attributes (`gen_ai.*`) come first, OpenInference names
(`llm.model_name`, `llm.token_count.prompt`, ...) are the fallback. The span id (hex) is the
event id, so a re-sent span is a duplicate, never a second event; the span's duration is the
latency. A span that carries none of the recognised attributes is skipped (`None`).

Token counts are stored inclusive (input holds cached tokens, output holds reasoning tokens);
when a span reports more cached than input tokens (or more reasoning than output tokens) the
instrumentation counted them apart, and they are added.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tallyql.ingest import fastpath
from tallyql.ingest.body import parse_events
from tallyql.ingest.otlp_decode import STATUS_ERROR, OtlpSpan, is_finite_number
from tallyql.ingest.service import IngestService
from tallyql.ingest.validate import FieldError
from tallyql.storage.ingest.record import ValidEvent

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
    # a list here raised TypeError (a 500) in the previous door; fixed in both
    kind = attrs.get("openinference.span.kind")
    return isinstance(kind, str) and kind in OPENINFERENCE_KINDS


def _rfc3339(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return moment.isoformat().replace("+00:00", "Z")


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


def _tokens(attrs: dict[str, Any], event: dict[str, Any]) -> None:
    fields = {
        "input_tokens": _first(
            attrs,
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
        ),
        "output_tokens": _first(
            attrs,
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        ),
        "cache_read_tokens": _first(
            attrs,
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
        ),
        "cache_write_tokens": _first(
            attrs,
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
            "llm.token_count.prompt_details.cache_write",
        ),
        "reasoning_tokens": _first(
            attrs,
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens",
            "llm.token_count.completion_details.reasoning",
        ),
    }
    for name, value in fields.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is not None:
            event[name] = value
    ints = {k: v for k, v in event.items() if k.endswith("_tokens") and type(v) is int}
    if len(ints) < sum(1 for v in fields.values() if v is not None):
        return  # leave malformed counts to the validator, which names the field
    cached = ints.get("cache_read_tokens", 0) + ints.get("cache_write_tokens", 0)
    if cached > ints.get("input_tokens", 0):
        event["input_tokens"] = ints.get("input_tokens", 0) + cached
    reasoning = ints.get("reasoning_tokens", 0)
    if reasoning > ints.get("output_tokens", 0):
        event["output_tokens"] = ints.get("output_tokens", 0) + reasoning


def span_to_event(span: OtlpSpan) -> dict[str, Any] | None:
    """The raw event of a GenAI span, or None for a span without GenAI attributes."""
    attrs = span.attributes
    if not is_genai(attrs):
        return None
    kind, request_type = _kind(attrs)
    event: dict[str, Any] = {"kind": kind}
    if span.span_id is not None:
        event["id"] = span.span_id
    if span.start_ns > 0:
        event["timestamp"] = _rfc3339(span.start_ns)
        if span.end_ns >= span.start_ns:
            event["latency_ms"] = (span.end_ns - span.start_ns) / 1_000_000
    optional = {
        "request_type": request_type,
        "provider": _provider(attrs),
        "model": _first(attrs, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
        "session_id": _first(attrs, "gen_ai.conversation.id", "session.id"),
        "user_id": _first(attrs, "user.id", "enduser.id"),
        "agent_id": _first(attrs, "gen_ai.agent.id", "gen_ai.agent.name"),
        "tool": _first(attrs, "gen_ai.tool.name", "tool.name"),
        "trace_id": span.trace_id,
        "parent_id": span.parent_id,
        "status_code": _status_code(attrs.get("http.response.status_code")),
    }
    event.update({k: v for k, v in optional.items() if v is not None})
    _tokens(attrs, event)
    ttft = attrs.get("gen_ai.response.time_to_first_chunk")
    if is_finite_number(ttft):
        event["ttft_ms"] = ttft * 1000
    cost = _first(attrs, "gen_ai.usage.cost", "llm.cost.total")
    if is_finite_number(cost):
        event["cost_usd"] = cost
    if span.status_code == STATUS_ERROR or attrs.get("error.type") is not None:
        event["status"] = "error"
        event["error_type"] = _error_type(attrs)
        message = _error_message(span)
        if message:
            event["error_message"] = message[:2000]
    metadata: dict[str, Any] = {"span.name": span.name} if span.name else {}
    if span.scope:
        metadata["otel.scope.name"] = span.scope
    for key in _RESOURCE_METADATA:
        if span.resource.get(key) is not None:
            metadata[key] = span.resource[key]
    for key in _METADATA_KEYS:
        if attrs.get(key) is not None:
            metadata[key] = attrs[key]
    event["metadata"] = metadata
    return event


def reference_prepare(
    service: IngestService, workspace_id: int, spans: list[OtlpSpan], now: datetime
) -> tuple[list[ValidEvent], list[FieldError], list[int]]:
    """What the previous door prepared for a request's spans: the valid events, the errors
    (indexed among the GenAI spans) and the span position of each GenAI span."""
    events: list[dict[str, Any]] = []
    positions: list[int] = []
    for position, span in enumerate(spans):
        event = span_to_event(span)
        if event is not None:
            events.append(event)
            positions.append(position)
    body = orjson.dumps(events)
    try:
        valid = service.prepare_fast(workspace_id, fastpath.decode_body(body, False), now)
        return valid, [], positions
    except fastpath.SlowPath:
        parsed = parse_events(body, "application/json", len(events))
        valid, errors = service.prepare(workspace_id, parsed.events, now)
        return valid, errors, positions
