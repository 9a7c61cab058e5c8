"""POST /v1/traces in OTLP/JSON (with its quirks) and protobuf: mapping, partial success,
skipped spans, errors, gzip, permissions."""

from __future__ import annotations

import base64
import gzip
import time
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tallyql.auth.principal import Role
from tests.conftest import Api
from tests.support.helpers import event_rows, workspace_id_of

TRACE = "5b8efff798038103d269b633813fc60c"


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 as a string
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _span(span_id: str, attrs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    start = time.time_ns() - 60_000_000_000
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "span",
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 1_500_000_000),
        "attributes": [_attr(k, v) for k, v in attrs.items()],
        **extra,
    }


def _request(spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "billing")]},
                "scopeSpans": [{"scope": {"name": "genai"}, "spans": spans}],
            }
        ]
    }


async def _post(api: Api, key: str, body: bytes, media: str, **headers: str) -> Any:
    return await api.client.post(
        "/v1/traces",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": media, **headers},
    )


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "gcp.gemini",
    "gen_ai.request.model": "gemini-2.5-flash",
    "gen_ai.usage.input_tokens": 500,
    "gen_ai.usage.output_tokens": 80,
    "gen_ai.usage.reasoning.output_tokens": 30,
}


async def test_json_quirks_partial_success_and_skips(api: Api) -> None:
    key = await api.key(role=Role.INGEST)
    base64_id = base64.b64encode(bytes.fromhex("00f067aa0ba902b7")).decode()
    spans = [
        _span("00f067aa0ba902b8", CHAT),
        _span(base64_id, {**CHAT, "gen_ai.request.model": "gemini-2.5-pro"}),
        _span("00f067aa0ba902b9", {**CHAT, "gen_ai.request.model": "m" * 300}),  # too long
        _span("00f067aa0ba902ba", {"http.route": "/"}),  # no GenAI attributes
        _span(
            "00f067aa0ba902bb",
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
            status={"code": "STATUS_CODE_ERROR", "message": "boom"},
        ),
        _span(
            "00f067aa0ba902bc",  # Anthropic-style counts: cached tokens reported apart
            {
                "gen_ai.system": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 5,
                "gen_ai.usage.cache_read.input_tokens": 400,
            },
        ),
    ]
    body = gzip.compress(orjson.dumps(_request(spans)))
    response = await _post(api, key, body, "application/json", **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "span 2: model must be at most 256 characters" in partial["errorMessage"]
    assert "1 span(s) without GenAI attributes were skipped" in partial["errorMessage"]
    rows = {r["id"]: r for r in await event_rows(api.services)}
    assert set(rows) == {
        "00f067aa0ba902b8",
        "00f067aa0ba902b7",
        "00f067aa0ba902bb",
        "00f067aa0ba902bc",
    }
    flash = rows["00f067aa0ba902b8"]
    assert (flash["provider"], flash["model"]) == ("google", "gemini-2.5-flash")
    assert (flash["input_tokens"], flash["output_tokens"], flash["reasoning_tokens"]) == (
        500,
        80,
        30,
    )
    assert flash["latency_ms"] == 1500.0
    assert flash["trace_id"] == TRACE
    assert flash["metadata"] == {
        "span.name": "span",
        "otel.scope.name": "genai",
        "service.name": "billing",
    }
    assert rows["00f067aa0ba902b7"]["model"] == "gemini-2.5-pro"
    failed = rows["00f067aa0ba902bb"]
    assert (failed["status"], failed["error_type"], failed["error_message"]) == (
        "error",
        "other",
        "boom",
    )
    claude = rows["00f067aa0ba902bc"]
    assert (claude["input_tokens"], claude["cache_read_tokens"]) == (410, 400)
    # the same request again: every stored span is a duplicate, nothing new
    again = await _post(api, key, body, "application/json", **{"Content-Encoding": "gzip"})
    assert again.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert len(await event_rows(api.services)) == 4
    metrics = (await api.client.get("/metrics")).text
    assert 'tallyql_otlp_spans_total{outcome="skipped"} 2.0' in metrics
    assert 'tallyql_otlp_spans_total{outcome="duplicate"} 4.0' in metrics


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


async def test_protobuf_request_and_response(api: Api) -> None:
    key = await api.key(role=Role.INGEST)
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(_kv("service.name", AnyValue(string_value="svc")))
    scope = resource.scope_spans.add()
    now = time.time_ns() - 10_000_000_000
    good = scope.spans.add(
        trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex("0102030405060708"), name="chat"
    )
    good.start_time_unix_nano, good.end_time_unix_nano = now, now + 2_000_000
    good.attributes.extend(
        [
            _kv("gen_ai.operation.name", AnyValue(string_value="chat")),
            _kv("gen_ai.request.model", AnyValue(string_value="gpt-4o-mini")),
            _kv("gen_ai.usage.input_tokens", AnyValue(int_value=100)),
            _kv("gen_ai.usage.output_tokens", AnyValue(int_value=10)),
        ]
    )
    bad = scope.spans.add(span_id=bytes.fromhex("0102030405060709"), name="chat")
    bad.start_time_unix_nano = now
    bad.attributes.extend(
        [
            _kv("gen_ai.request.model", AnyValue(string_value="gpt-4o")),
            _kv("gen_ai.usage.input_tokens", AnyValue(string_value="many")),
        ]
    )
    response = await _post(api, key, request.SerializeToString(), "application/x-protobuf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "span 1: input_tokens" in answer.partial_success.error_message
    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    assert [(r["id"], r["latency_ms"], r["input_tokens"]) for r in rows] == [
        ("0102030405060708", 2.0, 100)
    ]


async def test_errors_and_permissions(api: Api) -> None:
    ingest = await api.key(role=Role.INGEST)
    viewer = await api.key(role=Role.VIEWER)
    body = orjson.dumps(_request([_span("00f067aa0ba902b8", CHAT)]))
    assert (await _post(api, viewer, body, "application/json")).status_code == 403
    anonymous = await api.client.post(
        "/v1/traces", content=body, headers={"Content-Type": "application/json"}
    )
    assert anonymous.status_code == 401
    assert (await _post(api, ingest, body, "text/plain")).status_code == 415
    broken = await _post(api, ingest, b"\xff\xff", "application/x-protobuf")
    assert broken.status_code == 400
    bad_id = orjson.dumps(_request([_span("xyz", CHAT)]))
    response = await _post(api, ingest, bad_id, "application/json")
    assert response.status_code == 400 and "spanId" in response.json()["message"]
    empty = await _post(api, ingest, b"{}", "application/json")
    assert empty.status_code == 200 and empty.json() == {}
    assert await event_rows(api.services) == []
