"""Reads OTLP/HTTP log requests (protobuf or JSON) into plain `OtlpLogRecord`s, and maps the
log records of coding agents (Claude Code, OpenAI Codex CLI, Gemini CLI) to tallyql events.

These agents export no GenAI spans: each model call and each tool run is a log record (an
OpenTelemetry "event") named in the record's `event_name`, its `event.name` attribute or its
body, with the agent's own attribute names. The mapping follows each agent's documentation:

- Claude Code: `claude_code.api_request` (model, input_tokens, output_tokens, cache_read_tokens,
  cache_creation_tokens, cost_usd, duration_ms), `claude_code.api_error` (model, error,
  status_code, duration_ms, attempt), `claude_code.tool_result` (tool_name, success,
  duration_ms, error, decision, source); every record carries session.id, user.id,
  user.email, user.account_uuid, organization.id, app.version, terminal.type, prompt.id.
- Codex CLI: `codex.sse_event` whose `event.kind` is `response.completed` (input_token_count,
  output_token_count, cached_token_count, reasoning_token_count, duration_ms), a failed
  `codex.api_request` (http.response.status_code, error.message, attempt, duration_ms),
  `codex.tool_result` (tool_name, call_id, duration_ms, success, output); every record carries
  conversation.id, model, user.email, user.account_id, app.version, terminal.type.
- Gemini CLI: `gemini_cli.api_response` (model, status_code, duration_ms, input_token_count,
  output_token_count, cached_content_token_count, thoughts_token_count, tool_token_count),
  `gemini_cli.api_error` (model, error, error_type, status_code, duration_ms),
  `gemini_cli.tool_call` (function_name, duration_ms, success, error, error_type, decision);
  every record carries session.id, user.email, installation.id.

A record of these agents that describes no call (a prompt, a tool decision, a request whose
answer another record carries: `gemini_cli.api_request`, a successful `codex.api_request`,
Codex stream events other than the completed response) is `IGNORED`; a record of any other
name is `SKIPPED`. Both are acknowledged and counted, never errors.

Token counts are stored inclusive, as for every event (input holds cached tokens, output holds
reasoning tokens): Claude Code reports its input tokens without the cached ones (Anthropic's
usage), so they are added; Gemini reports its output without the thought tokens, so they are
added; Codex reports OpenAI's usage, already inclusive.

A log record has no id: the event id is a hash of what identifies the record (its event name,
time, trace context, attributes and resource attributes), so an exporter's retry of the same
record is a duplicate, never a second event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tallyql.ingest.body import BodyError
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
    USER,
)
from tallyql.ingest.otlp_decode import (
    OtlpError,
    _get,
    _hex,
    _id,
    _int,
    _json_attributes,
    _json_value,
    _pb_attributes,
    _pb_value,
    count_protobuf_items,
)
from tallyql.ingest.otlp_map import _start

MAX_LOG_RECORDS = 100_000
"""Most log records in one OTLP call, counted before any is built (as spans are)."""

MAPPED, IGNORED, SKIPPED = "mapped", "ignored", "skipped"


@dataclass(slots=True)
class OtlpLogRecord:
    event_name: str | None
    body: Any
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str | None
    time_ns: int
    observed_ns: int
    trace_id: str | None
    span_id: str | None


def _too_many() -> BodyError:
    return BodyError(
        f"more than {MAX_LOG_RECORDS:,} log records in one call; send smaller batches", 413
    )


def decode_logs_protobuf(body: bytes) -> list[OtlpLogRecord]:
    if count_protobuf_items(body, MAX_LOG_RECORDS) > MAX_LOG_RECORDS:
        raise _too_many()
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(f"body is not an OTLP protobuf ExportLogsServiceRequest: {exc}") from None
    records: list[OtlpLogRecord] = []
    for resource_logs in request.resource_logs:
        resource = _pb_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope.name or None
            for r in scope_logs.log_records:
                records.append(
                    OtlpLogRecord(
                        event_name=r.event_name or None,
                        body=_pb_value(r.body) if r.HasField("body") else None,
                        attributes=_pb_attributes(r.attributes),
                        resource=resource,
                        scope=scope,
                        time_ns=r.time_unix_nano,
                        observed_ns=r.observed_time_unix_nano,
                        trace_id=_hex(r.trace_id),
                        span_id=_hex(r.span_id),
                    )
                )
    return records


def decode_logs_json(doc: Any) -> list[OtlpLogRecord]:
    if not isinstance(doc, dict):
        raise OtlpError("body must be a JSON object with resourceLogs")
    records: list[OtlpLogRecord] = []
    for resource_logs in _get(doc, "resourceLogs") or []:
        if not isinstance(resource_logs, dict):
            raise OtlpError("resourceLogs must hold JSON objects")
        resource = _json_attributes((_get(resource_logs, "resource") or {}).get("attributes"))
        for scope_logs in _get(resource_logs, "scopeLogs") or []:
            if not isinstance(scope_logs, dict):
                raise OtlpError("scopeLogs must hold JSON objects")
            scope = (_get(scope_logs, "scope") or {}).get("name") or None
            for r in _get(scope_logs, "logRecords") or []:
                if not isinstance(r, dict):
                    raise OtlpError("each log record must be a JSON object")
                event_name = _get(r, "eventName")
                records.append(
                    OtlpLogRecord(
                        event_name=event_name if isinstance(event_name, str) else None,
                        body=_json_value(r.get("body")),
                        attributes=_json_attributes(r.get("attributes")),
                        resource=resource,
                        scope=scope if isinstance(scope, str) else None,
                        time_ns=_int(_get(r, "timeUnixNano"), "timeUnixNano"),
                        observed_ns=_int(_get(r, "observedTimeUnixNano"), "observedTimeUnixNano"),
                        trace_id=_id(_get(r, "traceId"), 16, "traceId"),
                        span_id=_id(_get(r, "spanId"), 8, "spanId"),
                    )
                )
                if len(records) > MAX_LOG_RECORDS:
                    raise _too_many()
    return records


# ---------------------------------------------------------------- mapping


CLAUDE, CODEX, GEMINI = "claude_code", "codex", "gemini_cli"
_DEFAULT_AGENT = {CLAUDE: "claude-code", CODEX: "codex", GEMINI: "gemini-cli"}
_PROVIDER = {CLAUDE: "anthropic", CODEX: "openai", GEMINI: "google"}

# the agents' records that describe no model call or tool run of their own
IGNORED_EVENTS = frozenset(
    {
        "claude_code.user_prompt",
        "claude_code.tool_decision",
        "claude_code.api_request_body",
        "claude_code.api_response_body",
        "codex.conversation_starts",
        "codex.user_prompt",
        "codex.tool_decision",
        "codex.websocket_request",
        "codex.websocket_event",
        "gemini_cli.config",
        "gemini_cli.user_prompt",
        "gemini_cli.api_request",
        "gemini_cli.tool_output_truncated",
        "gemini_cli.flash_fallback",
        "gemini_cli.slash_command",
        "gemini_cli.chat_compression",
        "gemini_cli.file_operation",
        "gemini_cli.next_speaker_check",
        "gemini_cli.model_routing",
    }
)
MAPPED_EVENTS = frozenset(
    {
        "claude_code.api_request",
        "claude_code.api_error",
        "claude_code.tool_result",
        "codex.sse_event",
        "codex.api_request",
        "codex.tool_result",
        "gemini_cli.api_response",
        "gemini_cli.api_error",
        "gemini_cli.tool_call",
    }
)
_KNOWN = MAPPED_EVENTS | IGNORED_EVENTS

# attributes kept in the event's metadata when present (never prompts, bodies or outputs)
_METADATA_KEYS = (
    "prompt.id",
    "event.sequence",
    "organization.id",
    "user.account_uuid",
    "user.account_id",
    "user.id",
    "installation.id",
    "app.version",
    "terminal.type",
    "auth_mode",
    "slug",
    "attempt",
    "speed",
    "decision",
    "source",
    "call_id",
    "tool_result_size_bytes",
    "mcp_server_scope",
    "tool_token_count",
    "total_token_count",
)
_RESOURCE_METADATA = ("service.name", "service.version", "deployment.environment.name")


def event_name_of(record: OtlpLogRecord) -> str | None:
    """The record's event name, where each agent puts it: the record's event_name field
    (newer SDKs), the `event.name` attribute (Codex, Gemini CLI; Claude Code puts the name
    without its `claude_code.` prefix there) or the body (Claude Code)."""
    attr = record.attributes.get("event.name")
    for candidate in (record.event_name, attr, record.body):
        if isinstance(candidate, str) and candidate in _KNOWN:
            return candidate
    if isinstance(attr, str) and f"claude_code.{attr}" in _KNOWN:
        service = record.resource.get("service.name")
        scope = record.scope or ""
        if service == "claude-code" or "claude_code" in scope:
            return f"claude_code.{attr}"
    for candidate in (record.event_name, attr):  # a body is free text, never a name
        if isinstance(candidate, str) and candidate:
            return candidate[:200]
    return None


def _number(value: Any) -> Any:
    """A count or duration: the agents send numbers, some as text ("1234"); anything else is
    passed on unchanged, for the validator to name."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _status_code(value: Any) -> int | None:
    value = _number(value)
    return value if type(value) is int and 100 <= value <= 599 else None


