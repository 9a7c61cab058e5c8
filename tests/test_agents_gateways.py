"""agents (runs, success rate, duration, tokens, cost, pipeline nodes) and gateways (requests,
callers, bandwidth, errors), recomputed in Python, from rollups, per workspace."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.support.ops_data import RANGE, group, nano, status, traffic
from tests.support.tool_usage import explain, selected

AGENTS = """
query($range: TimeRangeInput!, $filter: EventFilter, $order: AgentOrder!, $desc: Boolean!,
      $after: String) {
  agents(range: $range, filter: $filter, orderBy: $order, descending: $desc, first: 2,
         after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { agentId runs successRate avgRunDurationMs requests errors inputTokens outputTokens
            totalTokens costUsd instances
            nodes { node requests errors errorRate avgLatencyMs costUsd } }
  }
}"""
GATEWAYS = """
query($range: TimeRangeInput!, $filter: EventFilter, $order: GatewayOrder!, $after: String) {
  gateways(range: $range, filter: $filter, orderBy: $order, first: 2, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { gateway requests uniqueCallers requestBytes responseBytes bandwidthBytes errors
            errorRate blocked avgLatencyMs costUsd }
  }
}"""


async def pages(api: Api, key: str, query: str, root: str, variables: dict) -> list[dict]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await api.data(key, query, {**variables, "after": after}))[root]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            assert page["totalCount"] == len(nodes)
            return nodes
        after = page["pageInfo"]["endCursor"]


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value)


def expected_agents(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for agent, evs in group(
        (e for e in events if e.get("agent_id")), lambda e: e["agent_id"]
    ).items():
        runs = [e for e in evs if e["kind"] == "agent_run"]
        nodes = group((e for e in evs if e.get("node")), lambda e: e["node"])
        out[agent] = {
            "agentId": agent,
            "runs": len(runs),
            "successRate": approx(mean([status(e) == "success" for e in runs])),
            "avgRunDurationMs": approx(mean([e["latency_ms"] for e in runs])),
            "requests": len(evs),
            "errors": sum(status(e) == "error" for e in evs),
            "inputTokens": sum(e.get("input_tokens", 0) for e in evs),
            "outputTokens": sum(e.get("output_tokens", 0) for e in evs),
            "totalTokens": sum(e.get("input_tokens", 0) + e.get("output_tokens", 0) for e in evs),
            "costUsd": pytest.approx(sum(nano(e) for e in evs) / 1e9),
            "instances": len({e.get("agent_instance_id") for e in evs} - {None}),
            "nodes": [
                {
                    "node": node,
                    "requests": len(nevs),
                    "errors": sum(status(e) == "error" for e in nevs),
                    "errorRate": pytest.approx(sum(status(e) == "error" for e in nevs) / len(nevs)),
                    "avgLatencyMs": pytest.approx(mean([e["latency_ms"] for e in nevs])),
                    "costUsd": pytest.approx(sum(nano(e) for e in nevs) / 1e9),
                }
                for node, nevs in sorted(nodes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            ],
        }
    return out


SORTS = {
    "RUNS": "runs",
    "REQUESTS": "requests",
    "COST": "costUsd",
    "TOKENS": "totalTokens",
    "SUCCESS_RATE": "successRate",
    "AVG_RUN_DURATION": "avgRunDurationMs",
}


def raw(value: Any) -> float | None:
    return value.expected if hasattr(value, "expected") else value


@pytest.mark.parametrize("flt", [None, {"users": ["u0", "u1", "u4"]}])
async def test_agents(api: Api, flt: dict[str, Any] | None) -> None:
    key = await api.key()
    events = traffic(seed=31, sessions=40, loose=120)
    await api.ingest(key, events)
    users = set((flt or {}).get("users", ()))
    want = expected_agents(selected(events, lambda e: not users or e.get("user_id") in users))
    assert any(a["nodes"] for a in want.values()) and any(not a["nodes"] for a in want.values())
    for order, field in SORTS.items():
        for desc in (True, False):
            got = await pages(
                api,
                key,
                AGENTS,
                "agents",
                {"range": RANGE, "filter": flt, "order": order, "desc": desc},
            )

            def position(a: dict[str, Any], field: str = field, desc: bool = desc) -> tuple:
                value = raw(a[field])
                missing = value is None
                number = 0.0 if missing else float(value)
                return (missing, -number if desc else number, a["agentId"])

            assert [a["agentId"] for a in got] == [
                a["agentId"] for a in sorted(want.values(), key=position)
            ], order
    assert {a["agentId"]: a for a in got} == want


def caller(e: dict[str, Any]) -> str:
    return e.get("api_key_id") or f"ip:{e['caller_ip']}"


@pytest.mark.parametrize("order", ["REQUESTS", "BANDWIDTH", "ERROR_RATE", "UNIQUE_CALLERS", "COST"])
async def test_gateways(api: Api, order: str) -> None:
    key = await api.key()
    events = traffic(seed=37, sessions=30, loose=60)
    await api.ingest(key, events)
    by_gateway = group(
        (e for e in selected(events, lambda e: True) if e.get("gateway")), lambda e: e["gateway"]
    )
    want = {}
    for gw, evs in by_gateway.items():
        errors = sum(status(e) == "error" for e in evs)
        req_b, resp_b = sum(e["request_bytes"] for e in evs), sum(e["response_bytes"] for e in evs)
        want[gw] = {
            "gateway": gw,
            "requests": len(evs),
            "uniqueCallers": len({caller(e) for e in evs}),
            "requestBytes": req_b,
            "responseBytes": resp_b,
            "bandwidthBytes": req_b + resp_b,
            "errors": errors,
            "errorRate": pytest.approx(errors / len(evs)),
            "blocked": sum(status(e) == "blocked" for e in evs),
            "avgLatencyMs": pytest.approx(mean([e["latency_ms"] for e in evs])),
            "costUsd": pytest.approx(sum(nano(e) for e in evs) / 1e9),
        }
    got = await pages(api, key, GATEWAYS, "gateways", {"range": RANGE, "order": order})
    field = {
        "REQUESTS": "requests",
        "BANDWIDTH": "bandwidthBytes",
        "ERROR_RATE": "errorRate",
        "UNIQUE_CALLERS": "uniqueCallers",
        "COST": "costUsd",
    }[order]
    assert [g["gateway"] for g in got] == [
        g["gateway"] for g in sorted(want.values(), key=lambda g: (-raw(g[field]), g["gateway"]))
    ]
    assert {g["gateway"]: g for g in got} == want


async def test_agents_and_gateways_read_rollups_per_workspace(api: Api) -> None:
    acme, globex = await api.key("acme"), await api.key("globex")
    await api.ingest(acme, traffic(seed=9))
    await api.ingest(
        globex,
        [
            {
                "id": "x",
                "timestamp": "2026-11-20T09:00:00Z",
                "kind": "agent_run",
                "agent_id": "their-agent",
                "gateway": "their-gw",
                "latency_ms": 50,
            }
        ],
    )
    plans = await explain(api, acme, AGENTS, {"range": RANGE, "order": "RUNS", "desc": True})
    plans += await explain(api, acme, GATEWAYS, {"range": RANGE, "order": "REQUESTS"})
    assert plans and all(p["source"] != "raw" for p in plans), [p["source"] for p in plans]
    agents = await pages(
        api, globex, AGENTS, "agents", {"range": RANGE, "order": "RUNS", "desc": True}
    )
    assert [(a["agentId"], a["runs"], a["avgRunDurationMs"]) for a in agents] == [
        ("their-agent", 1, 50.0)
    ]
    gateways = await pages(api, globex, GATEWAYS, "gateways", {"range": RANGE, "order": "COST"})
    assert [g["gateway"] for g in gateways] == ["their-gw"]
    mine = await pages(api, acme, AGENTS, "agents", {"range": RANGE, "order": "RUNS", "desc": True})
    assert "their-agent" not in {a["agentId"] for a in mine}
