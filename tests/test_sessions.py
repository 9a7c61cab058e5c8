"""sessions, sessionStats: every order with cursors, the filter set's semantics, exact
percentiles, and tenant isolation; all against a plain-Python recomputation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tallyql.storage.directory import set_group_members
from tests.conftest import Api
from tests.support.helpers import workspace_id_of
from tests.support.ops_data import (
    DAY,
    RANGE,
    in_window,
    iso,
    quantile,
    status,
    traffic,
)
from tests.support.sessions import STATS, Expected, expected_sessions

LIST = """
query($range: TimeRangeInput!, $filter: EventFilter, $order: SessionOrder!, $desc: Boolean!,
      $first: Int!, $after: String) {
  sessions(range: $range, filter: $filter, orderBy: $order, descending: $desc, first: $first,
           after: $after) {
    totalCount
    edges { cursor node { id userId agentId requestCount errorCount inputTokens outputTokens
                          totalTokens costUsd durationMs firstTimestamp lastTimestamp } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def matching(
    sessions: dict[str, Expected],
    start: datetime,
    end: datetime,
    members: dict[str, set[str]] | None = None,
    **flt: Any,
) -> list[Expected]:
    """The filter set by the documented rules, recomputed."""
    out = []
    for s in sessions.values():
        if not (s.first < end and s.last >= start):
            continue
        if "providers" in flt and not any(e.get("provider") in flt["providers"] for e in s.events):
            continue
        if "users" in flt and s.user not in flt["users"]:
            continue
        if "groups" in flt:
            allowed = set().union(*(members[g] for g in flt["groups"]))  # type: ignore[index]
            if s.user not in allowed:
                continue
        if "agents" in flt and s.agent not in flt["agents"]:
            continue
        if "kinds" in flt and not any(
            e["kind"] in flt["kinds"] and in_window(e, start, end) for e in s.events
        ):
            continue
        if "tools" in flt and not any(
            e.get("tool") in flt["tools"] and in_window(e, start, end) for e in s.events
        ):
            continue
        out.append(s)
    return out


async def list_all(
    api: Api, key: str, order: str, desc: bool, rng: dict, flt: dict | None = None, first: int = 4
) -> tuple[list[dict[str, Any]], int]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        variables = {
            "range": rng,
            "filter": flt,
            "order": order,
            "desc": desc,
            "first": first,
            "after": after,
        }
        page = (await api.data(key, LIST, variables))["sessions"]
        nodes += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes, page["totalCount"]
        after = page["pageInfo"]["endCursor"]


@pytest.mark.parametrize("order", ["COST", "TOKENS", "RECENT", "DURATION", "REQUESTS"])
async def test_every_order_pages_through_every_session(api: Api, order: str) -> None:
    key = await api.key()
    events = traffic()
    assert (await api.ingest(key, events))["accepted"] == len(events)
    sessions = expected_sessions(events)
    for desc in (True, False):
        nodes, total = await list_all(api, key, order, desc, RANGE)
        want = sorted(sessions.values(), key=lambda s: (s.order_value(order), s.id), reverse=desc)
        assert [n["id"] for n in nodes] == [s.id for s in want]
        assert total == len(sessions)
    by_id = {n["id"]: n for n in nodes}
    for s in sessions.values():
        node = by_id[s.id]
        assert node["requestCount"] == len(s.events)
        assert node["errorCount"] == sum(status(e) == "error" for e in s.events)
        assert node["inputTokens"] == sum(e.get("input_tokens", 0) for e in s.events)
        assert node["totalTokens"] == s.tokens
        assert node["costUsd"] == pytest.approx(s.cost / 1e9)
        assert node["durationMs"] == pytest.approx(s.duration_us / 1000)
        assert node["firstTimestamp"].replace("+00:00", "Z") == iso(s.first)
        assert (node["userId"], node["agentId"]) == (s.user, s.agent)


async def test_the_filter_set(api: Api) -> None:
    key = await api.key()
    events = traffic(seed=11)
    await api.ingest(key, events)
    sessions = expected_sessions(events)
    members = {"red": {"u0", "u1"}, "blue": {"u4"}}
    ws = await workspace_id_of(api.services, key)
    async with api.services.db.write() as conn:
        for name, users in members.items():
            await set_group_members(conn, ws, name, users)
    start, end = DAY.replace(hour=6), DAY.replace(hour=15)
    window = {"start": iso(start), "end": iso(end)}
    cases: list[dict[str, Any]] = [
        {},
        {"providers": ["anthropic"]},
        {"users": ["u1", "u3"]},
        {"groups": ["red"]},
        {"groups": ["red", "blue"], "providers": ["openai"]},
        {"agents": ["a2"]},
        {"kinds": ["tool_call"]},
        {"tools": ["search"], "users": ["u0", "u1", "u2"]},
    ]
    for flt in cases:
        gql = {**flt, "kinds": [k.upper() for k in flt["kinds"]]} if "kinds" in flt else flt
        nodes, total = await list_all(api, key, "COST", True, window, gql or None, first=100)
        want = matching(sessions, start, end, members, **flt)
        assert sorted(n["id"] for n in nodes) == sorted(s.id for s in want), flt
        assert total == len(want)
        stats = await api.data(key, STATS, {"range": window, "filter": gql or None})
        check_stats(stats["sessionStats"], want)
    # a group means its members now: moving u3 into red brings u3's sessions along
    async with api.services.db.write() as conn:
        await set_group_members(conn, ws, "red", {"u0", "u1", "u3"})
    nodes, _ = await list_all(api, key, "COST", True, window, {"groups": ["red"]}, first=100)
    members["red"] = {"u0", "u1", "u3"}
    want = matching(sessions, start, end, members, groups=["red"])
    assert sorted(n["id"] for n in nodes) == sorted(s.id for s in want)
    assert any(s.user == "u3" for s in want)


def check_stats(stats: dict[str, Any], sessions: list[Expected]) -> None:
    assert stats["sessions"] == len(sessions)
    measures = {
        "costUsd": [s.cost / 1e9 for s in sessions],
        "totalTokens": [float(s.tokens) for s in sessions],
        "durationMs": [s.duration_us / 1000 for s in sessions],
        "requests": [float(len(s.events)) for s in sessions],
    }
    for name, values in measures.items():
        got = stats[name]
        if not values:
            assert got == {"p50": None, "avg": None, "p95": None}
            continue
        assert got["p50"] == pytest.approx(quantile(values, 0.5)), name
        assert got["p95"] == pytest.approx(quantile(values, 0.95)), name
        assert got["avg"] == pytest.approx(sum(values) / len(values)), name


async def test_stats_over_many_sessions_are_exact(api: Api) -> None:
    key = await api.key()
    events = traffic(seed=5, sessions=120, loose=0)
    await api.ingest(key, events)
    sessions = list(expected_sessions(events).values())
    stats = (await api.data(key, STATS, {"range": RANGE}))["sessionStats"]
    check_stats(stats, sessions)


async def test_workspaces_see_only_their_sessions(api: Api) -> None:
    acme, globex = await api.key("acme"), await api.key("globex")
    events = traffic(seed=3)
    await api.ingest(acme, events)
    theirs = [dict(e, cost_usd=1.0) for e in traffic(seed=4, sessions=5, loose=0)]
    await api.ingest(globex, theirs)
    nodes, total = await list_all(api, globex, "COST", True, RANGE, first=100)
    assert total == len(expected_sessions(theirs)) == len(nodes)
    assert all(n["costUsd"] >= 1.0 for n in nodes)
    stats = (await api.data(acme, STATS, {"range": RANGE}))["sessionStats"]
    check_stats(stats, list(expected_sessions(events).values()))
    # a cursor from one workspace pages only the caller's own sessions elsewhere
    page = await api.data(globex, LIST, {"range": RANGE, "order": "COST", "desc": True, "first": 1})
    cursor = page["sessions"]["pageInfo"]["endCursor"]
    rest = await api.data(
        acme, LIST, {"range": RANGE, "order": "COST", "desc": True, "first": 100, "after": cursor}
    )
    assert {e["node"]["id"] for e in rest["sessions"]["edges"]} <= set(expected_sessions(events))
    detail = '{ session(id: "s0") { id costUsd } }'
    assert (await api.data(globex, detail))["session"]["costUsd"] >= 1.0
    assert (await api.data(acme, detail))["session"]["costUsd"] < 1.0


async def test_bad_cursors_and_page_sizes_are_user_errors(api: Api) -> None:
    key = await api.key()
    await api.ingest(key, traffic(sessions=3, loose=0))
    page = await api.data(key, LIST, {"range": RANGE, "order": "COST", "desc": True, "first": 1})
    cursor = page["sessions"]["pageInfo"]["endCursor"]
    for variables in (
        {"order": "TOKENS", "desc": True, "first": 1, "after": cursor},
        {"order": "COST", "desc": False, "first": 1, "after": cursor},
        {"order": "COST", "desc": True, "first": 1, "after": "garbage"},
        {"order": "COST", "desc": True, "first": 101},
    ):
        body = await api.graphql(key, LIST, {"range": RANGE, **variables})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", variables
