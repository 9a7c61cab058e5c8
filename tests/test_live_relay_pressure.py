"""A replica whose ingest is saturated marks the rows it relays, and a replica receiving them
keeps its feeds' senders pressed for `PRESSURE_SECONDS` (live/relay.py): on one machine or
one database, the second replica's deliveries take the CPU that the first one's ingest needs.
The relay's messages are built and received here without a database (the NOTIFY round trip
is tested in test_live_cross_replica.py)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tallyql.live import relay as relay_module
from tallyql.live.bus import LiveBus
from tallyql.live.compact import LiveRow, row_of_values
from tallyql.live.relay import PRESSURE_SECONDS, PgRelay
from tests.support.live_support import live_row


class Listener:
    """What a relay needs of its PostgreSQL listener: a channel's callback."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[str], None]] = {}
        self.on_connect: list[Any] = []

    def add(self, channel: str, callback: Callable[[str], None]) -> None:
        self.callbacks[channel] = callback


class Clock:
    now = 500.0

    def __call__(self) -> float:
        return self.now


def relay_with(pressure: Callable[[], bool] | None) -> PgRelay:
    relay = PgRelay(None, LiveBus(), Listener(), pressure)  # type: ignore[arg-type]
    # another replica wants workspace 7's rows
    relay._on_message(orjson.dumps({"k": "i", "o": "elsewhere", "w": [7]}).decode())
    return relay


def as_json(row: LiveRow) -> list[Any]:
    return orjson.loads(orjson.dumps(tuple(row)))


def published(relay: PgRelay) -> list[dict[str, Any]]:
    return [orjson.loads(payload) for payload, _ in relay._pending]


def relayed_row(event_id: str) -> LiveRow:
    return live_row(workspace_id=7, id=event_id, tags=["t"], metadata={"m": 1}, ts_us=12)


def test_rows_of_a_saturated_replica_are_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    saturated = False
    relay = relay_with(lambda: saturated)
    relay._pending.clear()  # the interest replies
    rows = [relayed_row(f"e{n}") for n in range(3)]
    relay.publish_rows(rows)
    saturated = True
    relay.publish_rows(rows[:1])
    first, second = published(relay)
    assert "p" not in first and first["a"] == [as_json(r) for r in rows]
    assert second["p"] == 1 and second["a"] == [as_json(rows[0])]
    assert first["o"] == second["o"] == relay.origin
    # a receiving replica gets the rows back as they were
    receiver = relay_with(None)
    delivered: list[Any] = []
    monkeypatch.setattr(receiver._bus, "deliver_rows", delivered.extend)
    for payload, _ in relay._pending:
        receiver._on_message(payload)
    assert delivered == [*rows, rows[0]] and receiver.pressed
    assert all(type(r) is LiveRow for r in delivered) and delivered[0].id == "e0"
    # the sender skips its own messages when PostgreSQL delivers them back to it
    monkeypatch.setattr(relay._bus, "deliver_rows", delivered.extend)
    for payload, _ in relay._pending:
        relay._on_message(payload)
    assert len(delivered) == 4 and not relay.pressed


def test_marked_rows_press_the_receiver_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(relay_module.time, "monotonic", clock)
    relay = relay_with(None)
    delivered: list[Any] = []
    monkeypatch.setattr(relay._bus, "deliver_rows", delivered.extend)
    row = {"workspace_id": 7, "id": "x"}  # as earlier versions send rows: objects under "e"
    relay._on_message(orjson.dumps({"k": "e", "o": "elsewhere", "e": [row]}).decode())
    expected = live_row(workspace_id=7, id="x")
    assert not relay.pressed and delivered == [expected]
    assert expected.tags == () and expected.metadata == {} and expected.is_byok is False
    assert expected.input_tokens == expected.cost_nanousd == 0 and expected.model is None
    relay._on_message(orjson.dumps({"k": "e", "o": "elsewhere", "p": 1, "e": [row]}).decode())
    assert relay.pressed and delivered == [expected, expected]
    clock.now += PRESSURE_SECONDS - 0.01
    assert relay.pressed
    clock.now += 0.02
    assert not relay.pressed
    # its own rows (the NOTIFY comes back to the sender) are ignored, marked or not
    relay._on_message(orjson.dumps({"k": "e", "o": relay.origin, "p": 1, "e": [row]}).decode())
    assert not relay.pressed and len(delivered) == 2


def test_rows_fill_notifications_in_commit_order() -> None:
    """Rows of every size travel in order, each notification under NOTIFY's limit and most
    of them well filled; a row too big for one notification goes by the outbox, in its
    place."""
    relay = relay_with(None)
    relay._pending.clear()
    sizes = [random.Random(n).choice((0, 10, 200, 1_500)) for n in range(600)]
    sizes[37] = sizes[400] = relay_module.MAX_PAYLOAD  # alone too big
    rows = [
        live_row(workspace_id=7, id=f"e{n}", metadata={"pad": "x" * size})
        for n, size in enumerate(sizes)
    ]
    rows.insert(300, live_row(workspace_id=8, id="unwatched"))
    for start in range(0, len(rows), 97):  # batches as the bus hands them over
        relay.publish_rows(rows[start : start + 97])
    received: list[LiveRow] = []
    filled = []
    for payload, outbox in relay._pending:
        assert len(payload.encode()) <= relay_module.MAX_PAYLOAD
        message = orjson.loads(payload if outbox is None else outbox)
        if outbox is None:
            filled.append(len(payload.encode()) / relay_module.MAX_PAYLOAD)
        received += [row_of_values(v) for v in message["a"]]
    assert received == [r for r in rows if r.workspace_id == 7]
    assert sum(f > 0.5 for f in filled) >= 0.8 * len(filled)


def test_replicas_with_subscribers_are_counted() -> None:
    relay = relay_with(None)  # "elsewhere" has subscribers of workspace 7
    assert relay.remote_serving == 1
    relay._on_message(orjson.dumps({"k": "i", "o": "idle", "w": []}).decode())
    assert relay.remote_serving == 1  # a replica without subscribers does not count
    relay._on_message(orjson.dumps({"k": "i", "o": "third", "w": [9]}).decode())
    assert relay.remote_serving == 2
    relay._on_message(orjson.dumps({"k": "i", "o": "elsewhere", "w": []}).decode())
    assert relay.remote_serving == 1
