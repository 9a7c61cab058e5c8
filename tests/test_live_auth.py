"""Who may subscribe, on SQLite and PostgreSQL: over WebSocket the API key comes in
connection_init's payload or the handshake's Authorization header, and a missing, unknown,
revoked or malformed key closes the socket with 4403 (the legacy protocol says
`connection_error` first); over SSE the request needs a valid key (401). A key without the
read permission, or a bad argument, gets a GraphQL error, not items."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.services import Services
from tests.support.live_client import LEGACY_WS, TRANSPORT_WS, LiveServer, live_server
from tests.support.live_support import (
    LIVE_QUERY,
    ingest,
    make_key,
    mixed_events,
    open_live,
    wait_subscribers,
)

WS_PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)


@pytest.fixture
async def server(settings: Settings, db_kind: str) -> AsyncIterator[LiveServer]:
    async with live_server(settings, db_kind) as running:
        yield running


async def refused(
    server: LiveServer, protocol: str, payload: Any, header: str | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """The messages received after connection_init, and the close code."""
    headers = {"Authorization": header} if header else {}
    messages: list[dict[str, Any]] = []
    async with connect(server.ws_url, subprotocols=[protocol], additional_headers=headers) as ws:
        await ws.send(orjson.dumps({"type": "connection_init", "payload": payload}).decode())
        try:
            async with asyncio.timeout(10):
                while True:
                    messages.append(orjson.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return messages, closed.rcvd.code if closed.rcvd else None
    raise AssertionError("unreachable")


@pytest.mark.parametrize("protocol", WS_PROTOCOLS)
async def test_bad_keys_close_with_4403(server: LiveServer, protocol: str) -> None:
    services: Services = server.app.state.services
    good = await make_key(server)
    revoked = await make_key(server)
    info = await services.keys.authenticate(revoked)
    assert info is not None
    await services.keys.revoke(info.key_id)
    cases: list[tuple[Any, str | None]] = [
        ({}, None),  # no key anywhere
        ({"Authorization": "Bearer tq_nope_nope"}, None),  # unknown
        ({"Authorization": f"Bearer {revoked}"}, None),  # revoked
        ({"Authorization": f"Basic {good}"}, None),  # not a bearer key
        ({}, "Bearer tq_nope_nope"),  # unknown, in the header
        ({}, f"Bearer {revoked}"),  # revoked, in the header
    ]
    for payload, header in cases:
        messages, code = await refused(server, protocol, payload, header)
        assert code == 4403, (payload, header, messages, code)
        if protocol == LEGACY_WS:
            assert [m["type"] for m in messages] == ["connection_error"], messages
        else:
            assert messages == [], messages
    # and the good key, both ways, is acknowledged and streams
    for payload_key, header_key in ((good, None), (None, good)):
        async with open_live(
            server, protocol, payload_key, {"types": ["REQUEST"]}, header_key=header_key
        ) as live:
            event = mixed_events(f"ok-{bool(header_key)}", 1)[0]
            await wait_subscribers(server, 1)
            await ingest(server.url, good, [event])
            assert (await live.next())["id"] == event["id"]


async def test_sse_needs_a_valid_key(server: LiveServer) -> None:
    body = {"query": LIVE_QUERY, "variables": {}}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for headers in ({}, {"Authorization": "Bearer tq_nope_nope"}):
            response = await client.post(
                "/graphql", json=body, headers={**headers, "Accept": "text/event-stream"}
            )
            assert response.status_code == 401, response.text


async def graphql_errors(server: LiveServer, protocol: str, key: str, variables: Any) -> list:
    """The errors a subscription gets instead of items."""
    async with connect(server.ws_url, subprotocols=[protocol]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
        await ws.send(orjson.dumps(init).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        payload = {"query": LIVE_QUERY, "variables": variables}
        await ws.send(orjson.dumps({"type": start, "id": "9", "payload": payload}).decode())
        async with asyncio.timeout(10):
            message = orjson.loads(await ws.recv())
        errors: list[Any]
        if message["type"] == "error":
            errors = message["payload"]
            errors = errors if isinstance(errors, list) else [errors]
        else:
            assert message["type"] in ("next", "data"), message
            errors = message["payload"]["errors"]
        return errors


@pytest.mark.parametrize("protocol", WS_PROTOCOLS)
async def test_permission_and_arguments_are_checked(server: LiveServer, protocol: str) -> None:
    ingest_only = await make_key(server, role=Role.INGEST)
    errors = await graphql_errors(server, protocol, ingest_only, {})
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], errors
    viewer = await make_key(server, role=Role.VIEWER)
    errors = await graphql_errors(server, protocol, viewer, {"interval": 0})
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], errors
    errors = await graphql_errors(server, protocol, viewer, {"timezone": "Mars/Olympus"})
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], errors
    assert server.app.state.services.live.service.bus.subscriber_count == 0
