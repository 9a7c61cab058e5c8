"""The real OpenTelemetry SDK log and metric exporters (OTLP/HTTP protobuf, gzip) against a
running `tallyql serve`, sending what Claude Code sends: `claude_code.api_request` and
`claude_code.tool_result` log records, and its cost and token counters (here cumulative,
the Python SDK's default temporality, which the store turns into deltas)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from sqlalchemy import select

from tallyql.money import to_nano
from tallyql.storage.database import Database
from tallyql.storage.tables import events, metric_points, metric_series
from tests.support.server import create_key, reset_database, start_server


def _read(database_url: str, query: Any) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        db = Database(database_url)
        try:
            async with db.read() as conn:
                return [dict(r) for r in (await conn.execute(query)).mappings()]
        finally:
            await db.dispose()

    return asyncio.run(read())


COMMON = {"session.id": "sdk-session", "user.email": "ada@example.com", "user.id": "dev-1"}


def test_sdk_log_and_metric_exporters(database_url: str, tmp_path: Path) -> None:
    asyncio.run(reset_database(database_url))
    key = create_key(database_url, tmp_path, role="ingest")
    server = start_server(database_url, tmp_path)
    resource = Resource.create({"service.name": "claude-code", "service.version": "2.0.14"})
    headers = {"Authorization": f"Bearer {key}"}
    try:
        log_exporter = OTLPLogExporter(
            endpoint=f"{server.url}/v1/logs", headers=headers, compression=Compression.Gzip
        )
        logs = LoggerProvider(resource=resource)
        logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        logger = logs.get_logger("com.anthropic.claude_code.events")
        for _ in range(2):  # the same record twice: one event (its identity is its content)
            logger.emit(
                LogRecord(
                    timestamp=1_796_000_000_000_000_000,
                    body="claude_code.api_request",
                    attributes={
                        **COMMON,
                        "event.name": "api_request",
                        "model": "claude-sonnet-4-5",
                        "input_tokens": 100,
                        "output_tokens": 20,
                        "cache_read_tokens": 400,
                        "cache_creation_tokens": 0,
                        "cost_usd": 0.004,
                        "duration_ms": 900,
                    },
                )
            )
        logger.emit(
            LogRecord(
                timestamp=1_796_000_001_000_000_000,
                body="claude_code.tool_result",
                attributes={
                    **COMMON,
                    "event.name": "tool_result",
                    "tool_name": "Edit",
                    "success": "true",
                    "duration_ms": 30,
                },
            )
        )
        logger.emit(LogRecord(timestamp=1_796_000_002_000_000_000, body="unrelated line"))
        logs.shutdown()

        metric_exporter = OTLPMetricExporter(
            endpoint=f"{server.url}/v1/metrics", headers=headers, compression=Compression.Gzip
        )
        reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
        meters = MeterProvider(resource=resource, metric_readers=[reader])
        meter = meters.get_meter("com.anthropic.claude_code")
        cost = meter.create_counter("claude_code.cost.usage", unit="USD")
        tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
        cost.add(0.004, {**COMMON, "model": "claude-sonnet-4-5"})
        tokens.add(100, {**COMMON, "model": "claude-sonnet-4-5", "type": "input"})
        assert meters.force_flush()
        cost.add(0.006, {**COMMON, "model": "claude-sonnet-4-5"})
        tokens.add(50, {**COMMON, "model": "claude-sonnet-4-5", "type": "input"})
        assert meters.force_flush()
        meters.shutdown()
    finally:
        server.stop()
    rows = _read(database_url, select(events))
    assert len(rows) == 2
    call = next(r for r in rows if r["kind"] == "llm_call")
    assert (call["model"], call["input_tokens"], call["output_tokens"]) == (
        "claude-sonnet-4-5",
        500,
        20,
    )
    assert (call["cost_nanousd"], call["cost_source"], call["latency_ms"]) == (
        to_nano(0.004),
        "provided",
        900,
    )
    assert (call["session_id"], call["user_id"], call["agent_id"]) == (
        "sdk-session",
        "ada@example.com",
        "claude-code",
    )
    tool = next(r for r in rows if r["kind"] == "tool_call")
    assert (tool["tool"], tool["status"], tool["latency_ms"]) == ("Edit", "success", 30)

    series = {r["id"]: r for r in _read(database_url, select(metric_series))}
    points = _read(database_url, select(metric_points))
    totals: dict[str, float] = {}
    for p in points:
        name = series[p["series_id"]]["name"]
        totals[name] = totals.get(name, 0) + p["value"]
    # two cumulative exports (0.004 then 0.010): stored as deltas that add up to 0.010
    assert abs(totals["claude_code.cost.usage"] - 0.010) < 1e-12
    assert totals["claude_code.token.usage"] == 150
    # three exports per series (two flushes and the shutdown's), the last one adding nothing
    assert len(points) == 6
    assert sorted(p["value"] for p in points if series[p["series_id"]]["unit"] == "tokens") == [
        0,
        50,
        100,
    ]
    token_series = next(s for s in series.values() if s["name"] == "claude_code.token.usage")
    assert token_series["attributes"]["type"] == "input"
    assert token_series["attributes"]["service.name"] == "claude-code"
