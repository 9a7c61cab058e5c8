"""The delivery pacer keeps live deliveries to their share of the event loop: with two hundred
busy senders, other tasks still get the loop after a few of them (counted, not timed, so a
loaded machine cannot fail it) and the senders use about their share of the time, no more; a
lone sender never waits; a cancelled waiter does not hold up the others."""

from __future__ import annotations

import asyncio
import time

import pytest

from tallyql.live.pacer import DeliveryPacer

SENDERS = 200
COST = 0.0005  # seconds of loop time per delivery
RUN = 1.0


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def contend(pacer: DeliveryPacer | None) -> tuple[float, float, int]:
    """Run SENDERS busy senders beside a probe for RUN seconds: (time the senders used,
    elapsed time, the most deliveries that ran between two turns of the probe). The probe
    yields at every turn, so it runs once in every loop iteration: the last figure is how many
    deliveries the pacer let into one iteration, which is what decides how long other tasks
    wait for the loop, and unlike a duration it does not grow on a loaded machine."""
    used = 0.0
    stop = False
    deliveries = 0

    async def sender() -> None:
        nonlocal used, deliveries
        while not stop:
            if pacer is not None:
                await pacer.turn()
            started = time.perf_counter()
            busy(COST)
            used += time.perf_counter() - started
            deliveries += 1
            if pacer is not None:
                pacer.done(started)
            await asyncio.sleep(0)  # a send that completes at once still yields

    most = 0

    async def probe() -> None:
        nonlocal most
        seen = deliveries
        while not stop:
            await asyncio.sleep(0)
            most = max(most, deliveries - seen)
            seen = deliveries

    began = time.perf_counter()
    tasks = [asyncio.create_task(sender()) for _ in range(SENDERS)]
    probing = asyncio.create_task(probe())
    await asyncio.sleep(RUN)
    stop = True
    await asyncio.gather(*tasks, probing)
    return used, time.perf_counter() - began, most


async def test_busy_senders_keep_to_their_share() -> None:
    # every delivery charged in full (max_cost), so that time this process spends descheduled
    # by the machine inside a busy loop counts on both sides of the comparison
    pacer = DeliveryPacer(share=0.5, max_cost=1.0)
    used, elapsed, most = await contend(pacer)
    assert used <= 0.5 * elapsed + pacer.burst + 0.05, (used, elapsed)
    assert used >= 0.3 * elapsed, (used, elapsed)  # paced, not starved
    # one iteration holds the deliveries the burst allows (burst / (COST / share) = 10, a few
    # more as the wall clock moves on while they run) plus those woken at once; a machine that
    # deschedules this process only charges them more, so fewer run
    assert most <= 3 * pacer.WAKE_AT_ONCE < SENDERS // 4, most
    assert pacer.waits > 0


async def test_without_the_pacer_the_probe_waits_long() -> None:
    """The control: the same senders unpaced all run in every iteration, a whole round of them
    between two turns of the probe."""
    used, elapsed, most = await contend(None)
    assert used > 0.8 * elapsed
    assert most == SENDERS


async def test_a_lone_sender_never_waits() -> None:
    pacer = DeliveryPacer(share=0.5)
    for _ in range(200):
        await pacer.turn()
        started = time.perf_counter()
        busy(0.00001)
        pacer.done(started)
        await asyncio.sleep(0.0001)
    assert pacer.waits == 0


async def test_cancelled_waiters_leave_the_others_going() -> None:
    pacer = DeliveryPacer(share=0.5, burst=0.001, max_cost=1.0)
    await pacer.turn()
    started = time.perf_counter()
    busy(0.01)  # well over the burst: the next ones wait
    pacer.done(started)
    finished: list[int] = []

    async def waiter(n: int) -> None:
        await pacer.turn()
        pacer.done(time.perf_counter())
        finished.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(40)]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert sorted(finished) == list(range(1, 40, 2))
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])


def test_under_pressure_deliveries_are_charged_against_the_pressed_share() -> None:
    pressed = False
    pacer = DeliveryPacer(0.15, pressed_share=0.03, pressure=lambda: pressed)
    started = time.perf_counter() + 3600.0  # later than now: the charge starts from it
    pacer.charge(started, 0.003)
    assert pacer._due == pytest.approx(started + 0.003 / 0.15, abs=1e-9)
    pressed = True
    pacer.charge(started, 0.003)  # the same cost counts five times more
    assert pacer._due == pytest.approx(started + 0.003 / 0.15 + 0.003 / 0.03, abs=1e-9)
    assert (pacer.charges, pacer.pressed_charges) == (2, 1)
    with pytest.raises(ValueError):
        DeliveryPacer(0.15, pressed_share=0.2)  # a pressed share above the share


def test_processes_split_the_pressed_share() -> None:
    serving = 1
    pacer = DeliveryPacer(
        0.25, pressed_share=0.03, pressure=lambda: True, pressed_split=lambda: serving
    )
    started = time.perf_counter() + 3600.0
    pacer.charge(started, 0.003)
    assert pacer._due == pytest.approx(started + 0.003 / 0.03, abs=1e-9)
    serving = 2  # another replica has subscribers too: each takes half
    pacer.charge(started, 0.003)
    assert pacer._due == pytest.approx(started + 0.003 / 0.03 + 0.003 / 0.015, abs=1e-9)
    serving = 0  # never more than the whole share
    pacer.charge(started, 0.003)
    assert pacer._due == pytest.approx(started + 2 * 0.003 / 0.03 + 0.003 / 0.015, abs=1e-9)
