"""OTLP ingest with the real OpenTelemetry SDK and its OTLP/HTTP exporter against a running
`tallyql serve`: GenAI spans become events, re-sent spans are duplicates, others are skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tallyql.ingest.pricing import TokenUsage
from tests.support.otlp_spans import span_hex, stored_spans
from tests.support.reference_pricing import reference_or_none
from tests.support.server import create_key, reset_database, start_server


def _make_spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.genai")
    with tracer.start_as_current_span("invoke_agent helper") as agent:
        agent.set_attributes(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.id": "agent-7",
                "gen_ai.agent.name": "Helper",
                "gen_ai.conversation.id": "conv-1",
            }
        )
        with tracer.start_as_current_span("chat gpt-4o") as chat:
            chat.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 300,
                    "gen_ai.usage.cache_read.input_tokens": 1000,
                    "gen_ai.conversation.id": "conv-1",
                    "gen_ai.response.time_to_first_chunk": 0.25,
                    "user.id": "u-1",
                }
            )
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_attributes(
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
            )
        with tracer.start_as_current_span("chat claude") as failed:
            failed.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4-5",
                    "error.type": "RateLimitError",
                }
            )
            failed.set_status(Status(StatusCode.ERROR, "slow down"))
        with tracer.start_as_current_span("llm") as oi:
            oi.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.provider": "openai",
                    "llm.token_count.prompt": 50,
                    "llm.token_count.completion": 5,
                    "session.id": "conv-2",
                }
            )
        with tracer.start_as_current_span("GET /health") as plain:
            plain.set_attribute("http.request.method", "GET")
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_real_exporter_to_running_server(database_url: str, tmp_path: Path) -> None:
    asyncio.run(reset_database(database_url))
    key = create_key(database_url, tmp_path, role="ingest")
    server = start_server(database_url, tmp_path)
    try:
        spans = _make_spans()
        exporter = OTLPSpanExporter(
            endpoint=f"{server.url}/v1/traces",
            headers={"Authorization": f"Bearer {key}"},
            compression=Compression.Gzip,
        )
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        first = stored_spans(database_url)
        assert exporter.export(spans) == SpanExportResult.SUCCESS  # a retry: duplicates only
        again = stored_spans(database_url)
        bad = OTLPSpanExporter(
            endpoint=f"{server.url}/v1/traces", headers={"Authorization": "Bearer nope"}
        )
        assert bad.export(spans) == SpanExportResult.FAILURE
        exporter.shutdown()
        bad.shutdown()
    finally:
        server.stop()
    by_name = {s.name: s for s in spans}
    genai = [s for s in spans if s.name != "GET /health"]
    assert set(first) == {span_hex(s) for s in genai}  # the plain HTTP span was skipped
    assert again == first
    chat = first[span_hex(by_name["chat gpt-4o"])]
    span = by_name["chat gpt-4o"]
    assert span.start_time is not None and span.end_time is not None
    assert chat["kind"] == "llm_call" and chat["request_type"] == "chat"
    assert (chat["provider"], chat["model"]) == ("openai", "gpt-4o-2024-08-06")
    assert (chat["input_tokens"], chat["output_tokens"], chat["cache_read_tokens"]) == (
        1200,
        300,
        1000,
    )
    assert chat["session_id"] == "conv-1" and chat["user_id"] == "u-1"
    assert chat["trace_id"] == f"{span.context.trace_id:032x}"
    assert chat["parent_id"] == span_hex(by_name["invoke_agent helper"])
    assert chat["latency_ms"] == (span.end_time - span.start_time) / 1e6
    assert chat["ttft_ms"] == 250.0
    assert int(chat["ts"].timestamp() * 1e6) == span.start_time // 1000
    assert chat["metadata"]["service.name"] == "support-bot"
    want = reference_or_none("openai", "gpt-4o-2024-08-06", TokenUsage(1200, 300, 1000), chat["ts"])
    assert want and chat["cost_nanousd"] == want and chat["cost_source"] == "computed"
    agent = first[span_hex(by_name["invoke_agent helper"])]
    assert (agent["kind"], agent["agent_id"], agent["session_id"]) == (
        "agent_run",
        "agent-7",
        "conv-1",
    )
    tool = first[span_hex(by_name["execute_tool search"])]
    assert (tool["kind"], tool["tool"]) == ("tool_call", "search")
    failed = first[span_hex(by_name["chat claude"])]
    assert (failed["status"], failed["error_type"], failed["error_message"]) == (
        "error",
        "rate_limit",
        "slow down",
    )
    assert failed["provider"] == "anthropic"
    oi = first[span_hex(by_name["llm"])]
    assert (oi["model"], oi["provider"], oi["input_tokens"], oi["output_tokens"]) == (
        "gpt-4o-mini",
        "openai",
        50,
        5,
    )
    assert oi["session_id"] == "conv-2"
