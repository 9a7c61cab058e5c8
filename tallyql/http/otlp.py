"""`POST /v1/traces`: OTLP/HTTP trace export (protobuf or JSON, gzip accepted).

GenAI spans become events through the same pipeline as `/v1/events` (validated, priced, and
answered only after commit). The answer is an `ExportTraceServiceResponse` in the request's
encoding: `partial_success.rejected_spans` counts spans that failed validation (with the first
reasons); spans without GenAI attributes are acknowledged, skipped, counted in
`tallyql_otlp_spans_total{outcome="skipped"}` and mentioned as a warning in `error_message`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from fastapi import APIRouter, Depends, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry, Counter

from tallyql.auth.principal import Permission, Principal
from tallyql.http.auth import requires, services_of
from tallyql.http.body import read_body
from tallyql.ingest.body import BodyError, check_json_values
from tallyql.ingest.otlp_decode import OtlpError, decode_json, decode_protobuf
from tallyql.ingest.otlp_map import span_row
from tallyql.ingest.validate import IngestResult
from tallyql.storage.writer import WriterBusy, WriterFailed, WriterStopped

router = APIRouter()

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_MAX_REASONS = 5
_COUNTERS: WeakKeyDictionary[CollectorRegistry, Counter] = WeakKeyDictionary()


def span_counter(registry: CollectorRegistry) -> Counter:
    counter = _COUNTERS.get(registry)
    if counter is None:
        counter = Counter(
            "tallyql_otlp_spans_total",
            "OTLP spans received, by outcome: accepted, duplicate, rejected, skipped.",
            ["outcome"],
            registry=registry,
        )
        _COUNTERS[registry] = counter
    return counter


def _status_body(media: str, code: int, message: str) -> bytes:
    """A google.rpc.Status (code 1, message 2) in the request's encoding."""
    if media == JSON:
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _error(media: str, status: int, grpc_code: int, message: str, **headers: str) -> Response:
    return Response(
        _status_body(media, grpc_code, message),
        status_code=status,
        media_type=media,
        headers=headers or None,
    )


def _answer(media: str, rejected: int, message: str) -> Response:
    if media == JSON:
        partial: dict[str, Any] = {}
        if rejected or message:
            partial = {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}
        return Response(orjson.dumps(partial), media_type=JSON)
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return Response(response.SerializeToString(), media_type=PROTOBUF)


def _message(result: IngestResult, indexes: list[int], skipped: int) -> str:
    parts = []
    reasons = [
        f"span {indexes[e.index]}: {e.field + ' ' if e.field else ''}{e.message}"
        for e in result.errors[:_MAX_REASONS]
    ]
    if reasons:
        parts.append("rejected " + "; ".join(reasons))
    if skipped:
        parts.append(f"{skipped} span(s) without GenAI attributes were skipped")
    return ". ".join(parts)


@router.post("/v1/traces")
async def export_traces(
    request: Request, principal: Principal = Depends(requires(Permission.INGEST))
) -> Response:
    services = services_of(request)
    settings = services.settings
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON, "application/protobuf"):
        return _error(JSON, 415, 3, f"unsupported Content-Type {media!r}; use {PROTOBUF} or {JSON}")
    media = JSON if media == JSON else PROTOBUF
    try:
        body = await read_body(request, settings.max_body_bytes)
        if media == JSON:
            check_json_values(body)  # before orjson builds what a small body can hold
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise OtlpError(f"body is not valid JSON: {exc}") from None
            spans = decode_json(doc)
        else:
            spans = decode_protobuf(body)
    except BodyError as exc:
        return _error(media, exc.status, 3, str(exc))
    except OtlpError as exc:
        return _error(media, 400, 3, str(exc))
    rows: list[list[Any]] = []
    indexes: list[int] = []  # span position of each event
    for position, span in enumerate(spans):
        row = span_row(span)
        if row is not None:
            rows.append(row)
            indexes.append(position)
    skipped = len(spans) - len(rows)
    total = IngestResult()
    try:
        for start in range(0, len(rows), settings.max_batch_events):
            chunk = rows[start : start + settings.max_batch_events]
            # msgspec's checks on the rows, the detailed validator only for a row that fails
            result = await services.ingest.ingest_rows(principal.workspace_id, chunk)
            total.accepted += result.accepted
            total.duplicates += result.duplicates
            total.rejected += result.rejected
            total.errors += [type(e)(e.index + start, e.field, e.message) for e in result.errors]
    except WriterBusy as exc:
        return _error(media, 503, 14, f"{exc}; retry", **{"Retry-After": "1"})
    except WriterStopped:
        return _error(media, 503, 14, "server is shutting down; retry", **{"Retry-After": "2"})
    except WriterFailed as exc:
        return _error(media, 500, 13, str(exc))
    counter = span_counter(services.metrics.registry)
    for outcome, count in (
        ("accepted", total.accepted),
        ("duplicate", total.duplicates),
        ("rejected", total.rejected),
        ("skipped", skipped),
    ):
        if count:
            counter.labels(outcome).inc(count)
    return _answer(media, total.rejected, _message(total, indexes, skipped))


# google.rpc.Code of an HTTP status, for errors raised before the route runs
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}
TRACES_PATH = "/v1/traces"


def status_response(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None
) -> Response:
    """An error met before the route ran (the key check's 401 and 403), as the OTLP
    specification wants every error: a google.rpc.Status in the request's encoding."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    media = JSON if media == JSON else PROTOBUF
    return _error(media, status, _GRPC_CODES.get(status, 2), message, **dict(headers or {}))
