"""Reads OTLP/HTTP trace requests (protobuf or JSON) into plain `OtlpSpan`s.

OTLP/JSON differs from the protobuf JSON mapping in ways this reader handles: trace and span
ids are hex strings (base64 is accepted too, as some senders use it), 64-bit integers come as
strings or numbers, enums as integers or their names, and field names in lowerCamelCase or
snake_case. Attribute values become Python values (bytes as base64 text).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeGuard

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tallyql.ingest.body import BodyError

STATUS_ERROR = 2
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class OtlpError(ValueError):
    """The request cannot be read at all (HTTP 400)."""


@dataclass(slots=True)
class OtlpSpan:
    trace_id: str | None
    span_id: str | None
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str | None = None
    status_code: int = 0
    status_message: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


# ---------------------------------------------------------------- protobuf


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _pb_attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items:  # the scalar kinds inline: this runs for every attribute of every span
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        elif kind == "double_value":
            out[kv.key] = value.double_value
        else:
            out[kv.key] = _pb_value(value)
    return out


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw and any(raw) else None


MAX_SPANS = 100_000
"""Most spans in one OTLP call (exporters send batches of hundreds): an empty span is two
bytes of protobuf, so a small body could otherwise hold millions of them."""


def _too_many_spans() -> BodyError:
    return BodyError(f"more than {MAX_SPANS:,} spans in one call; send smaller batches", 413)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _length_delimited(buf: bytes, start: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each length-delimited field `number` between start and end of a
    protobuf message, skipping the other fields unread."""
    i = start
    while i < end:
        tag, i = _varint(buf, i)
        wire = tag & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _varint(buf, i)
            if tag >> 3 == number:
                yield i, i + size
            i += size
        else:
            raise ValueError("unsupported wire type")


def count_protobuf_spans(body: bytes, limit: int = MAX_SPANS) -> int:
    """Spans in an ExportTraceServiceRequest (see `count_protobuf_items`)."""
    return count_protobuf_items(body, limit)


def count_protobuf_items(body: bytes, limit: int) -> int:
    """The items of an OTLP export request read from the wire format without building them,
    counting no further than limit + 1: spans of an ExportTraceServiceRequest and log
    records of an ExportLogsServiceRequest lie alike (resources = field 1, their scopes =
    field 2, their items = field 2). A malformed body counts 0: parsing it reports the
    error."""
    count = 0
    try:
        for r_start, r_end in _length_delimited(body, 0, len(body), 1):
            for s_start, s_end in _length_delimited(body, r_start, r_end, 2):
                for _ in _length_delimited(body, s_start, s_end, 2):
                    count += 1
                    if count > limit:
                        return count
    except (IndexError, ValueError):
        return 0
    return count


