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
from operator import itemgetter
from typing import Annotated, Any, Literal

import msgspec
import orjson

from tallyql import sketch
from tallyql.ingest.fields import (
    EVENT_FIELDS,
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    MAX_TAGS,
    EventField,
    FieldType,
)
from tallyql.ingest.json_values import json_problem, text_problem
from tallyql.ingest.status import derive_status
from tallyql.ingest.validate import MAX_FUTURE
from tallyql.storage.ingest.record import ValidEvent

_TRUNCATED = {"error_message": 2000, "policy_description": 2000}
_ERROR_MESSAGE_MAX = _TRUNCATED["error_message"]
_POLICY_DESCRIPTION_MAX = _TRUNCATED["policy_description"]
bucket_of = sketch.bucket_of


_UNSTORABLE = b"\\u0000"


class SlowPath(Exception):
    """The batch needs the detailed validator."""


def _annotation(spec: EventField) -> Any:
    ftype = spec.type
    if ftype is FieldType.TEXT:
        if spec.name in _TRUNCATED:
            return Annotated[str, msgspec.Meta(min_length=1)]
        return Annotated[str, msgspec.Meta(min_length=1, max_length=spec.max_length)]
    if ftype is FieldType.ENUM:
        return Literal[spec.choices]
    if ftype is FieldType.INT:
        return Annotated[int, msgspec.Meta(ge=0, le=int(spec.maximum))]
    if ftype is FieldType.NUMBER:
        return Annotated[float, msgspec.Meta(ge=0, le=spec.maximum)]
    if ftype is FieldType.BOOL:
        return bool
    if ftype is FieldType.TIMESTAMP:
        return datetime
    if ftype is FieldType.TAGS:
        tag = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
        return Annotated[list[tag], msgspec.Meta(max_length=MAX_TAGS)]
    if ftype is FieldType.OBJECT:
        return dict[str, Any]
    return Any


EventStruct = msgspec.defstruct(
    "EventStruct",
    [(f.name, _annotation(f) | None, None) for f in EVENT_FIELDS],
    forbid_unknown_fields=True,
    kw_only=True,
)


class _Wrapped(msgspec.Struct, forbid_unknown_fields=True):
    # unchecked below: classes msgspec.defstruct builds at import
    events: list[EventStruct]  # type: ignore[valid-type]


EventRow = msgspec.defstruct(
    "EventRow",
    [(f.name, _annotation(f) | None, None) for f in EVENT_FIELDS],
    array_like=True,
    kw_only=True,
)
"""`EventStruct` read from a list of values in `EVENT_FIELDS` order: the same types and
limits, for doors that build events from another format (OTLP spans) without making a dict per
event first. `to_valid` takes either."""
ROW_AT: dict[str, int] = {f.name: i for i, f in enumerate(EVENT_FIELDS)}
"""Each field's position in a row."""
ROW_WIDTH = len(EVENT_FIELDS)

