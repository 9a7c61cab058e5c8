"""Live subscriptions hold memory only while they live: the per-subscriber structures (bus
registration, queue runs, renderers, group tracking, pacer waiters) are released when the
subscribers leave, and what a shared operation keeps does not grow with the events it
renders (graphql-core's subfield memo had grown by every event, the live RSS leak)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from graphql.execution.collect_fields import CollectedFields

from tallyql.config import Settings
from tallyql.live.fanout import FilterView
from tallyql.live.subscriber import Subscriber, _Run
from tallyql.schema.live_render import RENDERERS, Renderer
from tests.support.helpers import llm
from tests.support.live_client import TRANSPORT_WS, LiveServer, Subscription, live_server, subscribe
from tests.support.live_support import bus_of, ingest, make_key, wait_subscribers

QUERY = """subscription { events(types: [REQUEST]) {
  __typename ... on RequestEvent { id model inputTokens } } }"""
SUBSCRIBERS = 4
BATCH = 50


@pytest.fixture
async def server(settings: Settings, db_kind: str) -> AsyncIterator[LiveServer]:
    async with live_server(settings, db_kind) as running:
        yield running


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def receive(subs: list[Subscription], ids: list[str]) -> None:
    """Every subscriber receives exactly these events, in order."""
    for sub in subs:
        got = [(await sub.next())["id"] for _ in ids]
        assert got == ids


async def test_per_subscriber_state_is_released_and_rendering_does_not_grow(
    server: LiveServer,
) -> None:
    key = await make_key(server)
    renderers_before = len(RENDERERS)
    subscribers_before = alive(Subscriber)
    async with AsyncExitStack() as stack:
        subs = [
            await stack.enter_async_context(subscribe(server, key, QUERY, protocol=TRANSPORT_WS))
            for _ in range(SUBSCRIBERS)
        ]
        await wait_subscribers(server, SUBSCRIBERS)
        assert alive(Subscriber) - subscribers_before == SUBSCRIBERS
        assert len(RENDERERS) == renderers_before + 1  # one operation, shared

        async def batch(n: int) -> None:
            ids = [f"r{n}-{i:03d}" for i in range(BATCH)]
            await ingest(server.url, key, [llm(i) for i in ids])
            await receive(subs, ids)

        await batch(0)  # warm-up: caches of the first render
        collected = alive(CollectedFields)
        for n in range(1, 5):
            await batch(n)
        # 200 more events rendered: what the operation keeps did not grow with them
        # (before the fix: one more CollectedFields per event, 200 here)
        assert alive(CollectedFields) - collected <= 10
        (renderer,) = [o for o in gc.get_objects() if type(o) is Renderer]
        memo: dict[Any, Any] = renderer._executor._relevant_sub_fields
        assert len(memo) <= 10
        del renderer, memo  # the test's own references

    await wait_subscribers(server, 0)
    for _ in range(100):  # the server's tasks finish their cleanup after the sockets close
        if len(RENDERERS) == renderers_before and alive(Subscriber) == subscribers_before:
            break
        await asyncio.sleep(0.05)
    assert len(RENDERERS) == renderers_before
    assert alive(Subscriber) == subscribers_before
    assert alive(_Run) == 0 and alive(FilterView) == 0
    assert alive(Renderer) == 0
    live = server.app.state.services.live
    assert live is not None
    assert bus_of(server).workspaces() == []
    assert not live.service.pacer._waiters
    assert not live.service.membership._tracked
