"""GraphQL limits, error masking and DataLoaders."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from tallyql.config import Settings
from tallyql.engine import request_log
from tests.conftest import Api, running_api
from tests.support.helpers import counting_statements, llm


async def _post(api: Api, key: str, query: str) -> dict[str, Any]:
    response = await api.client.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {key}"}
    )
    body = response.json()
    assert "errors" in body, body
    return body


def _codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body["errors"]]


async def test_depth_alias_and_token_limits(settings: Settings, db_kind: str) -> None:
    tight = replace(settings, graphql_max_depth=3, graphql_max_aliases=3, graphql_max_tokens=60)
    async with running_api(tight, db_kind) as api:
        key = await api.key()
        await api.ingest(key, [llm("a", request={"q": 1})])
        ok = await api.data(key, "{ requests { nodes { id payload { request } } } }")
        assert ok["requests"]["nodes"] == [{"id": "a", "payload": {"request": {"q": 1}}}]

        deep = await _post(api, key, "{ requests { edges { node { payload { request } } } } }")
        assert _codes(deep) == ["GRAPHQL_VALIDATION_FAILED"]
        assert "exceeds maximum operation depth of 3" in deep["errors"][0]["message"]
        assert deep.get("data") is None

        four = "{ a: me { role } b: me { role } c: me { role } d: me { role } }"
        aliases = await _post(api, key, four)
        assert _codes(aliases) == ["GRAPHQL_VALIDATION_FAILED"]
        assert "aliases" in aliases["errors"][0]["message"]
        three = await api.data(key, "{ a: me { role } b: me { role } c: me { role } }")
        assert three["a"] == {"role": "admin"}

        tokens = await _post(api, key, "{ " + " ".join(["me { role }"] * 20) + " }")
        assert _codes(tokens) == ["GRAPHQL_PARSE_FAILED"]
        assert "more than 60 tokens" in tokens["errors"][0]["message"]


async def test_syntax_and_schema_errors_have_codes(api: Api) -> None:
    key = await api.key()
    body = await _post(api, key, "{ requests { nodes { id ")
    assert _codes(body) == ["GRAPHQL_PARSE_FAILED"]
    assert body["errors"][0]["message"].startswith("Syntax Error")
    body = await _post(api, key, "{ requests { nodes { noSuchField } } }")
    assert _codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "noSuchField" in body["errors"][0]["message"]


async def test_unexpected_exceptions_are_masked_and_logged(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = await api.key()

    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret database password is hunter2")

    monkeypatch.setattr(request_log, "list_requests", explode)
    with caplog.at_level(logging.ERROR, logger="tallyql.graphql"):
        body = await _post(api, key, "{ me { role } requests { totalCount } }")
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": body["errors"][0]["locations"],
            "path": ["requests"],
            "extensions": {"code": "INTERNAL_ERROR"},
        }
    ]
    assert "hunter2" not in str(body)
    assert body["data"] is None  # requests is non-null, so the error nulls the whole data
    logged = [r for r in caplog.records if r.name == "tallyql.graphql"]
    assert logged and "hunter2" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    # and a user mistake next to it keeps its message and code
    monkeypatch.setattr(request_log, "get_request", explode)
    body = await _post(api, key, '{ me { role } request(id: "x") { id } }')
    assert body["data"] == {"me": {"role": "admin"}, "request": None}
    assert _codes(body) == ["INTERNAL_ERROR"]


async def test_nested_payloads_use_a_bounded_number_of_statements(api: Api) -> None:
    key = await api.key()
    await api.ingest(
        key, [llm(f"e{i:02d}", request={"i": i}, response={"ok": i}) for i in range(60)]
    )
    query = "query($n: Int!) { requests(first: $n) { nodes { id payload { request response } } } }"
    counts = {}
    for n in (1, 5, 50):
        with counting_statements(api.services) as statements:
            data = await api.data(key, query, {"n": n})
        nodes = data["requests"]["nodes"]
        assert len(nodes) == n
        assert all(node["payload"]["request"] == {"i": int(node["id"][1:])} for node in nodes)
        counts[n] = len(statements)
    assert counts[1] == counts[5] == counts[50], counts
    assert 2 <= counts[50] <= 3, statements  # the key (no cache in tests), the page, the payloads
