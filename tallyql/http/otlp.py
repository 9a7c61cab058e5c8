"""The OTLP/HTTP doors: `POST /v1/traces`, `/v1/logs` and `/v1/metrics` (protobuf or JSON,
gzip or deflate accepted).

`/v1/logs` maps coding agents' log records of model calls and tool runs to events through the
same validated fast path as spans (`ingest/otlp_logs.py`); `/v1/metrics` stores data points in
the metrics store (`ingest/metric_store.py`). Both answer as `/v1/traces` does, with their own
partial_success counts (rejected_log_records, rejected_data_points); ignored and skipped
records or points are counted in the error_message warning and in
`tallyql_otlp_log_records_total` / `tallyql_otlp_metric_points_total`.


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
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.exc import OperationalError

from tallyql.auth.principal import Permission, Principal
from tallyql.clock import clock
from tallyql.http.auth import requires, services_of
from tallyql.http.body import read_body
from tallyql.ingest.body import BodyError, check_json_values
from tallyql.ingest.metric_store import store_points
from tallyql.ingest.otlp_decode import OtlpError, decode_json, decode_protobuf
from tallyql.ingest.otlp_logs import (
    IGNORED,
    decode_logs_json,
    decode_logs_protobuf,
    event_name_of,
    log_row,
)
from tallyql.ingest.otlp_map import span_row
from tallyql.ingest.otlp_metrics import OtlpPoint, decode_metrics_json, decode_metrics_protobuf
from tallyql.ingest.validate import IngestResult
from tallyql.storage.ingest.writer import WriterBusy, WriterFailed, WriterStopped

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


class _Refused(Exception):
    """The request is answered with this error before anything is stored."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def _read(request: Request, decode_json: Any, decode_protobuf: Any) -> tuple[str, Any]:
    """(media, decoded body) of an OTLP request, or _Refused with the error to answer."""
    settings = services_of(request).settings
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON, "application/protobuf"):
        raise _Refused(
            _error(JSON, 415, 3, f"unsupported Content-Type {media!r}; use {PROTOBUF} or {JSON}")
        )
    media = JSON if media == JSON else PROTOBUF
    try:
        body = await read_body(request, settings.max_body_bytes)
        if media == JSON:
            check_json_values(body)  # before orjson builds what a small body can hold
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise OtlpError(f"body is not valid JSON: {exc}") from None
            return media, decode_json(doc)
        return media, decode_protobuf(body)
    except BodyError as exc:
        raise _Refused(_error(media, exc.status, 3, str(exc))) from None
    except OtlpError as exc:
        raise _Refused(_error(media, 400, 3, str(exc))) from None


async def _ingest(
    request: Request, media: str, workspace_id: int, rows: list[list[Any]]
) -> IngestResult:
    """Store event rows in batches through the validated fast path; _Refused when the writer
    cannot take them (503 with Retry-After: SDK exporters retry)."""
    services = services_of(request)
    total = IngestResult()
    size = services.settings.max_batch_events
    try:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            # msgspec's checks on the rows, the detailed validator only for a row that fails
            result = await services.ingest.ingest_rows(workspace_id, chunk)
            total.accepted += result.accepted
            total.duplicates += result.duplicates
            total.rejected += result.rejected
            total.errors += [type(e)(e.index + start, e.field, e.message) for e in result.errors]
    except WriterBusy as exc:
        raise _Refused(_error(media, 503, 14, f"{exc}; retry", **{"Retry-After": "1"})) from None
    except WriterStopped:
        raise _Refused(
            _error(media, 503, 14, "server is shutting down; retry", **{"Retry-After": "2"})
        ) from None
    except WriterFailed as exc:
        raise _Refused(_error(media, 500, 13, str(exc))) from None
    return total


@router.post("/v1/traces")
async def export_traces(
    request: Request, principal: Principal = Depends(requires(Permission.INGEST))
) -> Response:
    services = services_of(request)
    try:
        media, spans = await _read(request, decode_json, decode_protobuf)
        rows: list[list[Any]] = []
        indexes: list[int] = []  # span position of each event
        for position, span in enumerate(spans):
            row = span_row(span)
            if row is not None:
                rows.append(row)
                indexes.append(position)
        skipped = len(spans) - len(rows)
        total = await _ingest(request, media, principal.workspace_id, rows)
    except _Refused as refused:
        return refused.response
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


# ---------------------------------------------------------------- logs and metrics

LOGS_PATH = "/v1/logs"
METRICS_PATH = "/v1/metrics"
_LOG_COUNTERS: WeakKeyDictionary[CollectorRegistry, Counter] = WeakKeyDictionary()
_POINT_COUNTERS: WeakKeyDictionary[CollectorRegistry, Counter] = WeakKeyDictionary()


def log_counter(registry: CollectorRegistry) -> Counter:
    counter = _LOG_COUNTERS.get(registry)
    if counter is None:
        counter = Counter(
            "tallyql_otlp_log_records_total",
            "OTLP log records received, by outcome: accepted, duplicate, rejected, ignored "
            "(an agent's record of no call), skipped (an unknown record).",
            ["outcome"],
            registry=registry,
        )
        _LOG_COUNTERS[registry] = counter
    return counter


