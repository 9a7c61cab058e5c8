"""`upsertUsers` and `setGroupMembers` (MANAGE permission). Each change is audited in the
same transaction: actor the caller's API key, with its IP address."""

from __future__ import annotations

from typing import Annotated

import strawberry

from tallyql.auth.principal import Permission
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.crud import actor_of
from tallyql.schema.base.errors import UserError
from tallyql.schema.directory import Group, User
from tallyql.storage.directory_changes import UserPatch, change_group_members, change_users

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


def _patch(item: UserInput) -> UserPatch:
    given = {
        "email": item.email,
        "display_name": item.display_name,
        "department": item.department,
    }
    return UserPatch(
        id=str(item.id), given={k: v for k, v in given.items() if v is not strawberry.UNSET}
    )


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
        created, rows = await change_users(
            info.context.services.db,
            principal.workspace_id,
            [_patch(u) for u in users],
            actor_of(info, principal),
        )
        return UpsertUsersPayload(
            created=created,
            updated=len(rows) - created,
            users=[User.from_row(r) for r in rows],
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
        change = await change_group_members(
            info.context.services.db,
            principal.workspace_id,
            group,
            user_ids,
            description,
            actor_of(info, principal),
        )
        return SetGroupMembersPayload(
            group=Group.from_row(change.row),
            added=change.added,
            removed=change.removed,
            user_errors=[],
        )
