"""Live rows (live/compact.py): an event's record as the bus and the relay carry it."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tallyql.live.compact import ROW_KEYS, LiveRow, compact_row, row_of_mapping, row_of_values
from tallyql.storage.ingest.record import AT, TS
from tests.support.helpers import iso, llm, valid_records


def _records() -> list[list]:
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    return valid_records(
        [
            llm(
                "full",
                tags=["b", "a"],
                metadata={"n": 1, "x": [1, {"y": None}]},
                latency_ms=12.5,
                ttft_ms=3.0,
                is_byok=True,
                user_id="u1",
                timestamp=iso(at),
            ),
            {"id": "bare", "timestamp": iso(at)},
        ],
        at,
    )


def test_a_row_holds_the_records_values() -> None:
    full, bare = (compact_row(record, 1234.5) for record in _records())
    assert type(full) is LiveRow and full._fields == ROW_KEYS
    assert (full.workspace_id, full.id, full.user_id) == (7, "full", "u1")
    assert full.model == "gpt-4o-mini"
    assert full.ts_us == 1_772_600_767_890_123 and full.committed_at == 1234.5
    assert full.latency_ms == 12.5 and full.ttft_ms == 3.0 and full.is_byok is True
    assert sorted(full.tags) == ["a", "b"]
    assert full.metadata == {"n": 1, "x": [1, {"y": None}]}
    record = _records()[0]
    for name in ROW_KEYS[:-2]:
        if name not in ("is_byok", "tags", "metadata"):
            assert getattr(full, name) == record[AT[name]], name
    assert record[TS] == datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    # no tags or metadata: empty ones, not None; not BYOK: False
    assert bare.tags == () and bare.metadata == {} and bare.is_byok is False


def test_a_relayed_row_comes_back_equal() -> None:
    for row in (compact_row(record, 99.0) for record in _records()):
        wire = orjson.dumps(tuple(row))
        back = row_of_values(orjson.loads(wire))
        assert back == row and type(back) is LiveRow
        assert row_of_mapping(dict(zip(ROW_KEYS, orjson.loads(wire), strict=True))) == row


def test_a_row_of_the_wrong_length_is_refused() -> None:
    row = compact_row(_records()[0], 1.0)
    with pytest.raises(ValueError, match="42 values, not 41"):
        row_of_values(list(row)[:-1])
