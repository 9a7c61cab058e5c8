"""Users and groups of a workspace, with groups' current membership."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tallyql.clock import clock
from tallyql.storage.data_versions import bump
from tallyql.storage.tables import group_members, groups, users


@dataclass(frozen=True)
class UserRecord:
    id: str
    email: str | None = None
    display_name: str | None = None
    department: str | None = None


async def upsert_users(
    conn: AsyncConnection, workspace_id: int, records: Sequence[UserRecord]
) -> int:
    """Create or update users by id; returns how many were new."""
    if not records:
        return 0
    now = clock.now()
    ids = [r.id for r in records]
    existing = set(
        (
            await conn.execute(
                select(users.c.id).where(users.c.workspace_id == workspace_id, users.c.id.in_(ids))
            )
        ).scalars()
    )
    new = set(ids) - existing
    for record in records:
        values = {
            "email": record.email,
            "display_name": record.display_name,
            "department": record.department,
            "updated_at": now,
        }
        if record.id in existing:
            await conn.execute(
                users.update()
                .where(users.c.workspace_id == workspace_id, users.c.id == record.id)
                .values(**values)
            )
        else:
            await conn.execute(
                users.insert().values(
                    workspace_id=workspace_id, id=record.id, created_at=now, **values
                )
            )
            existing.add(record.id)
    await bump(conn, [workspace_id])  # display names are words that questions may use
    return len(new)


async def set_user_departments(
    conn: AsyncConnection, workspace_id: int, user_ids: Sequence[str], department: str | None
) -> dict[str, str | None]:
    """Give users a department (None clears it), creating users not yet known; returns each
    user's department before (None for a new user)."""
    now = clock.now()
    found = (
        await conn.execute(
            select(users.c.id, users.c.department).where(
                users.c.workspace_id == workspace_id, users.c.id.in_(list(user_ids))
            )
        )
    ).all()
    before: dict[str, str | None] = {r[0]: r[1] for r in found}
    for user_id in dict.fromkeys(user_ids):
        if user_id in before:
            await conn.execute(
                users.update()
                .where(users.c.workspace_id == workspace_id, users.c.id == user_id)
                .values(department=department, updated_at=now)
            )
        else:
            await conn.execute(
                users.insert().values(
                    workspace_id=workspace_id,
                    id=user_id,
                    department=department,
                    created_at=now,
                    updated_at=now,
                )
            )
    await bump(conn, [workspace_id])
    return {u: before.get(u) for u in user_ids}


async def set_group_members(
    conn: AsyncConnection,
    workspace_id: int,
    group: str,
    user_ids: Iterable[str],
    description: str | None = None,
) -> tuple[set[str], set[str]]:
    """Make the group's members exactly `user_ids`; returns (added, removed)."""
    wanted = set(user_ids)
    found = (
        await conn.execute(
            select(groups.c.name).where(
                groups.c.workspace_id == workspace_id, groups.c.name == group
            )
        )
    ).first()
    if found is None:
        await conn.execute(
            groups.insert().values(
                workspace_id=workspace_id,
                name=group,
                description=description,
                created_at=clock.now(),
            )
        )
    elif description is not None:
        await conn.execute(
            groups.update()
            .where(groups.c.workspace_id == workspace_id, groups.c.name == group)
            .values(description=description)
        )
    current = set(
        (
            await conn.execute(
                select(group_members.c.user_id).where(
                    group_members.c.workspace_id == workspace_id,
                    group_members.c.group_name == group,
                )
            )
        ).scalars()
    )
    added, removed = wanted - current, current - wanted
    # a group's numbers are its current members' (engine/compiler.py joins group_members)
    await bump(conn, [workspace_id])
    if removed:
        await conn.execute(
            delete(group_members).where(
                group_members.c.workspace_id == workspace_id,
                group_members.c.group_name == group,
                group_members.c.user_id.in_(sorted(removed)),
            )
        )
    if added:
        await conn.execute(
            group_members.insert(),
            [
                {"workspace_id": workspace_id, "group_name": group, "user_id": u}
                for u in sorted(added)
            ],
        )
    return added, removed
