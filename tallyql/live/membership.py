"""Group membership for live filters: a filter's `groups` means the groups' current members.

Subscribers that filter by group hold a `GroupSet`; the cache loads its members when the
subscription starts and refreshes every tracked set periodically, so that a membership change
reaches live filters within the refresh interval.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from tallyql.storage.database import Database
from tallyql.storage.jobs import PeriodicJob
from tallyql.storage.tables import group_members


class GroupSet:
    """The users of some groups of one workspace, as last loaded."""

    __slots__ = ("groups", "users", "workspace_id")

    def __init__(self, workspace_id: int, groups: tuple[str, ...]) -> None:
        self.workspace_id = workspace_id
        self.groups = groups
        self.users: frozenset[str] = frozenset()


class GroupMembership(PeriodicJob):
    """Refreshes every tracked set each `refresh_seconds`."""

    name = "live_groups"

    def __init__(
        self,
        db: Database,
        refresh_seconds: float,
        reports: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(refresh_seconds, reports, first_run_delay=refresh_seconds)
        self._db = db
        self._tracked: set[GroupSet] = set()

    async def track(self, workspace_id: int, groups: tuple[str, ...]) -> GroupSet:
        group_set = GroupSet(workspace_id, groups)
        await self._load([group_set])
        self._tracked.add(group_set)
        return group_set

    def untrack(self, group_set: GroupSet) -> None:
        self._tracked.discard(group_set)

    async def refresh(self) -> None:
        if self._tracked:
            await self._load(list(self._tracked))

    async def work(self) -> dict[str, Any]:
        await self.refresh()
        return {"tracked_sets": len(self._tracked)}

    async def _load(self, sets: list[GroupSet]) -> None:
        wanted: dict[int, set[str]] = defaultdict(set)
        for group_set in sets:
            wanted[group_set.workspace_id].update(group_set.groups)
        members: dict[tuple[int, str], set[str]] = defaultdict(set)
        async with self._db.read() as conn:
            for workspace_id, names in wanted.items():
                rows = await conn.execute(
                    select(group_members.c.group_name, group_members.c.user_id).where(
                        group_members.c.workspace_id == workspace_id,
                        group_members.c.group_name.in_(sorted(names)),
                    )
                )
                for group_name, user_id in rows:
                    members[(workspace_id, group_name)].add(user_id)
        for group_set in sets:
            users: set[str] = set()
            for name in group_set.groups:
                users |= members.get((group_set.workspace_id, name), set())
            group_set.users = frozenset(users)
