"""POST /v1/logs with OTLP/JSON bodies shaped like each coding agent's documented events
(Claude Code, OpenAI Codex CLI, Gemini CLI): calls and tool runs become events with their
tokens, cost, latency, session, user and status; other records are ignored or skipped and
counted; a bad record is rejected alone; re-sent records are duplicates. Also deflate."""

from __future__ import annotations

import time
import zlib
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tallyql.auth.principal import Role
from tallyql.money import to_nano
from tests.conftest import Api
from tests.support.helpers import event_rows, workspace_id_of

NOW_NS = time.time_ns() - 120_000_000_000


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _record(offset_ms: int, attrs: dict[str, Any], body: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "timeUnixNano": str(NOW_NS + offset_ms * 1_000_000),
        "observedTimeUnixNano": str(NOW_NS + offset_ms * 1_000_000),
        "attributes": [_attr(k, v) for k, v in attrs.items()],
    }
    if body is not None:
        record["body"] = {"stringValue": body}
    return record


def _request(service: str, scope: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [_attr("service.name", service), _attr("service.version", "1")]
                },
                "scopeLogs": [{"scope": {"name": scope}, "logRecords": records}],
            }
        ]
    }


CLAUDE_COMMON = {
    "session.id": "cc-session-1",
    "user.id": "device-hash-1",
    "user.email": "ada@example.com",
    "organization.id": "org-1",
    "app.version": "2.0.14",
    "terminal.type": "vscode",
}
CLAUDE = [
    _record(
        0,
        {
            **CLAUDE_COMMON,
            "event.name": "api_request",
            "event.timestamp": "2026-12-06T05:00:00.000Z",
            "prompt.id": "p-1",
            "model": "claude-sonnet-4-5-20250929",
            "input_tokens": 120,
            "output_tokens": 40,
            "cache_read_tokens": 1000,
            "cache_creation_tokens": 200,
            "cost_usd": 0.0123,
            "duration_ms": 2345,
        },
        "claude_code.api_request",
    ),
    _record(
        1,
        {
            **CLAUDE_COMMON,
            "event.name": "api_error",
            "model": "claude-opus-4-1-20250805",
            "error": "Rate limited",
            "status_code": "429",
            "duration_ms": 80,
            "attempt": 2,
        },
        "claude_code.api_error",
    ),
    _record(
        2,
        {
            **CLAUDE_COMMON,
            "event.name": "tool_result",
            "tool_name": "Bash",
            "success": "false",
            "duration_ms": 15,
            "error": "exit code 1",
            "decision": "accept",
            "source": "config",
        },
        "claude_code.tool_result",
    ),
    _record(
        3,
        {**CLAUDE_COMMON, "event.name": "user_prompt", "prompt_length": 42},
        "claude_code.user_prompt",
    ),
    _record(
        4,
        {
            **CLAUDE_COMMON,
            "event.name": "api_request",
            "model": "claude-haiku-4-5",
            "input_tokens": "many",
        },
        "claude_code.api_request",
    ),
]
CODEX_COMMON = {
    "conversation.id": "codex-conv-1",
    "app.version": "0.46.0",
    "auth_mode": "ApiKey",
    "user.account_id": "acct-9",
    "user.email": "bob@example.com",
    "terminal.type": "iTerm.app",
    "model": "gpt-5-codex",
    "slug": "gpt-5-codex",
}
CODEX = [
    _record(
        0,
        {
            **CODEX_COMMON,
            "event.name": "codex.sse_event",
            "event.kind": "response.completed",
            "duration_ms": 5100,
            "input_token_count": 9000,
            "output_token_count": 700,
            "cached_token_count": 6000,
            "reasoning_token_count": 300,
            "tool_token_count": 0,
        },
    ),
    _record(
        1,
        {
            **CODEX_COMMON,
            "event.name": "codex.sse_event",
            "event.kind": "response.output_text.delta",
            "duration_ms": 3,
        },
    ),
    _record(
        2,
        {
            **CODEX_COMMON,
            "event.name": "codex.api_request",
            "attempt": 1,
            "duration_ms": 400,
            "http.response.status_code": 200,
        },
    ),
    _record(
        3,
        {
            **CODEX_COMMON,
            "event.name": "codex.api_request",
            "attempt": 2,
            "duration_ms": 30000,
            "http.response.status_code": 504,
            "error.message": "gateway timeout",
        },
    ),
    _record(
        4,
        {
            **CODEX_COMMON,
            "event.name": "codex.tool_result",
            "tool_name": "shell",
            "call_id": "call_1",
            "arguments": '{"command":["ls"]}',
            "duration_ms": 12,
            "success": "true",
            "output": "README.md",
        },
    ),
    _record(5, {**CODEX_COMMON, "event.name": "codex.user_prompt", "prompt_length": 10}),
]
GEMINI_COMMON = {
    "session.id": "gem-session-1",
    "installation.id": "inst-1",
    "user.email": "cy@example.com",
}
GEMINI = [
    _record(
        0,
        {
            **GEMINI_COMMON,
            "event.name": "gemini_cli.api_response",
            "model": "gemini-2.5-pro",
            "status_code": 200,
            "duration_ms": 1800,
            "input_token_count": 5000,
            "output_token_count": 400,
            "cached_content_token_count": 2000,
            "thoughts_token_count": 250,
            "tool_token_count": 0,
            "total_token_count": 5650,
            "prompt_id": "gp-1",
        },
        "API response from gemini-2.5-pro. Status: 200. Duration: 1800ms.",
    ),
    _record(
        1,
        {
            **GEMINI_COMMON,
            "event.name": "gemini_cli.tool_call",
            "function_name": "read_file",
            "duration_ms": 7,
            "success": True,
            "decision": "auto_accept",
        },
    ),
    _record(
        2, {**GEMINI_COMMON, "event.name": "gemini_cli.api_request", "model": "gemini-2.5-pro"}
    ),
    _record(
        3,
        {
            **GEMINI_COMMON,
            "event.name": "gemini_cli.api_error",
            "model": "gemini-2.5-flash",
            "error": "deadline exceeded",
            "error_type": "DEADLINE_EXCEEDED",
            "duration_ms": 60000,
        },
    ),
]
UNKNOWN = [_record(0, {"event.name": "my.app.started"}, "hello"), _record(1, {}, "plain log line")]


