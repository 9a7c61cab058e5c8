"""The writer tells when ingest is saturated (a batch being written most of the last moments),
so that live delivery can step back while ingest waits for the database (live/batches.py
`PRESSED_SENDER_SHARE`). The measure is an exponentially weighted share of time, checked here
against its closed form on a clock the test moves."""

from __future__ import annotations

import asyncio
import math

import pytest

from tallyql.storage.dialect import Dialect
from tallyql.storage.ingest import writer as writer_module
from tallyql.storage.ingest.record import EVENT_COLUMNS, ID, WORKSPACE, ValidEvent
from tallyql.storage.ingest.writer import SATURATION_SECONDS, TimeShare, Writer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(writer_module.time, "monotonic", fake)
    return fake


def test_time_share_weights_recent_time(clock: Clock) -> None:
    share = TimeShare(0.5)
    assert share.share == 0.0
    share.set(True)
    clock.now += 0.5  # one time constant on
    assert share.share == pytest.approx(1 - math.exp(-1), rel=1e-12)
    share.set(False)
    clock.now += 1.0  # then two off
    assert share.share == pytest.approx((1 - math.exp(-1)) * math.exp(-2), rel=1e-12)
    share.set(True)  # setting the same moment twice changes nothing
    share.set(True)
    assert share.share == pytest.approx((1 - math.exp(-1)) * math.exp(-2), rel=1e-12)


class HeldBatches:
    """A writer's database side whose writes finish when the test lets them."""

    lanes = 1
    dialect = Dialect.SQLITE

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def write(self, events: list[ValidEvent], statements: object) -> list[ValidEvent]:
        await self.release.wait()
        return events

    async def close(self) -> None:
        pass


def event(n: int) -> ValidEvent:
    record: list[object] = [None] * len(EVENT_COLUMNS)
    record[WORKSPACE], record[ID] = 1, f"e{n}"
    return ValidEvent(index=n, record=record)


async def test_the_writer_is_saturated_while_it_writes_most_of_the_time(clock: Clock) -> None:
    batches = HeldBatches()
    writer = Writer(batches)  # type: ignore[arg-type]
    writer.start()
    assert not writer.saturated
    call = asyncio.create_task(writer.submit([event(0)]))
    while not writer.pending_events or writer.queue_depth:  # noqa: ASYNC110 (its lane takes it)
        await asyncio.sleep(0)
    clock.now += SATURATION_SECONDS * 0.5  # writing for half a time constant: 39 %
    assert not writer.saturated
    clock.now += SATURATION_SECONDS * 1.5  # two in all: 86 %, above the 80 % threshold
    assert writer.saturated
    batches.release.set()
    assert await call == [True]
    clock.now += SATURATION_SECONDS * 0.1  # idle since: 86 % decays below 80 % at once
    assert not writer.saturated
    await writer.stop()
