"""toolUsage: totals, over time, by hour, and its four top lists with cursors, recomputed in
Python; answered from rollups; scoped by workspace."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tallyql.storage.directory import set_group_members
from tests.conftest import Api
from tests.support.helpers import workspace_id_of
from tests.support.ops_data import RANGE, status, traffic, ts_of
from tests.support.tool_usage import (
    all_pages,
    expected_tops,
    explain,
    selected,
)

SUMMARY = """
query($range: TimeRangeInput!, $filter: EventFilter) {
  toolUsage(range: $range, filter: $filter) {
    executions errors errorRate blocked avgLatencyMs uniqueTools activeAgentInstances
    activeUsers mcpServers hourlyDistribution
    executionsOverTime(granularity: HOUR) { granularity buckets series { values } }
  }
}"""
TOPS = """
query($range: TimeRangeInput!, $filter: EventFilter, $first: Int!, $a1: String, $a2: String,
      $a3: String, $a4: String) {
  toolUsage(range: $range, filter: $filter) {
    topTools(first: $first, after: $a1) { totalCount pageInfo { hasNextPage endCursor }
      nodes { tool mcpServer calls errors errorRate avgLatencyMs } }
    topAgentInstances(first: $first, after: $a2) { totalCount pageInfo { hasNextPage endCursor }
      nodes { agentInstanceId agentId userId users calls errors } }
    topUsers(first: $first, after: $a3) { totalCount pageInfo { hasNextPage endCursor }
      nodes { userId calls errors } }
    topMcpServers(first: $first, after: $a4) { totalCount pageInfo { hasNextPage endCursor }
      nodes { mcpServer tools calls errors avgLatencyMs } }
  }
}"""
LISTS = {"topTools": "a1", "topAgentInstances": "a2", "topUsers": "a3", "topMcpServers": "a4"}


def check_all(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Every fetched field of every node against the recomputation (a field fetched but not
    recomputed fails, so none goes unchecked)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w


@pytest.mark.parametrize(
    "flt", [None, {"users": ["u0", "u1", "u2"]}, {"groups": ["ops"]}, {"kinds": ["LLM_CALL"]}]
)
async def test_tool_usage(api: Api, flt: dict[str, Any] | None) -> None:
    key = await api.key()
    events = traffic(seed=13, sessions=40, loose=80)
    await api.ingest(key, events)
    ws = await workspace_id_of(api.services, key)
    async with api.services.db.write() as conn:
        await set_group_members(conn, ws, "ops", {"u3", "u5"})
    users = {"users": {"u0", "u1", "u2"}, "groups": {"u3", "u5"}}
    name = next(iter(flt or {}), None)

    def keep(e: dict[str, Any]) -> bool:
        if e["kind"] != "tool_call" or name == "kinds":
            return False
        return name is None or e.get("user_id") in users[name]

    tools = selected(events, keep)
    assert tools or name == "kinds"
    got = (await api.data(key, SUMMARY, {"range": RANGE, "filter": flt}))["toolUsage"]
    n = len(tools)
    errors = sum(status(e) == "error" for e in tools)
    assert got["executions"] == n
    assert got["errors"] == errors
    assert got["errorRate"] == (pytest.approx(errors / n) if n else None)
    assert got["blocked"] == sum(status(e) == "blocked" for e in tools)
    assert got["avgLatencyMs"] == (
        pytest.approx(sum(e["latency_ms"] for e in tools) / n) if n else None
    )
    assert got["uniqueTools"] == len({e["tool"] for e in tools})
    assert got["activeAgentInstances"] == len({e.get("agent_instance_id") for e in tools} - {None})
    assert got["activeUsers"] == len({e.get("user_id") for e in tools} - {None})
    assert got["mcpServers"] == len({e.get("mcp_server") for e in tools} - {None})
    by_hour = Counter(ts_of(e).hour for e in tools)
    assert got["hourlyDistribution"] == [by_hour.get(h, 0) for h in range(24)]
    assert got["executionsOverTime"]["series"][0]["values"] == [
        by_hour.get(h, 0) for h in range(24)
    ]

    tops = await all_pages(api, key, TOPS, "toolUsage", LISTS, flt)
    for list_name, want in expected_tops(tools).items():
        check_all(tops[list_name], want)


async def test_tool_usage_reads_rollups_and_stays_in_its_workspace(api: Api) -> None:
    acme, globex = await api.key("acme"), await api.key("globex")
    events = traffic(seed=2)
    await api.ingest(acme, events)
    await api.ingest(
        globex,
        [
            {
                "id": "g",
                "timestamp": "2026-11-20T10:00:00Z",
                "kind": "tool_call",
                "tool": "secret-tool",
                "mcp_server": "secret",
                "user_id": "gx",
                "agent_id": "ga",
                "agent_instance_id": "gi",
            }
        ],
    )
    plans = await explain(api, acme, TOPS, {"range": RANGE, "first": 10})
    plans += await explain(api, acme, SUMMARY, {"range": RANGE})
    assert plans and all(p["source"] != "raw" for p in plans), [p["source"] for p in plans]
    tops = await all_pages(api, globex, TOPS, "toolUsage", LISTS, None)
    assert [t["tool"] for t in tops["topTools"]] == ["secret-tool"]
    assert [t["userId"] for t in tops["topUsers"]] == ["gx"]
    acme_tops = await all_pages(api, acme, TOPS, "toolUsage", LISTS, None)
    assert "secret-tool" not in {t["tool"] for t in acme_tops["topTools"]}
    assert "gi" not in {t["agentInstanceId"] for t in acme_tops["topAgentInstances"]}
    summary = (await api.data(globex, SUMMARY, {"range": RANGE}))["toolUsage"]
    assert (summary["executions"], summary["activeUsers"], summary["mcpServers"]) == (1, 1, 1)
