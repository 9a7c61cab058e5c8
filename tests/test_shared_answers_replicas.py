"""Shared answers across replicas: an answer includes every event committed before its request
started, whichever replica committed it (tallyql/http/shared_answers.py).

Two serving apps in this process, each with its own services (connection pools, writer, key
cache, single flight), share one database, as replicas behind a load balancer do: replica A
answers questions, replica B ingests. On PostgreSQL they are two replicas in the full sense
(B's writer stages rollup deltas that A reads, and B compacts them while A reads); on SQLite
they are two app instances on one database file (one machine, SQLite serialising their
writers), which checks the same rule without the staged deltas. Each answer is checked against
the events counted with the database's own driver, not through tallyql.

A computation is held open deterministically (a hook around the route's computation: it reads
everything, then waits for the test), never by sleeping and hoping.
"""

from __future__ import annotations

import asyncio

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.storage.rollups.compaction import compact
from tests.support.shared_answers import (
    direct_route,
    event,
    figures,
    held_after_reading,
    raw_totals,
    replicas,
    until,
)


async def test_an_event_acknowledged_by_another_replica_is_in_every_later_answer(
    settings: Settings, db_kind: str
) -> None:
    """(a) and (b): while replica A holds a computation of the question open (it has read the
    database and not yet answered), an event is acknowledged by replica B; the requests then
    sent to A all answer with it, 25 of them costing one more computation, two in all. The
    question includes the day's sessions, of which A keeps a digest read before the commit."""
    raw = raw_totals(settings.database_url)
    async with replicas(settings, db_kind) as (a, b):
        admin = await b.key()
        viewer = await a.key(role=Role.VIEWER)
        await b.ingest(admin, [event(n, tokens=n + 1, session=f"s{n % 4}") for n in range(20)])
        before = await raw()
        assert before == (20, sum(n + 2 for n in range(20)), 4)
        assert await figures(a, viewer) == before  # A keeps the day's session digest now
        route = direct_route(a.app)
        warm = route.flights.computations
        gate, read = asyncio.Event(), asyncio.Event()
        held_after_reading(route, gate, read)
        first = asyncio.create_task(figures(a, viewer))
        await asyncio.wait_for(read.wait(), 30)  # A has read: 20 events

        await b.ingest(admin, [event(20, tokens=1000, session="new")])  # acknowledged
        after = await raw()
        assert after == (21, before[1] + 1001, 5)
        later = [asyncio.create_task(figures(a, viewer)) for _ in range(25)]
        # every later request reaches the single flight while the first is still held: one
        # waits to compute, 24 join it
        await until(lambda: route.flights.shared == 24, "the 25 later requests to arrive")
        assert route.flights.computations - warm == 1  # the held one
        gate.set()

        assert await first == before  # its read preceded the commit: the hold was real
        answers = await asyncio.gather(*later)
        assert answers == [after] * 25
        # 26 requests, two computations
        assert (route.flights.computations - warm, route.flights.shared) == (2, 24)
        # and B, which committed it, answers the same
        assert await figures(b, viewer) == after


async def test_a_request_started_after_the_acknowledgement_always_includes_the_event(
    settings: Settings, db_kind: str
) -> None:
    """(c) the race, eight times: requests to A started before B's ingest is acknowledged may
    or may not include its events (the batch is one transaction: each figure holds all of it
    or none), every request started after the acknowledgement includes them. On PostgreSQL, B
    compacts the staged rollup deltas in every other round while A's requests read rollups
    and deltas."""
    raw = raw_totals(settings.database_url)
    async with replicas(settings, db_kind) as (a, b):
        admin = await b.key()
        viewer = await a.key(role=Role.VIEWER)
        route = direct_route(a.app)
        await b.ingest(admin, [event(n, tokens=7, session="first") for n in range(10)])
        next_id = 10
        for round_ in range(8):
            old = await raw()
            batch = [event(next_id + i, tokens=round_ + 3, session=f"r{round_}") for i in range(3)]
            next_id += len(batch)
            racing = [asyncio.create_task(figures(a, viewer)) for _ in range(10)]
            for _ in range(round_):  # the ingest starts a little later each round
                await asyncio.sleep(0)
            chores = [b.ingest(admin, batch)]
            if db_kind == "postgresql" and round_ % 2:
                chores.append(compact(b.services.db, wait=True))
            await asyncio.gather(*chores)  # acknowledged
            new = await raw()
            assert new == (old[0] + 3, old[1] + 3 * (round_ + 4), old[2] + 1)
            after = [asyncio.create_task(figures(a, viewer)) for _ in range(10)]
            for answer in await asyncio.gather(*racing):
                # each figure is read in its own statement: each holds the batch or not
                for figure, was, now in zip(answer, old, new, strict=True):
                    assert figure in (was, now), (answer, old, new)
            assert await asyncio.gather(*after) == [new] * 10
        assert await figures(b, viewer) == await raw() == (34, 80 + 3 * sum(range(4, 12)), 9)
        # identical requests shared computations: fewer than the 160 requests asked
        assert route.flights.computations + route.flights.shared == 160
        assert route.flights.shared > 0
