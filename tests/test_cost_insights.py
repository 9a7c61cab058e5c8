"""costInsights, modelComparison and dailyCostByModel against plain-Python recomputations."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from genai_prices import data_snapshot

from tallyql.ingest.pricing import TokenUsage
from tallyql.money import NANO_PER_USD
from tests.conftest import Api
from tests.support.helpers import event_rows, iso, workspace_id_of
from tests.support.reference_pricing import reference_cost_nano

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START, END = TODAY - timedelta(days=6), TODAY
RANGE = {"start": iso(START), "end": iso(END)}


def _at(days_ago: int, minute: int = 0) -> str:
    return iso(TODAY - timedelta(days=days_ago) + timedelta(hours=9, minutes=minute))


def _events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(**fields: Any) -> None:
        out.append({"id": f"e{len(out)}", "request_type": "chat", **fields})

    for n in range(30):
        add(
            timestamp=_at(1 + n % 3, n),
            provider="openai",
            model="gpt-4o",
            input_tokens=2_000,
            output_tokens=100,
            user_id=f"u{n % 2}",
            agent_id="a1",
            latency_ms=1_000.0,
        )
    for n in range(5):
        add(
            timestamp=_at(2, n),
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=500,
            output_tokens=50,
            user_id="u2",
            latency_ms=200.0,
        )
    for n in range(25):
        add(
            timestamp=_at(4, n),
            provider="anthropic",
            model="claude-sonnet-4-5",
            input_tokens=3_000,
            output_tokens=400,
            user_id="u3",
            agent_id="a2",
        )
    for n, (etype, cost) in enumerate([("rate_limit", 0.5)] * 4 + [("timeout", 0.25)] * 2):
        add(timestamp=_at(5, n), provider="acme", model="house", error_type=etype, cost_usd=cost)
    for n in range(3):
        add(
            timestamp=_at(3, n),
            provider="openai",
            model="text-embedding-3-small",
            request_type="embedding",
            cost_usd=0.1,
            input_tokens=1_000,
        )
    for n in range(10):  # the previous period
        add(timestamp=_at(8, n), provider="openai", model="gpt-4o", cost_usd=1.0)
    return out


async def _setup(api: Api) -> tuple[str, list[dict[str, Any]]]:
    key = await api.key()
    other = await api.key(workspace="globex")
    await api.ingest(other, [{"id": "x", "timestamp": _at(1), "model": "gpt-4o", "cost_usd": 99}])
    assert (await api.ingest(key, _events()))["accepted"] == len(_events())
    ws = await workspace_id_of(api.services, key)
    rows = [dict(r) for r in await event_rows(api.services, ws)]
    for r in rows:
        r["cost"] = r["cost_nanousd"] / NANO_PER_USD
    return key, rows


def _window(rows: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [r for r in rows if start <= r["ts"] < end]


def _group(rows: list[dict[str, Any]], *cols: str) -> dict[Any, list[float]]:
    out: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        key = tuple(r[c] for c in cols) if len(cols) > 1 else r[cols[0]]
        out[key][0] += r["cost"]
        out[key][1] += 1
    return out


INSIGHTS = """query($range: TimeRangeInput!) { costInsights(range: $range) {
  totalUsd
  byRequestType { key costUsd requests share }
  trend { currentUsd previousUsd direction percent }
  topModels { key provider costUsd requests share }
  topUsers { key costUsd }
  topAgents { key costUsd }
  projectedMonth { daysWithData dailyAverageUsd projectedUsd previousProjectedUsd changePercent }
  recommendations { kind title estimatedSavingUsd provider model suggestedModel
                    figures { name value unit } }
} }"""


def _projection(rows: list[dict[str, Any]]) -> tuple[int, float]:
    days = {r["ts"].date() for r in rows}
    return len(days), sum(r["cost"] for r in rows) / len(days) * 30


async def test_cost_insights(api: Api) -> None:
    key, rows = await _setup(api)
    data = (await api.data(key, INSIGHTS, {"range": RANGE}))["costInsights"]
    current = _window(rows, START, END)
    previous = _window(rows, START - timedelta(days=6), START)
    total = sum(r["cost"] for r in current)
    assert data["totalUsd"] == pytest.approx(total)
    by_type = _group(current, "request_type")
    got_types = {t["key"]: [t["costUsd"], t["requests"]] for t in data["byRequestType"]}
    assert got_types.keys() == by_type.keys()
    for name, figures in by_type.items():
        assert got_types[name] == pytest.approx(figures)
    before = sum(r["cost"] for r in previous)
    assert data["trend"]["previousUsd"] == pytest.approx(before)
    assert data["trend"]["percent"] == pytest.approx((total - before) / before * 100)
    assert data["trend"]["direction"] == ("UP" if total > before else "DOWN")
    models = sorted(_group(current, "model", "provider").items(), key=lambda kv: -kv[1][0])[:5]
    assert [(m["key"], m["provider"]) for m in data["topModels"]] == [k for k, _ in models]
    assert [m["costUsd"] for m in data["topModels"]] == pytest.approx([v[0] for _, v in models])
    users = sorted(
        ((k, v[0]) for k, v in _group(current, "user_id").items() if k), key=lambda kv: -kv[1]
    )
    assert [u["key"] for u in data["topUsers"]] == [k for k, _ in users]
    assert [u["costUsd"] for u in data["topUsers"]] == pytest.approx([c for _, c in users])
    agents = {k: v[0] for k, v in _group(current, "agent_id").items() if k}
    assert {a["key"]: a["costUsd"] for a in data["topAgents"]} == pytest.approx(agents)
    days, projected = _projection(current)
    _, previous_projected = _projection(previous)
    month = data["projectedMonth"]
    assert month["daysWithData"] == days
    assert month["projectedUsd"] == pytest.approx(projected)
    assert month["previousProjectedUsd"] == pytest.approx(previous_projected)
    assert month["changePercent"] == pytest.approx(
        (projected - previous_projected) / previous_projected * 100
    )
    _check_recommendations(data["recommendations"], current, total)


def _check_recommendations(
    found: list[dict[str, Any]], rows: list[dict[str, Any]], total: float
) -> None:
    now = datetime.now(UTC)
    snapshot = data_snapshot.get_snapshot()
    gpt4o = [r for r in rows if r["model"] == "gpt-4o"]
    paid = sum(r["cost"] for r in gpt4o)
    mini = reference_cost_nano("openai", "gpt-4o-mini", TokenUsage(2_000, 100), now)
    want: list[tuple[str, str | None, str | None, float]] = [
        ("CHEAPER_MODEL", "gpt-4o", "gpt-4o-mini", paid - mini * len(gpt4o) / NANO_PER_USD)
    ]
    for model, inputs in (("gpt-4o", 30 * 2_000), ("claude-sonnet-4-5", 25 * 3_000)):
        _, info = snapshot.find_provider_model(model, None, None, None)
        price = info.get_prices(now)
        rate_in = getattr(price.input_mtok, "base", price.input_mtok)
        rate_cr = getattr(price.cache_read_mtok, "base", price.cache_read_mtok)
        want.append(("PROMPT_CACHING", model, None, 0.5 * inputs * float(rate_in - rate_cr) / 1e6))
    failed = [r for r in rows if r["status"] == "error"]
    want.append(("FAILED_CALLS", None, None, sum(r["cost"] for r in failed)))
    want.sort(key=lambda w: -w[3])
    got = [(r["kind"], r["model"], r["suggestedModel"], r["estimatedSavingUsd"]) for r in found]
    assert [g[:3] for g in got] == [w[:3] for w in want]
    assert [g[3] for g in got] == pytest.approx([w[3] for w in want])
    failed_rec = next(r for r in found if r["kind"] == "FAILED_CALLS")
    figures = {f["name"]: f["value"] for f in failed_rec["figures"]}
    assert figures["failedCalls"] == len(failed)
    assert figures["shareOfCost"] == pytest.approx(sum(r["cost"] for r in failed) / total)
    assert figures["topErrorTypeCostUsd"] == pytest.approx(2.0)
    cheaper = next(r for r in found if r["kind"] == "CHEAPER_MODEL")
    figures = {f["name"]: f["value"] for f in cheaper["figures"]}
    assert (figures["calls"], figures["avgOutputTokens"], figures["alreadyUsed"]) == (30, 100, 1)
    assert figures["costUsd"] == pytest.approx(paid)


async def test_daily_cost_by_model_and_comparison(api: Api) -> None:
    key, rows = await _setup(api)
    current = _window(rows, START, END)
    data = await api.data(
        key,
        """query($range: TimeRangeInput!) { dailyCostByModel(range: $range, top: 3) {
             buckets series { model isOther values totalUsd } totals } }""",
        {"range": RANGE},
    )
    pivot = data["dailyCostByModel"]
    days = [b[:10] for b in pivot["buckets"]]
    assert days == [(START + timedelta(days=i)).date().isoformat() for i in range(6)]
    per_model = _group(current, "model")
    top = [m for m, _ in sorted(per_model.items(), key=lambda kv: (-kv[1][0], kv[0]))[:3]]
    daily: dict[str | None, list[float]] = defaultdict(lambda: [0.0] * 6)
    for r in current:
        label = r["model"] if r["model"] in top else "other"
        daily[label][days.index(r["ts"].date().isoformat())] += r["cost"]
    got = {("other" if s["isOther"] else s["model"]): s["values"] for s in pivot["series"]}
    assert list(got)[:3] == top
    assert got.keys() == daily.keys()
    for label, values in daily.items():
        assert got[label] == pytest.approx(values)
    assert pivot["totals"] == pytest.approx([sum(v[i] for v in daily.values()) for i in range(6)])
    comparison = await api.data(
        key,
        """query($range: TimeRangeInput!) { modelComparison(range: $range, models: [
             {model: "gpt-4o", provider: "openai"}, {model: "claude-sonnet-4-5"}]) {
             provider model contextWindow requests errorRate costUsd avgCostPerRequestUsd
             avgOutputTokens avgLatencyMs p95LatencyMs price { source inputPerMtok } } }""",
        {"range": RANGE},
    )
    snapshot = data_snapshot.get_snapshot()
    for entry in comparison["modelComparison"]:
        mine = [r for r in current if r["model"] == entry["model"]]
        cost = sum(r["cost"] for r in mine)
        assert entry["requests"] == len(mine)
        assert entry["costUsd"] == pytest.approx(cost)
        assert entry["avgCostPerRequestUsd"] == pytest.approx(cost / len(mine))
        assert entry["avgOutputTokens"] == sum(r["output_tokens"] for r in mine) / len(mine)
        assert entry["errorRate"] == 0.0
        _, info = snapshot.find_provider_model(entry["model"], None, entry["provider"], None)
        assert entry["contextWindow"] == info.context_window
        assert entry["price"]["source"] == "BUILTIN"
    gpt = comparison["modelComparison"][0]
    assert (gpt["avgLatencyMs"], gpt["p95LatencyMs"]) == (1000.0, pytest.approx(1000.0, rel=0.01))
    assert comparison["modelComparison"][1]["avgLatencyMs"] is None
    five = [{"model": f"m{i}"} for i in range(5)]
    body = await api.graphql(
        key,
        "query($m: [ModelRefInput!]!) { modelComparison(models: $m, range: {preset: LAST_7D})"
        " { model } }",
        {"m": five},
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_cost_fields_are_scoped(api: Api) -> None:
    key, rows = await _setup(api)
    operator = await api.key(workspace="default")
    acme_id = str(await workspace_id_of(api.services, key))
    query = """query($range: TimeRangeInput!, $ws: ID) {
      costInsights(range: $range, workspace: $ws) { totalUsd }
      dailyCostByModel(range: $range, workspace: $ws) { totals }
      modelComparison(range: $range, workspace: $ws, models: [{model: "gpt-4o"}]) { requests }
    }"""
    total = sum(r["cost"] for r in _window(rows, START, END))
    own = await api.data(key, query, {"range": RANGE, "ws": None})
    assert own["costInsights"]["totalUsd"] == pytest.approx(total)  # globex's $99 not in it
    assert sum(own["dailyCostByModel"]["totals"]) == pytest.approx(total)
    assert own["modelComparison"] == [{"requests": 30.0}]  # globex's gpt-4o call not counted
    via_operator = await api.data(operator, query, {"range": RANGE, "ws": acme_id})
    assert via_operator["costInsights"]["totalUsd"] == pytest.approx(total)
    assert via_operator == own
    refused = await api.graphql(key, query, {"range": RANGE, "ws": acme_id})
    assert {e["extensions"]["code"] for e in refused["errors"]} == {"FORBIDDEN"}


TREND = """query($range: TimeRangeInput!) { costInsights(range: $range) {
  trend { currentUsd previousUsd direction percent percentNote }
  projectedMonth { projectedUsd previousProjectedUsd changePercent changeNote } } }"""
OVERVIEW_CHANGES = """query($r: TimeRangeInput!) { overview(range: $r) {
  changes { field current previous absolute relative relativeNote } } }"""


def _costly(ident: str, days_ago: int, cost: float, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "id": ident,
        "timestamp": _at(days_ago),
        "provider": "openai",
        "model": model,
        "cost_usd": cost,
    }


@pytest.mark.parametrize(
    ("before", "note"),
    [(0.00095, "NEGLIGIBLE_BASELINE"), (None, "NO_BASELINE"), (3.0, "NEGLIGIBLE_BASELINE")],
    ids=["audit", "zero", "under 1 %"],
)
async def test_trend_against_a_negligible_or_zero_baseline(
    api: Api, before: float | None, note: str
) -> None:
    """The audit's $0.00095 baseline gave +50,148,987 %: now no percentage, and why."""
    key = await api.key()
    events = [_costly("now", 2, 476.4)]
    if before is not None:
        events.append(_costly("then", 9, before))
    await api.ingest(key, events)
    data = (await api.data(key, TREND, {"range": RANGE}))["costInsights"]
    trend = data["trend"]
    assert trend["currentUsd"] == pytest.approx(476.4)
    assert trend["previousUsd"] == pytest.approx(before or 0.0)
    assert trend["percent"] is None
    assert trend["percentNote"] == note
    assert trend["direction"] == "UP"
    projected = data["projectedMonth"]
    assert projected["projectedUsd"] == pytest.approx(476.4 * 30)
    assert projected["changePercent"] is None
    assert projected["changeNote"] == note
    changes = (await api.data(key, OVERVIEW_CHANGES, {"r": RANGE}))["overview"]["changes"]
    cost = next(c for c in changes if c["field"] == "costUsd")
    assert cost["absolute"] == pytest.approx(476.4 - (before or 0.0))
    assert (cost["relative"], cost["relativeNote"]) == (None, note)
    requests = next(c for c in changes if c["field"] == "totalRequests")
    if before is None:
        assert (requests["relative"], requests["relativeNote"]) == (None, "NO_BASELINE")
    else:  # one event before, one now: a real baseline
        assert (requests["relative"], requests["relativeNote"]) == (0.0, None)
    latency = next(c for c in changes if c["field"] == "avgLatencyMs")
    assert (latency["relative"], latency["relativeNote"]) == (None, "NO_VALUE")


async def test_trend_above_the_floors_keeps_its_percentage(api: Api) -> None:
    """A baseline of 2 % of the current cost and above $0.01 is a baseline: +4,900 %."""
    key = await api.key()
    await api.ingest(key, [_costly("now", 2, 50.0), _costly("then", 9, 1.0)])
    trend = (await api.data(key, TREND, {"range": RANGE}))["costInsights"]["trend"]
    assert trend["percent"] == pytest.approx(4900.0)
    assert trend["percentNote"] is None
    # below $0.01 it is negligible however large against the current figure
    key = await api.key(workspace="tiny-baseline")
    await api.ingest(key, [_costly("now", 2, 0.5), _costly("then", 9, 0.009)])
    trend = (await api.data(key, TREND, {"range": RANGE}))["costInsights"]["trend"]
    assert (trend["percent"], trend["percentNote"]) == (None, "NEGLIGIBLE_BASELINE")
