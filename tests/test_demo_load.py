"""The demo loader's bulk path: every generated event lands once, a second load finds them
all present, the rollups answer what raw events answer, and on PostgreSQL the tables are left
analysed (rollups and sessions vacuumed too)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import text

from tallyql.auth.principal import Role
from tallyql.clock import clock
from tallyql.demo.generator import generate_events
from tallyql.demo.load import RAW_TABLES, load_demo
from tallyql.ingest.pricing import TokenUsage
from tallyql.money import NANO_PER_USD
from tallyql.storage.dialect import Dialect
from tests.conftest import Api
from tests.support.helpers import check_planned_against_raw, iso, llm, planned_and_exact_percentile
from tests.support.reference import normalise
from tests.support.reference_pricing import reference_cost_nano

RAW = {"X-Tallyql-Plan": "raw"}  # the engine answers from raw events (admin keys)
QUERY = """query($r: TimeRangeInput!) {
  overview(range: $r) { totalRequests errorRate costUsd p95LatencyMs activeUsers modelsUsed
                        start end }
  breakdown(dimension: MODEL, metrics: [REQUESTS, COST_USD], range: $r, first: 50) {
    totalCount nodes { key values } }
}"""


def _cost_nano(event: dict[str, Any]) -> int:
    """What the pricer must charge: genai-prices' calc_price under the event's provider, else
    under any (as the pricer falls back); nothing for a model it does not know or no model."""
    if not event.get("model"):
        return 0
    tokens = TokenUsage(
        event.get("input_tokens", 0),
        event.get("output_tokens", 0),
        event.get("cache_read_tokens", 0),
        event.get("cache_write_tokens", 0),
        event.get("reasoning_tokens", 0),
    )
    for provider in (event.get("provider"), None):
        try:
            return reference_cost_nano(provider, event["model"], tokens, event["ts"])
        except LookupError:
            continue
    return 0


def _expected(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The QUERY's figures recomputed from the generated events (tests/support/reference.py)."""
    events = [normalise(e) for e in events]
    costs = {  # a cost the event carries wins (some demo traffic reports its own)
        e["id"]: round(e["cost_usd"] * 1e9) if "cost_usd" in e else _cost_nano(e) for e in events
    }
    by_model: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_model[e.get("model")].append(e)
    return {
        "totalRequests": len(events),
        "errorRate": sum(e["status"] == "error" for e in events) / len(events),
        "costUsd": sum(costs.values()) / NANO_PER_USD,
        "activeUsers": len({e.get("user_id") for e in events} - {None}),
        "modelsUsed": len(set(by_model) - {None}),
        "models": {
            m: [len(v), sum(costs[e["id"]] for e in v) / NANO_PER_USD] for m, v in by_model.items()
        },
    }


