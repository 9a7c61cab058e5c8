"""IdleCollector: cyclic garbage of a request is collected once no request is in flight,
never while one is."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import httpx

from tallyql.http.idle_gc import IdleCollector


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def _app(refs: list[weakref.ref[_Node]], gate: asyncio.Event | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        nodes = [_Node() for _ in range(3_000)]
        refs.append(weakref.ref(nodes[0]))
        del nodes
        if gate is not None and scope["path"] == "/slow":
            await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_garbage_is_collected_when_idle() -> None:
    refs: list[weakref.ref[_Node]] = []
    collector = IdleCollector(_app(refs), young_objects=1_000)
    threshold = gc.get_threshold()
    gc.set_threshold(10**8)  # no automatic collection in between
    try:
        transport = httpx.ASGITransport(app=collector)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/")).status_code == 200
            assert refs[0]() is not None  # the response went out first
            await asyncio.sleep(0)
            assert collector.collections == 1 and refs[0]() is None
    finally:
        gc.set_threshold(*threshold)


async def test_no_collection_while_a_request_is_in_flight() -> None:
    refs: list[weakref.ref[_Node]] = []
    gate = asyncio.Event()
    collector = IdleCollector(_app(refs, gate), young_objects=1_000)
    threshold = gc.get_threshold()
    gc.set_threshold(10**8)
    try:
        transport = httpx.ASGITransport(app=collector)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            slow = asyncio.create_task(client.get("/slow"))
            for _ in range(20):  # until the slow request has started
                await asyncio.sleep(0)
            assert collector.in_flight == 1
            assert (await client.get("/")).status_code == 200
            for _ in range(5):
                await asyncio.sleep(0)
            assert collector.collections == 0 and refs[1]() is not None
            gate.set()
            assert (await slow).status_code == 200
            await asyncio.sleep(0)
            assert collector.collections == 1 and all(r() is None for r in refs)
    finally:
        gc.set_threshold(*threshold)


async def test_garbage_in_older_generations_is_collected_when_due() -> None:
    """Cyclic garbage that survived a young collection is freed once the middle generation
    is due, though the young threshold is never reached (CPython alone would keep it)."""
    refs: list[weakref.ref[_Node]] = []
    collector = IdleCollector(_app(refs), young_objects=1_000)
    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10**8, 5, 1_000)  # no automatic collection; the middle due every 5
    try:
        survivor = _Node()  # alive during the young collections: promoted, then dropped
        gc.collect(0)
        survivor_ref = weakref.ref(survivor)
        del survivor
        assert survivor_ref() is not None  # in the middle generation, unreached
        transport = httpx.ASGITransport(app=collector)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(6):
                assert (await client.get("/")).status_code == 200
                await asyncio.sleep(0)
        assert collector.collections == 6
        assert survivor_ref() is None and all(r() is None for r in refs)
        assert gc.get_count()[1] < 5
    finally:
        gc.set_threshold(*threshold)
