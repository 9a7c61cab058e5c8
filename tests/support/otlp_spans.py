"""Spans as tallyql stores them: a span's id in hex and the stored events read back
(shared by test_otlp_exporter and test_otlp_backpressure)."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import select

from tallyql.storage.database import Database
from tallyql.storage.tables import events


def span_hex(span: ReadableSpan) -> str:
    return f"{span.context.span_id:016x}"


def stored_spans(database_url: str) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        db = Database(database_url)
        try:
            async with db.read() as conn:
                rows = (await conn.execute(select(events))).mappings().all()
            return {r["id"]: dict(r) for r in rows}
        finally:
            await db.dispose()

    return asyncio.run(read())
