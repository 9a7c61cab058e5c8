"""The per-request DataLoaders of nested objects (DESIGN §6): a request's user and session, a
session's models, a user's groups, a group's members. Each batches every key asked for while
resolving one level of the query into one statement, in the caller's workspace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.dataloader import DataLoader

from tallyql.auth.principal import Permission
from tallyql.engine import directory, sessions
from tallyql.schema.base.context import Context
from tallyql.storage.database import Database

Lookup = Callable[[Database, int, list[Any]], Awaitable[dict[Any, Any]]]


def _loader(context: Context, name: str, lookup: Lookup, missing: Any = None) -> DataLoader:
    workspace_id = context.require(Permission.READ).workspace_id
    db = context.services.db

    async def load(keys: list[Any]) -> list[Any]:
        found = await lookup(db, workspace_id, keys)
        return [found.get(k, missing) for k in keys]

    return context.loader((name,), load)


def users(context: Context) -> DataLoader[str, dict[str, Any] | None]:
    """Directory users by id (None for an id the directory does not know)."""
    return _loader(context, "users", directory.get_users)


def groups(context: Context) -> DataLoader[str, dict[str, Any] | None]:
    return _loader(context, "groups", directory.get_groups)


def user_groups(context: Context) -> DataLoader[str, list[str]]:
    return _loader(context, "user_groups", directory.groups_of, [])


def group_members(context: Context) -> DataLoader[str, list[str]]:
    return _loader(context, "group_members", directory.members_of, [])


def session_rows(context: Context) -> DataLoader[str, dict[str, Any] | None]:
    return _loader(context, "sessions", sessions.get_sessions)


def session_models(context: Context) -> DataLoader[str, list[dict[str, Any]]]:
    return _loader(context, "session_models", sessions.get_session_models, [])


def session_latencies(context: Context) -> DataLoader[sessions.SessionSpan, list[dict[str, Any]]]:
    """Latency sums and counts by kind, provider and model of sessions (id, first, last)."""
    return _loader(context, "session_latencies", sessions.get_session_latencies, [])
