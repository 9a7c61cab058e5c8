"""Ingest validation and normalisation, through POST /v1/events and ingestEvents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import Api
from tests.support.helpers import ago, all_ids, event_rows, iso, llm, workspace_id_of


def _nested(levels: int) -> dict[str, Any]:
    """A JSON object nested `levels` deep."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


# (field, value, field named in the error, part of the message)
BAD_FIELDS: list[tuple[str, Any, str, str]] = [
    ("input_tokens", "12", "input_tokens", "must be an integer from 0 to 100,000,000"),
    ("output_tokens", -1, "output_tokens", "must be an integer from 0 to 100,000,000"),
    ("cache_read_tokens", 1.5, "cache_read_tokens", "must be an integer from 0 to 100,000,000"),
    ("input_tokens", 2**60, "input_tokens", "must be an integer from 0 to 100,000,000"),
    ("reasoning_tokens", 100_000_001, "reasoning_tokens", "must be an integer from 0 to 100,0"),
    ("status_code", True, "status_code", "must be an integer from 0 to 999"),
    ("status_code", 2**31, "status_code", "must be an integer from 0 to 999"),
    ("request_bytes", 2**30 + 1, "request_bytes", "must be an integer from 0 to 1,073,741,824"),
    ("response_bytes", 2**63, "response_bytes", "must be an integer from 0 to 1,073,741,824"),
    ("latency_ms", 1e308, "latency_ms", "must be a number from 0 to 2,592,000,000"),
    ("ttft_ms", 2_592_000_001, "ttft_ms", "must be a number from 0 to 2,592,000,000"),
    ("cost_usd", 9.23e9, "cost_usd", "must be a number from 0 to 10,000"),
    ("timestamp", "0001-01-01T00:00:00+14:00", "timestamp", "is outside the years 1 to 9999"),
    ("timestamp", "0001-01-01T00:00:00Z", "timestamp", "is before 19"),
    ("model", "gpt\x00x", "model", "must not contain NUL characters"),
    ("session_id", "\x00", "session_id", "must not contain NUL characters"),
    ("tags", ["a\x00"], "tags", "each tag must not contain NUL characters"),
    ("metadata", {"k": "v\x00"}, "metadata", "must not contain NUL characters"),
    ("metadata", {"k\x00": 1}, "metadata", "must not contain NUL characters"),
    ("metadata", _nested(255), "metadata", "must not be nested deeper than 64 levels"),
    ("request", _nested(200), "request", "must not be nested deeper than 64 levels"),
    ("response", [{"text": "\x00"}], "response", "must not contain NUL characters"),
    ("kind", "llm", "kind", "must be one of llm_call, tool_call, agent_run, http_request"),
    ("status", "ok", "status", "must be one of success, error, blocked"),
    ("error_type", "boom", "error_type", "must be one of rate_limit"),
    ("token_accounting", "sideways", "token_accounting", "must be one of inclusive, exclusive"),
    ("timestamp", "yesterday", "timestamp", "must be an RFC 3339 string"),
    ("timestamp", 1763800000, "timestamp", "must be an RFC 3339 string"),
    ("timestamp", "2026-11-20T10:00:00", "timestamp", "must carry a UTC offset"),
    ("timestamp", "FUTURE", "timestamp", "is more than 24 hours in the future"),
    ("frobnicate", 1, "frobnicate", "unknown field; put custom attributes in metadata"),
    ("model", "m" * 257, "model", "must be at most 256 characters"),
    ("id", "i" * 129, "id", "must be at most 128 characters"),
    ("provider", 5, "provider", "must be a string"),
    ("tags", [f"t{i}" for i in range(33)], "tags", "must hold at most 32 tags"),
    ("tags", ["ok", 1], "tags", "must be a list of strings"),
    ("tags", [""], "tags", "each tag must be 1 to 128 characters"),
    ("metadata", [1, 2], "metadata", "must be a JSON object"),
    ("metadata", "team=red", "metadata", "must be a JSON object"),
    ("metadata", {"blob": "x" * 17_000}, "metadata", "must encode to at most 16384 bytes"),
    ("is_byok", "yes", "is_byok", "must be true or false"),
    ("cost_usd", -0.01, "cost_usd", "must be a number from 0 to 10,000"),
    ("latency_ms", "fast", "latency_ms", "must be a number from 0 to 2,592,000,000"),
]


def _bad_event(index: int, field: str, value: Any) -> dict[str, Any]:
    if value == "FUTURE":
        value = iso(datetime.now(UTC) + timedelta(hours=25))
    event = llm(f"bad{index}")
    if field == "id":
        event.pop("id")
    event[field] = value
    return event


