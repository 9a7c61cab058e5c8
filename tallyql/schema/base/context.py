"""Per-request GraphQL context: the caller, the services, and the request's DataLoaders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from functools import cached_property
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from tallyql.auth.operator import workspace_scope
from tallyql.auth.principal import AuthError, Permission, Principal, require
from tallyql.engine.analytics import Asker
from tallyql.engine.cost_meter import CostMeter
from tallyql.engine.request_log import get_payloads
from tallyql.schema.base.common import EventFilter, TimeRangeInput, filter_spec
from tallyql.services import Services

EXPLAIN_HEADER = "x-tallyql-explain"
PLAN_HEADER = "x-tallyql-plan"


class Context(BaseContext):
    def __init__(
        self,
        services: Services,
        principal: Principal | None,
        client_ip: str | None,
        explain: bool = False,
        force_raw: bool = False,
    ):
        super().__init__()
        self.services = services
        self.principal = principal
        self.client_ip = client_ip
        self.explain = explain
        """Answer with the engine's plans in `extensions.plans` (header X-Tallyql-Explain)."""
        self.force_raw = force_raw
        """Answer from raw events only (header X-Tallyql-Plan: raw; admin keys only)."""
        self.plans: list[dict[str, Any]] = []
        self.meter: CostMeter | None = None
        """The operation's cost meter (schema/base/limits.py sets it before execution)."""
        self._loaders: dict[Hashable, DataLoader[Any, Any]] = {}

    def asker(
        self, range: TimeRangeInput, filter: EventFilter | None, workspace: str | None = None
    ) -> Asker:
        """The engine's view of an analytics question from this caller; `workspace` (an id,
        or "*" for all) is for admin keys of the operator workspace only (else FORBIDDEN)."""
        principal = self.require(Permission.READ)
        if self.force_raw:
            require(principal, Permission.ADMIN)
        return Asker(
            db=self.services.db,
            scope=workspace_scope(principal, self.services.settings, workspace),
            window=range.resolve(),
            filter=filter_spec(filter),
            force_raw=self.force_raw,
            explain=self.explain,
            plans=self.plans,
            meter=self.meter,
        )

    def loader(
        self, key: Hashable, load: Callable[[list[Any]], Awaitable[list[Any]]]
    ) -> DataLoader[Any, Any]:
        """This request's DataLoader for `key`, made on first use (a kind of lookup, plus the
        window and filter it answers for when it has them)."""
        found = self._loaders.get(key)
        if found is None:
            found = self._loaders[key] = DataLoader(load_fn=load)
        return found

    def require(self, permission: Permission) -> Principal:
        """The caller, if their role grants `permission`; raises otherwise."""
        if self.principal is None:
            raise AuthError("missing or invalid API key")
        require(self.principal, permission)
        return self.principal

    @cached_property
    def payload_loader(self) -> DataLoader[str, tuple[Any, Any] | None]:
        """Request and response bodies by event id, one query per request for all ids."""

        async def load(ids: list[str]) -> list[tuple[Any, Any] | None]:
            assert self.principal is not None
            found = await get_payloads(self.services.db, self.principal.workspace_id, ids)
            return [found.get(i) for i in ids]

        return DataLoader(load_fn=load)


TallyInfo = Info[Context, None]
