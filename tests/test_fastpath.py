"""The msgspec fast path and the detailed validator make the same rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tallyql.demo.generator import generate_events
from tallyql.ingest import fastpath
from tallyql.ingest.pricing import Pricer
from tallyql.ingest.service import IngestService
from tallyql.ingest.validate import validate_event

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _service() -> IngestService:
    return IngestService(writer=None, pricer=Pricer())  # type: ignore[arg-type]


def _without_generated(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items()} for r in rows]


def test_same_rows_for_demo_traffic() -> None:
    events = list(generate_events(3000, 2, seed=5, end=NOW))
    service = _service()
    slow, errors = service.prepare(7, events, now=NOW)
    assert errors == []
    fast = service.prepare_fast(7, fastpath.decode_body(orjson.dumps(events), ndjson=False), NOW)
    assert [e.row for e in fast] == [e.row for e in slow]
    # the fast path hands payloads to the writer already encoded (orjson Fragments): the same
    # JSON text is stored
    assert [(_stored(e.request), _stored(e.response), e.has_payload) for e in fast] == [
        (_stored(e.request), _stored(e.response), e.has_payload) for e in slow
    ]
    assert sum(e.has_payload for e in fast) > 0


def _stored(payload: Any) -> bytes | None:
    return None if payload is None else orjson.dumps(payload)


@pytest.mark.parametrize(
    "event",
    [
        {"input_tokens": 5.0},  # an integral float: accepted by the detailed path
        {"model": ""},  # empty strings mean absent
        {"timestamp": "2026-11-20T10:00:00"},  # naive: an error there
        {"input_tokens": 10, "cache_read_tokens": 20},  # inconsistent tokens
        {"status": "success", "error_type": "timeout"},
        {"extra": 1},
        {"timestamp": "2030-01-01T00:00:00Z"},
    ],
)
def test_edge_cases_go_down_the_slow_path(event: dict) -> None:
    with pytest.raises(fastpath.SlowPath):
        structs = fastpath.decode_body(orjson.dumps([event]), ndjson=False)
        _service().prepare_fast(1, structs, NOW)


def test_exclusive_token_accounting_matches() -> None:
    event = {
        "id": "x",
        "timestamp": "2026-11-20T10:00:00+02:00",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "input_tokens": 100,
        "cache_read_tokens": 400,
        "cache_write_tokens": 50,
        "output_tokens": 20,
        "reasoning_tokens": 30,
        "token_accounting": "exclusive",
        "error_message": "x" * 5000,
    }
    slow = validate_event(event, 0, NOW)
    assert not isinstance(slow, list)
    (fast,) = _service().prepare_fast(1, fastpath.decode_body(orjson.dumps([event]), False), NOW)
    slow_row = _service()._finish(slow, 1, NOW).row
    assert fast.row == slow_row
    assert fast.row["input_tokens"] == 550 and fast.row["output_tokens"] == 50
    assert len(fast.row["error_message"]) == 2000