def point_counter(registry: CollectorRegistry) -> Counter:
    counter = _POINT_COUNTERS.get(registry)
    if counter is None:
        counter = Counter(
            "tallyql_otlp_metric_points_total",
            "OTLP metric data points received, by outcome: accepted, duplicate, rejected, "
            "skipped (a metric type not stored).",
            ["outcome"],
            registry=registry,
        )
        _POINT_COUNTERS[registry] = counter
    return counter


def _partial(
    media: str, response: Any, json_field: str, pb_field: str, rejected: int, message: str
) -> Response:
    """An Export*ServiceResponse: partial_success when anything was rejected, or with a
    warning alone in error_message (rejected 0) when something was ignored or skipped."""
    if media == JSON:
        partial: dict[str, Any] = {}
        if rejected or message:
            partial = {"partialSuccess": {json_field: str(rejected), "errorMessage": message}}
        return Response(orjson.dumps(partial), media_type=JSON)
    answer = response()
    if rejected or message:
        setattr(answer.partial_success, pb_field, rejected)
        answer.partial_success.error_message = message
    return Response(answer.SerializeToString(), media_type=PROTOBUF)


def _names(counts: dict[str, int]) -> str:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_MAX_REASONS]
    more = len(counts) - len(top)
    listed = ", ".join(f"{name} ({count})" for name, count in top)
    return listed + (f" and {more} more" if more > 0 else "")


@router.post(LOGS_PATH)
async def export_logs(
    request: Request, principal: Principal = Depends(requires(Permission.INGEST))
) -> Response:
    services = services_of(request)
    try:
        media, records = await _read(request, decode_logs_json, decode_logs_protobuf)
        rows: list[list[Any]] = []
        indexes: list[int] = []  # record position of each event
        ignored: dict[str, int] = {}
        skipped: dict[str, int] = {}
        for position, record in enumerate(records):
            outcome, row = log_row(record)
            if row is not None:
                rows.append(row)
                indexes.append(position)
            else:
                tally = ignored if outcome == IGNORED else skipped
                name = event_name_of(record) or "(unnamed)"
                tally[name] = tally.get(name, 0) + 1
        total = await _ingest(request, media, principal.workspace_id, rows)
    except _Refused as refused:
        return refused.response
    counter = log_counter(services.metrics.registry)
    for outcome, count in (
        ("accepted", total.accepted),
        ("duplicate", total.duplicates),
        ("rejected", total.rejected),
        ("ignored", sum(ignored.values())),
        ("skipped", sum(skipped.values())),
    ):
        if count:
            counter.labels(outcome).inc(count)
    parts = [
        f"log record {indexes[e.index]}: {e.field + ' ' if e.field else ''}{e.message}"
        for e in total.errors[:_MAX_REASONS]
    ]
    message = ["rejected " + "; ".join(parts)] if parts else []
    if ignored:
        message.append(
            f"{sum(ignored.values())} agent record(s) that describe no call were ignored: "
            + _names(ignored)
        )
    if skipped:
        message.append(
            f"{sum(skipped.values())} record(s) of unknown events were skipped: " + _names(skipped)
        )
    return _partial(
        media,
        ExportLogsServiceResponse,
        "rejectedLogRecords",
        "rejected_log_records",
        total.rejected,
        ". ".join(message),
    )


@router.post(METRICS_PATH)
async def export_metrics(
    request: Request, principal: Principal = Depends(requires(Permission.INGEST))
) -> Response:
    services = services_of(request)
    try:
        media, decoded = await _read(request, decode_metrics_json, decode_metrics_protobuf)
    except _Refused as refused:
        return refused.response
    points: list[OtlpPoint] = decoded.points
    positions: list[int] = []  # request position of each decoded point
    rejected_at = {position for position, _ in decoded.rejected}
    position = 0
    while len(positions) < len(points):
        if position not in rejected_at:
            positions.append(position)
        position += 1
    try:
        async with services.db.write() as conn:
            written = await store_points(conn, principal.workspace_id, points, clock.now())
    except OperationalError as exc:  # a locked SQLite file, a lost connection: worth a retry
        return _error(
            media, 503, 14, f"metrics not stored: {exc.orig}; retry", **{"Retry-After": "1"}
        )
    reasons = sorted([*decoded.rejected, *((positions[i], why) for i, why in written.rejected)])
    counter = point_counter(services.metrics.registry)
    for outcome, count in (
        ("accepted", written.accepted),
        ("duplicate", written.duplicates),
        ("rejected", len(reasons)),
        ("skipped", decoded.skipped),
    ):
        if count:
            counter.labels(outcome).inc(count)
    message = []
    if reasons:
        message.append(
            "rejected " + "; ".join(f"point {i}: {why}" for i, why in reasons[:_MAX_REASONS])
        )
    if decoded.skipped:
        message.append(
            f"{decoded.skipped} point(s) of exponential histograms or summaries were skipped"
        )
    return _partial(
        media,
        ExportMetricsServiceResponse,
        "rejectedDataPoints",
        "rejected_data_points",
        len(reasons),
        ". ".join(message),
    )
