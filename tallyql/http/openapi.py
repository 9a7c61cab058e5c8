"""The OpenAPI document of the REST API (/openapi.json).

The ingest routes read their bodies raw (JSON array, `{"events": [...]}` or NDJSON, maybe
gzipped; OTLP protobuf or JSON), so FastAPI cannot infer them: this module describes the
bodies, the export endpoint's query parameters, the answers, the one REST error shape and the
bearer key scheme, from the same definitions the server validates with (ingest/fields.py for
events, ingest/audit.py for audit events, exporting/ for the export parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tallyql.engine.charts import PRESETS as CHART_PRESETS
from tallyql.engine.query.buckets import Granularity
from tallyql.engine.query.registry import Dimension, Metric
from tallyql.engine.query.timerange import Preset
from tallyql.exporting.datasets import AUDIT_OPTIONS, DATASETS
from tallyql.exporting.params import FILTER_PARAMS, FORMATS
from tallyql.ingest.audit import CHOICES as AUDIT_CHOICES
from tallyql.ingest.audit import REQUIRED as AUDIT_REQUIRED
from tallyql.ingest.audit import TEXT_LIMITS as AUDIT_TEXT_LIMITS
from tallyql.ingest.fields import (
    EVENT_FIELDS,
    MAX_EVENTS_PER_CALL,
    MAX_METADATA_BYTES,
    MAX_TAGS,
    EventField,
    FieldType,
)

SECURITY_SCHEME = "bearerKey"
PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/docs"})
NDJSON = "application/x-ndjson"
EXAMPLE_EVENT: dict[str, Any] = {
    "timestamp": "2026-11-29T12:00:00Z",
    "kind": "llm_call",
    "status": "success",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 1200,
    "output_tokens": 300,
    "latency_ms": 850,
    "user_id": "alice",
    "session_id": "s-1",
}
EXAMPLE_AUDIT_EVENT: dict[str, Any] = {
    "actor_type": "user",
    "actor_id": "alice",
    "action": "login",
    "resource_type": "console",
    "outcome": "success",
}


def _path(name: str, description: str, choices: list[str] | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if choices:
        schema["enum"] = choices
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _event_property(f: EventField) -> dict[str, Any]:
    schema: dict[str, Any]
    if f.type is FieldType.TEXT:
        schema = {"type": "string", "minLength": 1}
        if f.name not in ("error_message", "policy_description"):  # longer ones are truncated
            schema["maxLength"] = f.max_length
    elif f.type is FieldType.ENUM:
        schema = {"type": "string", "enum": list(f.choices)}
    elif f.type is FieldType.INT:
        schema = {"type": "integer", "minimum": 0, "maximum": int(f.maximum)}
    elif f.type is FieldType.NUMBER:
        schema = {"type": "number", "minimum": 0, "maximum": f.maximum}
    elif f.type is FieldType.BOOL:
        schema = {"type": "boolean"}
    elif f.type is FieldType.TIMESTAMP:
        schema = {"type": "string", "format": "date-time"}
    elif f.type is FieldType.TAGS:
        tag = {"type": "string", "minLength": 1, "maxLength": 128}
        schema = {"type": "array", "items": tag, "maxItems": MAX_TAGS}
    elif f.type is FieldType.OBJECT:
        schema = {"type": "object", "description": f"At most {MAX_METADATA_BYTES} bytes as JSON."}
    else:  # a payload: any JSON value
        schema = {}
    return {**schema, "description": f.doc}


def _schemas() -> dict[str, Any]:
    audit_properties: dict[str, Any] = {
        name: {"type": "string", "minLength": 1, "maxLength": limit}
        for name, limit in AUDIT_TEXT_LIMITS.items()
    }
    audit_properties |= {
        name: {"type": "string", "enum": list(choices)} for name, choices in AUDIT_CHOICES.items()
    }
    audit_properties |= {
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with offset; defaults to the time of receipt.",
        },
        "source_ip": {"type": "string", "description": "An IPv4 or IPv6 address."},
        "details": {
            "type": "object",
            "description": f"Any JSON object of at most {MAX_METADATA_BYTES} bytes.",
        },
    }
    audit_properties["id"]["description"] = "Idempotency key; generated when absent."
    return {
        "Event": {
            "type": "object",
            "description": "One model call, tool (MCP) call, agent run or HTTP request. No field"
            " is required; unknown fields are rejected.",
            "properties": {f.name: _event_property(f) for f in EVENT_FIELDS},
            "additionalProperties": False,
            "example": EXAMPLE_EVENT,
        },
        "AuditEvent": {
            "type": "object",
            "description": "Who did what to which resource, from where, with what outcome.",
            "properties": audit_properties,
            "required": list(AUDIT_REQUIRED),
            "additionalProperties": False,
        },
        "FieldError": {
            "type": "object",
            "description": "Why one event of the batch was rejected.",
            "properties": {
                "index": {"type": "integer", "description": "Position of the event in the batch."},
                "field": {
                    "type": "string",
                    "description": "The field at fault (empty: the event).",
                },
                "message": {"type": "string"},
            },
            "required": ["index", "field", "message"],
        },
        "IngestResult": {
            "type": "object",
            "description": "Sent after the accepted events are committed. Retrying a batch is"
            " safe: events already stored (same id) count as duplicates.",
            "properties": {
                "accepted": {"type": "integer", "description": "Events stored by this call."},
                "duplicates": {"type": "integer", "description": "Events already stored (by id)."},
                "rejected": {"type": "integer", "description": "Invalid events, not stored."},
                "errors": {"type": "array", "items": _ref("FieldError")},
            },
            "required": ["accepted", "duplicates", "rejected", "errors"],
        },
        "Error": {
            "type": "object",
            "description": "Every REST error (OTLP's /v1/traces excepted).",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {
                            "type": "string",
                            "description": "Machine-readable: BAD_REQUEST, UNAUTHENTICATED, "
                            "FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE, "
                            "UNSUPPORTED_MEDIA_TYPE, COST_LIMIT, RATE_LIMITED, BUSY, UNAVAILABLE, "
                            "WRITE_FAILED, INTERNAL_ERROR.",
                        },
                        "message": {"type": "string", "description": "For humans."},
                    },
                    "required": ["code", "message"],
                }
            },
            "required": ["error"],
            "example": {
                "error": {"code": "UNAUTHENTICATED", "message": "invalid or revoked API key"}
            },
        },
        "OtlpStatus": {
            "type": "object",
            "description": "google.rpc.Status, as the OTLP specification requires for errors"
            " (protobuf for protobuf requests).",
            "properties": {
                "code": {
                    "type": "integer",
                    "description": "google.rpc.Code (16: UNAUTHENTICATED).",
                },
                "message": {"type": "string"},
            },
        },
        **{
            f"Export{signal}ServiceResponse": {
                "type": "object",
                "description": "OTLP/JSON; protobuf requests get the protobuf message. "
                "errorMessage alone (rejected 0) is a warning: records ignored or skipped.",
                "properties": {
                    "partialSuccess": {
                        "type": "object",
                        "properties": {
                            field: {"type": "string", "description": "int64 as a string."},
                            "errorMessage": {"type": "string"},
                        },
                    }
                },
            }
            for signal, field in (
                ("Trace", "rejectedSpans"),
                ("Logs", "rejectedLogRecords"),
                ("Metrics", "rejectedDataPoints"),
            )
        },
    }


def _otlp_operation(
    summary: str, description: str, signal: str, top: str, items: str
) -> dict[str, Any]:
    return {
        "tags": ["Ingest"],
        "summary": summary,
        "description": description + " Protobuf or JSON; `Content-Encoding: gzip` or "
        f"`deflate` accepted; at most 100,000 {items} per call. Errors are google.rpc.Status "
        "(OTLP), not the REST error shape.",
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": f"Export{signal}ServiceRequest (protobuf).",
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": f"Export{signal}ServiceRequest in OTLP/JSON.",
                        "properties": {top: {"type": "array", "items": {}}},
                    }
                },
            },
        },
        "responses": {
            "200": {
                "description": f"Accepted; rejected {items} are counted in partialSuccess.",
                "content": {
                    "application/json": {"schema": _ref(f"Export{signal}ServiceResponse")},
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            **_errors(400, 401, 403, 413, 415, 429, 503, schema="OtlpStatus"),
        },
    }


def _errors(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    reasons = {
        400: "Malformed body or parameters.",
        401: "Missing, unknown or revoked key.",
        403: "The key's role may not do this.",
        404: "No such dataset or chart preset.",
        413: "Body larger than TALLYQL_MAX_BODY_BYTES (after gzip or deflate), or too many events.",
        415: "Unsupported Content-Type or Content-Encoding.",
        429: "RATE_LIMITED: the key has TALLYQL_KEY_MAX_IN_FLIGHT requests in flight, or (exports) "
        "has spent its cost points of the last minute. Retry after Retry-After.",
        503: "The writer is saturated or stopping; nothing was stored. Retry after Retry-After.",
    }
    media = "application/json"
    return {
        str(s): {"description": reasons[s], "content": {media: {"schema": _ref(schema)}}}
        for s in statuses
    }


def _batch_body(item: str, what: str, example: Any) -> dict[str, Any]:
    batch = {"type": "array", "items": _ref(item), "maxItems": MAX_EVENTS_PER_CALL}
    return {
        "required": True,
        "description": f'{what}: a JSON array, `{{"events": [...]}}`, or NDJSON (one per line);'
        f" at most {MAX_EVENTS_PER_CALL} per call. `Content-Encoding: gzip` or `deflate` is"
        " accepted.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        batch,
                        {
                            "type": "object",
                            "properties": {"events": batch},
                            "required": ["events"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "example": example,
            },
            NDJSON: {
                "schema": {"type": "string", "description": f"One {item} JSON object per line."}
            },
        },
    }


def _ingest_answer() -> dict[str, Any]:
    return {
        "description": "Counts and per-event errors, after commit.",
        "content": {"application/json": {"schema": _ref("IngestResult")}},
    }


_OPTION_DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    "dimension": (
        "breakdown (required there): the dimension to group by.",
        {"type": "string", "enum": [d.value for d in Dimension]},
    ),
    "metrics": (
        "breakdown, timeseries: metrics, repeated or comma-separated (default REQUESTS,COST_USD).",
        {"type": "array", "items": {"type": "string", "enum": [m.value for m in Metric]}},
    ),
    "orderBy": (
        "breakdown: the metric to sort by (default: the first).",
        {"type": "string", "enum": [m.value for m in Metric]},
    ),
    "descending": ("breakdown: sort order (default true).", {"type": "boolean"}),
    "metadataKey": (
        "breakdown, timeseries: the metadata key when grouping by METADATA.",
        {"type": "string"},
    ),
    "granularity": (
        "timeseries: bucket size (default AUTO).",
        {"type": "string", "enum": [g.value for g in Granularity]},
    ),
    "groupBy": (
        "timeseries: one series per value of this dimension.",
        {"type": "string", "enum": [d.value for d in Dimension]},
    ),
    "limitGroups": (
        "timeseries: series kept with groupBy (default 10); the rest make an 'other' series.",
        {"type": "integer", "minimum": 1},
    ),
}


def _export_parameters() -> list[dict[str, Any]]:
    def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "description": description,
            "schema": schema,
        }
        if schema.get("type") == "array":
            param |= {"style": "form", "explode": True}
        return param

    strings = {"type": "array", "items": {"type": "string"}}
    params = [
        {
            "name": "dataset",
            "in": "path",
            "required": True,
            "description": "What to export.",
            "schema": {"type": "string", "enum": list(DATASETS)},
        },
        query(
            "format", "csv (default), json or ndjson.", {"type": "string", "enum": list(FORMATS)}
        ),
        query(
            "preset",
            "A named window; or give start and end.",
            {"type": "string", "enum": [p.value for p in Preset]},
        ),
        query(
            "start", "Inclusive, RFC 3339 with offset.", {"type": "string", "format": "date-time"}
        ),
        query("end", "Exclusive, RFC 3339 with offset.", {"type": "string", "format": "date-time"}),
        query("timezone", "IANA zone for day boundaries (default UTC).", {"type": "string"}),
    ]
    for name in FILTER_PARAMS:
        if name == "metadata":
            params.append(query(name, "Event filter: key:value, repeated.", strings))
        elif name == "isByok":
            params.append(
                query(name, "Event filter: bring-your-own-key calls.", {"type": "boolean"})
            )
        else:
            params.append(
                query(
                    name,
                    "Event filter (not for audit-events): repeated or comma-separated.",
                    strings,
                )
            )
    for name in AUDIT_OPTIONS:
        params.append(query(name, "audit-events filter: repeated or comma-separated.", strings))
    for name, (description, schema) in _OPTION_DOCS.items():
        params.append(query(name, description, schema))
    return params


def _graphql_body() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "The GraphQL document."},
            "variables": {"type": "object"},
            "operationName": {"type": "string"},
        },
        "required": ["query"],
        "example": {"query": "{ me { workspace role } }"},
    }


def _graphql_answer() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "`data`, and `errors` with `extensions.code` (UNAUTHENTICATED, "
        "FORBIDDEN, BAD_USER_INPUT, BAD_REQUEST, ...). Errors met before execution come with "
        "their HTTP status (401, 400, ...), others with 200.",
        "properties": {
            "data": {"type": ["object", "null"]},
            "errors": {"type": "array", "items": {"type": "object"}},
            "extensions": {"type": "object"},
        },
    }


def _chart_parameters(preset: bool) -> list[dict[str, Any]]:
    """The export endpoint's range and filter parameters, plus `scale`; the preset in the
    path (image routes) or the question (ask.png)."""
    kept = [p for p in _export_parameters() if p["name"] not in ("dataset", "format")]
    scale = {
        "name": "scale",
        "in": "query",
        "description": "PNG pixel density, 0.5 to 4 (default 1: about 700 x 380 pixels).",
        "schema": {"type": "number", "minimum": 0.5, "maximum": 4},
    }
    if not preset:
        question = {
            "name": "q",
            "in": "query",
            "required": True,
            "description": "The question in plain words, as for GraphQL's ask.",
            "schema": {"type": "string", "maxLength": 300},
        }
        zone = next(p for p in kept if p["name"] == "timezone")
        return [question, zone, scale]
    path = {
        "name": "preset",
        "in": "path",
        "required": True,
        "description": "A chart preset (GraphQL chartPresets). Without a range: the last 30 "
        "days, UTC; the preset's own filter (LLM calls for latency) holds where the "
        "parameters set no value for that field.",
        "schema": {"type": "string", "enum": list(CHART_PRESETS)},
    }
    return [path, *kept, scale]


def _image_operation(fmt: str, preset: bool) -> dict[str, Any]:
    media = {"png": "image/png", "svg": "image/svg+xml"}[fmt]
    headers: dict[str, Any] = {
        "X-Tallyql-Cache": {
            "description": "hit when the same picture (same parameters and rows) was drawn "
            "before and kept, miss when drawn for this request.",
            "schema": {"type": "string", "enum": ["hit", "miss"]},
        },
        "ETag": {"description": "The picture's identity.", "schema": {"type": "string"}},
    }
    if not preset:
        headers |= {
            "X-Tallyql-Understood": {
                "description": "false when the question was not understood: the image then "
                "says why and lists questions to try.",
                "schema": {"type": "string", "enum": ["true", "false"]},
            },
            "X-Tallyql-Interpretation": {
                "description": "The question as understood, in words (ASCII).",
                "schema": {"type": "string"},
            },
        }
    return {
        "tags": ["Charts"],
        "summary": f"A chart preset as {fmt.upper()}" if preset else "A question's chart as PNG",
        "description": (
            "Draws a chart preset on the server (Vega-Lite via vl-convert, no browser), over "
            "the range and filter given as for /v1/export. Read keys (viewer and above)."
            if preset
            else "Answers a question as GraphQL's ask does and draws its chart. Read keys "
            "(viewer and above)."
        ),
        "parameters": _chart_parameters(preset),
        "responses": {
            "200": {
                "description": "The image.",
                "headers": headers,
                "content": {media: {"schema": {"type": "string", "format": "binary"}}},
            },
            **_errors(400, 401, 403, *((404,) if preset else ())),
        },
    }


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    graphql_answer = {"application/json": {"schema": _graphql_answer()}}
    return {
        ("/graphql", "post"): {
            "tags": ["GraphQL"],
            "summary": "GraphQL queries and mutations",
            "description": "The whole schema is in GraphiQL's docs pane (GET /graphql in a "
            "browser) and in schema.graphql. Subscriptions need a stream: a WebSocket on this "
            "path (graphql-transport-ws or graphql-ws) or this POST with `Accept: "
            "text/event-stream` (GraphQL over SSE); a plain POST of one is a 400.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _graphql_body()}},
            },
            "responses": {
                "200": {"description": "Executed.", "content": graphql_answer},
                "400": {"description": "Not executable.", "content": graphql_answer},
                "401": {"description": "Missing or bad key.", "content": graphql_answer},
            },
        },
        ("/graphql", "get"): {
            "tags": ["GraphQL"],
            "summary": "GraphiQL, or a query by GET",
            "description": "A browser (Accept: text/html) gets GraphiQL, which needs no key to "
            "load and asks for one. With `?query=` (and `variables`, `operationName`), a "
            "query runs; mutations are refused by GET.",
            "responses": {
                "200": {
                    "description": "The GraphiQL page, or the query's answer.",
                    "content": {"text/html": {"schema": {"type": "string"}}, **graphql_answer},
                },
                "400": {"description": "Not executable.", "content": graphql_answer},
                "401": {"description": "Missing or bad key.", "content": graphql_answer},
            },
        },
        ("/v1/events", "post"): {
            "tags": ["Ingest"],
            "summary": "Ingest events",
            "description": "Stores model calls, tool calls, agent runs and HTTP requests. Bad "
            "events are reported one by one; the good ones are kept. Answers after commit.",
            "requestBody": _batch_body("Event", "Events", [EXAMPLE_EVENT]),
            "responses": {"200": _ingest_answer(), **_errors(400, 401, 403, 413, 429, 503)},
        },
        ("/v1/audit-events", "post"): {
            "tags": ["Ingest"],
            "summary": "Record audit events",
            "description": "Same answer and guarantees as /v1/events.",
            "requestBody": _batch_body("AuditEvent", "Audit events", [EXAMPLE_AUDIT_EVENT]),
            "responses": {"200": _ingest_answer(), **_errors(400, 401, 403, 413, 429)},
        },
        ("/v1/traces", "post"): _otlp_operation(
            "OTLP/HTTP trace export",
            "Spans following the OpenTelemetry GenAI conventions become events; others are "
            "acknowledged and skipped.",
            "Trace",
            "resourceSpans",
            "spans",
        ),
        ("/v1/logs", "post"): _otlp_operation(
            "OTLP/HTTP log export (coding agents)",
            "Log records of Claude Code (claude_code.api_request, claude_code.api_error, "
            "claude_code.tool_result), OpenAI Codex CLI (codex.sse_event response.completed, "
            "failed codex.api_request, codex.tool_result) and Gemini CLI "
            "(gemini_cli.api_response, gemini_cli.api_error, gemini_cli.tool_call) become "
            "events (model calls and tool runs with tokens, cost, latency, session, user and "
            "status), checked like /v1/events events; a re-sent record is a duplicate. The "
            "agents' other records are ignored and unknown ones skipped: both are acknowledged "
            "and counted in partialSuccess.errorMessage.",
            "Logs",
            "resourceLogs",
            "log records",
        ),
        ("/v1/metrics", "post"): _otlp_operation(
            "OTLP/HTTP metric export (coding agents)",
            "Sums, gauges and explicit-bucket histograms are stored in the metrics store "
            "(counters as deltas, whatever the temporality), read through the GraphQL field "
            "agentMetrics; a re-sent point is a duplicate. Exponential histograms and "
            "summaries are skipped and counted in partialSuccess.errorMessage.",
            "Metrics",
            "resourceMetrics",
            "data points",
        ),
        ("/v1/charts/{preset}.png", "get"): _image_operation("png", True),
        ("/v1/charts/{preset}.svg", "get"): _image_operation("svg", True),
        ("/v1/ask.png", "get"): _image_operation("png", False),
        ("/v1/export/{dataset}", "get"): {
            "tags": ["Export"],
            "summary": "Export a dataset",
            "description": "Streams requests, sessions, audit events, a breakdown or a time "
            "series as CSV, JSON or NDJSON. Unknown parameters are refused. Every export is "
            "recorded in the audit trail. Priced and paid like a GraphQL question before "
            "anything runs (README, Query cost and limits).",
            "parameters": _export_parameters(),
            "responses": {
                "200": {
                    "description": "The rows, streamed.",
                    "headers": {
                        "Content-Disposition": {
                            "description": "attachment; filename="
                            "tallyql-<workspace>-<dataset>-<start>-<end>.<format>",
                            "schema": {"type": "string"},
                        },
                        "X-Tallyql-Cost": {
                            "description": "Cost points the export spent (README, Query cost).",
                            "schema": {"type": "integer"},
                        },
                        "X-Tallyql-Cost-Key-Remaining": {
                            "description": "Cost points the key may still spend now.",
                            "schema": {"type": "integer"},
                        },
                    },
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/json": {
                            "schema": {"type": "array", "items": {"type": "object"}}
                        },
                        NDJSON: {"schema": {"type": "string"}},
                    },
                },
                "400": {
                    "description": "Malformed parameters (BAD_REQUEST), or an export that "
                    "would cost more than TALLYQL_COST_REQUEST_LIMIT points (COST_LIMIT): "
                    "ask for a shorter window.",
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
                **_errors(401, 403, 404, 429),
            },
        },
        ("/v1/import/openrouter", "post"): {
            "tags": ["Ingest"],
            "summary": "Import OpenRouter activity",
            "description": 'The JSON of OpenRouter\'s GET /api/v1/activity ({"data": [{date, '
            "model, model_permaslug, endpoint_id, provider_name, usage, byok_usage_inference, "
            "requests, prompt_tokens, completion_tokens, reasoning_tokens}]}, snake_case or "
            "camelCase). Each item becomes its `requests` LLM-call events of its UTC date, "
            "minus the traffic gateways already sent through OpenRouter for that date and "
            "model; idempotent. One bad item is rejected alone.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {
                    "description": "rows, importedRows, accepted and duplicates (events), "
                    "skippedGatewayRequests, rejected (items) and errors (index, field, "
                    "message).",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_errors(400, 401, 403, 413, 503),
            },
        },
        ("/v1/reports/runs/{run_id}/file", "get"): {
            "tags": ["Export"],
            "summary": "Download a report run's file",
            "description": "A file a scheduled report's run made (GraphQL "
            "`report(id) { runs { files } }`), for 30 days after the run. Audited.",
            "parameters": [
                _path("run_id", "The run's id.", None),
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "description": "csv (a zip of one CSV per section), html or pdf.",
                    "schema": {"type": "string", "enum": ["csv", "html", "pdf"], "default": "pdf"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The file.",
                    "content": {
                        "application/zip": {"schema": {"type": "string", "format": "binary"}},
                        "text/html": {"schema": {"type": "string"}},
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **_errors(400, 401, 403, 404),
            },
        },
        ("/v1/statements/{period}/{of}.{fmt}", "get"): {
            "tags": ["Export"],
            "summary": "Download a chargeback statement",
            "description": "The statement of the month or quarter holding `of` (as the "
            "GraphQL field `statements` gives it) as CSV (one row per line item: department, "
            "line = total | member | model | unpriced_model, key, provider, requests, "
            "input_tokens, output_tokens, total_tokens, cost_usd, unpriced_events) or PDF. "
            "Recorded in the audit trail.",
            "parameters": [
                _path("period", "month or quarter", ["month", "quarter"]),
                _path("of", "Any day of the period, YYYY-MM-DD.", None),
                _path("fmt", "The file format.", ["csv", "pdf"]),
                {
                    "name": "timezone",
                    "in": "query",
                    "required": False,
                    "description": "The IANA zone the period's days are counted in.",
                    "schema": {"type": "string", "default": "UTC"},
                },
                {
                    "name": "department",
                    "in": "query",
                    "required": False,
                    "description": "One department's statement; empty for users without one. "
                    "Leave out for every department.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The statement file.",
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **_errors(400, 401, 403, 404),
            },
        },
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description
        + "\n\nEvery call but /health and /metrics needs `Authorization: Bearer <api key>`"
        " (`tallyql keys create`, or the key `tallyql serve --demo` prints). GraphQL lives at"
        " /graphql (GraphiQL in a browser; the schema is in its docs pane).",
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(_schemas())
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `tallyql keys create` or the one `serve --demo` prints.",
        }
    }
    doc["security"] = [{SECURITY_SCHEME: []}]
    for (path, method), operation in _operations().items():
        generated = doc["paths"][path][method]
        generated.pop("parameters", None)
        generated["responses"] = {}
        generated.update(operation)
    for path in PUBLIC_PATHS & doc["paths"].keys():
        for operation in doc["paths"][path].values():
            operation["security"] = []
            operation["tags"] = ["Operations"]
    return doc


def install_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Replaces FastAPI's generated document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    # unchecked below: FastAPI's documented way to replace the schema
    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
