"""A version of each workspace's data: a number that grows with every committed change to
the numbers its questions answer, so that readers may keep answers (chart images) until it
moves.

`data_versions` holds rows (workspace_id, slot, version); the workspace's version is the sum
of its rows' versions. Every transaction that changes a workspace's events or what their
numbers mean adds one to one of its rows, in that same transaction: the writer's batches
(each writer connection has its own slot, so that the writer's lanes never wait for one
another on this row), and on `MAINTENANCE_SLOT` repricing, rebuilds, group membership
changes, the bulk loader and retention purges. A sum of counts that only grow grows at every
commit whatever the commit order of concurrent transactions (a maximum of ids would not:
a transaction that took a smaller id may commit later), and it is read from the database,
so every serving process sees every other's commits.

Readers read the version before anything else: an answer computed afterwards holds at least
what the version stands for, so an answer kept under that version is never older than it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.storage.tables import data_versions

TABLE = "data_versions"
MAINTENANCE_SLOT = 0
WRITER_SLOTS = 64
"""Writer connections take slots 1..64: at most 65 rows per workspace, and two writer
connections (of different processes) sharing a slot only wait for each other."""


def writer_slot() -> int:
    """A slot for a new writer connection."""
    return random.randint(1, WRITER_SLOTS)


def batch_bump_sql(source: str, slot: int) -> str:
    """One more on `slot` for every workspace that has rows in `source` (both dialects);
    workspaces in sorted order, like every upsert of the writer."""
    return (
        f"INSERT INTO {TABLE} (workspace_id, slot, version) "
        f"SELECT DISTINCT workspace_id, {int(slot)}, 1 FROM {source} WHERE true "
        "ORDER BY 1 "
        f"ON CONFLICT (workspace_id, slot) DO UPDATE SET version = {TABLE}.version + 1"
    )


_BUMP = text(
    f"INSERT INTO {TABLE} (workspace_id, slot, version) VALUES (:ws, {MAINTENANCE_SLOT}, 1) "
    f"ON CONFLICT (workspace_id, slot) DO UPDATE SET version = {TABLE}.version + 1"
)


async def bump(conn: AsyncConnection, workspace_ids: Iterable[int]) -> None:
    """One more on the maintenance slot of each workspace, in `conn`'s transaction."""
    for ws in sorted(set(workspace_ids)):
        await conn.execute(_BUMP, {"ws": ws})


async def bump_all(conn: AsyncConnection) -> None:
    """One more for every workspace (a change that may touch any of them)."""
    await conn.execute(
        text(
            f"INSERT INTO {TABLE} (workspace_id, slot, version) "
            f"SELECT id, {MAINTENANCE_SLOT}, 1 FROM workspaces WHERE true ORDER BY 1 "
            f"ON CONFLICT (workspace_id, slot) DO UPDATE SET version = {TABLE}.version + 1"
        )
    )


async def read_version(conn: AsyncConnection, workspace_id: int) -> int:
    """The workspace's data version (0 before its first change)."""
    total = await conn.scalar(
        select(func.coalesce(func.sum(data_versions.c.version), 0)).where(
            data_versions.c.workspace_id == workspace_id
        )
    )
    return int(total or 0)
