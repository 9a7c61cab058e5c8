"""The writer's row encoders give exactly the values the generic converters give."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from tallyql.ingest.pricing import Pricer
from tallyql.ingest.service import IngestService
from tallyql.storage import batch
from tallyql.storage.tables import EVENT_COLUMNS
from tallyql.storage.types import sqlite_value
from tests.helpers import iso, llm


def _rows() -> list[dict]:
    service = IngestService(None, Pricer())  # type: ignore[arg-type]
    now = datetime.now(UTC)
    valid, errors = service.prepare(
        7,
        [
            llm(
                "full",
                tags=["b", "a"],
                metadata={"n": 1, "x": [1, {"y": None}]},
                latency_ms=12.5,
                ttft_ms=3.0,
                is_byok=True,
                request={"q": 1},
                timestamp=iso(now),
            ),
            {"id": "bare"},
            {"kind": "tool_call", "tool": "t", "status": "error", "caller_ip": "::1"},
        ],
        now,
    )
    assert not errors
    return [e.row for e in valid]


def test_sqlite_records_equal_the_generic_conversion() -> None:
    for row in _rows():
        assert set(row) >= set(EVENT_COLUMNS)
        assert batch._sqlite_record(row) == [sqlite_value(row[c]) for c in EVENT_COLUMNS]


def test_postgres_records_keep_values_and_encode_metadata() -> None:
    for row in _rows():
        record = batch._postgres_record(row)
        for column, value in zip(EVENT_COLUMNS, record, strict=True):
            if column == "metadata":
                assert orjson.loads(value) == row["metadata"]
            else:
                assert value is row[column] or value == row[column], column
