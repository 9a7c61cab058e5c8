"""toolUsage: totals, over time, by hour, and its four top lists with cursors, recomputed in
Python; answered from rollups; scoped by workspace."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tallyql.storage.directory import set_group_members
from tests.conftest import Api
from tests.helpers import workspace_id_of
from tests.ops_data import DAY, RANGE, group, in_window, status, traffic, ts_of

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


def selected(events: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> list:
    return [e for e in events if in_window(e, DAY, DAY.replace(day=21)) and keep(e)]


def ranked(groups: dict[Any, list[dict[str, Any]]]) -> list[tuple[Any, list[dict[str, Any]]]]:
    def texts(key: Any) -> tuple[str, ...]:
        key = key if isinstance(key, tuple) else (key,)
        return tuple("" if k is None else str(k) for k in key)

    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), texts(kv[0])))


def top_user(evs: list[dict[str, Any]]) -> tuple[str | None, int]:
    counts = Counter(e["user_id"] for e in evs if e.get("user_id"))
    if not counts:
        return None, 0
    best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return best[0], len(counts)


def expected_tops(tools: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    def errors(evs: list[dict[str, Any]]) -> int:
        return sum(status(e) == "error" for e in evs)

    def error_rate(evs: list[dict[str, Any]]) -> Any:
        return pytest.approx(errors(evs) / len(evs))

    def avg_latency(evs: list[dict[str, Any]]) -> Any:
        timed = [e["latency_ms"] for e in evs if e.get("latency_ms") is not None]
        return pytest.approx(sum(timed) / len(timed)) if timed else None

    by_instance = group(
        (e for e in tools if e.get("agent_instance_id")),
        lambda e: (e["agent_instance_id"], e.get("agent_id")),
    )
    return {
        "topTools": [
            {
                "tool": k[0],
                "mcpServer": k[1],
                "calls": len(v),
                "errors": errors(v),
                "errorRate": error_rate(v),
                "avgLatencyMs": avg_latency(v),
            }
            for k, v in ranked(group(tools, lambda e: (e["tool"], e.get("mcp_server"))))
        ],
        "topAgentInstances": [
            {
                "agentInstanceId": k[0],
                "agentId": k[1],
                "userId": top_user(v)[0],
                "users": top_user(v)[1],
                "calls": len(v),
                "errors": errors(v),
            }
            for k, v in ranked(by_instance)
        ],
        "topUsers": [
            {"userId": k, "calls": len(v), "errors": errors(v)}
            for k, v in ranked(
                group((e for e in tools if e.get("user_id")), lambda e: e["user_id"])
            )
        ],
        "topMcpServers": [
            {
                "mcpServer": k,
                "tools": len({e["tool"] for e in v}),
                "calls": len(v),
                "errors": errors(v),
                "avgLatencyMs": avg_latency(v),
            }
            for k, v in ranked(
                group((e for e in tools if e.get("mcp_server")), lambda e: e["mcp_server"])
            )
        ],
    }


async def all_pages(
    api: Api, key: str, query: str, root: str, lists: dict[str, str], flt: dict | None
) -> dict[str, list[dict[str, Any]]]:
    """Every list paged 2 at a time (each list follows its own cursor)."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in lists}
    cursors: dict[str, str | None] = dict.fromkeys(lists.values())
    done: set[str] = set()
    while len(done) < len(lists):
        variables = {"range": RANGE, "filter": flt, "first": 2, **cursors}
        data = (await api.data(key, query, variables))[root]
        for name, arg in lists.items():
            if name in done:
                continue
            page = data[name]
            out[name] += page["nodes"]
            if page["pageInfo"]["hasNextPage"]:
                cursors[arg] = page["pageInfo"]["endCursor"]
            else:
                done.add(name)
                assert page["totalCount"] == len(out[name])
    return out


def check_subset(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Every fetched field against the recomputation, for lists that fetch fewer fields than it
    has (a fetched field it lacks fails: none goes unchecked)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) <= set(w), set(g) - set(w)
        assert g == {k: w[k] for k in g}


def check_all(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Every fetched field of every node against the recomputation (a field fetched but not
    recomputed fails, so none goes unchecked)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w


async def explain(api: Api, key: str, query: str, variables: dict[str, Any]) -> list[dict]:
    response = await api.client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["extensions"]["plans"]


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
