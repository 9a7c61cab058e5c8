"""Latency that means one thing (issue 23): the overview's latency and TTFT cover LLM calls
unless the filter names kinds, `latencyByKind` gives each kind's figures from rollups, agent
runs have durations kept apart from call latency, and metrics over several kinds say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from tests.conftest import Api

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW - timedelta(days=2)
PREVIOUS = START - timedelta(days=2)
RANGE = {"start": START.isoformat(), "end": NOW.isoformat()}
KINDS = ("llm_call", "tool_call", "agent_run", "http_request")
ENUM = {k: k.upper() for k in KINDS}
PERCENTILES = {"p50LatencyMs": 0.5, "p95LatencyMs": 0.95, "p99LatencyMs": 0.99}
SKETCH_ERROR = 0.01
"""The documented relative error of latency percentiles (DDSketch buckets)."""


def exact_quantile(values: list[float], q: float) -> float | None:
    """The exact q-quantile by the documented rule: linear interpolation between the closest
    ranks (numpy's default, PostgreSQL's percentile_cont)."""
    return float(np.percentile(values, 100 * q, method="linear")) if values else None


def _event(i: int, at: datetime, kind: str, latency: float, **extra: Any) -> dict[str, Any]:
    event = {
        "id": f"{'prev' if at < START else 'cur'}-{kind}-{i}",
        "timestamp": (at + timedelta(minutes=5 * i)).isoformat(),
        "kind": kind,
        "latency_ms": latency,
        **extra,
    }
    if kind == "llm_call":
        event |= {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10}
    if kind == "tool_call":
        event["tool"] = "search"
    return event


def _current() -> list[dict[str, Any]]:
    """LLM calls near 1.2 s, tool calls near 0.45 s, agent runs near a minute, HTTP requests
    near 3 s; an agent with a pipeline node and a session mixing all of them."""
    out = []
    for i in range(150):
        extra: dict[str, Any] = {"ttft_ms": 200.0 + i}
        if i < 10:
            extra |= {"agent_id": "ag", "node": "plan"}
        if i < 20:
            extra["session_id"] = "s1"
        out.append(_event(i, START, "llm_call", 1000.0 + 3 * i, **extra))
    for i in range(100):
        extra = {"ttft_ms": 5.0} if i % 2 else {}
        if i < 5:
            extra |= {"agent_id": "ag", "node": "plan"}
        if i < 10:
            extra["session_id"] = "s1"
        out.append(_event(i, START + timedelta(hours=14), "tool_call", 400.0 + i, **extra))
    for i in range(40):
        extra = {"agent_id": "ag"}
        if i < 4:
            extra["node"] = "plan"
        if i < 3:
            extra["session_id"] = "s1"
        out.append(_event(i, START + timedelta(hours=24), "agent_run", 60000.0 + 100 * i, **extra))
    for i in range(20):
        out.append(_event(i, START + timedelta(hours=34), "http_request", 3000.0 + 2 * i))
    return out


def _previous() -> list[dict[str, Any]]:
    out = [_event(i, PREVIOUS, "llm_call", 2000.0 + 5 * i, ttft_ms=300.0) for i in range(50)]
    out += [_event(i, PREVIOUS + timedelta(hours=10), "tool_call", 500.0 + i) for i in range(30)]
    out += [
        _event(i, PREVIOUS + timedelta(hours=20), "agent_run", 90000.0 + 100 * i) for i in range(10)
    ]
    return out


def _latencies(events: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[float]:
    return [e["latency_ms"] for e in events if e["kind"] in kinds]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _check_latency(figures: dict[str, Any], values: list[float]) -> None:
    """avg exact; percentiles within the sketch's error of the exact ones."""
    assert figures["avgLatencyMs"] == pytest.approx(_mean(values), rel=1e-12)
    for name, q in PERCENTILES.items():
        if name in figures:
            expected = exact_quantile(values, q)
            assert expected is not None
            assert abs(figures[name] - expected) <= SKETCH_ERROR * expected, (name, q)


OVERVIEW = """query($r: TimeRangeInput!, $f: EventFilter) {
  overview(range: $r, filter: $f) {
    totalRequests avgLatencyMs p50LatencyMs p95LatencyMs p99LatencyMs avgTtftMs
    latencyByKind { kind requests avgLatencyMs p50LatencyMs p95LatencyMs p99LatencyMs }
    previous { totalRequests avgLatencyMs p50LatencyMs p95LatencyMs p99LatencyMs avgTtftMs
               latencyByKind { kind requests avgLatencyMs p95LatencyMs } }
    changes { field current previous }
  }
}"""


