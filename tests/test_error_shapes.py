"""One error shape per protocol: REST routes answer `{"error": {"code", "message"}}`, /graphql a
GraphQL body with `extensions.code` and the HTTP status, /v1/traces OTLP's google.rpc.Status in
the request's encoding. A subscription sent without a stream is a client error."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from tallyql.auth.principal import Role
from tallyql.http.graphql_http import SUBSCRIPTION_NEEDS_A_STREAM
from tests.conftest import Api
from tests.support.helpers import llm

MISSING = "missing API key: send Authorization: Bearer <key>"
INVALID = "invalid or revoked API key"
SUBSCRIPTION = "subscription { events { __typename } }"

# (method, path, body, content type, the roles refused with 403)
REST_ROUTES: list[tuple[str, str, bytes | None, str | None, set[Role]]] = [
    ("POST", "/v1/events", orjson.dumps([llm("e1")]), "application/json", {Role.VIEWER}),
    (
        "POST",
        "/v1/audit-events",
        orjson.dumps([{"actor_type": "user", "action": "login", "resource_type": "app"}]),
        "application/json",
        {Role.VIEWER},
    ),
    ("GET", "/v1/export/requests?format=json&preset=LAST_24H", None, None, {Role.INGEST}),
]


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _call(
    api: Api, method: str, path: str, body: bytes | None, media: str | None, key: str | None
) -> Any:
    headers = {**_auth(key), **({"Content-Type": media} if media else {})}
    return await api.client.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "media", "refused"), REST_ROUTES)
async def test_rest_401_and_403(
    api: Api, method: str, path: str, body: bytes | None, media: str | None, refused: set[Role]
) -> None:
    for key, message in ((None, MISSING), ("tq_not-a-key", INVALID)):
        response = await _call(api, method, path, body, media, key)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"] == 'Bearer realm="tallyql"'
        assert response.json() == {"error": {"code": "UNAUTHENTICATED", "message": message}}
    for role in Role:
        response = await _call(api, method, path, body, media, await api.key(role=role))
        if role in refused:
            assert response.status_code == 403, role
            assert response.json() == {
                "error": {"code": "FORBIDDEN", "message": f"a {role.value} key may not do this"}
            }
        else:
            assert response.status_code == 200, (role, response.text)


async def test_rest_not_found_and_bad_request_share_the_shape(api: Api) -> None:
    key = await api.key()
    missing = await api.client.get("/v1/export/nothing", headers=_auth(key))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    assert "nothing" in missing.json()["error"]["message"]
    bad = await api.client.get("/v1/export/requests?format=xml", headers=_auth(key))
    assert bad.status_code == 400
    assert bad.json() == {
        "error": {"code": "BAD_REQUEST", "message": "format must be csv, json or ndjson"}
    }
    unknown_route = await api.client.get("/v1/nothing")
    assert unknown_route.status_code == 404
    assert unknown_route.json() == {"error": {"code": "NOT_FOUND", "message": "Not Found"}}


def _status(body: bytes) -> tuple[int, str]:
    """Decodes a protobuf google.rpc.Status (code 1, message 2) independently of the server."""
    from google.rpc.status_pb2 import Status  # opentelemetry-proto's dependency

    status = Status()
    status.ParseFromString(body)
    return status.code, status.message


async def test_traces_answer_401_and_403_as_otlp_status(api: Api) -> None:
    body = b"{}"
    anonymous = await api.client.post(
        "/v1/traces", content=body, headers={"Content-Type": "application/json"}
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/json"
    assert anonymous.json() == {"code": 16, "message": MISSING}  # UNAUTHENTICATED
    viewer = await api.key(role=Role.VIEWER)
    refused = await api.client.post(
        "/v1/traces",
        content=b"",
        headers={**_auth(viewer), "Content-Type": "application/x-protobuf"},
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/x-protobuf"
    assert _status(refused.content) == (7, "a viewer key may not do this")  # PERMISSION_DENIED


async def test_graphql_401_is_a_graphql_body(api: Api) -> None:
    for key, message in ((None, MISSING), ("tq_not-a-key", INVALID)):
        for response in (
            await api.client.post(
                "/graphql", json={"query": "{ me { role } }"}, headers=_auth(key)
            ),
            await api.client.get(
                "/graphql", params={"query": "{ me { role } }"}, headers=_auth(key)
            ),
        ):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="tallyql"'
            assert response.json() == {
                "data": None,
                "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}],
            }


async def test_graphql_forbidden_is_a_field_error(api: Api) -> None:
    # roles are checked field by field while executing, so a 403 is never met before execution:
    # the refused field is null with FORBIDDEN, the rest of the operation answers (HTTP 200)
    viewer = await api.key(role=Role.VIEWER)
    response = await api.client.post(
        "/graphql",
        json={
            "query": 'mutation { ingestEvents(events: [{id: "x"}]) { accepted } }',
        },
        headers=_auth(viewer),
    )
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["path"] == ["ingestEvents"]
    admin = await api.key()
    assert (await api.data(admin, "{ requests { totalCount } }"))["requests"]["totalCount"] == 0


@pytest.mark.parametrize("operation_name", [None, "Live"])
async def test_subscription_without_a_stream_is_a_client_error(
    api: Api, operation_name: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    key = await api.key()
    query = SUBSCRIPTION if operation_name is None else f"subscription Live {SUBSCRIPTION[13:]}"
    expected = {
        "data": None,
        "errors": [{"message": SUBSCRIPTION_NEEDS_A_STREAM, "extensions": {"code": "BAD_REQUEST"}}],
    }
    with caplog.at_level(logging.INFO):
        post = await api.client.post(
            "/graphql",
            json={"query": query, "operationName": operation_name},
            headers={**_auth(key), "Accept": "application/json"},
        )
        get = await api.client.get("/graphql", params={"query": query}, headers=_auth(key))
    for response in (post, get):
        assert response.status_code == 400
        assert response.json() == expected
    assert (
        "WebSocket" in SUBSCRIPTION_NEEDS_A_STREAM
        and "text/event-stream" in SUBSCRIPTION_NEEDS_A_STREAM
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_other_pre_execution_errors_are_graphql_bodies(api: Api) -> None:
    key = await api.key()
    by_get = await api.client.get(
        "/graphql",
        params={"query": 'mutation { ingestEvents(events: [{id: "g"}]) { accepted } }'},
        headers=_auth(key),
    )
    assert by_get.status_code == 400
    assert by_get.json()["errors"] == [
        {
            "message": "mutations are not allowed when using GET",
            "extensions": {"code": "BAD_REQUEST"},
        }
    ]
    broken = await api.client.post(
        "/graphql", content=b"{not json", headers={**_auth(key), "Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    (error,) = broken.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST" and "JSON" in error["message"]
    unknown = await api.client.post(
        "/graphql",
        json={"query": "query A { me { role } }", "operationName": "B"},
        headers=_auth(key),
    )
    assert unknown.status_code == 400
    assert unknown.json()["errors"] == [
        {"message": 'Unknown operation named "B".', "extensions": {"code": "BAD_REQUEST"}}
    ]
    # nothing was ingested by the refused mutation
    assert (await api.data(key, "{ requests { totalCount } }"))["requests"]["totalCount"] == 0
