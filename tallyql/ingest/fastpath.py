"""The fast path of ingest: decode and type-check a whole batch in C with msgspec.

msgspec checks every field of `fields.py` (types, ranges, lengths, enums, unknown fields) while
it parses, about ten times faster than checking dicts in Python. It stops at the first
problem, so a batch that fails here goes down the slow path (`validate.py`), which reports
every error of every event; the two paths share the normalisation and produce the same rows
(tests check this). Anything the struct accepts but the slow path would treat differently
(a naive timestamp, an empty string) is sent to the slow path as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from tallyql import sketch
from tallyql.ingest.fields import (
    EVENT_FIELDS,
    MAX_METADATA_BYTES,
    MAX_TAGS,
    FieldType,
)
from tallyql.ingest.status import derive_status
from tallyql.ingest.validate import MAX_FUTURE, MAX_INT, ValidEvent

_TRUNCATED = {"error_message": 2000, "policy_description": 2000}
_ERROR_MESSAGE_MAX = _TRUNCATED["error_message"]
_POLICY_DESCRIPTION_MAX = _TRUNCATED["policy_description"]
bucket_of = sketch.bucket_of


class SlowPath(Exception):
    """The batch needs the detailed validator."""


def _annotation(name: str, ftype: FieldType, max_length: int, choices: tuple[str, ...]) -> Any:
    if ftype is FieldType.TEXT:
        if name in _TRUNCATED:
            return Annotated[str, msgspec.Meta(min_length=1)]
        return Annotated[str, msgspec.Meta(min_length=1, max_length=max_length)]
    if ftype is FieldType.ENUM:
        return Literal[choices]  # type: ignore[valid-type]
    if ftype is FieldType.INT:
        return Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
    if ftype is FieldType.NUMBER:
        return Annotated[float, msgspec.Meta(ge=0)]
    if ftype is FieldType.BOOL:
        return bool
    if ftype is FieldType.TIMESTAMP:
        return datetime
    if ftype is FieldType.TAGS:
        tag = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
        return Annotated[list[tag], msgspec.Meta(max_length=MAX_TAGS)]  # type: ignore[valid-type]
    if ftype is FieldType.OBJECT:
        return dict[str, Any]
    return Any


EventStruct = msgspec.defstruct(
    "EventStruct",
    [
        (f.name, _annotation(f.name, f.type, f.max_length, f.choices) | None, None)
        for f in EVENT_FIELDS
    ],
    forbid_unknown_fields=True,
    kw_only=True,
)


class _Wrapped(msgspec.Struct, forbid_unknown_fields=True):
    events: list[EventStruct]  # type: ignore[valid-type]


_LIST_DECODER = msgspec.json.Decoder(list[EventStruct])  # type: ignore[valid-type]
_WRAPPED_DECODER = msgspec.json.Decoder(_Wrapped)
_ONE_DECODER = msgspec.json.Decoder(EventStruct)


def decode_body(body: bytes, ndjson: bool) -> list[Any]:
    """Structs for every event of a body; SlowPath when anything is not perfectly valid."""
    try:
        if ndjson:
            return [_ONE_DECODER.decode(line) for line in body.split(b"\n") if line.strip()]
        stripped = body.lstrip()
        if stripped.startswith(b"["):
            return _LIST_DECODER.decode(body)
        if stripped.startswith(b"{") and b'"events"' in body[:64]:
            return _WRAPPED_DECODER.decode(body).events
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise SlowPath from None
    raise SlowPath


def convert(raw_events: Sequence[Any]) -> list[Any]:
    """Structs from already-parsed events (the demo loader); SlowPath if any is invalid."""
    try:
        return msgspec.convert(raw_events, list[EventStruct])  # type: ignore[valid-type]
    except msgspec.ValidationError:
        raise SlowPath from None


def to_valid(struct: Any, index: int, now: datetime) -> ValidEvent:
    """The normalised event of a struct: the record `validate_event` makes, built straight
    from the struct's attributes (the workspace, the time of receipt and the cost are left for
    `IngestService._finish`)."""
    s = struct
    ts = s.timestamp
    if ts is None:
        ts = now
    else:
        if ts.tzinfo is None:
            raise SlowPath
        ts = ts.astimezone(UTC)
        if ts > now + MAX_FUTURE:
            raise SlowPath
    metadata = s.metadata
    if metadata is None:
        metadata = {}
    elif metadata and len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
        raise SlowPath
    tags = s.tags
    tags = sorted(set(tags)) if tags else []
    input_tokens = s.input_tokens or 0
    output_tokens = s.output_tokens or 0
    cache_read = s.cache_read_tokens or 0
    cache_write = s.cache_write_tokens or 0
    reasoning = s.reasoning_tokens or 0
    accounting = s.token_accounting or "inclusive"
    if accounting == "exclusive":
        input_tokens += cache_read + cache_write
        output_tokens += reasoning
    elif cache_read + cache_write > input_tokens or reasoning > output_tokens:
        raise SlowPath  # the detailed path explains what is wrong
    derived = derive_status(s.status, s.status_code, s.error_type)
    if derived is None:
        raise SlowPath  # the detailed path names the field
    status, error_type = derived
    error_message, policy_description = s.error_message, s.policy_description
    if error_message is not None and len(error_message) > _ERROR_MESSAGE_MAX:
        error_message = error_message[:_ERROR_MESSAGE_MAX]
    if policy_description is not None and len(policy_description) > _POLICY_DESCRIPTION_MAX:
        policy_description = policy_description[:_POLICY_DESCRIPTION_MAX]
    api_key_id, caller_ip = s.api_key_id, s.caller_ip
    latency, ttft = s.latency_ms, s.ttft_ms
    is_byok = s.is_byok
    request, response = s.request, s.response
    has_payload = request is not None or response is not None
    # the values of EVENT_COLUMNS, in order (tests/test_fastpath.py compares with the detailed
    # path, which fills them by name)
    record = [
        None,  # workspace_id
        s.id or uuid.uuid4().hex,
        ts,
        s.kind or "llm_call",
        status,
        s.status_code,
        error_type,
        error_message,
        s.policy_id,
        s.policy_name,
        policy_description,
        s.user_id,
        api_key_id,
        caller_ip,
        api_key_id or (f"ip:{caller_ip}" if caller_ip else None),  # caller
        s.agent_id,
        s.agent_instance_id,
        s.session_id,
        s.trace_id,
        s.parent_id,
        s.run_id,
        s.node,
        s.provider,
        s.model,
        s.tool,
        s.mcp_server,
        s.gateway,
        s.protocol,
        s.request_type,
        s.billing_mode,
        False if is_byok is None else is_byok,
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        reasoning,
        None,  # cost_nanousd
        None,  # cost_source
        latency,
        ttft,
        bucket_of(latency),
        bucket_of(ttft),
        s.request_bytes,
        s.response_bytes,
        None,  # has_payload
        tags,
        metadata,
        None,  # received_at
        None,  # department (the writer fills it from the users table)
    ]
    return ValidEvent(index, record, request, response, has_payload, s.cost_usd, accounting)
