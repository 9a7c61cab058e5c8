"""Keyset pages of small tables ordered by (a timestamp, id): the lists of budgets, alert
rules and firings, webhooks and deliveries. Cursors are opaque (cursors.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Select, and_, func, or_, select

from tallyql.storage.cursors import check_page_size, decode_cursor, encode_cursor
from tallyql.storage.database import Database
from tallyql.storage.types import from_micros, to_micros


@dataclass
class Page:
    rows: list[dict[str, Any]]
    has_next_page: bool
    cursors: list[str]
    total_count: int


async def keyset_page(
    db: Database,
    query: Select[Any],
    ts: Column[Any],
    id_: Column[Any],
    kind: str,
    first: int,
    after: str | None,
    newest_first: bool,
) -> Page:
    check_page_size(first)
    count = select(func.count()).select_from(query.subquery())
    if after is not None:
        micros, last_id = decode_cursor(kind, after, 2)
        at = from_micros(int(micros))
        if newest_first:
            query = query.where(or_(ts < at, and_(ts == at, id_ < str(last_id))))
        else:
            query = query.where(or_(ts > at, and_(ts == at, id_ > str(last_id))))
    order = (ts.desc(), id_.desc()) if newest_first else (ts.asc(), id_.asc())
    async with db.read() as conn:
        found = (await conn.execute(query.order_by(*order).limit(first + 1))).mappings().all()
        total = int((await conn.execute(count)).scalar_one())
    rows = [dict(r) for r in found[:first]]
    cursors = [encode_cursor(kind, to_micros(r[ts.name]), r[id_.name]) for r in rows]
    return Page(rows, len(found) > first, cursors, total)
