"""Users and groups: the directory, with usage totals from the engine, and the mutations that
change it (MANAGE permission, audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry

from tallyql.auth.principal import Permission
from tallyql.engine import directory
from tallyql.engine.query.registry import Dimension, Metric
from tallyql.schema.base import loaders
from tallyql.schema.base.common import (
    AfterArg,
    EventFilter,
    FilterArg,
    FirstArg,
    IdArg,
    RangeArg,
    TimeRangeInput,
    filter_spec,
)
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.pages import Connection, connection
from tallyql.schema.base.scalars import Long, as_count
from tallyql.schema.base.usage import TokenUsage


@strawberry.type(description="Usage over a window: requests, errors, tokens, cost in USD.")
class Usage(TokenUsage):
    requests: Long = strawberry.field(description="Events of every kind (count).")
    errors: Long = strawberry.field(description="Events with status error (count).")

    @classmethod
    def of(cls, values: dict[Any, float | None]) -> Usage:
        def count(metric: Metric) -> int:
            return as_count(values.get(metric) or 0.0)

        return cls(
            requests=count(Metric.REQUESTS),
            errors=count(Metric.ERRORS),
            input_tokens=count(Metric.INPUT_TOKENS),
            output_tokens=count(Metric.OUTPUT_TOKENS),
            total_tokens=count(Metric.TOTAL_TOKENS),
            cost_usd=values.get(Metric.COST_USD) or 0.0,
        )


async def usage_of(
    info: TallyInfo,
    dimension: Dimension,
    key: str,
    range: TimeRangeInput,
    filter: EventFilter | None,
) -> Usage:
    """One engine query per level of the query for every user (or group) asking with the
    same range and filter."""
    spec = filter_spec(filter)
    loader_key = ("usage", dimension, range.preset, range.start, range.end, range.timezone, spec)
    asker = info.context.asker(range, filter)

    async def load(keys: list[str]) -> list[Usage]:
        found = await directory.usage(asker, dimension, sorted(set(keys)))
        return [Usage.of(found[k]) for k in keys]

    return await info.context.loader(loader_key, load).load(key)


@strawberry.type(description="A user of the directory.")
class User:
    id: strawberry.ID = strawberry.field(description="The user id sent with events.")
    email: str | None = strawberry.field(description="The user's email, when known.")
    display_name: str | None = strawberry.field(description="A name for people.")
    department: str | None = strawberry.field(
        description="The user's department (cost centre); events stored while it holds carry "
        "it (the DEPARTMENT dimension)."
    )
    created_at: datetime = strawberry.field(description="When the directory first stored the user.")
    updated_at: datetime = strawberry.field(description="When the user was last changed.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> User:
        return cls(
            id=strawberry.ID(row["id"]),
            email=row["email"],
            display_name=row["display_name"],
            department=row["department"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @strawberry.field(description="Names of the groups the user belongs to now.")
    async def groups(self, info: TallyInfo) -> list[str]:
        return await loaders.user_groups(info.context).load(str(self.id))

    @strawberry.field(description="The user's usage over a window.")
    async def usage(self, info: TallyInfo, range: RangeArg, filter: FilterArg = None) -> Usage:
        return await usage_of(info, Dimension.USER, str(self.id), range, filter)


async def load_user(info: TallyInfo, user_id: str | None) -> User | None:
    """The directory's user of an id (None when absent or unknown), through the loader."""
    if not user_id:
        return None
    row = await loaders.users(info.context).load(user_id)
    return User.from_row(row) if row else None


@strawberry.type(description="A group and its current members.")
class Group:
    name: str = strawberry.field(description="The group's name (its id).")
    description: str | None = strawberry.field(description="A note for people.")
    created_at: datetime = strawberry.field(description="When the group was created.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Group:
        return cls(name=row["name"], description=row["description"], created_at=row["created_at"])

    @strawberry.field(description="Ids of the current members, sorted.")
    async def member_ids(self, info: TallyInfo) -> list[str]:
        return await loaders.group_members(info.context).load(self.name)

    @strawberry.field(description="Current members (count).")
    async def member_count(self, info: TallyInfo) -> int:
        return len(await loaders.group_members(info.context).load(self.name))

    @strawberry.field(description="Members the directory knows (see memberIds for every id).")
    async def members(self, info: TallyInfo) -> list[User]:
        ids = await loaders.group_members(info.context).load(self.name)
        rows = await loaders.users(info.context).load_many(ids)
        return [User.from_row(r) for r in rows if r]

    @strawberry.field(description="Usage of the current members (their history included).")
    async def usage(self, info: TallyInfo, range: RangeArg, filter: FilterArg = None) -> Usage:
        return await usage_of(info, Dimension.GROUP, self.name, range, filter)


@strawberry.type
class DirectoryQuery:
    @strawberry.field(description="Directory users in id order; search matches id, email, name.")
    async def users(
        self,
        info: TallyInfo,
        search: Annotated[
            str | None,
            strawberry.argument(
                description="Case-insensitive text matched against id, email and display name."
            ),
        ] = None,
        first: FirstArg = 50,
        after: AfterArg = None,
    ) -> Connection[User]:
        principal = info.context.require(Permission.READ)
        db = info.context.services.db
        page = await directory.list_users(db, principal.workspace_id, search, first, after)
        total = await directory.count_users(db, principal.workspace_id, search)
        nodes = [User.from_row(r) for r in page.rows]
        cursors = [page.cursor(r) for r in page.rows]
        return connection(nodes, cursors, total, page.has_next_page, after)

    @strawberry.field(description="One directory user.")
    async def user(self, info: TallyInfo, id: IdArg) -> User | None:
        info.context.require(Permission.READ)
        return await load_user(info, str(id))

    @strawberry.field(description="Groups in name order.")
    async def groups(
        self, info: TallyInfo, first: FirstArg = 50, after: AfterArg = None
    ) -> Connection[Group]:
        principal = info.context.require(Permission.READ)
        db = info.context.services.db
        page = await directory.list_groups(db, principal.workspace_id, first, after)
        total = await directory.count_groups(db, principal.workspace_id)
        nodes = [Group.from_row(r) for r in page.rows]
        cursors = [page.cursor(r) for r in page.rows]
        return connection(nodes, cursors, total, page.has_next_page, after)

    @strawberry.field(description="One group.")
    async def group(
        self,
        info: TallyInfo,
        name: Annotated[
            str,
            strawberry.argument(description="The group's name."),
        ],
    ) -> Group | None:
        info.context.require(Permission.READ)
        row = await loaders.groups(info.context).load(name)
        return Group.from_row(row) if row else None