def _flag(value: Any) -> bool | None:
    """A success flag: a boolean (Gemini CLI) or "true"/"false" text (Claude Code, Codex)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _record_id(name: str, record: OtlpLogRecord) -> str:
    identity = orjson.dumps(
        [
            name,
            record.time_ns,
            record.observed_ns if not record.time_ns else 0,
            record.trace_id,
            record.span_id,
            record.attributes,
            record.resource,
        ],
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return "otlp-log-" + hashlib.sha256(identity).hexdigest()[:32]


def _timestamp(record: OtlpLogRecord) -> datetime | None:
    ns = record.time_ns or record.observed_ns
    if ns > 0:
        return _start(ns)
    stamp = record.attributes.get("event.timestamp")
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _add(a: Any, b: Any) -> Any:
    """a + b when both are counts (a missing one counts 0); otherwise a, for the validator."""
    if b is None:
        return a
    if a is None:
        return b
    if type(a) is int and type(b) is int:
        return a + b
    return a


def log_row(record: OtlpLogRecord) -> tuple[str, list[Any] | None]:
    """(MAPPED, the event as a row of field values) for a record of a model call or a tool
    run; (IGNORED, None) for an agent's record of something else; (SKIPPED, None) for a
    record no agent mapping knows."""
    name = event_name_of(record)
    if name is None or name not in _KNOWN:
        return SKIPPED, None
    if name in IGNORED_EVENTS:
        return IGNORED, None
    attrs = record.attributes
    family, _, event = name.partition(".")
    if name == "codex.sse_event" and attrs.get("event.kind") != "response.completed":
        return IGNORED, None  # stream chunks: the completed response carries the call
    if name == "codex.api_request":
        code = _status_code(attrs.get("http.response.status_code"))
        if not attrs.get("error.message") and not (code is not None and code >= 400):
            return IGNORED, None  # a successful attempt: its completed response is the call
    row: list[Any] = [None] * ROW_WIDTH
    row[ID] = _record_id(name, record)
    row[TIMESTAMP] = _timestamp(record)
    row[TRACE] = record.trace_id
    row[PARENT] = record.span_id
    get = attrs.get
    session = get("session.id") if family != CODEX else get("conversation.id")
    row[SESSION] = _text(session or get("conversation.id") or get("session.id"))
    # the person: an email names them across machines; the agents' user.id is a device hash
    row[USER] = _text(
        get("user.email") or get("user.account_uuid") or get("user.account_id") or get("user.id")
    )
    row[AGENT] = _text(record.resource.get("service.name")) or _DEFAULT_AGENT[family]
    row[LATENCY] = _number(get("duration_ms"))
    tool_event = event in ("tool_result", "tool_call")
    if tool_event:
        row[KIND], row[REQUEST_TYPE] = "tool_call", "tool"
        row[TOOL] = _text(get("tool_name") or get("function_name"))
        success = _flag(get("success"))
        if success is False:
            row[STATUS] = "error"
            row[ERROR_TYPE] = "other"
        message = _text(get("error"))
        if message and success is False:
            row[ERROR_MESSAGE] = message[:2000]
    else:
        row[KIND], row[REQUEST_TYPE] = "llm_call", "chat"
        row[PROVIDER] = _PROVIDER[family]
        row[MODEL] = _text(get("model"))
        _llm(name, attrs, row)
    metadata: dict[str, Any] = {"otel.event.name": name}
    if record.scope:
        metadata["otel.scope.name"] = record.scope
    for key in _RESOURCE_METADATA:
        if record.resource.get(key) is not None:
            metadata[key] = record.resource[key]
    for key in _METADATA_KEYS:
        value = get(key)
        if value is not None and value != "":
            metadata[key] = value
    row[METADATA] = metadata
    return MAPPED, row


def _llm(name: str, attrs: dict[str, Any], row: list[Any]) -> None:
    get = attrs.get
    if name == "claude_code.api_request":
        cache_read = _number(get("cache_read_tokens"))
        cache_write = _number(get("cache_creation_tokens"))
        row[CACHE_READ], row[CACHE_WRITE] = cache_read, cache_write
        row[INPUT] = _add(_add(_number(get("input_tokens")), cache_read), cache_write)
        row[OUTPUT] = _number(get("output_tokens"))
        cost = _number(get("cost_usd"))
        if cost is not None:
            row[COST] = cost  # Claude Code's own estimate: stored as provided
    elif name == "codex.sse_event":
        row[INPUT] = _number(get("input_token_count"))
        row[OUTPUT] = _number(get("output_token_count"))
        row[CACHE_READ] = _number(get("cached_token_count"))
        row[REASONING] = _number(get("reasoning_token_count"))
        # OpenAI's usage is inclusive; a sender that counted them apart is corrected
        if (
            type(row[CACHE_READ]) is int
            and type(row[INPUT]) is int
            and row[CACHE_READ] > row[INPUT]
        ):
            row[INPUT] += row[CACHE_READ]
        if (
            type(row[REASONING]) is int
            and type(row[OUTPUT]) is int
            and row[REASONING] > row[OUTPUT]
        ):
            row[OUTPUT] += row[REASONING]
    elif name == "gemini_cli.api_response":
        row[INPUT] = _number(get("input_token_count"))
        row[CACHE_READ] = _number(get("cached_content_token_count"))
        thoughts = _number(get("thoughts_token_count"))
        row[REASONING] = thoughts
        row[OUTPUT] = _add(_number(get("output_token_count")), thoughts)
        code = _status_code(get("status_code"))
        row[STATUS_CODE] = code
        if get("error"):
            row[STATUS] = "error"
            row[ERROR_MESSAGE] = (_text(get("error")) or "")[:2000]
    else:  # claude_code.api_error, codex.api_request (failed), gemini_cli.api_error
        code = _status_code(get("status_code") or get("http.response.status_code"))
        row[STATUS_CODE] = code
        row[STATUS] = "error"  # the error type then follows from the code where it names one
        message = _text(get("error") or get("error.message"))
        if message:
            row[ERROR_MESSAGE] = message[:2000]
        error_type = _text(get("error_type"))
        if error_type and code is None:
            lowered = error_type.lower()
            if "timeout" in lowered or "deadline" in lowered:
                row[ERROR_TYPE] = "timeout"
            elif "rate" in lowered or "quota" in lowered:
                row[ERROR_TYPE] = "rate_limit"