async def _post(
    api: Api, key: str, body: bytes, media: str = "application/json", **headers: str
) -> Any:
    return await api.client.post(
        "/v1/logs",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": media, **headers},
    )


def _by_model_or_tool(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["tool"] or r["model"]: r for r in rows}


async def test_agent_log_records_become_events(api: Api) -> None:
    key = await api.key(role=Role.INGEST)
    body = {
        "resourceLogs": [
            *_request("claude-code", "com.anthropic.claude_code.events", CLAUDE)["resourceLogs"],
            *_request("codex_cli_rs", "codex_otel", CODEX)["resourceLogs"],
            *_request("gemini-cli", "gemini-cli", GEMINI)["resourceLogs"],
            *_request("some-app", "app", UNKNOWN)["resourceLogs"],
        ]
    }
    response = await _post(api, key, orjson.dumps(body))
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1"
    message = partial["errorMessage"]
    assert "log record 4: input_tokens" in message  # the bad Claude Code record, by position
    assert "5 agent record(s) that describe no call were ignored" in message
    assert "2 record(s) of unknown events were skipped" in message
    assert "(unnamed) (1), my.app.started (1)" in message
    workspace = await workspace_id_of(api.services, key)
    rows = await event_rows(api.services, workspace)
    assert len(rows) == 9
    by = _by_model_or_tool(rows)

    sonnet = by["claude-sonnet-4-5-20250929"]
    assert (sonnet["kind"], sonnet["request_type"], sonnet["provider"]) == (
        "llm_call",
        "chat",
        "anthropic",
    )
    # Claude Code's input tokens exclude the cached ones: stored inclusive
    assert (sonnet["input_tokens"], sonnet["output_tokens"]) == (1320, 40)
    assert (sonnet["cache_read_tokens"], sonnet["cache_write_tokens"]) == (1000, 200)
    assert (sonnet["cost_nanousd"], sonnet["cost_source"]) == (to_nano(0.0123), "provided")
    assert sonnet["latency_ms"] == 2345
    assert (sonnet["session_id"], sonnet["user_id"], sonnet["agent_id"]) == (
        "cc-session-1",
        "ada@example.com",
        "claude-code",
    )
    assert sonnet["status"] == "success"
    assert int(sonnet["ts"].timestamp() * 1e6) == NOW_NS // 1000
    assert sonnet["metadata"]["otel.event.name"] == "claude_code.api_request"
    assert sonnet["metadata"]["prompt.id"] == "p-1"
    assert sonnet["metadata"]["user.id"] == "device-hash-1"
    assert sonnet["id"].startswith("otlp-log-")

    opus = by["claude-opus-4-1-20250805"]
    assert (opus["status"], opus["error_type"], opus["status_code"]) == ("error", "rate_limit", 429)
    assert opus["error_message"] == "Rate limited" and opus["latency_ms"] == 80

    bash = by["Bash"]
    assert (bash["kind"], bash["status"], bash["error_type"]) == ("tool_call", "error", "other")
    assert (bash["error_message"], bash["latency_ms"], bash["session_id"]) == (
        "exit code 1",
        15,
        "cc-session-1",
    )

    codex_rows = [r for r in rows if r["agent_id"] == "codex_cli_rs"]
    completed = next(r for r in codex_rows if r["status"] == "success" and r["kind"] == "llm_call")
    assert (completed["model"], completed["provider"]) == ("gpt-5-codex", "openai")
    assert (completed["input_tokens"], completed["output_tokens"]) == (9000, 700)
    assert (completed["cache_read_tokens"], completed["reasoning_tokens"]) == (6000, 300)
    assert completed["cost_source"] == "computed" and completed["cost_nanousd"] > 0
    assert (completed["session_id"], completed["user_id"]) == ("codex-conv-1", "bob@example.com")
    failed = next(r for r in codex_rows if r["status"] == "error")
    assert (failed["status_code"], failed["error_type"], failed["error_message"]) == (
        504,
        "timeout",
        "gateway timeout",
    )
    shell = by["shell"]
    assert (shell["kind"], shell["status"], shell["latency_ms"]) == ("tool_call", "success", 12)
    assert "output" not in shell["metadata"] and shell["metadata"]["call_id"] == "call_1"

    gemini = by["gemini-2.5-pro"]
    # Gemini reports output without thought tokens: stored inclusive
    assert (gemini["input_tokens"], gemini["output_tokens"], gemini["reasoning_tokens"]) == (
        5000,
        650,
        250,
    )
    assert (gemini["cache_read_tokens"], gemini["status_code"], gemini["provider"]) == (
        2000,
        200,
        "google",
    )
    assert (gemini["session_id"], gemini["user_id"], gemini["agent_id"]) == (
        "gem-session-1",
        "cy@example.com",
        "gemini-cli",
    )
    assert by["read_file"]["status"] == "success" and by["read_file"]["latency_ms"] == 7
    flash = by["gemini-2.5-flash"]
    assert (flash["status"], flash["error_type"], flash["error_message"]) == (
        "error",
        "timeout",
        "deadline exceeded",
    )

    # an exporter's retry: every record a duplicate, nothing new
    again = await _post(api, key, orjson.dumps(body))
    assert again.status_code == 200 and again.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    assert len(await event_rows(api.services, workspace)) == 9

    # the sessions and tool views see them
    reader = await api.key()
    data = await api.data(
        reader,
        '{ session(id: "cc-session-1") { requestCount errorCount costUsd userId agentId } }',
    )
    window = {"start": _iso(NOW_NS - 3_600_000_000_000), "end": _iso(NOW_NS + 3_600_000_000_000)}
    views = await api.data(
        reader,
        """query($r: TimeRangeInput!) {
          toolUsage(range: $r) { executions errors uniqueTools activeUsers }
          overview(range: $r, filter: {agents: ["claude-code"]}) { totalRequests costUsd }
        }""",
        {"r": window},
    )
    tools = [r for r in rows if r["kind"] == "tool_call"]
    assert views["toolUsage"] == {
        "executions": len(tools),
        "errors": sum(r["status"] == "error" for r in tools),
        "uniqueTools": len({r["tool"] for r in tools}),
        "activeUsers": len({r["user_id"] for r in tools}),
    }
    claude = [r for r in rows if r["agent_id"] == "claude-code"]
    assert views["overview"]["totalRequests"] == len(claude) == 3
    assert views["overview"]["costUsd"] == pytest.approx(
        sum(r["cost_nanousd"] for r in claude) / 1e9
    )
    session = data["session"]
    assert (session["requestCount"], session["errorCount"]) == (3, 2)
    assert (session["userId"], session["agentId"]) == ("ada@example.com", "claude-code")
    assert (
        session["costUsd"]
        == sum(r["cost_nanousd"] for r in rows if r["session_id"] == "cc-session-1") / 1e9
    )


