"""The list of workspaces (names and creation times), for operator views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from tallyql.storage.database import Database
from tallyql.storage.tables import workspaces


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
