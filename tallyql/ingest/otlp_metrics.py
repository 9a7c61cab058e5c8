"""Reads OTLP/HTTP metric requests (protobuf or JSON) into plain `OtlpPoint`s.

Sums (counters and up-down counters), gauges and explicit-bucket histograms are read, whatever
their temporality (the storage turns cumulative points into deltas). Exponential histograms
and summaries are counted as skipped points: no coding agent sends them. A point that cannot
be stored (no time, a value that is not a finite number, bucket counts that do not match the
bounds) is rejected with its reason; the other points of the request are kept.

A point's attributes are its resource's attributes overlaid with its own: two machines that
report the same counter are two series, as OpenTelemetry defines them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from tallyql.ingest.body import BodyError
from tallyql.ingest.otlp_decode import (
    OtlpError,
    _get,
    _int,
    _json_attributes,
    _length_delimited,
    _pb_attributes,
)

MAX_POINTS = 100_000
"""Most data points in one OTLP call, counted before any is built."""

SUM, GAUGE, HISTOGRAM = "sum", "gauge", "histogram"
CUMULATIVE = 2  # AggregationTemporality: 1 delta, 2 cumulative
_TEMPORALITY_NAMES = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
MAX_NAME = 256
MAX_BUCKETS = 200


@dataclass(slots=True)
class OtlpPoint:
    name: str
    kind: str
    unit: str
    cumulative: bool
    monotonic: bool
    attributes: dict[str, Any]
    start_ns: int
    time_ns: int
    value: float | None = None
    """A sum's or gauge's value; a histogram's sum of observations (None when not sent)."""
    count: int | None = None
    bounds: list[float] | None = None
    buckets: list[int] | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass
class DecodedMetrics:
    points: list[OtlpPoint]
    rejected: list[tuple[int, str]]
    """(point position in the request, reason) of each point that cannot be stored."""
    skipped: int
    """Points of metric types not stored (exponential histograms, summaries)."""

    @property
    def total(self) -> int:
        return len(self.points) + len(self.rejected) + self.skipped


def _too_many() -> BodyError:
    return BodyError(
        f"more than {MAX_POINTS:,} metric points in one call; send smaller batches", 413
    )


# Metric fields that hold points (gauge 5, sum 7, histogram 9, exponential 10, summary 11),
# each with its data_points in field 1
_DATA_FIELDS = (5, 7, 9, 10, 11)


def count_protobuf_points(body: bytes, limit: int = MAX_POINTS) -> int:
    """Data points in an ExportMetricsServiceRequest, read from the wire format, counting no
    further than limit + 1 (a malformed body counts 0: parsing reports it)."""
    count = 0
    try:
        for r_start, r_end in _length_delimited(body, 0, len(body), 1):
            for s_start, s_end in _length_delimited(body, r_start, r_end, 2):
                for m_start, m_end in _length_delimited(body, s_start, s_end, 2):
                    for number in _DATA_FIELDS:
                        for d_start, d_end in _length_delimited(body, m_start, m_end, number):
                            for _ in _length_delimited(body, d_start, d_end, 1):
                                count += 1
                                if count > limit:
                                    return count
    except (IndexError, ValueError):
        return 0
    return count


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Builder:
    def __init__(self) -> None:
        self.out = DecodedMetrics([], [], 0)
        self.position = 0

    def reject(self, reason: str) -> None:
        self.out.rejected.append((self.position, reason))
        self.position += 1

    def skip(self, count: int) -> None:
        self.out.skipped += count
        self.position += count

    def add(self, point: OtlpPoint) -> None:
        problem = _problem(point)
        if problem:
            self.reject(problem)
            return
        self.out.points.append(point)
        self.position += 1

    def check_size(self) -> None:
        if self.position > MAX_POINTS:
            raise _too_many()


def _problem(point: OtlpPoint) -> str | None:
    if not point.name or len(point.name) > MAX_NAME:
        return f"metric name must be 1 to {MAX_NAME} characters"
    if point.time_ns <= 0:
        return f"{point.name}: timeUnixNano is required"
    if point.kind != HISTOGRAM:
        if not _finite(point.value):
            return f"{point.name}: value must be a finite number"
        return None
    if point.value is not None and not _finite(point.value):
        return f"{point.name}: sum must be a finite number"
    if point.count is None or point.count < 0:
        return f"{point.name}: count must be a non-negative integer"
    bounds, buckets = point.bounds or [], point.buckets or []
    if len(bounds) > MAX_BUCKETS:
        return f"{point.name}: at most {MAX_BUCKETS} bucket bounds"
    if buckets and len(buckets) != len(bounds) + 1:
        return f"{point.name}: bucketCounts must hold one more count than explicitBounds"
    if any(not _finite(b) for b in bounds) or any(c < 0 for c in buckets):
        return f"{point.name}: bounds must be finite and bucket counts non-negative"
    return None


