"""Backpressure the OpenTelemetry SDK understands: with a writer queue far too small for the
offered load, `/v1/traces` answers 503 with `Retry-After` (OTLP/HTTP's "server overloaded"),
the real `OTLPSpanExporter` waits and retries, and every span ends up stored exactly once."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.otlp_spans import span_hex, stored_spans
from tests.support.server import create_key, reset_database, start_server

CLIENTS = 8
EXPORTS = 6
SPANS = 60  # per export; the writer queue holds fewer, so concurrent exports are refused


def _spans(client: int) -> list[list[ReadableSpan]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"client-{client}"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.backpressure")
    for i in range(EXPORTS * SPANS):
        with tracer.start_as_current_span(f"chat {i}") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 100 + i,
                    "gen_ai.usage.output_tokens": 10 + client,
                }
            )
    provider.shutdown()
    finished = list(memory.get_finished_spans())
    return [finished[i : i + SPANS] for i in range(0, len(finished), SPANS)]


def _busy_answers(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pattern = r'tallyql_http_requests_total\{[^}]*route="/v1/traces"[^}]*status="503"[^}]*\} (\S+)'
    return sum(float(m) for m in re.findall(pattern, text))


def test_exporters_lose_nothing_across_a_saturation_episode(
    database_url: str, tmp_path: Path
) -> None:
    asyncio.run(reset_database(database_url))
    key = create_key(database_url, tmp_path, role="ingest")
    batches = [_spans(c) for c in range(CLIENTS)]
    server = start_server(
        database_url,
        tmp_path,
        extra_env={
            "TALLYQL_WRITER_QUEUE_EVENTS": str(SPANS // 2),
            "TALLYQL_WRITER_CONNECTIONS": "1",
        },
    )
    try:

        def client(exports: list[list[ReadableSpan]]) -> list[SpanExportResult]:
            exporter = OTLPSpanExporter(
                endpoint=f"{server.url}/v1/traces",
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
            try:
                return [exporter.export(spans) for spans in exports]
            finally:
                exporter.shutdown()

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(client, batches))
        elapsed = time.monotonic() - started
        busy = _busy_answers(server.url)
    finally:
        server.stop()
    assert results == [[SpanExportResult.SUCCESS] * EXPORTS] * CLIENTS
    assert busy > 0, f"no 503 in {elapsed:.1f} s: the writer was never saturated"
    stored = stored_spans(database_url)
    sent = {span_hex(s) for exports in batches for spans in exports for s in spans}
    assert len(sent) == CLIENTS * EXPORTS * SPANS
    assert set(stored) == sent
    by_id = {span_hex(s): s for exports in batches for spans in exports for s in spans}
    for span_id, row in stored.items():
        attrs = by_id[span_id].attributes or {}
        assert (row["input_tokens"], row["output_tokens"]) == (
            attrs["gen_ai.usage.input_tokens"],
            attrs["gen_ai.usage.output_tokens"],
        )
