"""Loads demo traffic through the ingest pipeline's bulk path, plus its users and groups.

The bulk path skips HTTP: events are checked in C (the msgspec fast path), priced, and handed
to the writer in large batches; the database folds each batch into sessions and rollups while
Python prepares the next one, so both cores work. PostgreSQL tables are vacuumed and analysed
at the end so that the first queries plan well."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.demo.catalog import build_world
from tallyql.demo.generator import generate_batches
from tallyql.ingest import fastpath
from tallyql.services import Services, start_services
from tallyql.storage.compaction import compact
from tallyql.storage.directory import UserRecord, set_group_members, upsert_users
from tallyql.storage.tables import events
from tallyql.storage.workspaces import get_or_create_workspace

BATCH = 10_000
IN_FLIGHT = 4
COMPACT_EVERY = 200_000
"""PostgreSQL: events between two compactions of the staged rollup deltas. The loader compacts
itself instead of every second: each run then folds a stretch of hours and days that many
batches share, upserting each rollup row once instead of once per batch."""


@dataclass
class LoadReport:
    accepted: int
    duplicates: int
    seconds: float

    @property
    def rate(self) -> float:
        return (self.accepted + self.duplicates) / self.seconds if self.seconds else 0.0


async def load_demo(
    services: Services, workspace: str, count: int, days: int, seed: int
) -> LoadReport:
    started = time.perf_counter()
    world = build_world(seed)
    async with services.db.write() as conn:
        workspace_id = await get_or_create_workspace(conn, workspace)
        await upsert_users(
            conn, workspace_id, [UserRecord(u.id, u.email, u.display_name) for u in world.users]
        )
        for group, members in sorted(world.groups.items()):
            await set_group_members(conn, workspace_id, group, members)
    accepted = duplicates = 0
    pending: set[asyncio.Task[list[bool]]] = set()
    end = datetime.now(UTC).replace(second=0, microsecond=0)

    def collect(done: set[asyncio.Task[list[bool]]]) -> None:
        nonlocal accepted, duplicates
        for task in done:
            flags = task.result()
            accepted += sum(flags)
            duplicates += len(flags) - sum(flags)

    # every day's partition first: creating one locks the events table, which waits for the
    # batches in flight and holds back the next ones
    first_day = (end - timedelta(days=days)).date()
    await services.writer.batches.ensure_days(
        {first_day + timedelta(days=i) for i in range((end.date() - first_day).days + 1)}
    )
    compaction: asyncio.Task[int | None] | None = None
    since_compaction = 0
    try:
        for batch in generate_batches(count, days, seed=seed, end=end, batch_size=BATCH):
            valid = services.ingest.prepare_fast(workspace_id, fastpath.convert(batch))
            pending.add(asyncio.create_task(services.writer.submit(valid)))
            since_compaction += len(batch)
            if services.db.is_postgres and since_compaction >= COMPACT_EVERY:
                if compaction is not None:
                    await compaction
                compaction = asyncio.create_task(compact(services.db, wait=True))
                since_compaction = 0
            await asyncio.sleep(0)  # let the writer pick the batch up
            if len(pending) >= IN_FLIGHT:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                collect(done)
        if pending:
            done, _ = await asyncio.wait(pending)
            collect(done)
    finally:
        if pending:
            await asyncio.wait(pending)
    if compaction is not None:
        await compaction
    if services.db.is_postgres:
        await compact(services.db, wait=True)  # the staged batches into the rollup tables
        await _settle_postgres(services)
    return LoadReport(accepted, duplicates, time.perf_counter() - started)


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
    settings: Settings, workspace: str, count: int, days: int, seed: int
) -> LoadReport:
    services = await start_services(replace(settings, rollup_compaction_seconds=0))
    try:
        return await load_demo(services, workspace, count, days, seed)
    finally:
        await services.stop()


async def seed_for_serve(settings: Settings, count: int, workspace: str = "demo") -> str:
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
            report = await load_demo(services, workspace, count, 30, seed=42)
            print(f"seeded {report.accepted:,} demo events in {report.seconds:.1f} s")
        key, _ = await services.keys.create(workspace, Role.ADMIN, "demo admin", actor="cli")
        return key
    finally:
        await services.stop()
