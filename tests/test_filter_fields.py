"""`filter` on the fields that take one beside overview: timeseries, breakdown,
hourlyDistribution, errors, costInsights, modelComparison, dailyCostByModel and gateways, each
checked against a recomputation from the events that the filter selects
(tests/support/reference.py's `matches`), so a field that ignored its filter would answer for
all of them and fail."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from tests.conftest import Api
from tests.support.ops_data import RANGE, traffic, ts_of
from tests.support.reference import matches, normalise

QUERY = """query($r: TimeRangeInput!, $f: EventFilter) {
  timeseries(metrics: [REQUESTS, COST_USD], range: $r, granularity: HOUR, filter: $f) {
    series { metric values } }
  breakdown(dimension: MODEL, metrics: [REQUESTS, COST_USD], range: $r, filter: $f, first: 50) {
    nodes { key values } }
  hourlyDistribution(metric: REQUESTS, range: $r, filter: $f)
  errors(range: $r, filter: $f) { totalErrors errorRate byType { type count } }
  costInsights(range: $r, filter: $f) { totalUsd topUsers { key costUsd requests } }
  modelComparison(models: [{model: "gpt-4o"}, {model: "claude-sonnet-4-5"}], range: $r,
                  filter: $f) { model requests costUsd inputTokens outputTokens }
  dailyCostByModel(range: $r, filter: $f, top: 8) { series { model isOther totalUsd } totals }
  gateways(range: $r, filter: $f, first: 10) { nodes { gateway requests errors costUsd } }
}"""

FILTERS = {
    "users": ({"users": ["u1", "u2", "u4"]}, {"users": {"u1", "u2", "u4"}}),
    "gateway-and-kinds": (
        {"gateways": ["g1"], "kinds": ["LLM_CALL", "TOOL_CALL"]},
        {"gateways": {"g1"}, "kinds": {"llm_call", "tool_call"}},
    ),
}


def cost(events: list[dict[str, Any]]) -> Any:
    return pytest.approx(sum(e.get("cost_usd", 0.0) for e in events), abs=1e-9)


@pytest.mark.parametrize("name", sorted(FILTERS))
async def test_every_field_applies_its_filter(api: Api, name: str) -> None:
    graphql_filter, spec = FILTERS[name]
    key = await api.key()
    events = traffic(seed=21, sessions=30, loose=60)
    assert (await api.ingest(key, events))["accepted"] == len(events)
    chosen = [e for e in map(normalise, events) if matches(e, spec, {})]
    assert 20 < len(chosen) < len(events) * 3 // 4  # the filter keeps some, and far from all
    got = await api.data(key, QUERY, {"r": RANGE, "f": graphql_filter})

    by_hour: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in chosen:
        by_hour[ts_of(e).hour].append(e)
    requests, costs = got["timeseries"]["series"]
    assert (requests["metric"], costs["metric"]) == ("REQUESTS", "COST_USD")
    assert requests["values"] == [len(by_hour[h]) for h in range(24)]
    assert costs["values"] == [cost(by_hour[h]) for h in range(24)]
    assert got["hourlyDistribution"] == [len(by_hour[h]) for h in range(24)]

    by_model: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for e in chosen:
        by_model[e.get("model")].append(e)
    breakdown = {n["key"]: n["values"] for n in got["breakdown"]["nodes"]}
    assert breakdown == {m: [len(v), cost(v)] for m, v in by_model.items()}

    failed = [e for e in chosen if e["status"] == "error"]
    assert got["errors"]["totalErrors"] == len(failed) > 0
    assert got["errors"]["errorRate"] == pytest.approx(len(failed) / len(chosen))
    by_type = {t["type"]: t["count"] for t in got["errors"]["byType"]}
    assert by_type == Counter(e["error_type"] for e in failed)

    insights = got["costInsights"]
    assert insights["totalUsd"] == cost(chosen)
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in chosen:
        if e.get("user_id"):
            by_user[e["user_id"]].append(e)
    assert insights["topUsers"]
    for share in insights["topUsers"]:
        mine = by_user[share["key"]]
        assert (share["requests"], share["costUsd"]) == (len(mine), cost(mine)), share

    for row in got["modelComparison"]:
        mine = by_model[row["model"]]
        assert row["requests"] == len(mine) > 0, row["model"]
        assert row["costUsd"] == cost(mine)
        assert row["inputTokens"] == sum(e["input_tokens"] for e in mine)
        assert row["outputTokens"] == sum(e["output_tokens"] for e in mine)

    daily = got["dailyCostByModel"]
    assert sum(daily["totals"]) == cost(chosen)
    for series in daily["series"]:
        if not series["isOther"]:
            assert series["totalUsd"] == cost(by_model[series["model"]]), series["model"]

    by_gateway: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in chosen:
        if e.get("gateway"):
            by_gateway[e["gateway"]].append(e)
    gateways = {n["gateway"]: n for n in got["gateways"]["nodes"]}
    assert set(gateways) == set(by_gateway)
    for gateway, mine in by_gateway.items():
        node = gateways[gateway]
        errors = sum(e["status"] == "error" for e in mine)
        assert (node["requests"], node["errors"]) == (len(mine), errors), gateway
        assert node["costUsd"] == cost(mine)
