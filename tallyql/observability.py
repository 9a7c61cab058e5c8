"""Prometheus metrics of one server (a registry per app, so tests can run several)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from tallyql.ingest.validate import IngestResult
from tallyql.storage.standbys import PRIMARY, STATES, StandbyRouter


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

    def watch_standbys(self, router: StandbyRouter) -> None:
        """Report the hot standbys' state, lag and share of reads at every scrape."""
        self.registry.register(StandbyCollector(router))

    def observe_ingest(self, result: IngestResult) -> None:
        self.events_ingested.inc(result.accepted)
        self.events_rejected.inc(result.rejected)
        self.events_duplicated.inc(result.duplicates)

    def observe_batch(self, events: int, _new: int, seconds: float) -> None:
        self.batch_size.observe(events)
        self.commit_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StandbyCollector(Collector):
    """The read replicas as the router last saw them (TALLYQL_DATABASE_READ_URLS)."""

    def __init__(self, router: StandbyRouter) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        router = self.router
        state = GaugeMetricFamily(
            "tallyql_standby_state",
            "1 for each standby's current state (streaming: used for reads; lagging, down, "
            "not_in_recovery: skipped; unknown: not checked yet).",
            labels=["standby", "state"],
        )
        lag = GaugeMetricFamily(
            "tallyql_standby_lag_seconds",
            "How far each standby's replay is behind the primary, in seconds (0: caught up).",
            labels=["standby"],
        )
        reads = CounterMetricFamily(
            "tallyql_reads",
            "Requests routed to the standbys, by the database that answered them (primary: no "
            "standby was healthy and fresh enough in time).",
            labels=["database"],
        )
        reads.add_metric([PRIMARY], router.primary_reads)
        for standby in router.standbys:
            for name in STATES:
                state.add_metric([standby.name, name], 1.0 if standby.state == name else 0.0)
            if standby.lag_seconds is not None:
                lag.add_metric([standby.name], standby.lag_seconds)
            reads.add_metric([standby.name], standby.reads)
        waits = SummaryMetricFamily(
            "tallyql_read_wait_seconds",
            "Time requests waited for a standby to replay the commits they must show.",
            count_value=router.wait_count,
            sum_value=router.wait_seconds_total,
        )
        yield from (state, lag, reads, waits)
