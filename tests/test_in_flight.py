"""Each API key may have at most TALLYQL_KEY_MAX_IN_FLIGHT requests in flight (issue 14): one
more is answered at once with 429 RATE_LIMITED and Retry-After in its route's error shape,
other keys are not affected, and the key is served again as soon as one of its requests has
been answered. Requests are held in flight by bodies that the test releases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from tallyql.config import Settings, load_settings
from tallyql.http.in_flight import KeyInFlight
from tests.conftest import Api, running_api
from tests.support.helpers import llm

QUERY = {"query": "{ overview(range: {preset: LAST_24H}) { totalRequests } }"}


def _middleware(api: Api) -> KeyInFlight:
    app = api.app.middleware_stack
    while not isinstance(app, KeyInFlight):
        app = app.app  # type: ignore[attr-defined]
    return app


async def test_a_key_over_its_requests_in_flight_gets_429_in_each_routes_shape(
    settings: Settings, db_kind: str, tmp_path: Path
) -> None:
    async with running_api(replace(settings, key_max_in_flight=2), db_kind) as api:
        key, other = await api.key(), await api.key(workspace="globex")
        auth = {"Authorization": f"Bearer {key}"}
        release = asyncio.Event()
        reading = asyncio.Queue[int]()

        async def slow_body(n: int) -> AsyncIterator[bytes]:
            body = orjson.dumps([llm(f"held-{n}")])
            yield body[:5]
            await reading.put(n)  # the server is reading this body: the request is in flight
            await release.wait()
            yield body[5:]

        held = [
            asyncio.create_task(
                api.client.post(
                    "/v1/events",
                    content=slow_body(n),
                    headers={**auth, "Content-Type": "application/json"},
                )
            )
            for n in range(2)
        ]
        for _ in held:
            await asyncio.wait_for(reading.get(), 10)
        assert len(_middleware(api).counts) == 1

        refused = await api.client.post("/v1/events", json=[llm("third")], headers=auth)
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["code"] == "RATE_LIMITED" and "2 requests in flight" in error["message"]

        refused = await api.client.post("/graphql", json=QUERY, headers=auth)
        assert refused.status_code == 429, refused.text
        assert refused.json()["data"] is None
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert int(refused.headers["retry-after"]) >= 1

        refused = await api.client.post("/v1/traces", json={"resourceSpans": []}, headers=auth)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == 8  # google.rpc.Code RESOURCE_EXHAUSTED: exporters retry
        assert int(refused.headers["retry-after"]) >= 1

        refused = await api.client.get("/v1/export/requests?preset=LAST_1H", headers=auth)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "RATE_LIMITED"

        # another key is served meanwhile
        response = await api.client.post(
            "/graphql", json=QUERY, headers={"Authorization": f"Bearer {other}"}
        )
        assert response.status_code == 200, response.text

        release.set()
        for task in held:
            response = await task
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == 1
        assert _middleware(api).counts == {}  # nothing is kept of a key without requests
        data = await api.data(key, QUERY["query"])
        assert data["overview"]["totalRequests"] == 2  # the refused calls stored nothing


async def test_the_cap_is_a_setting_of_32_by_default() -> None:
    assert Settings().key_max_in_flight == 32
    assert load_settings({"TALLYQL_KEY_MAX_IN_FLIGHT": "0"}).key_max_in_flight == 0
    with pytest.raises(ValueError, match="KEY_MAX_IN_FLIGHT"):
        load_settings({"TALLYQL_KEY_MAX_IN_FLIGHT": "-1"})
