"""Objects behind a breakdown row's key (USER: the directory's user, AGENT: the agent's figures
over the breakdown's range and filter, SESSION: the session), each through a per-request
DataLoader, so a page of rows costs one statement per kind. Only for breakdowns of the
caller's own workspace (an operator's cross-workspace breakdown gets null)."""

from __future__ import annotations

from typing import Any

from tallyql.auth.principal import Permission
from tallyql.engine.registry import Dimension
from tallyql.schema.agents import AgentStats, agent_stats
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.directory import User, load_user
from tallyql.schema.sessions import Session, load_session


def _own(info: TallyInfo, asker: Any) -> bool:
    principal = info.context.require(Permission.READ)
    return asker is not None and asker.scope.workspace_ids == (principal.workspace_id,)


async def breakdown_user(
    info: TallyInfo, dimension: Dimension | None, asker: Any, key: str | None
) -> User | None:
    if dimension is not Dimension.USER or key is None or not _own(info, asker):
        return None
    return await load_user(info, key)


async def breakdown_agent(
    info: TallyInfo, dimension: Dimension | None, asker: Any, key: str | None
) -> AgentStats | None:
    if dimension is not Dimension.AGENT or key is None or not _own(info, asker):
        return None
    return await agent_stats(info, asker, key)


async def breakdown_session(
    info: TallyInfo, dimension: Dimension | None, asker: Any, key: str | None
) -> Session | None:
    if dimension is not Dimension.SESSION or key is None or not _own(info, asker):
        return None
    return await load_session(info, key)
