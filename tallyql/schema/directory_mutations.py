"""`upsertUsers` and `setGroupMembers` (MANAGE permission). Each change is audited in the
same transaction: actor the caller's API key, with its IP address."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from sqlalchemy import select

from tallyql.auth.principal import Permission, Principal
from tallyql.schema.context import TallyInfo
from tallyql.schema.directory import Group, User
from tallyql.schema.ingest import UserError
from tallyql.storage import tables
from tallyql.storage.audit import AuditRecord
from tallyql.storage.audit_store import insert_audit_records
from tallyql.storage.directory import UserRecord, set_group_members, upsert_users

MAX_USERS_PER_CALL = 1_000
MAX_MEMBERS = 10_000
LIMITS = {"id": 256, "email": 320, "displayName": 256, "department": 256}


@strawberry.input(description="A user to create or update; fields left out keep their value.")
class UserInput:
    id: strawberry.ID = strawberry.field(description="The user id sent with events.")
    email: str | None = strawberry.field(
        default=strawberry.UNSET, description="The email; omitted keeps it, null clears it."
    )
    display_name: str | None = strawberry.field(
        default=strawberry.UNSET, description="A name for people; omitted keeps it, null clears it."
    )
    department: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="The user's department (cost centre), at most one; omitted keeps it, null "
        "clears it. Events stored from now on carry it; earlier events keep theirs.",
    )


@strawberry.type(description="The result of upsertUsers.")
class UpsertUsersPayload:
    created: int = strawberry.field(description="Users created (count).")
    updated: int = strawberry.field(description="Users changed (count).")
    users: list[User] = strawberry.field(description="The users as stored.")
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


@strawberry.type(description="The result of setGroupMembers.")
class SetGroupMembersPayload:
    group: Group | None = strawberry.field(description="The group as stored; null on errors.")
    added: list[str] = strawberry.field(description="User ids that joined.")
    removed: list[str] = strawberry.field(description="User ids that left.")
    user_errors: list[UserError] = strawberry.field(
        description="What was wrong with the input; empty on success."
    )


def _check_users(items: list[UserInput]) -> list[UserError]:
    errors = []
    if len(items) > MAX_USERS_PER_CALL:
        return [
            UserError(
                field="users",
                message=f"send at most {MAX_USERS_PER_CALL} per call",
                code="TOO_MANY",
            )
        ]
    seen: set[str] = set()
    for index, item in enumerate(items):
        values = {
            "id": str(item.id),
            "email": item.email,
            "displayName": item.display_name,
            "department": item.department,
        }
        for name, value in values.items():
            if isinstance(value, str) and len(value) > LIMITS[name]:
                message = f"must be at most {LIMITS[name]} characters"
                errors.append(UserError(field=name, message=message, code="TOO_LONG", index=index))
        if not str(item.id).strip():
            errors.append(
                UserError(field="id", message="must not be empty", code="REQUIRED", index=index)
            )
        elif str(item.id) in seen:
            errors.append(
                UserError(
                    field="id", message="appears twice in this call", code="DUPLICATE", index=index
                )
            )
        seen.add(str(item.id))
    return errors


def _audit(principal: Principal, info: TallyInfo, **fields: Any) -> AuditRecord:
    return AuditRecord(
        workspace_id=principal.workspace_id,
        actor_id=principal.key_id,
        actor_type="api_key",
        source_ip=info.context.client_ip,
        **fields,
    )


def _given(value: Any, current: Any) -> Any:
    return current if value is strawberry.UNSET else value


@strawberry.type
class DirectoryMutation:
    @strawberry.mutation(description="Create or update users by id (audited per user).")
    async def upsert_users(
        self,
        info: TallyInfo,
        users: Annotated[
            list[UserInput],
            strawberry.argument(description="Users to create or update (by id)."),
        ],
    ) -> UpsertUsersPayload:
        principal = info.context.require(Permission.MANAGE)
        errors = _check_users(users)
        if errors:
            return UpsertUsersPayload(created=0, updated=0, users=[], user_errors=errors)
        ws = principal.workspace_id
        ids = [str(u.id) for u in users]
        table = tables.users
        async with info.context.services.db.write() as conn:
            query = select(table).where(table.c.workspace_id == ws, table.c.id.in_(ids))
            current = {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}
            records = []
            audits = []
            for item in users:
                before = current.get(str(item.id), {})
                record = UserRecord(
                    id=str(item.id),
                    email=_given(item.email, before.get("email")),
                    display_name=_given(item.display_name, before.get("display_name")),
                    department=_given(item.department, before.get("department")),
                )
                records.append(record)
                details: dict[str, Any] = {
                    "email": record.email,
                    "display_name": record.display_name,
                    "department": record.department,
                }
                if before:
                    old = {k: before[k] for k in ("email", "display_name", "department")}
                    if old == details:
                        continue
                    details = {"before": old, "after": details}
                audits.append(
                    _audit(
                        principal,
                        info,
                        action="update" if before else "create",
                        resource_type="user",
                        resource_id=record.id,
                        details=details,
                    )
                )
            created = await upsert_users(conn, ws, records)
            await insert_audit_records(conn, audits)
            rows = {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}
        return UpsertUsersPayload(
            created=created,
            updated=len(records) - created,
            users=[User.from_row(rows[i]) for i in ids],
            user_errors=[],
        )

    @strawberry.mutation(
        description="Make a group's members exactly these users (created if new; audited)."
    )
    async def set_group_members(
        self,
        info: TallyInfo,
        group: Annotated[
            str,
            strawberry.argument(
                description="The group's name (1 to 256 characters); created if new."
            ),
        ],
        user_ids: Annotated[
            list[str],
            strawberry.argument(description="The user ids that make up the group from now on."),
        ],
        description: Annotated[
            str | None,
            strawberry.argument(description="A new note for people; null keeps the current one."),
        ] = None,
    ) -> SetGroupMembersPayload:
        principal = info.context.require(Permission.MANAGE)
        errors = []
        if not group.strip() or len(group) > 256:
            errors.append(
                UserError(field="group", message="must be 1 to 256 characters", code="INVALID")
            )
        if len(user_ids) > MAX_MEMBERS:
            errors.append(
                UserError(
                    field="userIds", message=f"at most {MAX_MEMBERS} members", code="TOO_MANY"
                )
            )
        for index, user_id in enumerate(user_ids):
            if not user_id.strip() or len(user_id) > 256:
                errors.append(
                    UserError(
                        field="userIds",
                        message="must be 1 to 256 characters",
                        code="INVALID",
                        index=index,
                    )
                )
        if errors:
            return SetGroupMembersPayload(group=None, added=[], removed=[], user_errors=errors)
        ws = principal.workspace_id
        g = tables.groups
        found = select(g).where(g.c.workspace_id == ws, g.c.name == group)
        async with info.context.services.db.write() as conn:
            existed = (await conn.execute(found)).first() is not None
            added, removed = await set_group_members(conn, ws, group, user_ids, description)
            if not existed or added or removed or description is not None:
                details: dict[str, Any] = {"added": sorted(added), "removed": sorted(removed)}
                if description is not None:
                    details["description"] = description
                record = _audit(
                    principal,
                    info,
                    action="update" if existed else "create",
                    resource_type="group",
                    resource_id=group,
                    details=details,
                )
                await insert_audit_records(conn, [record])
            row = dict((await conn.execute(found)).mappings().one())
        return SetGroupMembersPayload(
            group=Group.from_row(row),
            added=sorted(added),
            removed=sorted(removed),
            user_errors=[],
        )
