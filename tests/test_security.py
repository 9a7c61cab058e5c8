"""security: blocked calls, over time, the top blocked lists and policies under the names
they had when they blocked; recomputed in Python, from rollups, per workspace."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api
from tests.support.ops_data import DAY, RANGE, group, iso, status, traffic, ts_of
from tests.support.tool_usage import (
    all_pages,
    check_subset,
    expected_tops,
    explain,
    ranked,
    selected,
)

SUMMARY = """
query($range: TimeRangeInput!, $filter: EventFilter) {
  security(range: $range, filter: $filter) {
    blockedCalls totalRequests blockedRate
    blockedOverTime(granularity: HOUR) { buckets series { values } }
  }
}"""
TOPS = """
query($range: TimeRangeInput!, $filter: EventFilter, $first: Int!, $a1: String, $a2: String,
      $a3: String, $a4: String, $a5: String) {
  security(range: $range, filter: $filter) {
    topBlockedTools(first: $first, after: $a1) { totalCount pageInfo { hasNextPage endCursor }
      nodes { tool mcpServer calls errors } }
    topBlockedAgentInstances(first: $first, after: $a2) { totalCount
      pageInfo { hasNextPage endCursor } nodes { agentInstanceId agentId userId users calls } }
    topBlockedUsers(first: $first, after: $a3) { totalCount pageInfo { hasNextPage endCursor }
      nodes { userId calls } }
    topBlockedMcpServers(first: $first, after: $a4) { totalCount
      pageInfo { hasNextPage endCursor } nodes { mcpServer tools calls } }
    topPolicies(first: $first, after: $a5) { totalCount pageInfo { hasNextPage endCursor }
      nodes { policyId policyName policyDescription blockedCalls } }
  }
}"""
LISTS = {
    "topBlockedTools": "a1",
    "topBlockedAgentInstances": "a2",
    "topBlockedUsers": "a3",
    "topBlockedMcpServers": "a4",
    "topPolicies": "a5",
}
RENAMES = [
    {
        "id": f"r{i}",
        "timestamp": iso(DAY.replace(hour=20, minute=i)),
        "kind": "tool_call",
        "tool": "shell",
        "status": "blocked",
        "policy_id": "pol-1",
        "policy_name": "Shell off",
        "policy_description": f"Shell is disabled (v{i})",
        "user_id": "u9",
    }
    for i in range(3)
]


@pytest.mark.parametrize("flt", [None, {"users": ["u1", "u2", "u9"]}, {"kinds": ["LLM_CALL"]}])
async def test_security(api: Api, flt: dict[str, Any] | None) -> None:
    key = await api.key()
    events = traffic(seed=17, sessions=40, loose=80) + RENAMES
    await api.ingest(key, events)
    name = next(iter(flt or {}), None)

    def keep(e: dict[str, Any]) -> bool:
        if name == "users":
            return e.get("user_id") in flt["users"]  # type: ignore[index]
        return name != "kinds" or e["kind"] == "llm_call"

    everything = selected(events, keep)
    blocked = [e for e in everything if status(e) == "blocked"]
    assert blocked or name == "kinds"
    got = (await api.data(key, SUMMARY, {"range": RANGE, "filter": flt}))["security"]
    assert got["blockedCalls"] == len(blocked)
    assert got["totalRequests"] == len(everything)
    assert got["blockedRate"] == pytest.approx(len(blocked) / len(everything))
    by_hour = Counter(ts_of(e).hour for e in blocked)
    assert got["blockedOverTime"]["series"][0]["values"] == [by_hour.get(h, 0) for h in range(24)]

    tops = await all_pages(api, key, TOPS, "security", LISTS, flt)
    want = expected_tops(blocked)
    check_subset(tops["topBlockedTools"], want["topTools"])
    check_subset(tops["topBlockedAgentInstances"], want["topAgentInstances"])
    check_subset(tops["topBlockedUsers"], want["topUsers"])
    check_subset(tops["topBlockedMcpServers"], want["topMcpServers"])
    policies = ranked(group(blocked, lambda e: (e["policy_id"], e["policy_name"])))
    expected_policies = [
        {
            "policyId": pid,
            "policyName": pname,
            "policyDescription": max(evs, key=ts_of)["policy_description"],
            "blockedCalls": len(evs),
        }
        for (pid, pname), evs in policies
    ]
    assert tops["topPolicies"] == expected_policies
    if name is None:  # the renamed policy reads under both names, each as it was recorded
        names = {(p["policyId"], p["policyName"]) for p in tops["topPolicies"]}
        assert {("pol-1", "No shell"), ("pol-1", "Shell off")} <= names
        renamed = next(p for p in tops["topPolicies"] if p["policyName"] == "Shell off")
        assert renamed["policyDescription"] == "Shell is disabled (v2)"


async def test_security_reads_rollups_and_stays_in_its_workspace(api: Api) -> None:
    acme, globex = await api.key("acme"), await api.key("globex")
    await api.ingest(acme, traffic(seed=1))
    await api.ingest(globex, RENAMES)
    plans = await explain(api, acme, TOPS, {"range": RANGE, "first": 10})
    plans += await explain(api, acme, SUMMARY, {"range": RANGE})
    assert plans and all(p["source"] != "raw" for p in plans), [p["source"] for p in plans]
    theirs = await all_pages(api, globex, TOPS, "security", LISTS, None)
    assert theirs["topPolicies"] == [
        {
            "policyId": "pol-1",
            "policyName": "Shell off",
            "policyDescription": "Shell is disabled (v2)",
            "blockedCalls": 3,
        }
    ]
    mine = await all_pages(api, acme, TOPS, "security", LISTS, None)
    assert "Shell off" not in {p["policyName"] for p in mine["topPolicies"]}
    assert "u9" not in {u["userId"] for u in mine["topBlockedUsers"]}


async def test_policy_name_dimension(api: Api) -> None:
    key = await api.key()
    events = traffic(seed=23) + RENAMES
    await api.ingest(key, events)
    query = """query($r: TimeRangeInput!) { breakdown(dimension: POLICY_NAME, metrics: [BLOCKED,
               REQUESTS], range: $r, first: 100) { nodes { key values } } }"""
    plans = await explain(api, key, query, {"r": RANGE})
    assert [p["source"] for p in plans] == ["rollup:tools"]
    got = (await api.data(key, query, {"r": RANGE}))["breakdown"]["nodes"]
    by_name = group(selected(events, lambda e: True), lambda e: e.get("policy_name"))
    want = {
        name: [sum(status(e) == "blocked" for e in evs), len(evs)] for name, evs in by_name.items()
    }
    assert {n["key"]: n["values"] for n in got} == want
    assert {"No shell", "PII guard", "Shell off", None} == set(want)


async def test_policy_descriptions_over_several_days(api: Api) -> None:
    """The latest description of each policy in the window, whether it last blocked on the
    window's last day (looked at first) or only before it."""
    key = await api.key()
    start = DAY - timedelta(days=2)

    def blocked(n: int, at: datetime, policy: str, description: str) -> dict[str, Any]:
        return {
            "id": f"pd{n}",
            "timestamp": iso(at),
            "kind": "tool_call",
            "tool": "shell",
            "status": "blocked",
            "policy_id": policy,
            "policy_name": policy.upper(),
            "policy_description": description,
        }

    events = [
        blocked(0, start + timedelta(hours=1), "early", "early v1"),
        blocked(1, start + timedelta(hours=30), "early", "early v2"),  # its last: day 2 of 3
        blocked(2, start + timedelta(hours=2), "both", "both v1"),
        blocked(3, DAY + timedelta(hours=5), "both", "both v2"),  # on the last day
        blocked(4, DAY + timedelta(hours=6), "late", "late v1"),
        blocked(5, DAY + timedelta(days=1, hours=1), "early", "after the window"),
    ]
    await api.ingest(key, events)
    query = """query($r: TimeRangeInput!) { security(range: $r) {
        topPolicies { nodes { policyId policyDescription blockedCalls } } } }"""
    window = {"start": iso(start), "end": iso(DAY + timedelta(days=1))}
    nodes = (await api.data(key, query, {"r": window}))["security"]["topPolicies"]["nodes"]
    assert {n["policyId"]: (n["policyDescription"], n["blockedCalls"]) for n in nodes} == {
        "early": ("early v2", 2),
        "both": ("both v2", 2),
        "late": ("late v1", 1),
    }
