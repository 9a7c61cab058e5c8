"""OpenRouter activity imported as events: each item's requests, tokens and cost are counted
exactly by the analytics fields, gateway traffic already sent through OpenRouter for the same
date and model is not counted twice, importing again stores nothing, bad items are rejected
alone, and only an ingesting key may import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tallyql.auth.principal import Role
from tests.conftest import Api
from tests.support.helpers import iso, llm

DAY = "2025-11-19"
START = datetime(2025, 11, 19, tzinfo=UTC)
ITEMS: list[dict[str, Any]] = [
    {  # the API's own spelling
        "date": DAY,
        "model": "openai/gpt-4.1",
        "model_permaslug": "openai/gpt-4.1-2025-04-14",
        "endpoint_id": "ep-1",
        "provider_name": "OpenAI",
        "usage": 1.234567891,
        "byok_usage_inference": 0,
        "requests": 7,
        "prompt_tokens": 1003,
        "completion_tokens": 250,
        "reasoning_tokens": 11,
    },
    {  # an SDK's spelling
        "date": DAY,
        "model": "anthropic/claude-x",
        "modelPermaslug": "anthropic/claude-x-1",
        "endpointId": "ep-2",
        "providerName": "Anthropic",
        "usage": 0.5,
        "byokUsageInference": 0.2,
        "requests": 3,
        "promptTokens": 30,
        "completionTokens": 9,
        "reasoningTokens": 0,
    },
]
OVERVIEW = """query($r: TimeRangeInput!) { overview(range: $r) {
  totalRequests inputTokens outputTokens reasoningTokens costUsd } }"""
BY_MODEL = """query($r: TimeRangeInput!) { breakdown(dimension: MODEL,
  metrics: [REQUESTS, INPUT_TOKENS, COST_USD], range: $r, first: 10) { nodes { key values } } }"""
RANGE = {"start": iso(START), "end": iso(START + timedelta(days=1))}


async def _import(api: Api, key: str, body: Any) -> Any:
    answer = await api.client.post(
        "/v1/import/openrouter", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    return answer


async def test_activity_counts_once_and_exactly(api: Api) -> None:
    key = await api.key()
    # the gateway already sent 2 of the gpt-4.1 calls through OpenRouter itself
    sent = [
        llm(
            f"gw{i}",
            timestamp=iso(START + timedelta(hours=3 + i)),
            gateway="OpenRouter",
            provider="openai",
            model="gpt-4.1",
            input_tokens=100,
            output_tokens=20,
            cost_usd=0.1,
        )
        for i in range(2)
    ]
    assert (await api.ingest(key, sent))["accepted"] == 2
    first = await _import(api, key, {"data": ITEMS})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body == {
        "rows": 2,
        "importedRows": 2,
        "accepted": 5 + 3,
        "duplicates": 0,
        "skippedGatewayRequests": 2,
        "rejected": 0,
        "errors": [],
    }
    again = (await _import(api, key, ITEMS)).json()  # a bare list works too
    assert (again["accepted"], again["duplicates"]) == (0, 8)

    total = (await api.data(key, OVERVIEW, {"r": RANGE}))["overview"]
    assert total["totalRequests"] == 7 + 3  # what OpenRouter saw, gateway calls included
    assert total["inputTokens"] == 1003 + 30
    assert total["outputTokens"] == 250 + 9
    assert total["reasoningTokens"] == 11
    assert abs(total["costUsd"] - (1.234567891 + 0.5)) < 1e-9
    rows = (await api.data(key, BY_MODEL, {"r": RANGE}))["breakdown"]["nodes"]
    got = {n["key"]: n["values"] for n in rows}
    assert got["gpt-4.1"][:2] == [7, 1003]
    assert abs(got["gpt-4.1"][2] - 1.234567891) < 1e-9
    assert got["claude-x"][:2] == [3, 30]
    log = await api.data(
        key,
        """query($r: TimeRangeInput!) { requests(range: $r, first: 100,
             filter: {tags: ["openrouter-import"]}) { totalCount nodes { id gateway provider
             isByok costSource metadata timestamp } } }""",
        {"r": RANGE},
    )
    nodes = log["requests"]["nodes"]
    assert log["requests"]["totalCount"] == 8
    claude = [n for n in nodes if n["provider"] == "anthropic"]
    assert all(n["isByok"] and n["gateway"] == "openrouter" for n in claude)
    assert {n["metadata"]["source"] for n in nodes} == {"openrouter_import"}
    assert all(
        START <= datetime.fromisoformat(n["timestamp"]) < START + timedelta(days=1) for n in nodes
    )


async def test_bad_items_alone_and_roles(api: Api) -> None:
    key = await api.key()
    bad = [
        {**ITEMS[0], "date": "19/11/2025"},
        {**ITEMS[0], "endpoint_id": ""},
        {**ITEMS[0], "requests": -1},
        {**ITEMS[0], "usage": "a lot"},
        "not an object",
        ITEMS[1],
    ]
    body = (await _import(api, key, {"data": bad})).json()
    assert (body["rows"], body["importedRows"], body["accepted"], body["rejected"]) == (6, 1, 3, 5)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (0, "date"),
        (1, "endpoint_id"),
        (2, "requests"),
        (3, "usage"),
        (4, ""),
    ]
    assert (await _import(api, key, {"rows": []})).status_code == 400
    viewer = await api.key(role=Role.VIEWER)
    assert (await _import(api, viewer, {"data": ITEMS})).status_code == 403
    ingest_only = await api.key(role=Role.INGEST)
    assert (await _import(api, ingest_only, {"data": []})).status_code == 200
