"""`X-Tallyql-Plan: raw` computes latency and TTFT percentiles exactly (linear interpolation
between the closest ranks, as NumPy's default), on both databases, so that the planned answer
(DDSketch, within 1 %) can be checked against it; explain states each plan's error bound."""

from __future__ import annotations

import itertools
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api

BASE = datetime(2026, 11, 20, tzinfo=UTC)
RANGE = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"}
PERCENTILES = {"P50_LATENCY_MS": 0.5, "P95_LATENCY_MS": 0.95, "P99_LATENCY_MS": 0.99}
QUERY = """query($q: MetricsQueryInput!) {
  metrics(query: $q) { rows { bucket keys values } }
}"""
_workspaces = itertools.count()


def _events(latencies: list[float], ttfts: list[float | None], prefix: str) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            # minutes past the hour: the planned path reads raw edges and hour rows alike
            "timestamp": (BASE + timedelta(hours=1 + i % 20, minutes=i % 60)).isoformat(),
            "provider": "openai",
            "model": "gpt-4o" if i % 3 else "gpt-4o-mini",
            "latency_ms": latency,
            **({"ttft_ms": ttft} if ttft is not None else {}),
        }
        for i, (latency, ttft) in enumerate(zip(latencies, ttfts, strict=True))
    ]


async def _ask(
    api: Api, key: str, raw: bool, dimensions: list[str] | None = None
) -> tuple[dict[tuple[Any, ...], list[float | None]], list[dict[str, Any]]]:
    headers = {"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"}
    if raw:
        headers["X-Tallyql-Plan"] = "raw"
    variables = {
        "q": {
            "metrics": [*PERCENTILES, "P95_TTFT_MS"],
            "range": RANGE,
            "dimensions": [{"dimension": d} for d in dimensions or []],
        }
    }
    response = await api.client.post(
        "/graphql", json={"query": QUERY, "variables": variables}, headers=headers
    )
    body = response.json()
    assert "errors" not in body, body
    rows = body["data"]["metrics"]["rows"]
    return {tuple(r["keys"]): r["values"] for r in rows}, body["extensions"]["plans"]


def _numpy(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q, method="linear")) if values else None


def _expected(latencies: list[float], ttfts: list[float | None]) -> list[float | None]:
    present = [t for t in ttfts if t is not None]
    return [*(_numpy(latencies, q) for q in PERCENTILES.values()), _numpy(present, 0.95)]


async def test_raw_percentiles_are_numpys_and_explain_states_the_bound(api: Api) -> None:
    rng = random.Random(15)
    latencies = [round(rng.lognormvariate(6, 1.2), 3) for _ in range(37)] + [5.0, 12.5, 12.5]
    ttfts = [rng.choice([None, round(rng.uniform(20, 900), 2)]) for _ in latencies]
    key = await api.key()
    assert (await api.ingest(key, _events(latencies, ttfts, "e")))["accepted"] == len(latencies)
    want = _expected(latencies, ttfts)
    raw, raw_plans = await _ask(api, key, raw=True)
    assert raw[()] == pytest.approx(want, rel=1e-12)  # exact, not within 1 %
    histograms = [p for p in raw_plans if p["group"].startswith("histogram:")]
    assert {p["group"] for p in histograms} == {"histogram:latency", "histogram:ttft"}
    for plan in histograms:
        assert plan["source"] == "raw"
        assert plan["percentile_relative_error"] == 0.0
        assert plan["percentiles"].startswith("exact")
    planned, plans = await _ask(api, key, raw=False)
    for got, exact in zip(planned[()], want, strict=True):
        assert exact is not None and got is not None
        assert abs(got - exact) <= 0.01 * exact  # the bound explain states
    for plan in (p for p in plans if p["group"].startswith("histogram:")):
        assert plan["source"].startswith("histogram:")  # answered from rollups
        assert plan["percentile_relative_error"] == 0.01
        assert "1% relative" in plan["percentiles"]
    assert all("percentiles" not in p for p in plans if not p["group"].startswith("histogram:"))
    # per group (model), each exact on its own events
    by_model, _ = await _ask(api, key, raw=True, dimensions=["MODEL"])
    for model in ("gpt-4o", "gpt-4o-mini"):
        mine = [i for i in range(len(latencies)) if (model == "gpt-4o") == bool(i % 3)]
        expected = _expected([latencies[i] for i in mine], [ttfts[i] for i in mine])
        assert by_model[(model,)] == pytest.approx(expected, rel=1e-12)


latency = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(
    max_examples=int(os.environ.get("TALLYQL_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    latencies=st.lists(latency, min_size=1, max_size=40),
    ttft_seed=st.integers(0, 2**32 - 1),
)
async def test_raw_percentiles_equal_numpy_for_any_small_set(
    api: Api, latencies: list[float], ttft_seed: int
) -> None:
    rng = random.Random(ttft_seed)
    ttfts = [rng.choice([None, x / 3]) for x in latencies]
    key = await api.key(workspace=f"raw-{next(_workspaces)}")
    assert (await api.ingest(key, _events(latencies, ttfts, "p")))["accepted"] == len(latencies)
    raw, _ = await _ask(api, key, raw=True)
    want = _expected(latencies, ttfts)
    for got, exact in zip(raw[()], want, strict=True):
        assert got == (None if exact is None else pytest.approx(exact, rel=1e-12, abs=1e-12))