def decode_metrics_protobuf(body: bytes) -> DecodedMetrics:
    if count_protobuf_points(body) > MAX_POINTS:
        raise _too_many()
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(
            f"body is not an OTLP protobuf ExportMetricsServiceRequest: {exc}"
        ) from None
    build = _Builder()
    for resource_metrics in request.resource_metrics:
        resource = _pb_attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind in ("sum", "gauge"):
                    data = getattr(metric, kind)
                    cumulative = kind == "sum" and data.aggregation_temporality == CUMULATIVE
                    monotonic = kind == "sum" and data.is_monotonic
                    for p in data.data_points:
                        which = p.WhichOneof("value")
                        value = p.as_int if which == "as_int" else p.as_double
                        build.add(
                            OtlpPoint(
                                name=metric.name,
                                kind=kind,
                                unit=metric.unit,
                                cumulative=cumulative,
                                monotonic=monotonic,
                                attributes={**resource, **_pb_attributes(p.attributes)},
                                start_ns=p.start_time_unix_nano,
                                time_ns=p.time_unix_nano,
                                value=value if which is not None else math.nan,
                            )
                        )
                elif kind == "histogram":
                    data = metric.histogram
                    for h in data.data_points:
                        build.add(
                            OtlpPoint(
                                name=metric.name,
                                kind=HISTOGRAM,
                                unit=metric.unit,
                                cumulative=data.aggregation_temporality == CUMULATIVE,
                                monotonic=True,
                                attributes={**resource, **_pb_attributes(h.attributes)},
                                start_ns=h.start_time_unix_nano,
                                time_ns=h.time_unix_nano,
                                value=h.sum if h.HasField("sum") else None,
                                count=h.count,
                                bounds=list(h.explicit_bounds),
                                buckets=list(h.bucket_counts),
                                minimum=h.min if h.HasField("min") else None,
                                maximum=h.max if h.HasField("max") else None,
                            )
                        )
                elif kind is not None:
                    build.skip(len(getattr(metric, kind).data_points))
    return build.out


def _json_number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise OtlpError(f"{what} must be a number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            pass
    raise OtlpError(f"{what} must be a number, got {value!r}")


def _temporality(value: Any) -> int:
    if isinstance(value, str) and value in _TEMPORALITY_NAMES:
        return _TEMPORALITY_NAMES[value]
    return _int(value, "aggregationTemporality")


def decode_metrics_json(doc: Any) -> DecodedMetrics:
    if not isinstance(doc, dict):
        raise OtlpError("body must be a JSON object with resourceMetrics")
    build = _Builder()
    for resource_metrics in _get(doc, "resourceMetrics") or []:
        if not isinstance(resource_metrics, dict):
            raise OtlpError("resourceMetrics must hold JSON objects")
        resource = _json_attributes((_get(resource_metrics, "resource") or {}).get("attributes"))
        for scope_metrics in _get(resource_metrics, "scopeMetrics") or []:
            if not isinstance(scope_metrics, dict):
                raise OtlpError("scopeMetrics must hold JSON objects")
            for metric in _get(scope_metrics, "metrics") or []:
                if not isinstance(metric, dict):
                    raise OtlpError("each metric must be a JSON object")
                _json_metric(metric, resource, build)
                build.check_size()
    return build.out


def _json_metric(metric: dict[str, Any], resource: dict[str, Any], build: _Builder) -> None:
    name = metric.get("name")
    name = name if isinstance(name, str) else ""
    unit = metric.get("unit")
    unit = unit if isinstance(unit, str) else ""
    for kind in (SUM, GAUGE, HISTOGRAM):
        data = metric.get(kind)
        if not isinstance(data, dict):
            continue
        temporality = _temporality(_get(data, "aggregationTemporality"))
        monotonic = bool(_get(data, "isMonotonic")) if kind == SUM else kind == HISTOGRAM
        for p in _get(data, "dataPoints") or []:
            if not isinstance(p, dict):
                raise OtlpError("each data point must be a JSON object")
            point = OtlpPoint(
                name=name,
                kind=kind,
                unit=unit,
                cumulative=kind != GAUGE and temporality == CUMULATIVE,
                monotonic=monotonic,
                attributes={**resource, **_json_attributes(p.get("attributes"))},
                start_ns=_int(_get(p, "startTimeUnixNano"), "startTimeUnixNano"),
                time_ns=_int(_get(p, "timeUnixNano"), "timeUnixNano"),
            )
            if kind == HISTOGRAM:
                point.value = _json_number(p.get("sum"), "sum")
                point.count = _int(p.get("count"), "count")
                point.bounds = [
                    float(_json_number(b, "explicitBounds") or 0)
                    for b in _get(p, "explicitBounds") or []
                ]
                point.buckets = [_int(c, "bucketCounts") for c in _get(p, "bucketCounts") or []]
                point.minimum = _json_number(p.get("min"), "min")
                point.maximum = _json_number(p.get("max"), "max")
            else:
                raw = _get(p, "asDouble")
                if raw is None:
                    raw = _get(p, "asInt")
                value = _json_number(raw, "value")
                point.value = math.nan if value is None else value
            build.add(point)
        return
    for kind in ("exponentialHistogram", "exponential_histogram", "summary"):
        data = metric.get(kind)
        if isinstance(data, dict):
            points = _get(data, "dataPoints") or []
            build.skip(len(points) if isinstance(points, list) else 0)
            return