RECONCILE = """query($groupBy: [String!]) {
  agentMetrics(groupBy: $groupBy) { name group total eventsTotal }
}"""


def _metric(name: str, unit: str, points: list[tuple[dict[str, str], float]]) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "sum": {
            "aggregationTemporality": 1,
            "isMonotonic": True,
            "dataPoints": [
                {
                    "startTimeUnixNano": str(NOW_NS - 60_000_000_000),
                    "timeUnixNano": str(NOW_NS + 10_000_000),
                    "asDouble": value,
                    "attributes": [_attr(k, v) for k, v in attrs.items()],
                }
                for attrs, value in points
            ],
        },
    }


async def test_metrics_reconciled_with_the_events(api: Api) -> None:
    key = await api.key()
    logs = _request("claude-code", "com.anthropic.claude_code.events", CLAUDE[:3])
    logs["resourceLogs"] += _request("gemini-cli", "gemini-cli", GEMINI[:1])["resourceLogs"]
    assert (await _post(api, key, orjson.dumps(logs))).status_code == 200
    sonnet = {"model": "claude-sonnet-4-5-20250929"}
    # the agents' own tallies: Claude Code's cost is one record short (0.0023 more)
    metrics = [
        _metric("claude_code.cost.usage", "USD", [(sonnet, 0.0146)]),
        _metric(
            "claude_code.token.usage",
            "tokens",
            [
                ({**sonnet, "type": "input"}, 120.0),
                ({**sonnet, "type": "output"}, 40.0),
                ({**sonnet, "type": "cacheRead"}, 1000.0),
                ({**sonnet, "type": "cacheCreation"}, 200.0),
            ],
        ),
        _metric(
            "gemini_cli.token.usage",
            "tokens",
            [
                ({"model": "gemini-2.5-pro", "type": "input"}, 5000.0),
                ({"model": "gemini-2.5-pro", "type": "output"}, 400.0),
                ({"model": "gemini-2.5-pro", "type": "thought"}, 250.0),
                ({"model": "gemini-2.5-pro", "type": "cache"}, 2000.0),
                ({"model": "gemini-2.5-pro", "type": "tool"}, 7.0),
            ],
        ),
        _metric("claude_code.commit.count", "count", [({}, 2.0)]),
    ]
    body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": metrics}]}]}
    response = await api.client.post(
        "/v1/metrics", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200 and response.json() == {}
    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    call = next(r for r in rows if r["model"] == sonnet["model"])
    gem = next(r for r in rows if r["model"] == "gemini-2.5-pro")

    by_type = await api.data(key, RECONCILE, {"groupBy": ["type", "model"]})
    got = {
        (g["name"], g["group"]["type"]): (g["total"], g["eventsTotal"])
        for g in by_type["agentMetrics"]
    }
    # recomputed from the stored events the agents' way (their input and output exclude
    # cached and thought tokens; the events store them inclusive)
    assert got[("claude_code.token.usage", "input")] == (
        120,
        call["input_tokens"] - call["cache_read_tokens"] - call["cache_write_tokens"],
    )
    assert got[("claude_code.token.usage", "output")] == (40, call["output_tokens"])
    assert got[("claude_code.token.usage", "cacheRead")] == (1000, call["cache_read_tokens"])
    assert got[("claude_code.token.usage", "cacheCreation")] == (200, call["cache_write_tokens"])
    assert got[("gemini_cli.token.usage", "output")] == (
        400,
        gem["output_tokens"] - gem["reasoning_tokens"],
    )
    assert got[("gemini_cli.token.usage", "thought")] == (250, gem["reasoning_tokens"])
    assert got[("gemini_cli.token.usage", "cache")] == (2000, gem["cache_read_tokens"])
    assert got[("gemini_cli.token.usage", "tool")] == (7, None)
    assert got[("claude_code.commit.count", None)] == (2, None)

    by_model = await api.data(key, RECONCILE, {"groupBy": ["model"]})
    cost = next(g for g in by_model["agentMetrics"] if g["name"] == "claude_code.cost.usage")
    assert cost["group"] == sonnet and cost["total"] == 0.0146
    assert cost["eventsTotal"] == call["cost_nanousd"] / 1e9 == 0.0123  # the events win
    tokens = next(g for g in by_model["agentMetrics"] if g["name"] == "claude_code.token.usage")
    assert tokens["eventsTotal"] == call["input_tokens"] + call["output_tokens"] == 1360
    # a key that names no event column: no reconciliation
    by_terminal = await api.data(key, RECONCILE, {"groupBy": ["terminal.type"]})
    assert {g["eventsTotal"] for g in by_terminal["agentMetrics"]} == {None}


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ns // 1_000_000_000))


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


async def test_protobuf_deflate_and_errors(api: Api) -> None:
    key = await api.key(role=Role.INGEST)
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.append(_kv("service.name", AnyValue(string_value="claude-code")))
    scope = resource.scope_logs.add()
    scope.scope.name = "com.anthropic.claude_code.events"
    record = scope.log_records.add(time_unix_nano=NOW_NS)
    record.body.string_value = "claude_code.api_request"
    record.attributes.extend(
        [
            _kv("event.name", AnyValue(string_value="api_request")),
            _kv("session.id", AnyValue(string_value="s-pb")),
            _kv("model", AnyValue(string_value="claude-sonnet-4-5")),
            _kv("input_tokens", AnyValue(int_value=10)),
            _kv("output_tokens", AnyValue(int_value=5)),
            _kv("cost_usd", AnyValue(double_value=0.5)),
            _kv("duration_ms", AnyValue(double_value=12.5)),
        ]
    )
    other = scope.log_records.add(time_unix_nano=NOW_NS, event_name="claude_code.user_prompt")
    other.attributes.append(_kv("prompt_length", AnyValue(int_value=3)))
    raw = request.SerializeToString()
    response = await _post(
        api, key, zlib.compress(raw), "application/x-protobuf", **{"Content-Encoding": "deflate"}
    )
    assert response.status_code == 200, response.content
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_log_records == 0
    assert (
        "1 agent record(s) that describe no call were ignored"
        in answer.partial_success.error_message
    )
    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    assert [(r["session_id"], r["latency_ms"], r["cost_nanousd"]) for r in rows] == [
        ("s-pb", 12.5, to_nano(0.5))
    ]
    # raw deflate (no zlib header) is read too; a re-send is a duplicate
    packer = zlib.compressobj(wbits=-15)
    response = await _post(
        api,
        key,
        packer.compress(raw) + packer.flush(),
        "application/x-protobuf",
        **{"Content-Encoding": "deflate"},
    )
    assert response.status_code == 200
    assert len(await event_rows(api.services)) == 1
    # a deflate bomb stops at the body limit (413), broken deflate is a 400
    limit = api.services.settings.max_body_bytes
    bomb = zlib.compress(b"\0" * (limit + 10))
    assert len(bomb) < limit
    response = await _post(api, key, bomb, "application/json", **{"Content-Encoding": "deflate"})
    assert response.status_code == 413 and "exceeds" in response.json()["message"]
    response = await _post(
        api, key, zlib.compress(b"{}")[:-3], "application/json", **{"Content-Encoding": "deflate"}
    )
    assert response.status_code == 400
    # OTLP errors: a google.rpc.Status; permissions as on /v1/traces
    viewer = await api.key(role=Role.VIEWER)
    assert (await _post(api, viewer, b"{}")).status_code == 403
    anonymous = await api.client.post(
        "/v1/logs", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert anonymous.status_code == 401 and "message" in anonymous.json()
    assert (await _post(api, key, b"{}", "text/plain")).status_code == 415
    assert (await _post(api, key, b"\xff\xff", "application/x-protobuf")).status_code == 400
    assert (await _post(api, key, b"{}", **{"Content-Encoding": "br"})).status_code == 415
