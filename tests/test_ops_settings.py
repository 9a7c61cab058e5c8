"""TALLYQL_INTROSPECTION (all | admin | off) and TALLYQL_METRICS_TOKEN."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tallyql.auth.principal import Role
from tallyql.config import Settings, load_settings
from tests.conftest import Api, running_api

SCHEMA = "{ __schema { queryType { name } } }"
TYPE_IN_FRAGMENT = """query { ...F } fragment F on Query { __type(name: "Query") { name } }"""
TYPENAME = "{ __typename me { workspace role } }"


async def ask(api: Api, key: str, query: str) -> dict[str, Any]:
    response = await api.client.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def refused(body: dict[str, Any]) -> bool:
    if body.get("data") is not None:
        return False
    return [e["extensions"]["code"] for e in body["errors"]] == ["INTROSPECTION_DISABLED"]


@pytest.mark.parametrize(
    ("mode", "allowed"),
    [
        ("all", {Role.ADMIN, Role.MEMBER, Role.VIEWER}),
        ("admin", {Role.ADMIN}),
        ("off", set()),
    ],
)
async def test_introspection_modes(
    settings: Settings, db_kind: str, mode: str, allowed: set[Role]
) -> None:
    async with running_api(replace(settings, introspection=mode), db_kind) as api:
        for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
            key = await api.key("acme", role)
            for query in (SCHEMA, TYPE_IN_FRAGMENT):
                body = await ask(api, key, query)
                if role in allowed:
                    assert "errors" not in body, body
                    found = body["data"].get("__schema") or body["data"]["__type"]
                    assert found == {"queryType": {"name": "Query"}} or found == {"name": "Query"}
                else:
                    assert refused(body), (role, query, body)
            # __typename is not introspection, and ordinary queries are untouched
            data = (await ask(api, key, TYPENAME))["data"]
            assert data == {"__typename": "Query", "me": {"workspace": "acme", "role": role.value}}
        # the GraphiQL page still loads
        page = await api.client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "<html" in page.text.lower()


def test_introspection_setting_is_checked() -> None:
    assert load_settings({}).introspection == "all"
    assert load_settings({"TALLYQL_INTROSPECTION": "admin"}).introspection == "admin"
    with pytest.raises(ValueError, match="TALLYQL_INTROSPECTION"):
        load_settings({"TALLYQL_INTROSPECTION": "some"})


async def test_metrics_open_without_a_token(api: Api) -> None:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert "tallyql_" in response.text


async def test_metrics_token_required_when_set(settings: Settings, db_kind: str) -> None:
    token = "m3trics-s3cret"
    async with running_api(replace(settings, metrics_token=token), db_kind) as api:
        admin_key = await api.key("acme", Role.ADMIN)
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {token}x"},
            {"Authorization": f"Bearer {token[:-1]}"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": f"Bearer {admin_key}"},  # an API key is not the metrics token
        ):
            response = await api.client.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "UNAUTHENTICATED"
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert token not in response.text
        response = await api.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert "tallyql_" in response.text
