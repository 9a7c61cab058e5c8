"""A blocked call records an audit event BLOCK by its caller on the tool or model, with the
policy, in the event's transaction; a re-sent duplicate records nothing more."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.support.helpers import ago, llm

QUERY = """query($f: AuditFilter) {
  auditEvents(filter: $f, first: 100, range: {preset: LAST_24H}) {
    nodes { id actorId actorType action resourceType resourceId sourceIp outcome details }
  }
}"""

BLOCKED: list[dict[str, Any]] = [
    {
        "id": "t1",
        "timestamp": ago(minutes=3),
        "kind": "tool_call",
        "status": "blocked",
        "tool": "delete_table",
        "mcp_server": "db",
        "user_id": "alice",
        "api_key_id": "k-alice",
        "caller_ip": "10.1.2.3",
        "policy_id": "p-writes",
        "policy_name": "Prod writes",
        "policy_description": "No destructive SQL in production.",
    },
    llm(
        "m1",
        status="blocked",
        api_key_id="k-bot",
        policy_id="p-pii",
        policy_name="PII guard",
    ),
    {"id": "h1", "timestamp": ago(minutes=2), "kind": "http_request", "status": "blocked"},
]
EXPECTED = {
    "block:t1": {
        "actorId": "alice",
        "actorType": "USER",
        "action": "BLOCK",
        "resourceType": "tool",
        "resourceId": "delete_table",
        "sourceIp": "10.1.2.3",
        "outcome": "DENIED",
        "details": {
            "policy_id": "p-writes",
            "policy_name": "Prod writes",
            "policy_description": "No destructive SQL in production.",
            "event_id": "t1",
            "kind": "tool_call",
            "mcp_server": "db",
        },
    },
    "block:m1": {
        "actorId": "k-bot",
        "actorType": "API_KEY",
        "action": "BLOCK",
        "resourceType": "model",
        "resourceId": "gpt-4o-mini",
        "sourceIp": None,
        "outcome": "DENIED",
        "details": {
            "policy_id": "p-pii",
            "policy_name": "PII guard",
            "policy_description": None,
            "event_id": "m1",
            "kind": "llm_call",
            "mcp_server": None,
        },
    },
    "block:h1": {
        "actorId": None,
        "actorType": "SYSTEM",
        "action": "BLOCK",
        "resourceType": "event",
        "resourceId": "h1",
        "sourceIp": None,
        "outcome": "DENIED",
        "details": {
            "policy_id": None,
            "policy_name": None,
            "policy_description": None,
            "event_id": "h1",
            "kind": "http_request",
            "mcp_server": None,
        },
    },
}


async def _blocks(api: Api, key: str) -> dict[str, dict[str, Any]]:
    data = await api.data(key, QUERY, {"f": {"actions": ["BLOCK"]}})
    return {n.pop("id"): n for n in data["auditEvents"]["nodes"]}


async def test_blocked_events_record_one_audit_event_each(api: Api) -> None:
    key = await api.key()
    allowed = llm("ok", user_id="alice")  # not blocked: no audit event
    result = await api.ingest(key, [*BLOCKED, allowed, BLOCKED[0]])  # t1 twice in one call
    assert (result["accepted"], result["duplicates"]) == (4, 1)
    assert await _blocks(api, key) == EXPECTED
    again = await api.ingest(key, BLOCKED)  # a retry: duplicates, and no second audit event
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert await _blocks(api, key) == EXPECTED
    # through the detailed path and GraphQL alike
    other = await api.key(workspace="other")
    slow = await api.ingest(other, [BLOCKED[0], {"id": "bad", "input_tokens": -1}])
    assert slow["accepted"] == 1
    mutation = "mutation($e: [EventInput!]!) { ingestEvents(events: $e) { accepted } }"
    gql = {"id": "g1", "kind": "LLM_CALL", "status": "BLOCKED", "model": "m", "userId": "bob"}
    assert (await api.data(other, mutation, {"e": [gql]}))["ingestEvents"]["accepted"] == 1
    got = await _blocks(api, other)
    assert got.keys() == {"block:t1", "block:g1"}
    assert got["block:t1"] == EXPECTED["block:t1"]
    assert (got["block:g1"]["actorId"], got["block:g1"]["resourceId"]) == ("bob", "m")
    assert await _blocks(api, key) == EXPECTED  # workspaces stay apart
