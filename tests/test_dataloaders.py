"""Nested objects resolve through per-request DataLoaders: the number of SQL statements of a
nested query does not grow with the number of rows."""

from __future__ import annotations

from tests.conftest import Api
from tests.support.helpers import counting_statements
from tests.support.ops_data import RANGE, traffic

REQUESTS = """
query($n: Int!) { requests(first: $n, filter: {kinds: [LLM_CALL, TOOL_CALL]}) { nodes {
  id userId sessionId
  user { id email groups }
  session { id userId costUsd models { model costUsd } avgLatencyMs user { displayName }
            comparison { costUsd { ratio top5Percent } } }
} } }"""
BREAKDOWNS = """
query($n: Int!, $r: TimeRangeInput!) {
  users: breakdown(dimension: USER, metrics: [REQUESTS], range: $r, first: $n) {
    nodes { key user { id email } agent { agentId } } }
  agents: breakdown(dimension: AGENT, metrics: [COST_USD], range: $r, first: $n) {
    nodes { key agent { agentId runs nodes { node requests } } user { id } } }
  sessions: breakdown(dimension: SESSION, metrics: [REQUESTS], range: $r, first: $n) {
    nodes { key session { id requestCount models { model } } } }
}"""
LISTS = """
query($n: Int!, $r: TimeRangeInput!) {
  sessions(range: $r, first: $n) { nodes { id user { id } models { model }
    comparison { costUsd { ratio } } } }
  users(first: $n) { nodes { id groups usage(range: $r) { requests costUsd } } }
  groups(first: $n) { nodes { name memberCount members { id } usage(range: $r) { requests } } }
  toolUsage(range: $r) { topUsers(first: $n) { nodes { userId user { email } } }
    topAgentInstances(first: $n) { nodes { agentInstanceId user { id } } } }
}"""


# key, 3 breakdowns, users, agent figures (3 statements), agent nodes, sessions, their models
BREAKDOWN_STATEMENTS = 11
# key, sessions (page, models, users, statistics), users (page, count, groups, usage), groups
# (page, count, members, their users, usage), top users and instances (engine, users): a
# loader may need a second batch for ids first asked for one level deeper
LIST_STATEMENTS = 20


async def seeded(api: Api) -> str:
    key = await api.key()
    events = traffic(seed=51, sessions=60, loose=100)
    await api.ingest(key, events)
    users = [
        {"id": f"u{i}", "email": f"u{i}@example.com", "displayName": f"U{i}"} for i in range(6)
    ]
    await api.data(
        key, "mutation($u: [UserInput!]!) { upsertUsers(users: $u) { created } }", {"u": users}
    )
    for name, ids in (("red", ["u0", "u1"]), ("blue", ["u2", "u3", "u4"]), ("green", ["u5"])):
        await api.data(
            key,
            "mutation($g: String!, $i: [String!]!) { setGroupMembers(group: $g,"
            " userIds: $i) { added } }",
            {"g": name, "i": ids},
        )
    return key


async def statement_counts(api: Api, key: str, query: str, sizes: tuple[int, ...]) -> dict:
    counts = {}
    for n in sizes:
        with counting_statements(api.services) as statements:
            data = await api.data(key, query, {"n": n, "r": RANGE})
        counts[n] = len(statements)
        assert data
        assert counts[n] >= 2, statements  # at least the key and the page were counted
    return counts


async def test_request_users_and_sessions(api: Api) -> None:
    key = await seeded(api)
    counts = await statement_counts(api, key, REQUESTS, (2, 10, 60))
    # key, the workspace's first and last events and the filter's matches by bucket (how far
    # back the page reads raw events), page, users, user groups, sessions, session models,
    # session latencies by kind (avgLatencyMs covers LLM calls only), session users, the
    # statistics of every session (a loader reads only ids it has not seen yet in this
    # request, so fewer rows may need fewer statements)
    assert max(counts.values()) <= 10, counts
    data = await api.data(key, REQUESTS, {"n": 60})
    nodes = data["requests"]["nodes"]
    with_user = [n for n in nodes if n["userId"]]
    assert with_user and all(n["user"]["id"] == n["userId"] for n in with_user)
    assert all(n["user"] is None for n in nodes if not n["userId"])
    with_session = [n for n in nodes if n["sessionId"]]
    assert with_session and all(n["session"]["id"] == n["sessionId"] for n in with_session)


async def test_breakdown_nodes(api: Api) -> None:
    key = await seeded(api)
    counts = await statement_counts(api, key, BREAKDOWNS, (1, 3, 20))
    assert max(counts.values()) <= BREAKDOWN_STATEMENTS, counts
    data = await api.data(key, BREAKDOWNS, {"n": 20, "r": RANGE})
    users = data["users"]["nodes"]
    assert all(n["user"]["id"] == n["key"] for n in users if n["key"])
    assert all(n["agent"] is None for n in users)  # not an AGENT breakdown
    agents = [n for n in data["agents"]["nodes"] if n["key"]]
    assert agents and all(n["agent"]["agentId"] == n["key"] and n["user"] is None for n in agents)
    assert any(n["agent"]["nodes"] for n in agents)
    sessions = [n for n in data["sessions"]["nodes"] if n["key"]]
    assert sessions and all(n["session"]["id"] == n["key"] for n in sessions)


async def test_lists_with_nested_objects(api: Api) -> None:
    key = await seeded(api)
    counts = await statement_counts(api, key, LISTS, (1, 3, 20))
    assert max(counts.values()) <= LIST_STATEMENTS, counts
