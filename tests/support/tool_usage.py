"""toolUsage's top lists recomputed in Python, paging through every page, and explain
(shared by test_tool_usage, test_security and test_agents_gateways)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Api
from tests.support.ops_data import DAY, RANGE, group, in_window, status


def selected(events: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> list:
    return [e for e in events if in_window(e, DAY, DAY.replace(day=21)) and keep(e)]


def ranked(groups: dict[Any, list[dict[str, Any]]]) -> list[tuple[Any, list[dict[str, Any]]]]:
    def texts(key: Any) -> tuple[str, ...]:
        key = key if isinstance(key, tuple) else (key,)
        return tuple("" if k is None else str(k) for k in key)

    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), texts(kv[0])))


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


async def explain(api: Api, key: str, query: str, variables: dict[str, Any]) -> list[dict]:
    response = await api.client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["extensions"]["plans"]


def top_user(evs: list[dict[str, Any]]) -> tuple[str | None, int]:
    counts = Counter(e["user_id"] for e in evs if e.get("user_id"))
    if not counts:
        return None, 0
    best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return best[0], len(counts)
