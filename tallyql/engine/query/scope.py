"""Which workspaces a question reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """Which workspaces a query reads: one or several ids, or None for every workspace."""

    workspace_ids: tuple[int, ...] | None

    @classmethod
    def of(cls, workspace_id: int) -> Scope:
        return cls((workspace_id,))
