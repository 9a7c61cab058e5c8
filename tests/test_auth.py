"""API keys: 401 without a valid key, the role matrix, audit rows for key changes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import select

from tallyql.auth.principal import Role
from tallyql.storage.tables import audit_events
from tests.conftest import Api
from tests.support.helpers import llm

INGEST_MUTATION = """
mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted duplicates } }
"""
READ_QUERY = "{ requests { totalCount } }"


async def _bad_keys(api: Api) -> dict[str, dict[str, str]]:
    revoked, info = await api.services.keys.create("acme", Role.ADMIN, "soon revoked")
    await api.services.keys.revoke(info.id)
    valid = await api.key()
    key_id = valid.split("_")[1]
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": f"Basic {valid}"},
        "garbage": {"Authorization": "Bearer not-a-key"},
        "wrong secret": {"Authorization": f"Bearer tq_{key_id}_wrongsecret"},
        "unknown id": {"Authorization": "Bearer tq_zzzzzzzzzzzz_secret"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
    }


async def test_missing_bad_and_revoked_keys_get_401(api: Api) -> None:
    for name, headers in (await _bad_keys(api)).items():
        response = await api.client.post("/v1/events", json=[llm("a")], headers=headers)
        assert response.status_code == 401, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "UNAUTHENTICATED", name
        response = await api.client.post(
            "/graphql", json={"query": "{ me { role } }"}, headers=headers
        )
        assert response.status_code == 401, name
        # GraphQL clients show the reason: a GraphQL body with the code in its extensions
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", name
        assert "API key" in error["message"], name
        response = await api.client.get(
            "/graphql", params={"query": "{ me { role } }"}, headers=headers
        )
        assert response.status_code == 401, name
    # nothing got in
    admin = await api.key()
    assert (await api.data(admin, READ_QUERY))["requests"]["totalCount"] == 0


async def test_graphiql_page_loads_without_a_key(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_a_revoked_key_stops_working_at_once(api: Api) -> None:
    key, info = await api.services.keys.create("acme", Role.MEMBER, "short-lived")
    assert (await api.data(key, "{ me { keyName } }"))["me"]["keyName"] == "short-lived"
    revoked = await api.services.keys.revoke(info.id)
    assert revoked is not None and revoked.revoked_at is not None
    response = await api.client.post(
        "/graphql", json={"query": "{ me { role } }"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 401
    assert await api.services.keys.revoke(info.id) is None  # already revoked


# role -> (may ingest, may read)
MATRIX = {
    Role.ADMIN: (True, True),
    Role.MEMBER: (True, True),
    Role.VIEWER: (False, True),
    Role.INGEST: (True, False),
}


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


@pytest.mark.parametrize("role", list(Role))
async def test_role_matrix(api: Api, role: Role) -> None:
    may_ingest, may_read = MATRIX[role]
    admin = await api.key()
    await api.ingest(admin, [llm("seed", request={"q": 1})])
    key = await api.key(role=role)
    headers = {"Authorization": f"Bearer {key}"}

    response = await api.client.post("/v1/events", json=[llm(f"{role}-rest")], headers=headers)
    if may_ingest:
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "FORBIDDEN"

    body = await api.graphql(key, INGEST_MUTATION, {"events": [{"id": f"{role}-gql"}]})
    if may_ingest:
        assert body["data"]["ingestEvents"] == {"accepted": 1, "duplicates": 0}
    else:
        assert body["data"] is None
        assert _codes(body) == ["FORBIDDEN"]

    for query in (
        READ_QUERY,
        '{ request(id: "seed") { id } }',
        "{ requests(first: 5) { nodes { id payload { request } } } }",
    ):
        body = await api.graphql(key, query)
        if may_read:
            assert "errors" not in body, body
        else:
            assert not any((body["data"] or {}).values()), body  # nothing readable came back
            assert _codes(body) == ["FORBIDDEN"]
            assert "ingest key may not do this" in body["errors"][0]["message"]
    if may_read:
        body = await api.graphql(key, READ_QUERY)
        assert body["data"]["requests"]["totalCount"] == 1 + 2 * may_ingest

    me = await api.data(key, "{ me { workspace role keyName } }")  # every valid key
    assert me["me"] == {"workspace": "acme", "role": role.value, "keyName": f"test {role.value}"}

    # the ingest key's own events did land
    stored = (await api.data(admin, READ_QUERY))["requests"]["totalCount"]
    assert stored == 1 + 2 * may_ingest


async def test_key_creation_and_revocation_are_audited(api: Api) -> None:
    keys = api.services.keys
    _, first = await keys.create(
        "acme", Role.VIEWER, "dashboards", actor="alice", source_ip="1.2.3.4"
    )
    _, second = await keys.create("globex", Role.INGEST)
    await keys.revoke(first.id, actor="bob", actor_type="user")
    async with api.services.db.read() as conn:
        rows = (await conn.execute(select(audit_events).order_by(audit_events.c.ts))).mappings()
        rows = [dict(r) for r in rows]
    summary = [
        (r["workspace_id"], r["action"], r["resource_type"], r["resource_id"], r["actor_id"])
        for r in rows
    ]
    assert summary == [
        (first.workspace_id, "create", "api_key", first.id, "alice"),
        (second.workspace_id, "create", "api_key", second.id, None),
        (first.workspace_id, "delete", "api_key", first.id, "bob"),
    ]
    assert first.workspace_id != second.workspace_id
    assert rows[0]["details"] == {"role": "viewer", "name": "dashboards"}
    assert rows[0]["source_ip"] == "1.2.3.4"
    assert rows[2]["actor_type"] == "user"
    assert all(r["outcome"] == "success" for r in rows)
    listed = {k.id: k for k in await keys.list(include_revoked=True)}
    assert listed[first.id].revoked_at is not None
    assert listed[second.id].revoked_at is None
    assert first.id not in {k.id for k in await keys.list()}


async def test_graphql_over_get_answers_queries_and_refuses_mutations(api: Api) -> None:
    key = await api.key()
    headers = {"Authorization": f"Bearer {key}"}
    events = [llm(f"g{i}", input_tokens=10 + i) for i in range(3)]
    assert (await api.ingest(key, events))["accepted"] == 3
    response = await api.client.get(
        "/graphql",
        params={
            "query": "query($n: Int!) { me { role workspace } "
            "requests(first: $n) { totalCount nodes { id } } }",
            "variables": orjson.dumps({"n": 2}).decode(),
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["me"] == {"role": "admin", "workspace": "acme"}
    assert data["requests"]["totalCount"] == 3
    # the variables were read: two nodes of the three
    assert len(data["requests"]["nodes"]) == 2
    assert {n["id"] for n in data["requests"]["nodes"]} < {e["id"] for e in events}
    # a mutation over GET changes nothing (a link or an image could trigger it)
    ingest = 'mutation { ingestEvents(events: [{id: "via-get", model: "gpt-4o"}]) { accepted } }'
    response = await api.client.get("/graphql", params={"query": ingest}, headers=headers)
    assert response.status_code in (400, 405), response.text
    assert (await api.data(key, READ_QUERY))["requests"]["totalCount"] == 3


async def test_key_lookups_are_cached_and_a_revocation_elsewhere_holds_within_the_ttl(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verified key is served from the cache (no database read) for the TTL; revoking it
    clears this replica's cache at once, another replica's (its own KeyService on the same
    database) once the TTL has passed. The cache holds hashes, not keys."""
    from tallyql.auth import keys as keys_module
    from tallyql.auth.keys import KeyService

    now = [1000.0]
    monkeypatch.setattr(keys_module.time, "monotonic", lambda: now[0])
    here, elsewhere = KeyService(services.db, 10.0), KeyService(services.db, 10.0)
    key, info = await here.create("acme", Role.VIEWER)
    reads = [0]
    lookup = KeyService._lookup

    async def counted(self: KeyService, key: str) -> Any:
        reads[0] += 1
        return await lookup(self, key)

    monkeypatch.setattr(KeyService, "_lookup", counted)
    for service in (here, elsewhere, here, elsewhere):
        principal = await service.authenticate(key)
        assert principal is not None and principal.key_id == info.id
    assert reads[0] == 2  # once per replica
    assert all(key not in repr(k) for k in here._cache)  # hashed
    await here.revoke(info.id)
    assert await here.authenticate(key) is None  # at once on the replica that revoked it
    assert await elsewhere.authenticate(key) is not None  # the other still trusts it ...
    now[0] += 10.5
    assert await elsewhere.authenticate(key) is None  # ... for at most the TTL
