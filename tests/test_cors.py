"""CORS for browser frontends (TALLYQL_CORS_ORIGINS), over real HTTP: preflights, cross-origin
requests and errors, a GraphQL-over-SSE subscription, WebSocket handshakes; and no CORS header
at all by default."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tallyql.auth.principal import Role
from tallyql.config import Settings, load_settings, parse_cors_origins
from tests.support.helpers import llm
from tests.support.live_client import TRANSPORT_WS, LiveServer, live_server

FRONTEND = "https://dash.example.com"
OTHER = "https://evil.example.net"


def _preflight(origin: str, method: str, headers: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def _admin_key(server: LiveServer) -> str:
    key, _ = await server.app.state.services.keys.create("acme", Role.ADMIN, "cors")
    return key


async def test_preflight_and_cross_origin_requests(settings: Settings, db_kind: str) -> None:
    settings = dataclasses.replace(settings, cors_origins=f"{FRONTEND}, http://localhost:5173")
    async with (
        live_server(settings, db_kind) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        key = await _admin_key(server)
        for path in ("/v1/events", "/graphql", "/v1/audit-events", "/v1/traces"):
            response = await client.options(
                path, headers=_preflight(FRONTEND, "POST", "authorization, content-type")
            )
            assert response.status_code == 200, (path, response.text)
            assert response.headers["access-control-allow-origin"] == FRONTEND
            allowed = {
                h.strip().lower()
                for h in response.headers["access-control-allow-headers"].split(",")
            }
            assert {"authorization", "content-type"} <= allowed
            assert "POST" in response.headers["access-control-allow-methods"]
            assert "access-control-allow-credentials" not in response.headers  # bearer keys only
        export = await client.options(
            "/v1/export/requests",
            headers=_preflight("http://localhost:5173", "GET", "authorization"),
        )
        assert export.status_code == 200
        assert export.headers["access-control-allow-origin"] == "http://localhost:5173"

        # an origin not listed gets no permission
        refused = await client.options(
            "/v1/events", headers=_preflight(OTHER, "POST", "authorization, content-type")
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        # the real requests: ingest, a GraphQL query reading it back, and an error
        auth = {"Authorization": f"Bearer {key}", "Origin": FRONTEND}
        ingested = await client.post("/v1/events", json=[llm("cors-1")], headers=auth)
        assert ingested.status_code == 200 and ingested.json()["accepted"] == 1
        assert ingested.headers["access-control-allow-origin"] == FRONTEND
        query = await client.post(
            "/graphql", json={"query": "{ requests { totalCount } }"}, headers=auth
        )
        assert query.json()["data"] == {"requests": {"totalCount": 1}}
        assert query.headers["access-control-allow-origin"] == FRONTEND
        # errors carry the headers too, so the frontend can read the reason
        anonymous = await client.post("/v1/events", json=[], headers={"Origin": FRONTEND})
        assert anonymous.status_code == 401
        assert anonymous.headers["access-control-allow-origin"] == FRONTEND
        assert "www-authenticate" in anonymous.headers["access-control-expose-headers"].lower()
        other = await client.post(
            "/v1/events", json=[llm("cors-2")], headers={**auth, "Origin": OTHER}
        )
        assert other.status_code == 200  # CORS binds browsers, not the server
        assert "access-control-allow-origin" not in other.headers


async def test_sse_subscription_and_websockets_across_origins(
    settings: Settings, db_kind: str
) -> None:
    settings = dataclasses.replace(settings, cors_origins=FRONTEND)
    async with live_server(settings, db_kind) as server:
        key = await _admin_key(server)
        query = "subscription { events(types: [REQUEST]) { ... on RequestEvent { id } } }"
        headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "text/event-stream",
            "Origin": FRONTEND,
        }
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            preflight = await client.options(
                "/graphql",
                headers=_preflight(FRONTEND, "POST", "authorization, content-type, accept"),
            )
            assert preflight.status_code == 200
            async with client.stream(
                "POST", "/graphql", json={"query": query}, headers=headers
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["access-control-allow-origin"] == FRONTEND
                received: list[Any] = []

                async def read() -> None:
                    event = None
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            event = line.split(":", 1)[1].strip()
                        elif line.startswith("data:") and event == "next":
                            received.append(orjson.loads(line.split(":", 1)[1]))
                            return

                reader = asyncio.create_task(read())
                # the subscription sees what is committed after it starts: ingest until it does
                for attempt in range(40):
                    await client.post(
                        "/v1/events",
                        json=[llm(f"sse-{attempt}")],
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    await asyncio.wait([reader], timeout=0.25)
                    if reader.done():
                        break
                await asyncio.wait_for(reader, 5)
                (item,) = received
                assert item["data"]["events"]["id"].startswith("sse-")

        # WebSocket handshakes are not CORS, but browsers send Origin: the same list applies
        async with connect(
            server.ws_url, subprotocols=[TRANSPORT_WS], additional_headers={"Origin": FRONTEND}
        ) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
            await ws.send(orjson.dumps(init).decode())
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                server.ws_url, subprotocols=[TRANSPORT_WS], additional_headers={"Origin": OTHER}
            ):
                pass
        assert refused.value.response.status_code == 403


async def test_no_cors_headers_by_default(settings: Settings, db_kind: str) -> None:
    assert settings.cors_origins == ""
    async with (
        live_server(settings, db_kind) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        key = await _admin_key(server)
        preflight = await client.options(
            "/v1/events", headers=_preflight(FRONTEND, "POST", "authorization")
        )
        assert preflight.status_code == 405
        response = await client.post(
            "/graphql",
            json={"query": "{ me { role } }"},
            headers={"Authorization": f"Bearer {key}", "Origin": FRONTEND},
        )
        assert response.json()["data"] == {"me": {"role": "admin"}}
        assert not [h for h in response.headers if h.startswith("access-control-")]
        assert not [h for h in preflight.headers if h.startswith("access-control-")]


async def test_any_origin(settings: Settings, db_kind: str) -> None:
    settings = dataclasses.replace(
        settings, cors_origins=load_settings({"TALLYQL_CORS_ORIGINS": "*"}).cors_origins
    )
    async with (
        live_server(settings, db_kind) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        key = await _admin_key(server)
        preflight = await client.options(
            "/graphql", headers=_preflight(OTHER, "POST", "authorization, content-type")
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        response = await client.post(
            "/graphql",
            json={"query": "{ me { workspace } }"},
            headers={"Authorization": f"Bearer {key}", "Origin": OTHER},
        )
        assert response.json()["data"] == {"me": {"workspace": "acme"}}
        assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("raw", "origins"),
    [
        ("", ()),
        ("*", ("*",)),
        (
            " https://a.example.com ,http://localhost:5173,",
            ("https://a.example.com", "http://localhost:5173"),
        ),
    ],
)
def test_origin_list(raw: str, origins: tuple[str, ...]) -> None:
    assert parse_cors_origins(raw) == origins


@pytest.mark.parametrize(
    "raw",
    ["https://a.example.com/", "a.example.com", "ftp://a.example.com", "https://a.example.com/app"],
)
def test_malformed_origins_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="TALLYQL_CORS_ORIGINS"):
        load_settings({"TALLYQL_CORS_ORIGINS": raw})
