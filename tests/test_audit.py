"""The audit trail: POST /v1/audit-events and recordAuditEvents (formats, per-item errors,
idempotency, permissions), and auditEvents (filters, range, keyset pages, isolation)."""

from __future__ import annotations

import gzip
import random
from typing import Any

import orjson

from tallyql.auth.principal import Role
from tests.conftest import Api

QUERY = """
query($range: TimeRangeInput, $filter: AuditFilter, $first: Int!, $after: String) {
  auditEvents(range: $range, filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id timestamp actorId actorType action resourceType resourceId sourceIp outcome
            details }
  }
}"""
RECORD = """
mutation($events: [AuditEventInput!]!) {
  recordAuditEvents(events: $events) { accepted duplicates rejected
                                       userErrors { field message code index } }
}"""
ACTIONS = ("create", "update", "delete", "execute", "login", "export", "block")


def trail(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": f"a{i:03d}",
            "timestamp": f"2026-11-{10 + i % 10:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            "actor_id": rng.choice(("alice", "bob", "ci-bot")),
            "actor_type": rng.choice(("user", "api_key", "system")),
            "action": rng.choice(ACTIONS),
            "resource_type": rng.choice(("budget", "prompt", "model")),
            "resource_id": f"r{rng.randrange(5)}",
            "source_ip": rng.choice(("10.0.0.1", "192.168.1.7", "2001:db8::1")),
            "outcome": rng.choice(("success", "failure", "denied")),
            "details": {"n": i},
        }
        for i in range(n)
    ]


async def post(api: Api, key: str, body: bytes, **headers: str) -> Any:
    return await api.client.post(
        "/v1/audit-events", content=body, headers={"Authorization": f"Bearer {key}", **headers}
    )


