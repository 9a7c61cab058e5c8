"""Prometheus metrics of one server (a registry per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tallyql.ingest.validate import IngestResult


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "tallyql_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "tallyql_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.graphql_shared_answers = Counter(
            "tallyql_graphql_shared_answers_total",
            "GraphQL queries answered by a computation an identical query started "
            "(TALLYQL_SHARE_IDENTICAL_QUERIES).",
            registry=self.registry,
        )
        self.events_ingested = Counter(
            "tallyql_events_ingested_total", "Events newly stored.", registry=self.registry
        )
        self.events_rejected = Counter(
            "tallyql_events_rejected_total",
            "Events rejected by validation.",
            registry=self.registry,
        )
        self.events_duplicated = Counter(
            "tallyql_events_duplicate_total",
            "Events already stored (idempotent retries).",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tallyql_writer_batch_events",
            "Events per writer transaction (group commit).",
            registry=self.registry,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
        )
        self.commit_latency = Histogram(
            "tallyql_writer_commit_seconds",
            "Duration of one writer transaction.",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.queue_depth = Gauge(
            "tallyql_writer_queue_events", "Events waiting for the writer.", registry=self.registry
        )

    def observe_ingest(self, result: IngestResult) -> None:
        self.events_ingested.inc(result.accepted)
        self.events_rejected.inc(result.rejected)
        self.events_duplicated.inc(result.duplicates)

    def observe_batch(self, events: int, _new: int, seconds: float) -> None:
        self.batch_size.observe(events)
        self.commit_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
