"""The real OpenTelemetry SDK as the client of `bench/ingest.py --otlp-sdk`.

Each client is its own process (the SDK exporter is synchronous, and one Python process could
not load the server). Two modes:

- export: each process calls `OTLPSpanExporter.export` with batches of `batch` spans, one after
  the other, as fast as the server acknowledges them (an acknowledged export is committed);
- processor: each process creates spans at an offered rate through a `BatchSpanProcessor` with
  its default settings (queue 2,048, batches of 512, every 5 s); the processor drops spans when
  its queue is full, which the stored count then shows.

Spans carry `gen_ai.*` attributes, a third of them OpenInference ones (`llm.*`) instead, with
the demo generator's values and timestamps spread over `days`.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_bodies import INT_ATTRIBUTES, OPERATIONS, STRING_ATTRIBUTES, _ns

from tallyql.demo.generator import generate_events

OPENINFERENCE = {
    "model": "llm.model_name",
    "provider": "llm.provider",
    "session_id": "session.id",
    "user_id": "user.id",
    "tool": "tool.name",
    "input_tokens": "llm.token_count.prompt",
    "output_tokens": "llm.token_count.completion",
    "cache_read_tokens": "llm.token_count.prompt_details.cache_read",
}
OI_KINDS = {"llm_call": "LLM", "tool_call": "TOOL", "agent_run": "AGENT"}


def attributes(event: dict[str, Any], openinference: bool) -> dict[str, Any]:
    """The span attributes an instrumentation would set for a demo event."""
    kind = event.get("kind", "llm_call")
    if openinference:
        attrs: dict[str, Any] = {"openinference.span.kind": OI_KINDS.get(kind, "LLM")}
        for name, key in OPENINFERENCE.items():
            if event.get(name):
                attrs[key] = event[name]
    else:
        attrs = {"gen_ai.operation.name": OPERATIONS.get(kind, "chat")}
        for name, key in (*STRING_ATTRIBUTES.items(), *INT_ATTRIBUTES.items()):
            if event.get(name):
                attrs[key] = event[name]
        if event.get("ttft_ms"):
            attrs["gen_ai.response.time_to_first_chunk"] = event["ttft_ms"] / 1000
    if event.get("status") == "error":
        attrs["error.type"] = event.get("error_type") or "other"
    return attrs


def make_spans(count: int, days: float, seed: int) -> list[ReadableSpan]:
    """`count` finished SDK spans with demo values, started over the last `days`."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"bench-{seed}"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench.genai")
    for i, event in enumerate(generate_events(count, days, seed=seed)):  # type: ignore[arg-type]
        start = _ns(event["timestamp"])
        span = tracer.start_span(
            OPERATIONS.get(event.get("kind", "llm_call"), "chat"),
            start_time=start,
            attributes=attributes(event, openinference=i % 3 == 2),
        )
        span.end(end_time=start + int((event.get("latency_ms") or 0) * 1_000_000))
    provider.shutdown()
    return list(memory.get_finished_spans())


class TimedExporter(OTLPSpanExporter):
    """The SDK exporter, recording how long each export takes to be acknowledged."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latencies: list[float] = []
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        started = time.perf_counter()
        result = super().export(spans)
        self.latencies.append(time.perf_counter() - started)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result


@dataclass
class ClientResult:
    exported: int = 0
    failed: int = 0
    created: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class Plan:
    url: str
    key: str
    spans: int
    """Spans per client."""
    batch: int
    days: float
    rate: float | None
    """Offered spans/s per client (processor mode); None: export mode."""


def _exporter(plan: Plan) -> TimedExporter:
    return TimedExporter(
        endpoint=f"{plan.url}/v1/traces",
        headers={"Authorization": f"Bearer {plan.key}"},
        timeout=60,
    )


def _export_client(plan: Plan, seed: int, ready: Any, go: Any, out: Any) -> None:
    spans = make_spans(plan.spans, plan.days, seed)
    exporter = _exporter(plan)
    ready.release()
    go.wait()
    for start in range(0, len(spans), plan.batch):
        exporter.export(spans[start : start + plan.batch])
    exporter.shutdown()
    out.put(ClientResult(exporter.exported, exporter.failed, len(spans), exporter.latencies))


def _processor_client(plan: Plan, seed: int, ready: Any, go: Any, out: Any) -> None:
    assert plan.rate is not None
    events = list(generate_events(plan.spans, plan.days, seed=seed))  # type: ignore[arg-type]
    prepared = [attributes(e, openinference=i % 3 == 2) for i, e in enumerate(events)]
    exporter = _exporter(plan)
    provider = TracerProvider(resource=Resource.create({"service.name": f"bench-{seed}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))  # the SDK's default settings
    tracer = provider.get_tracer("bench.genai")
    ready.release()
    go.wait()
    started = time.perf_counter()
    for i, (event, attrs) in enumerate(zip(events, prepared, strict=True)):
        due = started + i / plan.rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        start = _ns(event["timestamp"])
        span = tracer.start_span("chat", start_time=start, attributes=attrs)
        span.end(end_time=start + int((event.get("latency_ms") or 0) * 1_000_000))
    provider.shutdown()  # flushes what the queue still holds
    out.put(ClientResult(exporter.exported, exporter.failed, len(events), exporter.latencies))


def run_clients(
    plan: Plan, processes: int, seed: int, before: Callable[[], None] | None = None
) -> tuple[list[ClientResult], float]:
    """Start the clients, wait until each has its spans ready, then release them together;
    their results and the seconds from the release to the last client's end."""
    context = multiprocessing.get_context("spawn")
    ready = context.Semaphore(0)
    go = context.Event()
    out = context.Queue()
    target = _export_client if plan.rate is None else _processor_client
    workers = [
        context.Process(target=target, args=(plan, seed * 1000 + i, ready, go, out))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    if before is not None:
        before()
    started = time.perf_counter()
    go.set()
    results = [out.get() for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    return results, elapsed
