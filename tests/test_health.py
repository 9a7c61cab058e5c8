"""GET /health and GET /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.support.helpers import llm


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_health_reports_database_writer_and_tasks(api: Api, db_kind: str) -> None:
    response = await api.client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"dialect": db_kind, "reachable": True}
    assert body["writer"]["alive"] is True
    assert body["writer"]["queue_depth"] == 0
    assert body["background_tasks"]["writer"] is True
    assert all(body["background_tasks"].values())
    key = await api.key()
    await api.ingest(key, [llm(f"h{i}") for i in range(7)])
    body = (await api.client.get("/health")).json()
    assert body["writer"]["events_committed"] == 7
    assert body["writer"]["last_batch_size"] == 7
    assert body["writer"]["batches"] == 1


async def test_health_degrades_when_the_database_is_unreachable(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable() -> bool:
        return False

    monkeypatch.setattr(api.services.db, "ping", unreachable)
    response = await api.client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["database"]["reachable"] is False


async def test_metrics_count_events_and_requests_by_route(api: Api) -> None:
    key = await api.key()
    await api.ingest(key, [llm("m1"), llm("m2"), llm("m3", input_tokens=-1)])
    await api.ingest(key, [llm("m1"), llm("m4")])
    await api.data(key, "{ me { role } }")
    await api.client.get("/no/such/route")
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    def value(name: str, **labels: Any) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("tallyql_events_ingested_total") == 3
    assert value("tallyql_events_rejected_total") == 1
    assert value("tallyql_events_duplicate_total") == 1
    assert (
        value("tallyql_http_requests_total", route="/v1/events", method="POST", status="200") == 2
    )
    assert value("tallyql_http_requests_total", route="/graphql", method="POST", status="200") == 1
    assert value("tallyql_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert (
        value("tallyql_http_request_duration_seconds_count", route="/v1/events", method="POST") == 2
    )
    assert value("tallyql_writer_batch_events_count") == 2
    assert value("tallyql_writer_batch_events_sum") == 4  # events handed to the writer
    assert value("tallyql_writer_commit_seconds_count") == 2
    assert value("tallyql_writer_queue_events") == 0
    # no label carries a raw path (only templates), so cardinality stays bounded
    routes = {dict(labels).get("route") for (name, labels) in samples if "http" in name}
    assert routes - {None} <= {"/v1/events", "/graphql", "unmatched", "/metrics"}
