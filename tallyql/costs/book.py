"""Every workspace's price overrides, in memory, for pricing at ingest.

Loaded when the server starts, reloaded at once in the process that changes an override, and
reloaded every `price_refresh_seconds` (default 30) so that other replicas pick up a change
within that delay. Each reload swaps in a new immutable map, so pricing never sees a half-built
one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from tallyql.clock import clock
from tallyql.costs.overrides import PriceOverride, WorkspacePrices
from tallyql.costs.store import list_overrides
from tallyql.ingest.pricing import Tokens
from tallyql.storage.database import Database
from tallyql.storage.jobs import PeriodicJob

_EMPTY = WorkspacePrices([])


class PriceBook:
    def __init__(self, db: Database | None = None) -> None:
        self._db = db
        self._by_workspace: dict[int, WorkspacePrices] = {}
        self.loaded_at: datetime | None = None
        self.count = 0

    def for_workspace(self, workspace_id: int) -> WorkspacePrices:
        return self._by_workspace.get(workspace_id, _EMPTY)

    def find(
        self, workspace_id: int, provider: str | None, model: str, at: datetime
    ) -> PriceOverride | None:
        prices = self._by_workspace.get(workspace_id)
        if prices is None:
            return None
        return prices.find(provider, model, at)

    def cost_of(
        self, workspace_id: int, provider: str | None, model: str, tokens: Tokens, at: datetime
    ) -> int | None:
        """Nano-USD for an event's tokens under the workspace's matching override, or None."""
        override = self.find(workspace_id, provider, model, at)
        return None if override is None else override.cost_nano(*tokens)

    def replace(self, overrides: list[PriceOverride]) -> None:
        grouped: dict[int, list[PriceOverride]] = defaultdict(list)
        for override in overrides:
            grouped[override.workspace_id].append(override)
        self._by_workspace = {ws: WorkspacePrices(items) for ws, items in grouped.items()}
        self.count = len(overrides)
        self.loaded_at = clock.now()

    async def refresh(self) -> None:
        if self._db is None:
            return
        self.replace(await list_overrides(self._db))

    def report(self) -> dict[str, Any]:
        return {
            "overrides": self.count,
            "workspaces": len(self._by_workspace),
            "last_refresh": self.loaded_at.isoformat() if self.loaded_at else None,
        }


class PriceRefresh(PeriodicJob):
    """Reloads the book every `interval` seconds (it was loaded at start); a failed reload
    keeps the last good map."""

    name = "price_overrides"

    def __init__(
        self, book: PriceBook, interval: float, reports: dict[str, dict[str, Any]]
    ) -> None:
        super().__init__(interval, reports, first_run_delay=interval)
        self.book = book

    async def work(self) -> dict[str, Any]:
        await self.book.refresh()
        return {}

    def facts(self) -> dict[str, Any]:
        return self.book.report()