async def test_demo_load_lands_every_event_once(api: Api) -> None:
    services = api.services
    # the clock stands still, so the loader's "now" (the end of its traffic) is known here
    moment = datetime.now(UTC)
    with clock.pinned(moment, tick=False):
        report = await load_demo(services, "demo", 4_000, 3, seed=7)
        assert (report.accepted, report.duplicates) == (4_000, 0)
        again = await load_demo(services, "demo", 4_000, 3, seed=7)
        assert (again.accepted, again.duplicates) == (0, 4_000)

        key, _ = await services.keys.create("demo", Role.ADMIN, "t")  # plans are for admins
        variables = {"r": {"preset": "LAST_7D"}}
        planned = await api.data(key, QUERY, variables)
        raw = await api.data(key, QUERY, variables, headers=RAW)
    # the clock stood still: both answers cover one window
    start, window_end = (
        datetime.fromisoformat(planned["overview"].pop(k)) for k in ("start", "end")
    )
    raw["overview"].pop("start"), raw["overview"].pop("end")
    # the overview's latency covers LLM calls (issue 23)
    p95 = await planned_and_exact_percentile(
        services, key, start, window_end, 0.95, {"kind": "llm_call"}
    )
    check_planned_against_raw(planned, raw, {("overview", "p95LatencyMs"): p95})
    # and both are what the generated events recompute to (p95LatencyMs: planned within the
    # sketch's error of the exact raw value, checked just above)
    end = moment.replace(second=0, microsecond=0)
    want = _expected(list(generate_events(4_000, 3, 7, end)))
    overview = planned["overview"]
    assert overview["totalRequests"] == want["totalRequests"] == 4_000
    assert overview["errorRate"] == pytest.approx(want["errorRate"])
    assert overview["costUsd"] == pytest.approx(want["costUsd"], rel=1e-9)
    assert (overview["activeUsers"], overview["modelsUsed"]) == (
        want["activeUsers"],
        want["modelsUsed"],
    )
    models = {n["key"]: n["values"] for n in planned["breakdown"]["nodes"]}
    assert planned["breakdown"]["totalCount"] == len(want["models"]) == len(models)
    for model, (requests, cost) in want["models"].items():
        assert models[model] == [requests, pytest.approx(cost, rel=1e-9, abs=1e-12)], model

    if services.db.dialect is Dialect.POSTGRESQL:
        async with services.db.read() as conn:
            stats = {
                name: (vacuumed, analysed)
                for name, vacuumed, analysed in (
                    await conn.execute(
                        text(
                            "SELECT relname, last_vacuum IS NOT NULL, last_analyze IS NOT NULL "
                            "FROM pg_stat_user_tables"
                        )
                    )
                ).all()
            }
        assert stats["sessions"] == (True, True)
        assert stats["rollup_models_h"] == (True, True)
        assert all(stats[name][1] for name in RAW_TABLES if name in stats)


WEEKS_QUERY = """query($r: TimeRangeInput!) {
  overview(range: $r) {
    totalRequests errorRate costUsd p95LatencyMs activeUsers activeAgents activeTools
    start end }
  days: timeseries(metrics: [REQUESTS, COST_USD, INPUT_TOKENS, MAX_LATENCY_MS], range: $r,
                   granularity: DAY) { buckets series { metric values } }
  weeks: timeseries(metrics: [REQUESTS, ERRORS, COST_USD, P95_LATENCY_MS], range: $r,
                    granularity: WEEK) { buckets series { metric values } }
  instances: breakdown(dimension: AGENT_INSTANCE, metrics: [REQUESTS, COST_USD], range: $r,
                       first: 100) { totalCount nodes { key values } }
  nodes: breakdown(dimension: NODE, metrics: [REQUESTS], range: $r, first: 100) {
    totalCount nodes { key values } }
  users: breakdown(dimension: USER, metrics: [REQUESTS, COST_USD], range: $r, first: 100) {
    totalCount nodes { key values } }
  gateways: breakdown(dimension: CALLER, metrics: [REQUESTS], range: $r, first: 100) {
    totalCount nodes { key values } }
  tags: breakdown(dimension: TAG, metrics: [REQUESTS, COST_USD], range: $r, first: 100) {
    totalCount nodes { key values } }
  tools: breakdown(dimension: TOOL, metrics: [REQUESTS, ERRORS], range: $r, first: 100) {
    totalCount nodes { key values } }
  models: breakdown(dimension: MODEL, metrics: [REQUESTS, COST_USD, P95_LATENCY_MS], range: $r,
                    first: 100) { totalCount nodes { key values } }
}"""


async def _planned_and_raw(api: Api, key: str) -> tuple[dict, dict]:
    variables = {"r": {"preset": "LAST_30D"}}
    planned = await api.data(key, WEEKS_QUERY, variables)
    return planned, await api.data(key, WEEKS_QUERY, variables, headers=RAW)