async def test_each_bad_field_is_rejected_and_valid_neighbours_kept(api: Api) -> None:
    key = await api.key()
    batch: list[Any] = []
    expected_errors: list[dict[str, Any]] = []
    valid_ids: list[str] = []
    for n, (field, value, error_field, message) in enumerate(BAD_FIELDS):
        valid_ids.append(f"ok{n}")
        batch.append(llm(f"ok{n}"))
        expected_errors.append({"index": len(batch), "field": error_field, "message": message})
        batch.append(_bad_event(n, field, value))
    # semantic checks across fields
    batch.append(llm("cache", input_tokens=10, cache_read_tokens=8, cache_write_tokens=5))
    expected_errors.append(
        {"index": len(batch) - 1, "field": "cache_read_tokens", "message": "exceed input_tokens"}
    )
    batch.append(llm("reason", output_tokens=10, reasoning_tokens=11))
    expected_errors.append(
        {"index": len(batch) - 1, "field": "reasoning_tokens", "message": "exceed output_tokens"}
    )
    batch.append(llm("succ", status="success", error_type="timeout"))
    expected_errors.append(
        {"index": len(batch) - 1, "field": "error_type", "message": 'needs status "error"'}
    )
    batch.append(42)
    expected_errors.append(
        {"index": len(batch) - 1, "field": "", "message": "event must be a JSON object"}
    )
    batch.append(llm("last-ok"))
    valid_ids.append("last-ok")

    result = await api.ingest(key, batch)

    assert result["accepted"] == len(valid_ids)
    assert result["duplicates"] == 0
    assert result["rejected"] == len(expected_errors)
    assert len(result["errors"]) == len(expected_errors)
    for got, want in zip(result["errors"], expected_errors, strict=True):
        assert got["index"] == want["index"], (got, want)
        assert got["field"] == want["field"], (got, want)
        assert want["message"] in got["message"], (got, want)
    assert sorted(await all_ids(api, key)) == sorted(valid_ids)


async def test_every_error_of_one_event_is_reported_and_counted_once(api: Api) -> None:
    key = await api.key()
    result = await api.ingest(key, [llm("a", kind="nope", input_tokens=-5, colour="red"), llm("b")])
    assert result["accepted"] == 1
    assert result["rejected"] == 1
    assert {(e["index"], e["field"]) for e in result["errors"]} == {
        (0, "kind"),
        (0, "input_tokens"),
        (0, "colour"),
    }
    assert await all_ids(api, key) == ["b"]


async def test_nulls_mean_absent_and_text_limits(api: Api) -> None:
    key = await api.key()
    long_message = "e" * 2500
    result = await api.ingest(
        key,
        [
            llm("n", user_id=None, tags=None, metadata=None, cost_usd=None, user_email_ok=None),
            llm("t", status="error", error_message=long_message, user_id="", tags=["b", "a", "b"]),
            llm("f", input_tokens=10.0, output_tokens=2.0),
        ],
    )
    # unknown fields are rejected even when null: they are not part of the contract
    assert result["accepted"] == 2
    assert result["errors"] == [
        {
            "index": 0,
            "field": "user_email_ok",
            "message": "unknown field; put custom attributes in metadata",
        }
    ]
    ws = await workspace_id_of(api.services, key)
    rows = {r["id"]: r for r in await event_rows(api.services, ws)}
    assert rows["t"]["error_message"] == "e" * 2000  # truncated, not rejected
    assert rows["t"]["user_id"] is None  # empty text is no value
    assert list(rows["t"]["tags"]) == ["a", "b"]  # sorted, without repeats
    assert rows["f"]["input_tokens"] == 10 and rows["f"]["output_tokens"] == 2


async def test_graphql_ingest_reports_user_errors_in_camel_case(api: Api) -> None:
    key = await api.key()
    mutation = """
    mutation($events: [EventInput!]!) {
      ingestEvents(events: $events) {
        accepted duplicates rejected userErrors { index field code message }
      }
    }"""
    future = iso(datetime.now(UTC) + timedelta(days=2))
    events = [
        {"id": "g0", "timestamp": ago(minutes=1), "model": "gpt-4o", "inputTokens": 10},
        {"id": "g1", "inputTokens": -3},
        {"id": "g2", "cacheReadTokens": 50, "inputTokens": 10},
        {"id": "g3", "timestamp": future},
        {"id": "g4", "timestamp": "2026-11-20T10:00:00"},
        {"id": "g5", "status": "SUCCESS", "errorType": "TIMEOUT"},
        {"id": "g6", "tags": ["x"] * 2 + [f"t{i}" for i in range(40)]},
        {"id": "g7", "tokenAccounting": "EXCLUSIVE", "cacheReadTokens": 50, "inputTokens": 10},
    ]
    data = await api.data(key, mutation, {"events": events})
    payload = data["ingestEvents"]
    assert (payload["accepted"], payload["duplicates"], payload["rejected"]) == (2, 0, 6)
    got = [(e["index"], e["field"], e["code"]) for e in payload["userErrors"]]
    assert got == [
        (1, "inputTokens", "INVALID_EVENT"),
        (2, "cacheReadTokens", "INVALID_EVENT"),
        (3, "timestamp", "INVALID_EVENT"),
        (4, "timestamp", "INVALID_EVENT"),
        (5, "errorType", "INVALID_EVENT"),
        (6, "tags", "INVALID_EVENT"),
    ]
    assert "UTC offset" in payload["userErrors"][3]["message"]
    assert sorted(await all_ids(api, key)) == ["g0", "g7"]


