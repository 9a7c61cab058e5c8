"""Reading the directory: users and groups with keyset pages, memberships, and usage totals
from the engine (USER and GROUP dimensions; a group means its current members)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from tallyql.engine.analytics import Asker
from tallyql.engine.query.registry import Dimension, Metric
from tallyql.engine.ranking import Values, grouped, narrow
from tallyql.storage.cursors import CursorError, check_page_size, decode_cursor, encode_cursor
from tallyql.storage.database import Database
from tallyql.storage.tables import group_members, groups, users

USAGE_METRICS = (
    Metric.REQUESTS,
    Metric.ERRORS,
    Metric.INPUT_TOKENS,
    Metric.OUTPUT_TOKENS,
    Metric.TOTAL_TOKENS,
    Metric.COST_USD,
)


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    has_next_page: bool
    kind: str
    key: str

    def cursor(self, row: dict[str, Any]) -> str:
        return encode_cursor(self.kind, row[self.key])


def _after(kind: str, cursor: str) -> str:
    (value,) = decode_cursor(kind, cursor, 1)
    if not isinstance(value, str):
        raise CursorError("invalid cursor")
    return value


def _search(pattern: str) -> ColumnElement[bool]:
    escaped = pattern.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = f"%{escaped}%"
    return or_(
        *(
            func.lower(column).like(like, escape="\\")
            for column in (users.c.id, users.c.email, users.c.display_name)
        )
    )


def _user_conditions(workspace_id: int, search: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [users.c.workspace_id == workspace_id]
    if search:
        conditions.append(_search(search))
    return conditions


async def list_users(
    db: Database, workspace_id: int, search: str | None, first: int, after: str | None
) -> Page:
    """Users in id order; `search` matches id, email or display name (any case)."""
    check_page_size(first)
    query = select(users).where(*_user_conditions(workspace_id, search))
    if after:
        query = query.where(users.c.id > _after("usr", after))
    query = query.order_by(users.c.id).limit(first + 1)
    async with db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return Page(rows[:first], len(rows) > first, "usr", "id")


async def count_users(db: Database, workspace_id: int, search: str | None) -> int:
    query = select(func.count()).select_from(users).where(*_user_conditions(workspace_id, search))
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def get_users(db: Database, workspace_id: int, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    query = select(users).where(users.c.workspace_id == workspace_id, users.c.id.in_(ids))
    async with db.read() as conn:
        return {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}


async def list_groups(db: Database, workspace_id: int, first: int, after: str | None) -> Page:
    """Groups in name order."""
    check_page_size(first)
    query = select(groups).where(groups.c.workspace_id == workspace_id)
    if after:
        query = query.where(groups.c.name > _after("grp", after))
    query = query.order_by(groups.c.name).limit(first + 1)
    async with db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return Page(rows[:first], len(rows) > first, "grp", "name")


async def count_groups(db: Database, workspace_id: int) -> int:
    query = select(func.count()).select_from(groups).where(groups.c.workspace_id == workspace_id)
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def get_groups(db: Database, workspace_id: int, names: list[str]) -> dict[str, dict]:
    if not names:
        return {}
    query = select(groups).where(groups.c.workspace_id == workspace_id, groups.c.name.in_(names))
    async with db.read() as conn:
        return {r["name"]: dict(r) for r in (await conn.execute(query)).mappings()}


async def members_of(db: Database, workspace_id: int, names: list[str]) -> dict[str, list[str]]:
    """Each group's member ids, sorted."""
    out: dict[str, list[str]] = {n: [] for n in names}
    if not names:
        return out
    gm = group_members.c
    query = (
        select(gm.group_name, gm.user_id)
        .where(gm.workspace_id == workspace_id, gm.group_name.in_(names))
        .order_by(gm.group_name, gm.user_id)
    )
    async with db.read() as conn:
        for name, user_id in (await conn.execute(query)).all():
            out[name].append(user_id)
    return out


async def groups_of(db: Database, workspace_id: int, user_ids: list[str]) -> dict[str, list[str]]:
    """Each user's groups, sorted."""
    out: dict[str, list[str]] = {u: [] for u in user_ids}
    if not user_ids:
        return out
    gm = group_members.c
    query = (
        select(gm.user_id, gm.group_name)
        .where(gm.workspace_id == workspace_id, gm.user_id.in_(user_ids))
        .order_by(gm.user_id, gm.group_name)
    )
    async with db.read() as conn:
        for user_id, name in (await conn.execute(query)).all():
            out[user_id].append(name)
    return out


async def usage(
    asker: Asker, dimension: Dimension, keys: list[str]
) -> dict[str, dict[Any, float | None]]:
    """Usage totals over the asker's window for users (USER) or groups (GROUP), one engine
    query for all keys; keys without traffic get zeros."""
    wanted = tuple(keys)
    if dimension is Dimension.USER:
        spec = replace(asker.filter, users=narrow(asker.filter.users, wanted))
    else:
        spec = replace(asker.filter, groups=narrow(asker.filter.groups, wanted))
    found = dict(await grouped(asker, (dimension,), USAGE_METRICS, spec))
    empty: Values = dict.fromkeys(USAGE_METRICS, 0.0)
    return {k: found.get((k,), empty) for k in keys}
