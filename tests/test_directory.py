"""Users and groups: upsertUsers, setGroupMembers (audited, MANAGE only), the users and groups
connections with usage totals recomputed in Python, and tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest

from tallyql.auth.principal import Role
from tests.conftest import Api
from tests.support.ops_data import RANGE, nano, status, traffic

UPSERT = """
mutation($users: [UserInput!]!) {
  upsertUsers(users: $users) { created updated users { id email displayName }
                               userErrors { field message code index } }
}"""
SET_MEMBERS = """
mutation($group: String!, $ids: [String!]!, $description: String) {
  setGroupMembers(group: $group, userIds: $ids, description: $description) {
    group { name description memberIds memberCount } added removed
    userErrors { field code index }
  }
}"""
USAGE = "usage(range: $range) { requests errors inputTokens outputTokens totalTokens costUsd }"
USERS = """
query($search: String, $first: Int!, $after: String, $range: TimeRangeInput!) {
  users(search: $search, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id email displayName groups USAGE }
  }
}""".replace("USAGE", USAGE)
GROUPS = """
query($range: TimeRangeInput!) {
  groups(first: 10) { totalCount nodes { name memberIds members { id } USAGE } }
}""".replace("USAGE", USAGE)
AUDIT = """
query($filter: AuditFilter) { auditEvents(filter: $filter, first: 100) {
  nodes { actorId actorType action resourceType resourceId outcome details } } }"""


def usage(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests": len(events),
        "errors": sum(status(e) == "error" for e in events),
        "inputTokens": sum(e.get("input_tokens", 0) for e in events),
        "outputTokens": sum(e.get("output_tokens", 0) for e in events),
        "totalTokens": sum(e.get("input_tokens", 0) + e.get("output_tokens", 0) for e in events),
        "costUsd": pytest.approx(sum(nano(e) for e in events) / 1e9),
    }


async def test_users_and_groups(api: Api) -> None:
    key = await api.key()
    events = traffic(seed=41, sessions=30, loose=60)
    await api.ingest(key, events)
    people = [
        {"id": "u0", "email": "ada@example.com", "displayName": "Ada"},
        {"id": "u1", "email": "bob@example.com", "displayName": "Bob"},
        {"id": "u2", "email": "cy@example.com"},
    ]
    done = (await api.data(key, UPSERT, {"users": people}))["upsertUsers"]
    assert (done["created"], done["updated"], done["userErrors"]) == (3, 0, [])
    # left-out fields keep their value; null clears
    done = await api.data(
        key,
        UPSERT,
        {"users": [{"id": "u0", "email": "ada@new.example"}, {"id": "u2", "email": None}]},
    )
    assert done["upsertUsers"]["users"] == [
        {"id": "u0", "email": "ada@new.example", "displayName": "Ada"},
        {"id": "u2", "email": None, "displayName": None},
    ]
    assert (done["upsertUsers"]["created"], done["upsertUsers"]["updated"]) == (0, 2)
    await api.data(key, UPSERT, {"users": [{"id": "u1", "displayName": "Bob"}]})  # no change

    added = await api.data(
        key, SET_MEMBERS, {"group": "red", "ids": ["u0", "u1", "u5"], "description": "Red team"}
    )
    assert added["setGroupMembers"]["added"] == ["u0", "u1", "u5"]
    changed = await api.data(key, SET_MEMBERS, {"group": "red", "ids": ["u1", "u2", "u5"]})
    result = changed["setGroupMembers"]
    assert (result["added"], result["removed"]) == (["u2"], ["u0"])
    assert result["group"] == {
        "name": "red",
        "description": "Red team",
        "memberIds": ["u1", "u2", "u5"],
        "memberCount": 3,
    }
    await api.data(key, SET_MEMBERS, {"group": "blue", "ids": ["u0"]})

    listed: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await api.data(key, USERS, {"first": 2, "after": after, "range": RANGE}))["users"]
        listed += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert page["totalCount"] == 3
    assert [u["id"] for u in listed] == ["u0", "u1", "u2"]
    in_range = [e for e in events if e["timestamp"].startswith("2026-11-20")]
    for user in listed:
        assert user["usage"] == usage([e for e in in_range if e.get("user_id") == user["id"]])
    assert {u["id"]: u["groups"] for u in listed} == {"u0": ["blue"], "u1": ["red"], "u2": ["red"]}
    found = await api.data(key, USERS, {"search": "BOB@", "first": 10, "range": RANGE})
    assert [u["id"] for u in found["users"]["nodes"]] == ["u1"]

    groups = (await api.data(key, GROUPS, {"range": RANGE}))["groups"]
    assert [g["name"] for g in groups["nodes"]] == ["blue", "red"]
    red = groups["nodes"][1]
    assert [m["id"] for m in red["members"]] == ["u1", "u2"]  # u5 is not in the directory
    assert red["usage"] == usage([e for e in in_range if e.get("user_id") in {"u1", "u2", "u5"}])

    trail = await api.data(key, AUDIT, {"filter": {"resourceTypes": ["user", "group"]}})
    entries = [
        (n["action"], n["resourceType"], n["resourceId"])
        for n in reversed(trail["auditEvents"]["nodes"])
    ]
    assert sorted(entries[:3]) == [("CREATE", "user", u) for u in ("u0", "u1", "u2")]
    assert sorted(entries[3:5]) == [("UPDATE", "user", "u0"), ("UPDATE", "user", "u2")]
    assert entries[5:] == [
        ("CREATE", "group", "red"),
        ("UPDATE", "group", "red"),
        ("CREATE", "group", "blue"),
    ]
    nodes = trail["auditEvents"]["nodes"]
    assert all(n["actorType"] == "API_KEY" and n["actorId"] for n in nodes)
    red_update = next(n for n in nodes if n["action"] == "UPDATE" and n["resourceId"] == "red")
    assert red_update["details"] == {"added": ["u2"], "removed": ["u0"]}


async def test_permissions_validation_and_isolation(api: Api) -> None:
    admin, viewer = await api.key("acme"), await api.key("acme", Role.VIEWER)
    member, globex = await api.key("acme", Role.MEMBER), await api.key("globex")
    body = await api.graphql(viewer, UPSERT, {"users": [{"id": "x"}]})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await api.graphql(viewer, SET_MEMBERS, {"group": "g", "ids": []})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await api.data(member, UPSERT, {"users": [{"id": "m1"}]}))["upsertUsers"][
        "created"
    ] == 1

    bad = await api.data(
        admin,
        UPSERT,
        {"users": [{"id": "a"}, {"id": "a"}, {"id": ""}, {"id": "b", "email": "x" * 400}]},
    )
    codes = {(e["field"], e["code"], e["index"]) for e in bad["upsertUsers"]["userErrors"]}
    assert codes == {("id", "DUPLICATE", 1), ("id", "REQUIRED", 2), ("email", "TOO_LONG", 3)}
    assert bad["upsertUsers"]["created"] == 0
    bad = await api.data(admin, SET_MEMBERS, {"group": " ", "ids": ["ok", ""]})
    assert {e["code"] for e in bad["setGroupMembers"]["userErrors"]} == {"INVALID"}

    await api.data(admin, SET_MEMBERS, {"group": "secret", "ids": ["m1"]})
    await api.ingest(
        admin, [{"id": "e1", "timestamp": "2026-11-20T10:00:00Z", "user_id": "m1", "cost_usd": 2.0}]
    )
    await api.ingest(
        globex,
        [{"id": "e1", "timestamp": "2026-11-20T10:00:00Z", "user_id": "m1", "cost_usd": 5.0}],
    )
    theirs = await api.data(globex, USERS, {"first": 10, "range": RANGE})
    assert theirs["users"]["totalCount"] == 0
    assert (await api.data(globex, GROUPS, {"range": RANGE}))["groups"]["totalCount"] == 0
    assert (await api.data(globex, '{ user(id: "m1") { id } }'))["user"] is None
    assert (await api.data(globex, '{ group(name: "secret") { name } }'))["group"] is None
    mine = await api.data(admin, USERS, {"first": 10, "range": RANGE})
    m1 = next(u for u in mine["users"]["nodes"] if u["id"] == "m1")
    assert m1["usage"]["costUsd"] == 2.0
    assert m1["groups"] == ["secret"]
    trail = await api.data(globex, AUDIT, {"filter": {"resourceTypes": ["user", "group"]}})
    assert trail["auditEvents"]["nodes"] == []