REQUEST_FIELDS = """
query($id: ID!) {
  request(id: $id) {
    id timestamp kind status errorType inputTokens outputTokens cacheReadTokens
    cacheWriteTokens reasoningTokens totalTokens tags
  }
}"""


async def test_exclusive_token_accounting_is_converted(api: Api) -> None:
    key = await api.key()
    result = await api.ingest(
        key,
        [
            llm(
                "ex",
                provider="anthropic",
                model="claude-sonnet-4-5",
                token_accounting="exclusive",
                input_tokens=100,
                cache_read_tokens=1000,
                cache_write_tokens=200,
                output_tokens=50,
                reasoning_tokens=30,
            ),
            llm(
                "in",
                input_tokens=1300,
                cache_read_tokens=1000,
                cache_write_tokens=200,
                output_tokens=80,
                reasoning_tokens=30,
            ),
        ],
    )
    assert result["accepted"] == 2, result
    for event_id in ("ex", "in"):
        node = (await api.data(key, REQUEST_FIELDS, {"id": event_id}))["request"]
        assert node["inputTokens"] == 1300
        assert node["outputTokens"] == 80
        assert node["cacheReadTokens"] == 1000
        assert node["cacheWriteTokens"] == 200
        assert node["reasoningTokens"] == 30
        assert node["totalTokens"] == 1380


async def test_status_kind_id_and_timestamp_defaults(api: Api) -> None:
    key = await api.key()
    before = datetime.now(UTC)
    noid = llm("x")
    noid.pop("id")
    nots = llm("nots")
    nots.pop("timestamp")
    result = await api.ingest(
        key,
        [
            llm("plain"),
            llm("typed", error_type="rate_limit"),
            llm("err", status="error"),
            llm("blk", status="blocked", kind="tool_call", tool="shell"),
            llm("blk2", status="blocked", error_type="other"),
            llm("off", timestamp="2026-11-21T12:00:00.250+02:00"),
            nots,
            noid,
            dict(noid),
        ],
    )
    after = datetime.now(UTC)
    assert result["accepted"] == 9, result
    ws = await workspace_id_of(api.services, key)
    rows = {r["id"]: r for r in await event_rows(api.services, ws)}
    assert (rows["plain"]["status"], rows["plain"]["error_type"]) == ("success", None)
    assert rows["plain"]["kind"] == "llm_call"
    assert (rows["typed"]["status"], rows["typed"]["error_type"]) == ("error", "rate_limit")
    assert (rows["err"]["status"], rows["err"]["error_type"]) == ("error", "other")
    assert (rows["blk"]["status"], rows["blk"]["error_type"]) == ("blocked", "policy_blocked")
    assert rows["blk"]["kind"] == "tool_call"
    assert (rows["blk2"]["status"], rows["blk2"]["error_type"]) == ("blocked", "other")
    assert rows["off"]["ts"] == datetime(2026, 11, 21, 10, 0, 0, 250_000, tzinfo=UTC)
    assert before <= rows["nots"]["ts"] <= after
    generated = [
        i for i in rows if i not in {"plain", "typed", "err", "blk", "blk2", "off", "nots"}
    ]
    assert len(generated) == 2  # two events without ids are two events
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in generated)


async def test_caller_is_derived_from_api_key_else_ip(api: Api) -> None:
    key = await api.key()
    await api.ingest(
        key,
        [
            llm("k", api_key_id="key-1"),
            llm("ip", caller_ip="10.0.0.7"),
            llm("both", api_key_id="key-2", caller_ip="10.0.0.8"),
            llm("none"),
        ],
    )
    ws = await workspace_id_of(api.services, key)
    callers = {r["id"]: r["caller"] for r in await event_rows(api.services, ws)}
    assert callers == {"k": "key-1", "ip": "ip:10.0.0.7", "both": "key-2", "none": None}
    assert await all_ids(api, key, filter={"callers": ["ip:10.0.0.7"]}) == ["ip"]
    assert sorted(await all_ids(api, key, filter={"callers": ["key-1", "key-2"]})) == [
        "both",
        "k",
    ]