async def _setup(api: Api) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    key = await api.key()
    current, previous = _current(), _previous()
    result = await api.ingest(key, current + previous)
    assert result["accepted"] == len(current) + len(previous)
    return key, current, previous


def _ttfts(events: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[float]:
    return [e["ttft_ms"] for e in events if e["kind"] in kinds and "ttft_ms" in e]


async def test_overview_latency_covers_llm_calls_and_each_kind(api: Api) -> None:
    key, current, previous = await _setup(api)
    ov = (await api.data(key, OVERVIEW, {"r": RANGE}))["overview"]
    assert ov["totalRequests"] == len(current)  # counts still cover every kind
    llm = ("llm_call",)
    _check_latency(ov, _latencies(current, llm))
    assert ov["avgTtftMs"] == pytest.approx(_mean(_ttfts(current, llm)), rel=1e-12)
    # The blend this replaces would have been far off: agent runs alone are a minute long.
    blended = exact_quantile(_latencies(current, KINDS), 0.95)
    assert blended is not None and ov["p95LatencyMs"] < blended / 10
    assert [row["kind"] for row in ov["latencyByKind"]] == [ENUM[k] for k in KINDS]
    for row, kind in zip(ov["latencyByKind"], KINDS, strict=True):
        values = _latencies(current, (kind,))
        assert row["requests"] == len(values)
        _check_latency(row, values)

    before = ov["previous"]
    assert before["totalRequests"] == len(previous)
    _check_latency(before, _latencies(previous, llm))
    assert before["avgTtftMs"] == pytest.approx(300.0)
    assert [(r["kind"], r["requests"]) for r in before["latencyByKind"]] == [
        ("LLM_CALL", 50),
        ("TOOL_CALL", 30),
        ("AGENT_RUN", 10),
    ]
    for row in before["latencyByKind"]:
        _check_latency(row, _latencies(previous, (row["kind"].lower(),)))
    changes = {c["field"]: c for c in ov["changes"]}
    assert changes["avgLatencyMs"]["current"] == pytest.approx(ov["avgLatencyMs"])
    assert changes["avgLatencyMs"]["previous"] == pytest.approx(before["avgLatencyMs"])


@pytest.mark.parametrize(
    "kinds", [("tool_call",), ("llm_call", "tool_call"), ("agent_run",), ("http_request",)]
)
async def test_a_filter_naming_kinds_sets_what_latency_covers(
    api: Api, kinds: tuple[str, ...]
) -> None:
    key, current, previous = await _setup(api)
    flt = {"kinds": [ENUM[k] for k in kinds]}
    ov = (await api.data(key, OVERVIEW, {"r": RANGE, "f": flt}))["overview"]
    assert ov["totalRequests"] == len(_latencies(current, kinds))
    _check_latency(ov, _latencies(current, kinds))
    ttfts = _ttfts(current, kinds)
    assert ov["avgTtftMs"] == (pytest.approx(_mean(ttfts), rel=1e-12) if ttfts else None)
    assert [r["kind"] for r in ov["latencyByKind"]] == [ENUM[k] for k in KINDS if k in kinds]
    before = ov["previous"]
    values = _latencies(previous, kinds)
    if values:
        _check_latency(before, values)
    else:
        assert before["avgLatencyMs"] is None and before["p95LatencyMs"] is None


async def test_overview_latency_is_answered_from_rollups_with_kinds_explained(api: Api) -> None:
    key, _, _ = await _setup(api)
    headers = {"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"}
    for flt, kinds in ((None, "all"), ({"kinds": ["TOOL_CALL"]}, ["tool_call"])):
        response = await api.client.post(
            "/graphql",
            json={"query": OVERVIEW, "variables": {"r": RANGE, "f": flt}},
            headers=headers,
        )
        plans = response.json()["extensions"]["plans"]
        assert plans and all(p["source"] != "raw" for p in plans), plans
        assert {p["kinds"] if p["kinds"] == "all" else tuple(p["kinds"]) for p in plans} == {
            kinds if kinds == "all" else tuple(kinds)
        }
        by_kind = [p for p in plans if p["dimensions"] == ["KIND"]]
        assert {p["source"] for p in by_kind} >= {"histogram:kinds"}
        # Without named kinds the headline latency is the llm_call group's, and explain says so.
        assert all(("note" in p) == (flt is None) for p in by_kind)


async def test_latency_metrics_keep_meaning_the_selected_events(api: Api) -> None:
    """*_LATENCY_MS metrics of breakdown and metrics are over the events the filter selects:
    across kinds they mix them (as their descriptions say); naming kinds measures those."""
    key, current, _ = await _setup(api)
    query = """query($r: TimeRangeInput!, $f: EventFilter) {
      breakdown(dimension: PROVIDER, metrics: [REQUESTS, P95_LATENCY_MS, AVG_LATENCY_MS],
                range: $r, filter: $f) { metrics nodes { key values } }
      metrics(query: {metrics: [AVG_LATENCY_MS, P95_LATENCY_MS], range: $r, filter: $f}) {
        metrics rows { values } }
    }"""
    for kinds in (KINDS, ("agent_run",), ("tool_call", "agent_run")):
        flt = None if kinds == KINDS else {"kinds": [ENUM[k] for k in kinds]}
        data = await api.data(key, query, {"r": RANGE, "f": flt})
        selected = _latencies(current, kinds)
        [row] = data["metrics"]["rows"]
        assert data["metrics"]["metrics"] == ["AVG_LATENCY_MS", "P95_LATENCY_MS"]
        assert row["values"][0] == pytest.approx(_mean(selected), rel=1e-12)
        expected = exact_quantile(selected, 0.95)
        assert expected is not None
        assert abs(row["values"][1] - expected) <= SKETCH_ERROR * expected
        nodes = {n["key"]: n["values"] for n in data["breakdown"]["nodes"]}
        assert sum(v[0] for v in nodes.values()) == len(selected)
        without_provider = [e["latency_ms"] for e in current
                            if e["kind"] in kinds and e["kind"] != "llm_call"]  # fmt: skip
        assert nodes[None][2] == pytest.approx(_mean(without_provider), rel=1e-12)


async def test_agent_nodes_and_sessions_keep_run_durations_apart(api: Api) -> None:
    key, current, _ = await _setup(api)
    data = await api.data(
        key,
        """query($r: TimeRangeInput!) {
          agents(range: $r) { nodes { agentId avgRunDurationMs
            nodes { node requests avgLatencyMs avgRunDurationMs } } }
          session(id: "s1") { avgLatencyMs avgRunDurationMs requestCount
            models { model requests avgLatencyMs } }
        }""",
        {"r": RANGE},
    )
    agent = data["agents"]["nodes"][0]
    runs = [e for e in current if e["kind"] == "agent_run"]
    assert agent["agentId"] == "ag"
    assert agent["avgRunDurationMs"] == pytest.approx(_mean([e["latency_ms"] for e in runs]))
    [node] = agent["nodes"]
    in_node = [e for e in current if e.get("node") == "plan"]
    calls = [e["latency_ms"] for e in in_node if e["kind"] != "agent_run"]
    node_runs = [e["latency_ms"] for e in in_node if e["kind"] == "agent_run"]
    assert node["requests"] == len(in_node) == 10 + 5 + 4
    assert node["avgLatencyMs"] == pytest.approx(_mean(calls), rel=1e-12)
    assert node["avgRunDurationMs"] == pytest.approx(_mean(node_runs), rel=1e-12)

    session = data["session"]
    in_session = [e for e in current if e.get("session_id") == "s1"]
    assert session["requestCount"] == len(in_session) == 20 + 10 + 3

    def of(kind: str) -> list[float]:
        return [e["latency_ms"] for e in in_session if e["kind"] == kind]

    assert session["avgLatencyMs"] == pytest.approx(_mean(of("llm_call")), rel=1e-12)
    assert session["avgRunDurationMs"] == pytest.approx(_mean(of("agent_run")), rel=1e-12)
    models = {m["model"]: m for m in session["models"]}
    assert models["gpt-4o-mini"]["avgLatencyMs"] == pytest.approx(_mean(of("llm_call")))
    # The model-less row holds tool calls and agent runs; its latency is the tool calls' only.
    assert models[None]["requests"] == 10 + 3
    assert models[None]["avgLatencyMs"] == pytest.approx(_mean(of("tool_call")), rel=1e-12)