async def _check_weeks(api: Api, key: str, planned: dict, raw: dict) -> None:
    """Every figure equal; the latency P95s (overview, per week, per model) the sketch
    estimate of the stored events when planned, exact when raw."""
    # LAST_30D ends at each request's now: the window of the planned answer
    start, end = (datetime.fromisoformat(planned["overview"].pop(k)) for k in ("start", "end"))
    raw["overview"].pop("start"), raw["overview"].pop("end")
    p95 = partial(planned_and_exact_percentile, api.services, key, q=0.95)
    # the overview's latency covers LLM calls; the weeks' P95_LATENCY_MS every kind selected
    paths = {
        ("overview", "p95LatencyMs"): await p95(start=start, end=end, where={"kind": "llm_call"})
    }
    weeks = [datetime.fromisoformat(b) for b in planned["weeks"]["buckets"]]
    series = [s["metric"] for s in planned["weeks"]["series"]].index("P95_LATENCY_MS")
    for i, week in enumerate(weeks):
        bounds = max(week, start), min(weeks[i + 1] if i + 1 < len(weeks) else end, end)
        found = await p95(start=bounds[0], end=bounds[1])
        paths[("weeks", "series", series, "values", i)] = found
    for i, node in enumerate(planned["models"]["nodes"]):
        found = await p95(start=start, end=end, where={"model": node["key"]})
        paths[("models", "nodes", i, "values", 2)] = found
    check_planned_against_raw(planned, raw, paths)


def _recount(events: list[dict[str, Any]], planned: dict[str, Any]) -> None:
    """The counts of the planned answer recomputed from the events themselves (normalised by
    tests/support/reference.py): weekly requests and errors, requests per user and per tool, within
    the answer's window (its overview's start and end, still in `planned`)."""
    start, end = (datetime.fromisoformat(planned["overview"][k]) for k in ("start", "end"))
    inside = [e for e in map(normalise, events) if start <= e["ts"] < end]
    assert planned["overview"]["totalRequests"] == len(inside)
    weeks = [datetime.fromisoformat(b) for b in planned["weeks"]["buckets"]]
    series = {s["metric"]: s["values"] for s in planned["weeks"]["series"]}
    for i, week in enumerate(weeks):
        until = weeks[i + 1] if i + 1 < len(weeks) else end
        those = [e for e in inside if week <= e["ts"] < until]
        assert series["REQUESTS"][i] == len(those), week
        assert series["ERRORS"][i] == sum(e["status"] == "error" for e in those), week
    for dimension, column in (("users", "user_id"), ("tools", "tool")):
        counted = Counter(e.get(column) for e in inside)
        got = {n["key"]: n["values"][0] for n in planned[dimension]["nodes"]}
        assert got == dict(counted), dimension


async def test_a_load_over_weeks_keeps_every_grain_exact(api: Api) -> None:
    """Weeks of demo traffic on top of events already stored in the same days (the loader
    writes whole days and recomputes the week rows from the day rows): hour, day and week
    rollups of every fold group answer what the raw events answer, before and after more
    events arrive through ingest, and their counts what the events recount to."""
    services = api.services
    key, _ = await services.keys.create("demo", Role.ADMIN, "t")
    # the clock stands still: the loader's end and the queries' window are known here
    moment = datetime.now(UTC)
    with clock.pinned(moment, tick=False):
        before = [
            llm(
                f"before-{i}",
                timestamp=iso(moment - timedelta(days=i * 0.8, minutes=1)),
                user_id="u-before",
                agent_id="a-before",
            )
            for i in range(25)
        ]
        assert (await api.ingest(key, before))["accepted"] == 25
        report = await load_demo(services, "demo", 6_000, 20, seed=11)
        assert (report.accepted, report.duplicates) == (6_000, 0)
        planned, raw = await _planned_and_raw(api, key)
    generated = list(generate_events(6_000, 20, 11, moment.replace(second=0, microsecond=0)))
    _recount(before + generated, planned)
    await _check_weeks(api, key, planned, raw)
    assert planned["overview"]["totalRequests"] == 6_025
    assert len(planned["weeks"]["buckets"]) >= 3

    with clock.pinned(moment, tick=False):
        after = [
            llm(f"after-{i}", timestamp=iso(moment - timedelta(minutes=i + 1)), tags=["late"])
            for i in range(10)
        ]
        assert (await api.ingest(key, after))["accepted"] == 10
        planned, raw = await _planned_and_raw(api, key)
    _recount(before + generated + after, planned)
    await _check_weeks(api, key, planned, raw)
    assert planned["overview"]["totalRequests"] == 6_035
