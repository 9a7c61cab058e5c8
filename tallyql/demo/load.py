"""Loads demo traffic through the ingest pipeline's bulk path, plus its users and groups.

The bulk path skips HTTP: events are checked in C (the msgspec fast path), priced, and handed
to a writer in large batches; the database folds each batch into sessions and rollups while
Python prepares the next one, so both cores work. On PostgreSQL a batch is a whole UTC day,
written by a writer of the loader's own that upserts hour and day rollup rows directly (see
`_load_postgres`); the tables are vacuumed and analysed at the end so that the first queries
plan well."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import func, select, text

from tallyql.auth.principal import Role
from tallyql.clock import clock
from tallyql.config import Settings
from tallyql.demo.catalog import build_world
from tallyql.demo.generator import generate_batches, generate_events
from tallyql.ingest import fastpath
from tallyql.services import Services, start_services
from tallyql.storage.audit import block_audit_statements
from tallyql.storage.data_versions import bump
from tallyql.storage.directory import UserRecord, set_group_members, upsert_users
from tallyql.storage.ingest.batch import batches_for
from tallyql.storage.ingest.writer import Writer
from tallyql.storage.locks import Lock, hold
from tallyql.storage.rollups.compaction import compact
from tallyql.storage.rollups.declarations import WEEK, grain_start
from tallyql.storage.rollups.folds import whole_day_statements
from tallyql.storage.rollups.rebuild import recompute_weeks
from tallyql.storage.rollups.sessions import session_statements
from tallyql.storage.tables import events
from tallyql.storage.workspaces import get_or_create_workspace

BATCH = 10_000
"""SQLite: events per batch (PostgreSQL's batches are whole days)."""
IN_FLIGHT = 4
IN_FLIGHT_EVENTS = 250_000
"""Batches handed to the writer and not yet committed: at most IN_FLIGHT of them, and no more
once they hold this many events (a day of a ten-million-event load holds 110,000)."""
COMPACT_EVERY = 200_000
"""PostgreSQL: events between two compactions of the staged histogram deltas. The loader
compacts itself instead of every second: each run then merges a stretch of hours and days."""


@dataclass
class LoadReport:
    accepted: int
    duplicates: int
    seconds: float

    @property
    def rate(self) -> float:
        return (self.accepted + self.duplicates) / self.seconds if self.seconds else 0.0


ProgressCallback = Callable[[int], None]
"""Told the number of events committed so far, after each batch."""


async def load_demo(
    services: Services,
    workspace: str,
    count: int,
    days: int,
    seed: int,
    progress: ProgressCallback | None = None,
) -> LoadReport:
    started = time.perf_counter()
    world = build_world(seed)
    async with services.db.write() as conn:
        workspace_id = await get_or_create_workspace(conn, workspace)
        await upsert_users(
            conn,
            workspace_id,
            [
                UserRecord(u.id, u.email, u.display_name, world.user_group[u.id])
                for u in world.users
            ],
        )
        for group, members in sorted(world.groups.items()):
            await set_group_members(conn, workspace_id, group, members)
    end = clock.now().replace(second=0, microsecond=0)
    if services.db.dialect.concurrent_writes:
        accepted, duplicates = await _load_postgres(
            services, workspace_id, count, days, seed, end, progress
        )
    else:
        batches = generate_batches(count, days, seed=seed, end=end, batch_size=BATCH)
        accepted, duplicates = await _submit(
            services, services.writer, workspace_id, batches, progress=progress
        )
    return LoadReport(accepted, duplicates, time.perf_counter() - started)


async def _submit(
    services: Services,
    writer: Writer,
    workspace_id: int,
    batches: Iterable[list[dict[str, Any]]],
    between: Callable[[int], Awaitable[None]] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[int, int]:
    """Check, price and write the batches, a few at once (`IN_FLIGHT`, `IN_FLIGHT_EVENTS`);
    (accepted, duplicates). `between` is called after each batch is handed over, with the
    events handed so far; `progress` after each batch is committed, with the events committed
    so far."""
    accepted = duplicates = handed = 0
    pending: set[asyncio.Task[list[bool]]] = set()
    in_flight = 0

    def collect(done: set[asyncio.Task[list[bool]]]) -> None:
        nonlocal accepted, duplicates, in_flight
        for task in done:
            flags = task.result()
            in_flight -= len(flags)
            accepted += sum(flags)
            duplicates += len(flags) - sum(flags)
        if progress is not None:
            progress(accepted + duplicates)

    try:
        for batch in batches:
            valid = services.ingest.prepare_fast(
                workspace_id, fastpath.convert(batch), history=True
            )
            pending.add(asyncio.create_task(writer.submit(valid)))
            handed += len(batch)
            in_flight += len(batch)
            if between is not None:
                await between(handed)
            await asyncio.sleep(0)  # let the writer pick the batch up
            while pending and (len(pending) >= IN_FLIGHT or in_flight >= IN_FLIGHT_EVENTS):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                collect(done)
        if pending:
            done, pending = await asyncio.wait(pending)
            collect(done)
    finally:
        if pending:
            await asyncio.wait(pending)
    return accepted, duplicates


def whole_days(events: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Demo events in batches of whole UTC days (the generator writes UTC times, '...Z', in
    ascending order, so a day is a run of one date prefix)."""
    for _, day in groupby(events, key=lambda e: e["timestamp"][:10]):
        yield list(day)


async def _load_postgres(
    services: Services,
    workspace_id: int,
    count: int,
    days: int,
    seed: int,
    end: datetime,
    progress: ProgressCallback | None = None,
) -> tuple[int, int]:
    """PostgreSQL's bulk path: batches of whole days on a writer of their own that upserts the
    hour and day rows of the rollups directly (`rollups/folds.whole_day_statements`: lanes
    writing different days never wait for each other, and no delta is staged and compacted),
    then the week rows of the loaded weeks from their days, then statistics."""
    db = services.db
    writer = Writer(
        batches_for(db, services.settings.writer_connections),
        contributors=[whole_day_statements, block_audit_statements, session_statements],
        # the loader bounds what is in flight itself (`_submit`), and a day of a big load may
        # hold more events than a server's queue takes
        max_queue_events=sys.maxsize,
        max_batch_events=services.settings.writer_batch_events,
    )
    # every day's partition first: creating one locks the events table, which waits for the
    # batches in flight and holds back the next ones
    start = end - timedelta(days=days)
    first_day = start.date()
    await writer.batches.ensure_days(
        {first_day + timedelta(days=i) for i in range((end.date() - first_day).days + 1)}
    )
    compactions: list[asyncio.Task[int | None]] = []

    async def compact_now_and_then(handed: int) -> None:
        """The histogram deltas, while the load runs (their merge is Python's work)."""
        if handed // COMPACT_EVERY > len(compactions):
            if compactions:
                await compactions[-1]
            compactions.append(asyncio.create_task(compact(db, wait=True)))

    writer.start()
    try:
        events = generate_events(count, days, seed=seed, end=end)
        counts = await _submit(
            services, writer, workspace_id, whole_days(events), compact_now_and_then, progress
        )
    finally:
        await writer.stop()
        if compactions:
            await compactions[-1]
    await compact(db, wait=True)  # the rest of the staged histograms
    weeks = (
        grain_start("w", int(start.timestamp())),
        grain_start("w", int(end.timestamp())) + WEEK,
    )
    async with db.write() as conn:
        await hold(conn, Lock.COMPACTION)
        await recompute_weeks(conn, db.dialect, *weeks, workspace_id, histograms=False)
        await bump(conn, [workspace_id])  # the week rows recomputed from the loaded days
    await _settle_postgres(services)
    return counts


RAW_TABLES = ("events", "payloads", "event_keys")
"""Analysed, not vacuumed, after a load: a whole-database VACUUM spent a quarter of a
million-event load on their fresh pages, which no dashboard reads index-only."""
RAW_STATISTICS_TARGET = 10
"""Statistics target of the raw tables' ANALYZE: their day partitions are small enough that the
default (100) sampled every row of every column of a million events (16 s, a quarter of the
load); ten-entry histograms and common-value lists plan the request log's range scans alike
(4 s). Later ANALYZEs, autovacuum's included, use the server's default."""


async def _settle_postgres(services: Services) -> None:
    """Statistics for the planner everywhere, and visibility maps for the tables that are
    read index-only (rollups for distinct counts, sessions for exact statistics), which
    autovacuum would reach only later. The raw tables' ANALYZE and the others' VACUUM run on
    two connections at once (each keeps one core busy)."""
    async with services.db.writer.connect() as conn:
        names = (
            await conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
                    "AND NOT c.relispartition AND c.relname <> ALL(:raw)"
                ),
                {"raw": list(RAW_TABLES)},
            )
        ).scalars()
        quoted = ", ".join(f'"{name}"' for name in sorted(names))
    work = [
        [
            f"SET default_statistics_target = {RAW_STATISTICS_TARGET}",
            f"ANALYZE {', '.join(RAW_TABLES)}",
            "RESET default_statistics_target",
        ]
    ]
    if quoted:
        work.append([f"VACUUM (ANALYZE) {quoted}"])
    await asyncio.gather(*(_autocommit(services, statements) for statements in work))


async def _autocommit(services: Services, statements: list[str]) -> None:
    async with services.db.writer.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for sql in statements:
            await conn.execute(text(sql))


async def load_demo_into(
    settings: Settings,
    workspace: str,
    count: int,
    days: int,
    seed: int,
    progress: ProgressCallback | None = None,
) -> LoadReport:
    services = await start_services(replace(settings, rollup_compaction_seconds=0))
    try:
        return await load_demo(services, workspace, count, days, seed, progress)
    finally:
        await services.stop()


async def seed_for_serve(
    settings: Settings,
    count: int,
    workspace: str = "demo",
    progress: ProgressCallback | None = None,
) -> str:
    """Seed 30 days of demo traffic unless the workspace has events; returns a new admin key."""
    services = await start_services(settings)
    try:
        async with services.db.write() as conn:
            workspace_id = await get_or_create_workspace(conn, workspace)
        async with services.db.read() as conn:
            existing = (
                await conn.execute(
                    select(func.count())
                    .select_from(events)
                    .where(events.c.workspace_id == workspace_id)
                )
            ).scalar_one()
        if not existing:
            report = await load_demo(services, workspace, count, 30, 42, progress)
            print(f"seeded {report.accepted:,} demo events in {report.seconds:.1f} s")
        key, _ = await services.keys.create(workspace, Role.ADMIN, "demo admin", actor="cli")
        return key
    finally:
        await services.stop()
