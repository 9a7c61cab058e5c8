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
from tallyql.ingest.validate import (
    _COLUMN_DEFAULTS,
    MAX_FUTURE,
    MAX_INT,
    FieldError,
    ValidEvent,
    _normalise_status,
    _normalise_tokens,
)

_TRUNCATED = {"error_message": 2000, "policy_description": 2000}


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


_SET_DEFAULTS = tuple((k, v) for k, v in _COLUMN_DEFAULTS.items() if v is not None)
"""Columns whose absent value is not NULL (token counts, kind, flags, tags, metadata)."""


def to_valid(struct: Any, index: int, now: datetime) -> ValidEvent:
    """The normalised event of a struct (the same row `validate_event` makes)."""
    row = msgspec.structs.asdict(struct)
    ts = row.pop("timestamp")
    if ts is not None:
        if ts.tzinfo is None:
            raise SlowPath
        ts = ts.astimezone(UTC)
        if ts > now + MAX_FUTURE:
            raise SlowPath
    metadata = row["metadata"]
    if metadata and len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
        raise SlowPath
    event_id = row.pop("id")
    request, response = row.pop("request"), row.pop("response")
    cost_usd, accounting = row.pop("cost_usd"), row.pop("token_accounting")
    for name, default in _SET_DEFAULTS:
        if row[name] is None:
            row[name] = default
    for name, limit in _TRUNCATED.items():
        text = row[name]
        if text is not None and len(text) > limit:
            row[name] = text[:limit]
    if row["tags"]:
        row["tags"] = sorted(set(row["tags"]))
    event = ValidEvent(
        index=index,
        row=row,
        request=request,
        response=response,
        has_payload=request is not None or response is not None,
        cost_usd=cost_usd,
        token_accounting=accounting or "inclusive",
    )
    errors: list[FieldError] = []
    _normalise_tokens(event, errors)
    if errors or _normalise_status(row, index):
        raise SlowPath
    row["id"] = event_id or uuid.uuid4().hex
    row["ts"] = ts or now
    row["caller"] = row["api_key_id"] or (f"ip:{row['caller_ip']}" if row["caller_ip"] else None)
    row["latency_bucket"] = sketch.bucket_of(row["latency_ms"])
    row["ttft_bucket"] = sketch.bucket_of(row["ttft_ms"])
    return event
