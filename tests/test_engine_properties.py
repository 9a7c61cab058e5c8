"""Every metric under every dimension, through the API, equals a plain-Python recomputation
from the same random events: on both databases, through the rollup path and forced onto raw
events. Timestamps straddle the 2026 DST changes of Europe and the US."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tallyql.config import Settings
from tests.conftest import Api
from tests.support.engine_properties import (
    BASE,
    QUERY,
    SPAN,
    ask,
    compare,
    dimension_choices,
    event_fields,
    expected,
    graphql_filter,
    property_event,
    questions,
    workspace_with,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every metric under two dimensions, hourly, on raw events can cost more than a request's
    default budget (the budget has its own tests, test_request_limits.py): this test checks
    values, so its questions are always answered."""
    return settings.with_overrides(cost_request_limit=10**12)


@hypothesis_settings(
    max_examples=int(os.environ.get("TALLYQL_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    drawn=st.lists(event_fields, min_size=1, max_size=80),
    q=questions(),
)
async def test_metrics_match_recomputation(api: Api, drawn: list[dict[str, Any]], q: dict) -> None:
    events = [property_event(i, d) for i, d in enumerate(drawn)]
    key = await workspace_with(api, events)
    want = expected(events, q)
    compare(want, await ask(api, key, q, raw=False), "planned")
    compare(want, await ask(api, key, q, raw=True), "raw", exact=True)


async def test_every_dimension_on_a_fixed_dataset(api: Api) -> None:
    events: list[dict[str, Any]] = []
    rng = random.Random(7)
    providers, users, tags = ["openai", "anthropic", None], ["u1", "u2", "u3", None], ["a", "b"]
    for i in range(400):
        ts = BASE + timedelta(seconds=rng.randrange(int(SPAN.total_seconds())))
        event: dict[str, Any] = {
            "id": f"fx-{i}",
            "timestamp": ts.isoformat(),
            "status": rng.choice(["success"] * 6 + ["error", "blocked"]),
            "latency_ms": rng.uniform(1, 9000),
            "input_tokens": rng.randrange(5000),
            "output_tokens": rng.randrange(500),
            "cost_usd": rng.randrange(100000) / 1e6,
            "tags": rng.sample(tags, rng.randrange(3)),
            "metadata": {"env": rng.choice(["prod", "dev"])},
        }
        for field, values in (
            ("provider", providers),
            ("user_id", users),
            ("model", ["m1", "m2"]),
            ("agent_id", ["ag", None]),
            ("tool", ["t1", None]),
            ("gateway", ["g1", "g2"]),
            ("api_key_id", ["k1", None]),
            ("session_id", ["s1", "s2"]),
            ("policy_id", ["p1", None]),
            ("status_code", [200, 404, 429, 503, None]),
        ):
            value = rng.choice(values)
            if value is not None:
                event[field] = value
        events.append(event)
    key = await workspace_with(api, events)
    for dimension in [*dimension_choices, "METADATA"]:
        for granularity in (None, "DAY"):
            q = {
                "start": BASE + timedelta(hours=5, minutes=17),
                "length": timedelta(days=9, hours=3),
                "zone": "America/New_York",
                "granularity": granularity,
                "dimensions": [dimension],
                "filter": {},
            }
            want = expected(events, q)
            compare(want, await ask(api, key, q, raw=False), f"{dimension}/{granularity}")
            raw = await ask(api, key, q, raw=True)
            compare(want, raw, f"{dimension}/{granularity}/raw", exact=True)


SUMS = ["REQUESTS", "ERRORS", "BLOCKED", "TOTAL_TOKENS", "COST_USD", "REQUEST_BYTES"]


async def _sums(api: Api, key: str, q: dict[str, Any], dims: list[str]) -> dict[Any, list]:
    start: datetime = q["start"]
    variables = {
        "q": {
            "metrics": SUMS,
            "range": {"start": start.isoformat(), "end": (start + q["length"]).isoformat()},
            "dimensions": [{"dimension": d} for d in dims],
            "filter": graphql_filter(q["filter"]),
            "limit": 10_000,
        }
    }
    body = (
        await api.client.post(
            "/graphql",
            json={"query": QUERY, "variables": variables},
            headers={"Authorization": f"Bearer {key}"},
        )
    ).json()
    assert "errors" not in body, body
    return {tuple(r["keys"]): r["values"] for r in body["data"]["metrics"]["rows"]}


@hypothesis_settings(
    max_examples=int(os.environ.get("TALLYQL_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=st.lists(event_fields, min_size=1, max_size=60), q=questions())
async def test_department_rows_sum_to_the_total(api: Api, drawn: list[dict], q: dict) -> None:
    """For any filter, every additive figure summed over DEPARTMENT rows (null included) is
    the total: each event counts in exactly one department row."""
    events = [property_event(i, d) for i, d in enumerate(drawn)]
    key = await workspace_with(api, events)
    total = await _sums(api, key, q, [])
    rows = await _sums(api, key, q, ["DEPARTMENT"])
    want = total.get((), [0] * len(SUMS))
    for i, metric in enumerate(SUMS):
        summed = sum(values[i] for values in rows.values())
        assert summed == pytest.approx(want[i], rel=1e-9, abs=1e-9), metric
