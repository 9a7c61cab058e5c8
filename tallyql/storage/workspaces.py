"""Workspaces: the tenants. Every other row belongs to exactly one.

Found or created by name at ingest and key creation; listed (names and creation times) for
operator views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.clock import clock
from tallyql.storage.database import Database
from tallyql.storage.tables import workspaces


async def find_workspace(conn: AsyncConnection, name: str) -> int | None:
    query = select(workspaces.c.id).where(workspaces.c.name == name)
    return (await conn.execute(query)).scalar_one_or_none()


async def get_or_create_workspace(conn: AsyncConnection, name: str) -> int:
    """The id of the named workspace, created if it does not exist yet."""
    if not name or len(name) > 128:
        raise ValueError("a workspace name must be 1 to 128 characters")
    found = await find_workspace(conn, name)
    if found is not None:
        return found
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                workspaces.insert().values(name=name, created_at=clock.now())
            )
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row
        return int(key[0])
    except IntegrityError:  # created concurrently by another process
        found = await find_workspace(conn, name)
        assert found is not None
        return found


@dataclass(frozen=True)
class WorkspaceInfo:
    id: int
    name: str
    created_at: datetime


async def list_workspaces(db: Database) -> list[WorkspaceInfo]:
    query = select(workspaces.c.id, workspaces.c.name, workspaces.c.created_at).order_by(
        workspaces.c.id
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [WorkspaceInfo(r.id, r.name, r.created_at) for r in rows]