async def everything(api: Api, key: str, flt: dict | None = None, rng: dict | None = None) -> list:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        variables = {"filter": flt, "range": rng, "first": 7, "after": after}
        page = (await api.data(key, QUERY, variables))["auditEvents"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            assert page["totalCount"] == len(nodes)
            return nodes
        after = page["pageInfo"]["endCursor"]


async def test_ingest_formats_errors_and_idempotency(api: Api) -> None:
    ingest, admin = await api.key(role=Role.INGEST), await api.key()
    items = trail(40)
    first = await post(
        api, ingest, orjson.dumps(items[:20]), **{"Content-Type": "application/json"}
    )
    assert first.status_code == 200
    assert first.json() == {"accepted": 20, "duplicates": 0, "rejected": 0, "errors": []}
    ndjson = b"\n".join(orjson.dumps(i) for i in items[20:30])
    second = await post(
        api,
        ingest,
        gzip.compress(ndjson),
        **{"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert second.json()["accepted"] == 10
    wrapped = orjson.dumps({"events": items[25:40]})  # 5 repeats
    third = await post(api, ingest, wrapped, **{"Content-Type": "application/json"})
    assert third.json() == {"accepted": 10, "duplicates": 5, "rejected": 0, "errors": []}

    bad = [
        {"actor_type": "robot", "action": "create", "resource_type": "x"},
        {"actor_type": "user", "resource_type": "x"},
        {
            "actor_type": "user",
            "action": "create",
            "resource_type": "x",
            "source_ip": "nope",
            "details": [1],
            "color": "red",
        },
        {
            "actor_type": "user",
            "action": "create",
            "resource_type": "x",
            "timestamp": "2999-01-01T00:00:00Z",
        },
        "not an object",
        {"id": "a999", "actor_type": "system", "action": "login", "resource_type": "session"},
    ]
    result = (await post(api, ingest, orjson.dumps(bad))).json()
    assert (result["accepted"], result["rejected"]) == (1, 5)
    assert {(e["index"], e["field"]) for e in result["errors"]} == {
        (0, "actor_type"),
        (1, "action"),
        (2, "source_ip"),
        (2, "details"),
        (2, "color"),
        (3, "timestamp"),
        (4, ""),
    }
    broken = await post(api, ingest, b"{not json", **{"Content-Type": "application/json"})
    assert broken.status_code == 400
    viewer = await api.key(role=Role.VIEWER)
    assert (await post(api, viewer, orjson.dumps(items[:1]))).status_code == 403
    assert (await api.client.post("/v1/audit-events", content=b"[]")).status_code == 401

    nodes = await everything(api, admin, {"resourceTypes": ["budget", "prompt", "model"]})
    assert [n["id"] for n in nodes] == [
        i["id"] for i in sorted(items, key=lambda i: (i["timestamp"], i["id"]), reverse=True)
    ]
    stored = {n["id"]: n for n in nodes}
    for item in items:
        got = stored[item["id"]]
        assert got["actorId"] == item["actor_id"]
        assert got["actorType"] == item["actor_type"].upper()
        assert got["action"] == item["action"].upper()
        assert got["outcome"] == item["outcome"].upper()
        assert (got["resourceType"], got["resourceId"]) == (
            item["resource_type"],
            item["resource_id"],
        )
        assert got["sourceIp"] == item["source_ip"]
        assert got["details"] == item["details"]
        assert got["timestamp"].replace("+00:00", "Z") == item["timestamp"]
    body = await api.graphql(ingest, QUERY, {"first": 1})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_filters_range_and_isolation(api: Api) -> None:
    acme, globex = await api.key("acme", Role.INGEST), await api.key("globex", Role.INGEST)
    reader, other = await api.key("acme", Role.VIEWER), await api.key("globex", Role.VIEWER)
    items = trail(60, seed=9)
    await post(api, acme, orjson.dumps(items))
    await post(api, globex, orjson.dumps([dict(items[0], actor_id="mallory")]))
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"actors": ["alice"]}, lambda i: i["actor_id"] == "alice"),
        (
            {"actorTypes": ["SYSTEM"], "resourceTypes": ["prompt", "model"]},
            lambda i: i["actor_type"] == "system" and i["resource_type"] != "budget",
        ),
        ({"actions": ["DELETE", "EXPORT"]}, lambda i: i["action"] in ("delete", "export")),
        (
            {"resourceTypes": ["budget"], "resourceIds": ["r1", "r2"]},
            lambda i: i["resource_type"] == "budget" and i["resource_id"] in ("r1", "r2"),
        ),
        ({"sourceIps": ["2001:db8::1"]}, lambda i: i["source_ip"] == "2001:db8::1"),
        (
            {"outcomes": ["DENIED"], "actors": ["bob"]},
            lambda i: i["outcome"] == "denied" and i["actor_id"] == "bob",
        ),
    ]
    for flt, keep in cases:
        want = sorted((i for i in items if keep(i)), key=lambda i: (i["timestamp"], i["id"]))
        assert want, flt
        got = await everything(api, reader, flt)
        assert [n["id"] for n in got] == [i["id"] for i in reversed(want)], flt
    window = {"start": "2026-11-12T00:00:00Z", "end": "2026-11-15T00:00:00Z"}
    got = await everything(api, reader, None, window)
    want = [i for i in items if "2026-11-12" <= i["timestamp"][:10] < "2026-11-15"]
    assert sorted(n["id"] for n in got) == sorted(i["id"] for i in want)
    theirs = await everything(api, other, {"actors": ["alice", "bob", "ci-bot", "mallory"]})
    assert [n["actorId"] for n in theirs] == ["mallory"]
    mine = await everything(api, reader, {"actors": ["mallory"]})
    assert mine == []


async def test_graphql_record_audit_events(api: Api) -> None:
    key, reader = await api.key(role=Role.MEMBER), await api.key(role=Role.VIEWER)
    events = [
        {
            "id": "g1",
            "actorType": "USER",
            "actorId": "alice",
            "action": "EXPORT",
            "resourceType": "report",
            "resourceId": "q3",
            "sourceIp": "10.1.1.1",
            "details": {"rows": 10},
            "timestamp": "2026-11-20T08:00:00Z",
        },
        {"actorType": "SYSTEM", "action": "EXECUTE", "resourceType": "job", "outcome": "FAILURE"},
        {"actorType": "USER", "action": "LOGIN", "resourceType": "app", "sourceIp": "bad"},
    ]
    result = (await api.data(key, RECORD, {"events": events}))["recordAuditEvents"]
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (2, 0, 1)
    assert [(e["field"], e["index"]) for e in result["userErrors"]] == [("sourceIp", 2)]
    again = (await api.data(key, RECORD, {"events": events[:1]}))["recordAuditEvents"]
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    nodes = await everything(api, reader, {"actions": ["EXPORT", "EXECUTE"]})
    assert {n["action"] for n in nodes} == {"EXPORT", "EXECUTE"}
    export = next(n for n in nodes if n["id"] == "g1")
    assert export["details"] == {"rows": 10} and export["sourceIp"] == "10.1.1.1"
    body = await api.graphql(reader, RECORD, {"events": events[:1]})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # key creation is audited by the key service itself
    keys = await everything(api, reader, {"resourceTypes": ["api_key"], "actions": ["CREATE"]})
    assert len(keys) == 2
