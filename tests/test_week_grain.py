"""Week rows (Monday 00:00 UTC): the planner splits a window into raw edges, hours, days and
weeks exactly once, uses weeks only where no bucket boundary falls inside one, and answers
from them what raw events answer."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from tallyql.engine.planner import Piece, split_window
from tallyql.storage.rollups.declarations import grain_start
from tests.conftest import Api
from tests.support.helpers import check_planned_against_raw, planned_and_exact_percentile
from tests.support.reference import aggregate, bucket_starts, close, normalise

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)


def _covers(pieces: list[Piece], start: datetime, end: datetime) -> None:
    assert pieces[0].start == start and pieces[-1].end == end
    for a, b in itertools.pairwise(pieces):
        assert a.end == b.start
    for p in pieces:
        assert p.start < p.end
        if p.grain != "raw":
            assert grain_start(p.grain, int(p.start.timestamp())) == p.start.timestamp()


def test_split_window_nests_the_grains() -> None:
    start = MONDAY - timedelta(days=9, minutes=17)
    end = MONDAY + timedelta(days=15, hours=5, minutes=3)
    pieces = split_window(start, end, ("h", "d", "w"))
    _covers(pieces, start, end)
    # 23:43 to midnight is raw; the hour edge is empty, as midnight is a whole hour and day
    assert [p.grain for p in pieces] == ["raw", "d", "w", "d", "h", "raw"]
    weeks = [p for p in pieces if p.grain == "w"]
    assert weeks[0].start == MONDAY - timedelta(days=7) and weeks[-1].end == MONDAY + timedelta(14)
    assert all(p.start.weekday() == 0 for p in weeks)


def test_split_window_without_a_whole_week() -> None:
    start = MONDAY + timedelta(days=1, hours=3)
    end = MONDAY + timedelta(days=6, hours=2)
    pieces = split_window(start, end, ("h", "d", "w"))
    _covers(pieces, start, end)
    assert "w" not in {p.grain for p in pieces}
    assert split_window(start, end, ()) == [Piece("raw", start, end)]


def _events() -> list[dict[str, Any]]:
    out = []
    for i in range(300):
        ts = MONDAY - timedelta(days=16) + timedelta(minutes=173 * i + 11)
        out.append(
            {
                "id": f"w{i}",
                "timestamp": ts.isoformat(),
                "provider": ("openai", "anthropic")[i % 2],
                "model": ("m1", "m2", "m3")[i % 3],
                "status": "error" if i % 9 == 0 else "success",
                "latency_ms": 50.0 + (i * 37) % 4000,
                "ttft_ms": 5.0 + i % 200,
                "input_tokens": 100 + i,
                "output_tokens": 10 + i % 50,
                "cost_usd": (i % 13) / 1000,
                "user_id": f"u{i % 7}",
                "tool": ("t1", "t2")[i % 2] if i % 4 == 0 else None,
                "kind": "tool_call" if i % 4 == 0 else "llm_call",
            }
        )
    return [{k: v for k, v in e.items() if v is not None} for e in out]


QUERY = """query($r: TimeRangeInput!) {
  overview(range: $r) { totalRequests errorRate p50LatencyMs p95LatencyMs avgTtftMs costUsd
                        activeUsers activeTools modelsUsed }
  models: breakdown(dimension: MODEL, metrics: [REQUESTS, COST_USD, P95_LATENCY_MS],
                    range: $r) { nodes { key values } }
  users: breakdown(dimension: USER, metrics: [REQUESTS, TOTAL_TOKENS], range: $r, first: 20) {
    nodes { key values } }
  weekly: timeseries(metrics: [REQUESTS, P99_LATENCY_MS], range: $r, granularity: WEEK) {
    buckets series { values } }
}"""


async def test_week_rows_answer_like_raw_events(api: Api) -> None:
    key = await api.key()
    assert (await api.ingest(key, _events()))["accepted"] == 300
    window = {
        "start": (MONDAY - timedelta(days=15, hours=6, minutes=20)).isoformat(),
        "end": (MONDAY + timedelta(days=17, hours=2)).isoformat(),
    }
    response = await api.client.post(
        "/graphql",
        json={"query": QUERY, "variables": {"r": window}},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"},
    )
    body = response.json()
    planned = body["data"]
    grains = {p["grain"] for plan in body["extensions"]["plans"] for p in plan["pieces"]}
    assert "w" in grains
    raw = (
        await api.client.post(
            "/graphql",
            json={"query": QUERY, "variables": {"r": window}},
            headers={"Authorization": f"Bearer {key}", "X-Tallyql-Plan": "raw"},
        )
    ).json()["data"]
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    # percentiles: the sketch estimate of the stored events when planned, exact when raw
    at = partial(planned_and_exact_percentile, api.services, key, start=start, end=end)
    # the overview's latency covers LLM calls (issue 23); the breakdown and series every kind
    llm_only = {"kind": "llm_call"}
    paths = {("overview", f"p{q}LatencyMs"): await at(q=q / 100, where=llm_only) for q in (50, 95)}
    for i, node in enumerate(planned["models"]["nodes"]):
        paths[("models", "nodes", i, "values", 2)] = await at(q=0.95, where={"model": node["key"]})
    weeks = [datetime.fromisoformat(b) for b in planned["weekly"]["buckets"]]
    for i, week in enumerate(weeks):
        bounds = max(week, start), min(weeks[i + 1] if i + 1 < len(weeks) else end, end)
        found = await planned_and_exact_percentile(api.services, key, *bounds, 0.99)
        paths[("weekly", "series", 1, "values", i)] = found
    check_planned_against_raw(planned, raw, paths)
    inside = [e for e in _events() if start <= datetime.fromisoformat(e["timestamp"]) < end]
    assert planned["overview"]["totalRequests"] == len(inside) > 200

    # and both are what tests/support/reference.py recomputes from the events
    events = [normalise(e) for e in _events()]
    utc = ZoneInfo("UTC")
    weekly = ["REQUESTS", "P99_LATENCY_MS"]
    want = aggregate(events, weekly, [], start, end, utc, "WEEK", {}, {})
    buckets = [b.isoformat() for b in bucket_starts(start, end, "WEEK", utc)]
    assert [datetime.fromisoformat(b) for b in planned["weekly"]["buckets"]] == [
        datetime.fromisoformat(b) for b in buckets
    ]
    for i, metric in enumerate(weekly):
        got = planned["weekly"]["series"][i]["values"]
        expected = [
            want.get((b,), {}).get(metric, 0 if metric == "REQUESTS" else None) for b in buckets
        ]
        assert all(close(w, g, metric) for w, g in zip(expected, got, strict=True)), (metric, got)
    for alias, metrics, dimension in (
        ("models", ["REQUESTS", "COST_USD", "P95_LATENCY_MS"], "MODEL"),
        ("users", ["REQUESTS", "TOTAL_TOKENS"], "USER"),
    ):
        want = aggregate(events, metrics, [(dimension, None)], start, end, utc, None, {}, {})
        got = {n["key"]: n["values"] for n in planned[alias]["nodes"]}
        assert set(got) == {k[1] for k in want}, alias
        for (_, name), values in want.items():
            for metric, value in zip(metrics, got[name], strict=True):
                assert close(values[metric], value, metric), (alias, name, metric)


async def test_weeks_in_another_time_zone_are_not_used(api: Api) -> None:
    """Weekly buckets in Paris start at 23:00 UTC: a UTC week row would straddle them."""
    key = await api.key()
    await api.ingest(key, _events())
    window = {
        "start": (MONDAY - timedelta(days=14, hours=1)).isoformat(),
        "end": (MONDAY + timedelta(days=13, hours=23)).isoformat(),
        "timezone": "Europe/Paris",
    }
    query = """query($r: TimeRangeInput!) {
      timeseries(metrics: [REQUESTS], range: $r, granularity: WEEK) { series { values } } }"""
    response = await api.client.post(
        "/graphql",
        json={"query": query, "variables": {"r": window}},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"},
    )
    body = response.json()
    grains = {p["grain"] for plan in body["extensions"]["plans"] for p in plan["pieces"]}
    assert "w" not in grains and "h" in grains
    raw = (
        await api.client.post(
            "/graphql",
            json={"query": query, "variables": {"r": window}},
            headers={"Authorization": f"Bearer {key}", "X-Tallyql-Plan": "raw"},
        )
    ).json()["data"]
    assert body["data"] == raw
