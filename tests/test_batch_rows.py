"""The writer's row encoders give exactly the values the generic converters give."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from tallyql.storage.ingest import batch
from tallyql.storage.tables import EVENT_COLUMNS
from tallyql.storage.types import sqlite_value
from tests.support.helpers import iso, llm, valid_records


def _records() -> list[list]:
    now = datetime.now(UTC)
    return valid_records(
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


def test_sqlite_records_equal_the_generic_conversion() -> None:
    for record in _records():
        assert len(record) == len(EVENT_COLUMNS)
        assert batch._sqlite_record(record) == [sqlite_value(v) for v in record]


def test_postgres_records_keep_values_and_encode_metadata() -> None:
    for record in _records():
        encoded = batch._postgres_record(record)
        for column, value, original in zip(EVENT_COLUMNS, encoded, record, strict=True):
            if column == "metadata":
                assert orjson.loads(value) == original
            else:
                assert value is original or value == original, column
