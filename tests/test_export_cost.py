"""REST exports are priced by GraphQL's cost model before any statement runs and paid from the
same budgets (issue 14): stored rows by the rows their window is assumed to hold, engine
answers by their plans. Over the request's budget: 400 COST_LIMIT, no SQL; over the key's
budget per minute: 429 RATE_LIMITED with Retry-After; the cost is in X-Tallyql-Cost."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tallyql.config import Settings
from tallyql.engine import cost_meter, executor
from tallyql.exporting import datasets
from tests.conftest import Api, running_api
from tests.support.helpers import counting_statements, iso

START = datetime(2026, 11, 20, tzinfo=UTC)

# the model's figures, restated (README "Query cost and limits")
ROOT_FIELD = 1
EVENTS_PER_HOUR = 2_000
AUDIT_EVENTS_PER_HOUR = 2_000
SESSIONS_PER_DAY = 500


def stream_price(rows: float) -> int:
    """A statement, 1 point per 10,000 rows read and 1 per 100 rows answered."""
    return 1 + math.ceil(rows / 10_000 + rows / 100)


async def _get(api: Api, key: str, path: str, **params: str) -> httpx.Response:
    return await api.client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})


async def test_exports_pay_for_their_rows_from_the_request_and_key_budgets(
    settings: Settings, db_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cost_meter, "monotonic", lambda: 1000.0)  # no refill during the test
    limited = replace(settings, cost_request_limit=1_000, cost_key_limit_per_minute=600)
    async with running_api(limited, db_kind) as api:
        key = await api.key()
        await api.ingest(key, [{"id": "e1", "timestamp": iso(START + timedelta(hours=1))}])
        ten_hours = {"start": iso(START), "end": iso(START + timedelta(hours=10))}

        response = await _get(api, key, "/v1/export/audit-events", **ten_hours)
        assert response.status_code == 200, response.text
        audit_price = ROOT_FIELD + stream_price(10 * AUDIT_EVENTS_PER_HOUR)
        assert int(response.headers["x-tallyql-cost"]) == audit_price
        assert int(response.headers["x-tallyql-cost-key-remaining"]) == 600 - audit_price

        # requests and sessions also ask the same unpriced question (their cost headers):
        # they differ by the price of their rows
        costs = {}
        for dataset in ("requests", "sessions"):
            response = await _get(api, key, f"/v1/export/{dataset}", format="json", **ten_hours)
            assert response.status_code == 200, response.text
            costs[dataset] = int(response.headers["x-tallyql-cost"])
            if dataset == "requests":
                assert [row["id"] for row in response.json()] == ["e1"]
        rows_price = stream_price(10 * EVENTS_PER_HOUR)
        assert costs["requests"] - costs["sessions"] == rows_price - stream_price(
            10 * SESSIONS_PER_DAY / 24
        )
        assert costs["requests"] > ROOT_FIELD + rows_price
        left = 600 - audit_price - costs["requests"] - costs["sessions"]
        assert int(response.headers["x-tallyql-cost-key-remaining"]) == left

        # a window whose rows cost more than the request's 1,000 points: refused, no SQL
        days = {"start": iso(START), "end": iso(START + timedelta(days=3))}
        with counting_statements(api.services) as statements:
            refused = await _get(api, key, "/v1/export/requests", **days)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "COST_LIMIT"
        assert f"{stream_price(72 * EVENTS_PER_HOUR)} cost points" in error["message"]
        assert error["cost"]["requestLimit"] == 1_000
        assert _beyond_key_lookup(statements) == []

        # the refused request spent what it had left of the key's minute: 429, no SQL
        with counting_statements(api.services) as statements:
            response = await _get(api, key, "/v1/export/audit-events", **ten_hours)
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "RATE_LIMITED"
        assert int(response.headers["retry-after"]) >= 1
        assert _beyond_key_lookup(statements) == []


def _beyond_key_lookup(statements: list[str]) -> list[str]:
    """The statements run besides looking the key up (keys are not cached here)."""
    return [s for s in statements if "FROM api_keys" not in s]


async def test_engine_exports_pay_for_their_plans_before_running_them(
    settings: Settings, db_kind: str, tmp_path: Path
) -> None:
    """A timeseries export by session at hour grain over a week prices its plans above the
    request's budget (50 points here): refused before any statement runs, as the same
    GraphQL question is; one by day fits."""
    async with running_api(replace(settings, cost_request_limit=50), db_kind) as api:
        key = await api.key()
        week = {"start": iso(START), "end": iso(START + timedelta(days=7))}
        with counting_statements(api.services) as statements:
            refused = await _get(
                api, key, "/v1/export/timeseries", granularity="HOUR", groupBy="SESSION",
                metrics="REQUESTS,COST_USD", **week,
            )  # fmt: skip
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "COST_LIMIT"
        assert _beyond_key_lookup(statements) == []
        query = """query($r: TimeRangeInput!) { timeseries(metrics: [REQUESTS, COST_USD],
            granularity: HOUR, groupBy: SESSION, range: $r) { buckets } }"""
        body = await api.graphql(key, query, {"r": week})
        assert body["errors"][0]["extensions"]["code"] == "COST_LIMIT"

        small = await _get(
            api, key, "/v1/export/timeseries", granularity="DAY", metrics="REQUESTS", **week
        )
        assert small.status_code == 200, small.text
        assert 1 < int(small.headers["x-tallyql-cost"]) <= 50


async def test_an_export_whose_read_times_out_answers_503_query_timeout(
    settings: Settings, db_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read the database cancels (made slow here by a test-only statement in its place)
    answers 503 QUERY_TIMEOUT with Retry-After, for stored rows and engine answers alike (it
    was a 500: the soak met one on a loaded machine)."""
    slow = (
        "SELECT pg_sleep(5)"
        if db_kind == "postgresql"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 1e9) SELECT count(*) FROM c"
    )

    async def slow_fetch(db: Any, statement: Any) -> Any:
        async with db.read() as conn:
            await conn.execute(text(slow))
        return []

    async def slow_stream(db: Any, query: Any, shape: Any) -> Any:
        async with db.read_snapshot() as conn:
            await conn.execute(text(slow))
        yield []

    monkeypatch.setattr(executor, "_fetch", slow_fetch)
    monkeypatch.setattr(datasets, "_stream", slow_stream)
    async with running_api(replace(settings, db_statement_timeout_seconds=0.3), db_kind) as api:
        key = await api.key()
        day = {"start": iso(START), "end": iso(START + timedelta(days=1))}
        for dataset in ("requests", "timeseries"):
            response = await _get(api, key, f"/v1/export/{dataset}", **day)
            assert response.status_code == 503, (dataset, response.text)
            assert response.json()["error"]["code"] == "QUERY_TIMEOUT"
            assert int(response.headers["retry-after"]) >= 1
