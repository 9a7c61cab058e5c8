"""Encoders turning batches of rows into CSV, JSON (one array) or NDJSON bytes, incrementally."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import orjson

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return value


async def encode(
    fmt: str, columns: Sequence[str], batches: AsyncIterator[list[Sequence[Any]]]
) -> AsyncIterator[bytes]:
    """The document, one chunk per batch of rows (memory stays bounded by the batch size)."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(columns)
        yield buffer.getvalue().encode()
        async for batch in batches:
            buffer.seek(0)
            buffer.truncate()
            writer.writerows([_csv_cell(v) for v in row] for row in batch)
            yield buffer.getvalue().encode()
        return
    keys = list(columns)
    if fmt == "ndjson":
        async for batch in batches:
            yield b"".join(orjson.dumps(dict(zip(keys, row, strict=True))) + b"\n" for row in batch)
        return
    yield b"["
    first = True
    async for batch in batches:
        if not batch:
            continue
        body = b",\n".join(orjson.dumps(dict(zip(keys, row, strict=True))) for row in batch)
        yield body if first else b",\n" + body
        first = False
    yield b"]\n"
