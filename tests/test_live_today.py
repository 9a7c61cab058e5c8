"""COST_UPDATE's `today` when events commit while the subscription reads its base, on SQLite
and PostgreSQL: an event committed just before the base's snapshot is in the base and is
streamed too, and must count once; one committed just after must count as well. The base read
is wrapped to commit a batch on either side of it, deterministically."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

import tallyql.live.stream as stream
from tallyql.config import Settings
from tallyql.engine.filters import EventFilterSpec
from tallyql.storage.database import Database
from tests.support.live_client import TRANSPORT_WS, LiveServer, live_server
from tests.support.live_support import (
    expected_totals,
    ingest,
    make_key,
    mixed_events,
    on_or_after,
    open_live,
)


@pytest.fixture
async def server(settings: Settings, db_kind: str, midday: datetime) -> AsyncIterator[LiveServer]:
    # noon: the events stamped 30 s and more back are today's at any hour the suite runs
    async with live_server(settings, db_kind) as running:
        yield running


async def test_events_committed_around_the_base_read_count_once(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await make_key(server)
    before = mixed_events("pre", 6)
    await ingest(server.url, key, before)
    just_before, just_after = mixed_events("near-a", 7), mixed_events("near-b", 5)
    read = stream.totals_between

    async def around(
        db: Database, workspace_id: int, spec: EventFilterSpec, start: datetime, end: datetime
    ) -> Any:  # the base's totals, and what it saw
        # committed (and handed to the bus) after the subscription counts streamed events,
        # but before the base is read ...
        await ingest(server.url, key, just_before)
        result = await read(db, workspace_id, spec, start, end)
        await ingest(server.url, key, just_after)  # ... and after it was read
        return result

    monkeypatch.setattr(stream, "totals_between", around)
    variables: dict[str, Any] = {"types": ["REQUEST", "ERROR", "COST_UPDATE"], "interval": 1}
    async with open_live(server, TRANSPORT_WS, key, variables) as live:
        first = await live.next()
        assert first["__typename"] == "CostUpdate"
        streamed = just_before + just_after
        items: list[dict[str, Any]] = []
        while len(items) < len(streamed):
            item = await live.next()
            if item["__typename"] != "CostUpdate":
                items.append(item)
        assert [i["id"] for i in items] == [e["id"] for e in streamed]
        update = await live.until("CostUpdate", wait=5)
        assert update["sinceStart"] == expected_totals(streamed)
        everything = before + streamed
        assert update["today"] == expected_totals(on_or_after(everything, update["todayStart"]))
        assert update["today"]["requests"] == len(everything) - 3  # three are two days old