# positions of the fields the OTLP mappings fill in a row (ingest/otlp_map.py, otlp_logs.py)
ID, TIMESTAMP, KIND, REQUEST_TYPE = (ROW_AT[n] for n in ("id", "timestamp", "kind", "request_type"))
STATUS, STATUS_CODE, ERROR_TYPE, ERROR_MESSAGE = (
    ROW_AT[n] for n in ("status", "status_code", "error_type", "error_message")
)
PROVIDER, MODEL, SESSION, USER, AGENT, TOOL, TRACE, PARENT = (
    ROW_AT[n]
    for n in (
        "provider",
        "model",
        "session_id",
        "user_id",
        "agent_id",
        "tool",
        "trace_id",
        "parent_id",
    )
)
INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, REASONING = (
    ROW_AT[n]
    for n in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    )
)
COST, LATENCY, TTFT, METADATA = (
    ROW_AT[n] for n in ("cost_usd", "latency_ms", "ttft_ms", "metadata")
)
_TIMESTAMP_AT = ROW_AT["timestamp"]
_SCREENED = itemgetter(*(i for i, f in enumerate(EVENT_FIELDS) if f.name != "timestamp"))
"""A row's values but its timestamp (a datetime, which the screen of `_storable` refuses)."""
_SCREEN_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""What orjson would encode but JSON values may not hold raises instead."""

# unchecked below: classes msgspec.defstruct builds at import
_LIST_DECODER = msgspec.json.Decoder(list[EventStruct])  # type: ignore[valid-type]
_WRAPPED_DECODER = msgspec.json.Decoder(_Wrapped)
_ONE_DECODER = msgspec.json.Decoder(EventStruct)


def decode_body(body: bytes, ndjson: bool) -> list[Any]:
    """Structs for every event of a body; SlowPath when anything is not perfectly valid."""
    if _UNSTORABLE in body:
        # an escaped NUL character, which PostgreSQL refuses in text and jsonb (a raw one is
        # invalid JSON, and msgspec refuses lone surrogates): the detailed path names its field
        raise SlowPath
    try:
        if ndjson:
            return [_ONE_DECODER.decode(line) for line in body.split(b"\n") if line.strip()]
        stripped = body.lstrip()
        if stripped.startswith(b"["):
            return _LIST_DECODER.decode(body)
        if stripped.startswith(b"{") and b'"events"' in body[:64]:
            return _WRAPPED_DECODER.decode(body).events
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        raise SlowPath from None
    raise SlowPath


def convert(raw_events: Sequence[Any]) -> list[Any]:
    """Structs from already-parsed events (the demo loader); SlowPath if any is invalid."""
    try:
        # unchecked below: classes msgspec.defstruct builds at import
        return msgspec.convert(raw_events, list[EventStruct])  # type: ignore[valid-type]
    except msgspec.ValidationError:
        raise SlowPath from None


def _encoded(payload: Any) -> Any:
    """A payload as the JSON the writer stores (an orjson Fragment, which it copies as is),
    encoded once here so that what orjson or jsonb cannot hold (integers beyond 64 bits,
    deep nesting) sends the batch to the detailed path instead of failing its commit."""
    if payload is None:
        return None
    try:
        encoded = orjson.dumps(payload)
    except (TypeError, orjson.JSONEncodeError):
        raise SlowPath from None
    if (
        encoded.count(b"{") + encoded.count(b"[") > MAX_JSON_DEPTH
        and json_problem(payload, strings=False) is not None
    ):
        raise SlowPath
    return orjson.Fragment(encoded)


def _storable(row: list[Any]) -> bool:
    """Whether PostgreSQL can store every text of a row. Rows come from decoded protobuf, not
    from JSON bytes that `decode_body` could scan for an escaped NUL, so their strings (and
    the JSON objects among them) are checked here; the detailed path names the field.

    A row passes at C speed when orjson encodes its values (all but the timestamp) without
    an escaped NUL, a null that is not one of its top-level Nones (a NaN or an infinity in a
    JSON value), or more brackets than JSON values may nest: orjson itself refuses lone
    surrogates, integers beyond 64 bits and keys that are not strings. Rows hold decoded
    values (texts, numbers, booleans, bytes, None, lists and objects of them), for which this
    answers as `_storable_exactly`; any doubt is settled by it."""
    if type(row[_TIMESTAMP_AT]) is not datetime:  # None, or a value the rows never hold
        return _storable_exactly(row)
    values = _SCREENED(row)
    try:
        encoded = orjson.dumps(values, option=_SCREEN_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return _storable_exactly(row)
    if (
        _UNSTORABLE in encoded
        or encoded.count(b"null") != values.count(None)
        or encoded.count(b"{") + encoded.count(b"[") > MAX_JSON_DEPTH
    ):
        return _storable_exactly(row)
    return True


def _storable_exactly(row: list[Any]) -> bool:
    """`_storable`, value by value."""
    for value in row:
        if type(value) is str:
            if "\x00" in value or (not value.isascii() and text_problem(value) is not None):
                return False
        elif isinstance(value, dict | list) and json_problem(value) is not None:
            return False
    return True


def convert_rows(rows: Sequence[list[Any]]) -> list[Any]:
    """Structs from rows of field values; SlowPath if any row is not perfectly valid."""
    if not all(_storable(row) for row in rows):
        raise SlowPath
    try:
        # unchecked below: classes msgspec.defstruct builds at import
        return msgspec.convert(rows, list[EventRow])  # type: ignore[valid-type]
    except msgspec.ValidationError:
        raise SlowPath from None


def convert_row(row: list[Any]) -> Any:
    """The struct of one row; SlowPath if it is not perfectly valid."""
    if not _storable(row):
        raise SlowPath
    try:
        return msgspec.convert(row, EventRow)
    except msgspec.ValidationError:
        raise SlowPath from None


def row_event(row: list[Any]) -> dict[str, Any]:
    """The raw REST event of a row, for the detailed validator (which names what is wrong)."""
    event = {f.name: v for f, v in zip(EVENT_FIELDS, row, strict=True) if v is not None}
    ts = event.get("timestamp")
    if isinstance(ts, datetime):
        event["timestamp"] = ts.isoformat()
    return event


def to_valid(struct: Any, index: int, now: datetime, oldest: datetime | None) -> ValidEvent:
    """The normalised event of a struct: the record `validate_event` makes, built straight
    from the struct's attributes (the workspace, the time of receipt and the cost are left for
    `IngestService._finish`). Events timed before `oldest` go to the detailed path."""
    s = struct
    ts = s.timestamp
    if ts is None:
        ts = now
    else:
        if ts.tzinfo is None:
            raise SlowPath
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            raise SlowPath from None
        if ts > now + MAX_FUTURE or (oldest is not None and ts < oldest):
            raise SlowPath
    metadata = s.metadata
    if metadata is None:
        metadata = {}
    elif metadata:
        try:  # orjson refuses integers beyond 64 bits and 255 levels of nesting
            encoded = orjson.dumps(metadata)
        except (TypeError, orjson.JSONEncodeError):
            raise SlowPath from None
        if len(encoded) > MAX_METADATA_BYTES or (
            # fewer containers than levels allowed cannot nest too deep: the walk is rare
            encoded.count(b"{") + encoded.count(b"[") > MAX_JSON_DEPTH
            and json_problem(metadata, strings=False) is not None
        ):
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
    if has_payload:
        request, response = _encoded(request), _encoded(response)
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