def decode_protobuf(body: bytes) -> list[OtlpSpan]:
    if count_protobuf_spans(body) > MAX_SPANS:
        raise _too_many_spans()
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(f"body is not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    spans: list[OtlpSpan] = []
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name or None
            for s in scope_spans.spans:
                spans.append(
                    OtlpSpan(
                        trace_id=_hex(s.trace_id),
                        span_id=_hex(s.span_id),
                        parent_id=_hex(s.parent_span_id),
                        name=s.name,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes=_pb_attributes(s.attributes),
                        resource=resource,
                        scope=scope,
                        status_code=s.status.code,
                        status_message=s.status.message,
                        events=[(e.name, _pb_attributes(e.attributes)) for e in s.events]
                        if s.events
                        else [],
                    )
                )
    return spans


# ---------------------------------------------------------------- JSON


def _get(obj: dict[str, Any], camel: str, snake: str | None = None) -> Any:
    if camel in obj:
        return obj[camel]
    return obj.get(snake or _snake(camel))


@cache  # a handful of field names, looked up for every absent optional field of every span
def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _int(value: Any, what: str) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise OtlpError(f"{what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise OtlpError(f"{what} must be an integer, got {value!r}")


def _id(value: Any, size: int, what: str) -> str | None:
    """A trace or span id from OTLP/JSON: hex per the spec, or base64 as some senders do."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise OtlpError(f"{what} must be a hex string")
    if len(value) == size * 2:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if raw:
            return raw.hex() if any(raw) else None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == size:
        return raw.hex() if any(raw) else None
    raise OtlpError(f"{what} must be {size * 2} hex digits, got {value!r}")


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for key, kind in (
        ("stringValue", "s"),
        ("string_value", "s"),
        ("boolValue", "b"),
        ("bool_value", "b"),
        ("intValue", "i"),
        ("int_value", "i"),
        ("doubleValue", "d"),
        ("double_value", "d"),
        ("arrayValue", "a"),
        ("array_value", "a"),
        ("kvlistValue", "k"),
        ("kvlist_value", "k"),
        ("bytesValue", "y"),
        ("bytes_value", "y"),
    ):
        if key not in value:
            continue
        raw = value[key]
        if kind == "i":
            return _int(raw, "intValue")
        if kind == "d":
            return float(raw) if not isinstance(raw, str) else _special_float(raw)
        if kind == "a":
            return [_json_value(v) for v in (raw or {}).get("values", [])]
        if kind == "k":
            return _json_attributes((raw or {}).get("values", []))
        return raw
    return None


def _special_float(raw: str) -> float:
    try:
        return float(raw)  # also "NaN", "Infinity", "-Infinity"
    except ValueError:
        raise OtlpError(f"doubleValue must be a number, got {raw!r}") from None


_PLAIN_VALUES = frozenset({"stringValue", "string_value", "boolValue", "bool_value"})


def _json_attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    out: dict[str, Any] = {}
    for kv in items:
        if not isinstance(kv, dict):
            continue
        key = kv.get("key")
        if not isinstance(key, str):
            continue
        value = kv.get("value")
        # the common case inline (one string or boolean): this runs for every attribute
        if type(value) is dict and len(value) == 1:
            name, raw = next(iter(value.items()))
            if name in _PLAIN_VALUES:
                out[key] = raw
                continue
        out[key] = _json_value(value)
    return out


def _status_code(value: Any) -> int:
    if isinstance(value, str) and value in _STATUS_NAMES:
        return _STATUS_NAMES[value]
    return _int(value, "status.code")


def decode_json(doc: Any) -> list[OtlpSpan]:
    if not isinstance(doc, dict):
        raise OtlpError("body must be a JSON object with resourceSpans")
    spans: list[OtlpSpan] = []
    for resource_spans in _get(doc, "resourceSpans") or []:
        if not isinstance(resource_spans, dict):
            raise OtlpError("resourceSpans must hold JSON objects")
        resource = _json_attributes((_get(resource_spans, "resource") or {}).get("attributes"))
        scopes = _get(resource_spans, "scopeSpans") or _get(
            resource_spans, "instrumentationLibrarySpans"
        )
        for scope_spans in scopes or []:
            scope = (_get(scope_spans, "scope") or {}).get("name") or None
            for s in _get(scope_spans, "spans") or []:
                spans.append(_json_span(s, resource, scope))
                if len(spans) > MAX_SPANS:
                    raise _too_many_spans()
    return spans


def _json_span(s: Any, resource: dict[str, Any], scope: str | None) -> OtlpSpan:
    if not isinstance(s, dict):
        raise OtlpError("each span must be a JSON object")
    status = _get(s, "status") or {}
    start = _int(_get(s, "startTimeUnixNano"), "startTimeUnixNano")
    end = _int(_get(s, "endTimeUnixNano"), "endTimeUnixNano")
    return OtlpSpan(
        trace_id=_id(_get(s, "traceId"), 16, "traceId"),
        span_id=_id(_get(s, "spanId"), 8, "spanId"),
        parent_id=_id(_get(s, "parentSpanId"), 8, "parentSpanId"),
        name=str(s.get("name") or ""),
        start_ns=start,
        end_ns=end,
        attributes=_json_attributes(s.get("attributes")),
        resource=resource,
        scope=scope,
        status_code=_status_code(status.get("code")),
        status_message=str(status.get("message") or ""),
        events=[
            (str(e.get("name") or ""), _json_attributes(e.get("attributes")))
            for e in s.get("events") or []
            if isinstance(e, dict)
        ],
    )


def is_finite_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
