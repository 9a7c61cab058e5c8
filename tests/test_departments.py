"""Departments (cost centres): a user has at most one (upsertUsers, the CLI); each event keeps
the one its user had when it was stored; the DEPARTMENT dimension's rows sum to the total
(events without one under null) and `departments` filters; GROUP breakdowns say their rows
overlap."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from click.testing import CliRunner

from tallyql.cli import main
from tallyql.demo.load import load_demo
from tallyql.storage.tables import users
from tests.conftest import Api
from tests.support.helpers import event_rows, llm, workspace_id_of

UPSERT = """mutation($u: [UserInput!]!) {
  upsertUsers(users: $u) { users { id department } userErrors { field message } }
}"""
METRICS = """query($q: MetricsQueryInput!) { metrics(query: $q) { rows { keys values } } }"""
BREAKDOWN = """query($d: Dimension!, $f: EventFilter) {
  breakdown(dimension: $d, metrics: [REQUESTS, COST_USD], range: {preset: LAST_24H},
            filter: $f, first: 100) { rowsOverlap nodes { key values } }
}"""


async def _by_department(
    api: Api, key: str, spec: dict[str, Any] | None, raw: bool
) -> dict[str | None, list[float]]:
    headers = {"X-Tallyql-Plan": "raw"} if raw else None
    q = {
        "metrics": ["REQUESTS", "COST_USD"],
        "range": {"preset": "LAST_24H"},
        "dimensions": [{"dimension": "DEPARTMENT"}],
        "filter": spec,
    }
    data = await api.data(key, METRICS, {"q": q}, headers=headers)
    return {r["keys"][0]: r["values"] for r in data["metrics"]["rows"]}


async def test_events_keep_the_department_of_their_time(api: Api) -> None:
    key = await api.key()
    data = await api.data(
        key,
        UPSERT,
        {"u": [{"id": "alice", "department": "eng"}, {"id": "bob", "department": "ops"}]},
    )
    assert data["upsertUsers"]["users"] == [
        {"id": "alice", "department": "eng"},
        {"id": "bob", "department": "ops"},
    ]
    first = [
        llm("a1", user_id="alice", cost_usd=1.0),
        llm("b1", user_id="bob", cost_usd=2.0),
        llm("c1", user_id="carol", cost_usd=4.0),  # not in the directory
        llm("n1", cost_usd=8.0),  # no user
    ]
    assert (await api.ingest(key, first))["accepted"] == 4
    # alice moves; leaving department out keeps bob's
    await api.data(key, UPSERT, {"u": [{"id": "alice", "department": "finance"}, {"id": "bob"}]})
    # the detailed path (one invalid event) and GraphQL ingest carry it too
    second = [llm("a2", user_id="alice", cost_usd=16.0), {"id": "bad", "input_tokens": -1}]
    assert (await api.ingest(key, second))["accepted"] == 1
    mutation = "mutation($e: [EventInput!]!) { ingestEvents(events: $e) { accepted } }"
    gql = {"id": "b2", "userId": "bob", "costUsd": 32.0}
    assert (await api.data(key, mutation, {"e": [gql]}))["ingestEvents"]["accepted"] == 1
    # a re-sent event keeps the department it was stored with
    assert (await api.ingest(key, [llm("a1", user_id="alice", cost_usd=1.0)]))["duplicates"] == 1

    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    stored = {r["id"]: r["department"] for r in rows}
    want = {"a1": "eng", "b1": "ops", "c1": None, "n1": None, "a2": "finance", "b2": "ops"}
    assert stored == want

    totals: dict[str | None, list[float]] = {}
    cost = {"a1": 1.0, "b1": 2.0, "c1": 4.0, "n1": 8.0, "a2": 16.0, "b2": 32.0}
    for event_id, department in want.items():
        row = totals.setdefault(department, [0, 0.0])
        row[0] += 1
        row[1] += cost[event_id]
    for raw in (False, True):
        assert await _by_department(api, key, None, raw) == totals
        only = await _by_department(api, key, {"departments": ["ops", "eng"]}, raw)
        assert only == {"ops": [2, 34.0], "eng": [1, 1.0]}

    data = await api.data(key, BREAKDOWN, {"d": "DEPARTMENT", "f": None})
    assert data["breakdown"]["rowsOverlap"] is False
    assert sum(n["values"][0] for n in data["breakdown"]["nodes"]) == 6
    await api.data(
        key,
        'mutation { a: setGroupMembers(group: "g1", userIds: ["alice", "bob"]) { added } '
        'b: setGroupMembers(group: "g2", userIds: ["alice"]) { added } }',
    )
    groups = await api.data(key, BREAKDOWN, {"d": "GROUP", "f": None})
    assert groups["breakdown"]["rowsOverlap"] is True
    assert sum(n["values"][0] for n in groups["breakdown"]["nodes"]) > 6  # alice counts twice


async def test_cli_sets_departments(api: Api, database_url: str) -> None:
    key = await api.key(workspace="acme")
    args = ["users", "set-department", "--workspace", "acme", "--user", "dora", "--user", "ed"]
    args += ["--department", "legal", "--database-url", database_url]
    result = await asyncio.to_thread(CliRunner().invoke, main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["dora: - -> legal", "ed: - -> legal"]
    assert (await api.ingest(key, [llm("d1", user_id="dora")]))["accepted"] == 1
    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    assert [r["department"] for r in rows] == ["legal"]
    clear = ["users", "set-department", "--workspace", "acme", "--user", "ed"]
    clear += ["--database-url", database_url]
    result = await asyncio.to_thread(CliRunner().invoke, main, clear, catch_exceptions=False)
    assert result.output.splitlines() == ["ed: legal -> -"]
    data = await api.data(key, "{ users(first: 10) { nodes { id department } } }")
    assert {n["id"]: n["department"] for n in data["users"]["nodes"]} == {
        "dora": "legal",
        "ed": None,
    }


async def test_demo_gives_every_user_a_department(api: Api) -> None:
    report = await load_demo(api.services, "demo", 1_500, 2, seed=3)
    assert report.accepted == 1_500
    async with api.services.db.read() as conn:
        directory = dict(
            (
                await conn.execute(users.select().with_only_columns(users.c.id, users.c.department))
            ).all()
        )
    assert directory and all(directory.values())
    rows = await event_rows(api.services)
    with_user = [r for r in rows if r["user_id"] is not None]
    assert with_user
    assert all(r["department"] == directory[r["user_id"]] for r in with_user)
    assert Counter(r["department"] for r in with_user).keys() <= set(directory.values())


async def test_committed_records_and_the_request_log_carry_the_department(api: Api) -> None:
    """Commit listeners (live subscriptions filter on it) see the department the writer read."""
    key = await api.key()
    await api.data(key, UPSERT, {"u": [{"id": "alice", "department": "eng"}]})
    seen: dict[str, Any] = {}
    api.services.writer.add_listener(lambda new: seen.update({e.row["id"]: e.row for e in new}))
    events = [llm("l1", user_id="alice"), llm("l2", user_id="zed"), llm("l3")]
    assert (await api.ingest(key, events))["accepted"] == 3
    assert {k: v["department"] for k, v in seen.items()} == {"l1": "eng", "l2": None, "l3": None}
    data = await api.data(
        key, '{ requests(filter: {departments: ["eng"]}) { nodes { id department } } }'
    )
    assert data["requests"]["nodes"] == [{"id": "l1", "department": "eng"}]
