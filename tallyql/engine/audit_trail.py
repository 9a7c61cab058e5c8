"""The audit trail read a page at a time, newest first, with keyset cursors over (ts, id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tallyql.storage.audit import (
    AuditFilterSpec,
    audit_conditions,
    count_audit_rows,
    list_audit_rows,
)
from tallyql.storage.cursors import CursorError, decode_cursor, encode_cursor
from tallyql.storage.database import Database
from tallyql.storage.types import from_micros, to_micros


@dataclass(frozen=True)
class AuditSelection:
    """Which audit events: a workspace's, in [start, end) where given, matching `spec`."""

    workspace_id: int
    start: datetime | None
    end: datetime | None
    spec: AuditFilterSpec


@dataclass(frozen=True)
class AuditPage:
    rows: list[dict[str, Any]]
    cursors: list[str]
    has_next_page: bool


def _decode_after(cursor: str) -> tuple[datetime, str]:
    ts, audit_id = decode_cursor("aud", cursor, 2)
    if isinstance(ts, bool) or not isinstance(ts, int) or not isinstance(audit_id, str):
        raise CursorError("invalid cursor")
    try:
        return from_micros(ts), audit_id
    except OverflowError:
        raise CursorError("invalid cursor") from None


def _conditions(selection: AuditSelection) -> list[Any]:
    return audit_conditions(selection.workspace_id, selection.start, selection.end, selection.spec)


async def audit_page(
    db: Database, selection: AuditSelection, first: int, after: str | None
) -> AuditPage:
    """Up to `first` events (checked by the caller) after the cursor `after` (CursorError
    when it is not ours)."""
    position = _decode_after(after) if after else None
    async with db.read() as conn:
        rows = await list_audit_rows(conn, _conditions(selection), position, first + 1)
    page = rows[:first]
    cursors = [encode_cursor("aud", to_micros(r["ts"]), r["id"]) for r in page]
    return AuditPage(rows=page, cursors=cursors, has_next_page=len(rows) > first)


async def audit_count(db: Database, selection: AuditSelection) -> int:
    async with db.read() as conn:
        return await count_audit_rows(conn, _conditions(selection))
