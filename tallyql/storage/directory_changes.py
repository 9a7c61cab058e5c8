"""Changes to a workspace's users and groups made through the API (`upsertUsers`,
`setGroupMembers`), each audited in the same transaction as the change: one audit event per
user that changed, one per group whose members or note changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from tallyql.storage.audit import Actor, AuditRecord, insert_audit_records
from tallyql.storage.database import Database
from tallyql.storage.directory import UserRecord, set_group_members, upsert_users
from tallyql.storage.tables import groups, users

USER_FIELDS = ("email", "display_name", "department")


@dataclass(frozen=True)
class UserPatch:
    """A user by id and the fields given for it (those left out keep their value)."""

    id: str
    given: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupChange:
    row: dict[str, Any]
    """The group as stored afterwards."""
    added: list[str]
    removed: list[str]


def _record(workspace_id: int, actor: Actor, **fields: Any) -> AuditRecord:
    return AuditRecord(
        workspace_id=workspace_id,
        actor_id=actor.id,
        actor_type=actor.type,
        source_ip=actor.source_ip,
        **fields,
    )


async def change_users(
    db: Database, workspace_id: int, patches: Sequence[UserPatch], actor: Actor
) -> tuple[int, list[dict[str, Any]]]:
    """Create or update users by id (ids distinct); returns how many were new, and the users
    as stored in the order given. A user given exactly as stored is not audited."""
    ids = [p.id for p in patches]
    query = select(users).where(users.c.workspace_id == workspace_id, users.c.id.in_(ids))
    async with db.write() as conn:
        current = {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}
        records = []
        audits = []
        for patch in patches:
            before = current.get(patch.id, {})
            values = {name: patch.given.get(name, before.get(name)) for name in USER_FIELDS}
            records.append(UserRecord(id=patch.id, **values))
            details: dict[str, Any] = values
            if before:
                old = {name: before[name] for name in USER_FIELDS}
                if old == values:
                    continue
                details = {"before": old, "after": values}
            audits.append(
                _record(
                    workspace_id,
                    actor,
                    action="update" if before else "create",
                    resource_type="user",
                    resource_id=patch.id,
                    details=details,
                )
            )
        created = await upsert_users(conn, workspace_id, records)
        await insert_audit_records(conn, audits)
        rows = {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}
    return created, [rows[i] for i in ids]


async def change_group_members(
    db: Database,
    workspace_id: int,
    group: str,
    user_ids: Sequence[str],
    description: str | None,
    actor: Actor,
) -> GroupChange:
    """Make the group's members exactly `user_ids` (the group is created if new; a
    `description` replaces its note). Audited unless nothing changed."""
    found = select(groups).where(groups.c.workspace_id == workspace_id, groups.c.name == group)
    async with db.write() as conn:
        existed = (await conn.execute(found)).first() is not None
        added, removed = await set_group_members(conn, workspace_id, group, user_ids, description)
        if not existed or added or removed or description is not None:
            details: dict[str, Any] = {"added": sorted(added), "removed": sorted(removed)}
            if description is not None:
                details["description"] = description
            record = _record(
                workspace_id,
                actor,
                action="update" if existed else "create",
                resource_type="group",
                resource_id=group,
                details=details,
            )
            await insert_audit_records(conn, [record])
        row = dict((await conn.execute(found)).mappings().one())
    return GroupChange(row=row, added=sorted(added), removed=sorted(removed))
