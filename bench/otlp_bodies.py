"""Demo events as OTLP/HTTP protobuf trace requests (one GenAI span per event), for
`bench/ingest.py --otlp`."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

OPERATIONS = {"llm_call": "chat", "tool_call": "execute_tool", "agent_run": "invoke_agent"}
STRING_ATTRIBUTES = {
    "provider": "gen_ai.provider.name",
    "model": "gen_ai.request.model",
    "session_id": "gen_ai.conversation.id",
    "user_id": "user.id",
    "agent_id": "gen_ai.agent.id",
    "tool": "gen_ai.tool.name",
}
INT_ATTRIBUTES = {
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cache_read_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_write_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
}


def _id(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


def _ns(timestamp: str) -> int:
    moment = datetime.fromisoformat(timestamp)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def otlp_body(events: list[dict[str, Any]]) -> bytes:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="bench"))
    )
    spans = resource.scope_spans.add().spans
    for event in events:
        span = spans.add(
            trace_id=_id(event.get("trace_id") or event["id"], 16),
            span_id=_id(event["id"], 8),
            name=OPERATIONS.get(event.get("kind", "llm_call"), "chat"),
        )
        start = _ns(event["timestamp"])
        span.start_time_unix_nano = start
        span.end_time_unix_nano = start + int((event.get("latency_ms") or 0) * 1_000_000)
        attributes = [
            KeyValue(
                key="gen_ai.operation.name",
                value=AnyValue(string_value=OPERATIONS.get(event.get("kind", "llm_call"), "chat")),
            )
        ]
        for field, name in STRING_ATTRIBUTES.items():
            if event.get(field):
                attributes.append(KeyValue(key=name, value=AnyValue(string_value=event[field])))
        for field, name in INT_ATTRIBUTES.items():
            if event.get(field):
                attributes.append(KeyValue(key=name, value=AnyValue(int_value=event[field])))
        if event.get("ttft_ms"):
            seconds = AnyValue(double_value=event["ttft_ms"] / 1000)
            attributes.append(KeyValue(key="gen_ai.response.time_to_first_chunk", value=seconds))
        if event.get("status") == "error":
            span.status.code = 2
            attributes.append(
                KeyValue(key="error.type", value=AnyValue(string_value=event.get("error_type", "")))
            )
        span.attributes.extend(attributes)
    return request.SerializeToString()


def otlp_json_body(events: list[dict[str, Any]]) -> bytes:
    """The same request in OTLP/JSON (lowerCamelCase names, hex ids, 64-bit integers as
    strings), as OTLP/HTTP JSON exporters send it."""
    request = ExportTraceServiceRequest.FromString(otlp_body(events))
    doc = json_format.MessageToDict(request)  # the protobuf JSON mapping: ids in base64
    for resource_spans in doc["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return orjson.dumps(doc)


def rejected_spans(content: bytes, json: bool = False) -> int:
    if json:
        return int(orjson.loads(content).get("partialSuccess", {}).get("rejectedSpans", 0))
    return ExportTraceServiceResponse.FromString(content).partial_success.rejected_spans
