"""Property-based fuzzing of every ingest door (issue 14, "Tests and CI").

Each example is a call mixing valid items with items made invalid in one field by a value
known to be out of the contract (NUL characters, out-of-range numbers, far timestamps, deep
JSON, wrong types, unknown fields). Whatever the mix: the answer is never a 5xx nor an
INTERNAL_ERROR, exactly the invalid items are reported (by index), and exactly the valid ones
are stored, counted back from the database. Examples stay small (TALLYQL_FUZZ_EXAMPLES, 12 by
default) so that each property takes seconds.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tallyql.ingest.fields import MAX_BYTES, MAX_COST_USD, MAX_DURATION_MS, MAX_TOKENS
from tests.conftest import Api
from tests.support.helpers import iso

EXAMPLES = int(os.environ.get("TALLYQL_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# storable text: anything but NUL and lone surrogates
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)
JSON_SCALAR = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT
JSON_VALUE = st.recursive(
    JSON_SCALAR | st.floats(allow_nan=False, allow_infinity=False) | st.just(0.5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
NUL_TEXT = st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=3), st.text(max_size=3))


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event within every bound of the contract (inclusive token accounting)."""
    now = datetime.now(UTC)
    input_tokens = draw(st.integers(0, MAX_TOKENS))
    output_tokens = draw(st.integers(0, MAX_TOKENS))
    event: dict[str, Any] = {
        "timestamp": iso(now - timedelta(seconds=draw(st.integers(0, 86_400)))),
        "kind": draw(st.sampled_from(["llm_call", "tool_call", "agent_run", "http_request"])),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": draw(st.integers(0, input_tokens)),
        "reasoning_tokens": draw(st.integers(0, output_tokens)),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "model": TEXT.map(lambda t: f"fuzz-{t}"),  # unpriced: no computed cost to bound
        "provider": st.sampled_from(["openai", "anthropic", "nobody"]),
        "user_id": TEXT,
        "session_id": TEXT,
        "status_code": st.integers(0, 999),
        "latency_ms": st.floats(0, MAX_DURATION_MS),
        "ttft_ms": st.floats(0, MAX_DURATION_MS),
        "request_bytes": st.integers(0, MAX_BYTES),
        "cost_usd": st.floats(0, MAX_COST_USD),
        "tags": st.lists(TEXT, max_size=3),
        "metadata": st.dictionaries(TEXT, JSON_VALUE, max_size=3),
        "request": JSON_VALUE,
        "error_message": st.text(max_size=30).map(lambda t: t.replace("\x00", "") or "e"),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            event[name] = draw(strategy)
    return event


def _year_one_east() -> str:
    return "0001-01-01T00:00:00+14:00"


# (field, strategy of values outside the contract): each makes an event invalid
CORRUPTIONS: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("model", NUL_TEXT),
    ("session_id", NUL_TEXT),
    ("tags", NUL_TEXT.map(lambda t: [t])),
    ("metadata", NUL_TEXT.map(lambda t: {"k": t})),
    ("metadata", st.integers(65, 300).map(_deep)),
    ("request", st.integers(65, 300).map(_deep)),
    ("status_code", st.integers(1000, 2**70)),
    ("input_tokens", st.integers(MAX_TOKENS + 1, 2**70)),
    ("output_tokens", st.integers(-(2**70), -1)),
    ("request_bytes", st.integers(MAX_BYTES + 1, 2**64)),
    ("latency_ms", st.floats(MAX_DURATION_MS * 1.0001, 1e308)),
    ("ttft_ms", st.floats(-1e308, -1e-3)),
    ("cost_usd", st.floats(MAX_COST_USD * 1.0001, 1e308)),
    (
        "timestamp",
        st.sampled_from([_year_one_east(), "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]),
    ),
    ("timestamp", st.text(max_size=8).map(lambda t: f"x{t}")),
    ("kind", TEXT.map(lambda t: f"not-{t}")),
    ("is_byok", st.integers(0, 5)),
    ("frobnicate", JSON_SCALAR),
]


@st.composite
def calls(
    draw: st.DrawFn, corruptions: list[tuple[str, st.SearchStrategy[Any]]] = CORRUPTIONS
) -> list[tuple[dict[str, Any], bool]]:
    """A call's events, each with whether it is valid."""
    items = []
    for _ in range(draw(st.integers(1, 8))):
        event = draw(valid_events())
        corrupt = draw(st.booleans())
        if corrupt:
            field, strategy = draw(st.sampled_from(corruptions))
            event[field] = draw(strategy)
        items.append((event, not corrupt))
    return items


async def _stored(api: Api, table: str, ids: list[str]) -> set[str]:
    async with api.services.db.read() as conn:
        rows = await conn.execute(
            text(f"SELECT id FROM {table} WHERE id IN ({', '.join(repr(i) for i in ids)})")
        )
        return {r[0] for r in rows.all()}


def _with_ids(items: list[tuple[dict[str, Any], bool]]) -> tuple[list[str], set[int]]:
    prefix = uuid.uuid4().hex[:12]
    ids = []
    for n, (event, _) in enumerate(items):
        event["id"] = f"{prefix}-{n}"
        ids.append(event["id"])
    return ids, {n for n, (_, ok) in enumerate(items) if not ok}


@FUZZ
@given(items=calls(), ndjson=st.booleans(), gzip_it=st.booleans())
async def test_rest_ingest_commits_exactly_the_valid_events(
    api: Api, items: list[tuple[dict[str, Any], bool]], ndjson: bool, gzip_it: bool
) -> None:
    import gzip

    key = await api.key("fuzz")
    ids, invalid = _with_ids(items)
    events = [e for e, _ in items]
    if ndjson:  # json, not orjson: integers beyond 64 bits are part of the fuzz
        body = b"\n".join(json.dumps(e).encode() for e in events)
    else:
        body = json.dumps(events).encode()
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/x-ndjson" if ndjson else "application/json",
    }
    if gzip_it:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    response = await api.client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert {e["index"] for e in result["errors"]} == invalid, result["errors"]
    assert result["accepted"] == len(items) - len(invalid)
    want = {ids[n] for n in range(len(items)) if n not in invalid}
    assert await _stored(api, "events", ids) == want


GRAPHQL_CORRUPTIONS: list[tuple[str, st.SearchStrategy[Any]]] = [
    (field, strategy)
    for field, strategy in CORRUPTIONS
    if field in {"model", "session_id", "tags", "metadata", "request", "latency_ms", "cost_usd"}
]
_CAMEL = {
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "cache_read_tokens": "cacheReadTokens",
    "reasoning_tokens": "reasoningTokens",
    "status_code": "statusCode",
    "latency_ms": "latencyMs",
    "ttft_ms": "ttftMs",
    "request_bytes": "requestBytes",
    "cost_usd": "costUsd",
    "user_id": "userId",
    "session_id": "sessionId",
    "error_message": "errorMessage",
}


@FUZZ
@given(items=calls(GRAPHQL_CORRUPTIONS))
async def test_ingest_events_commits_exactly_the_valid_events(
    api: Api, items: list[tuple[dict[str, Any], bool]]
) -> None:
    # GraphQL's own types refuse a whole request (Int is 32-bit, enums are closed): the
    # corruptions sent here are those its types carry, each must be one event's userError
    key = await api.key("fuzz")
    ids, invalid = _with_ids(items)
    inputs = []
    for event, _ in items:
        converted = {_CAMEL.get(k, k): v for k, v in event.items()}
        converted["kind"] = event["kind"].upper()
        inputs.append(converted)
    body = await api.graphql(
        key,
        """mutation($e: [EventInput!]!) { ingestEvents(events: $e) {
          accepted rejected userErrors { index field code } } }""",
        {"e": inputs},
    )
    assert "errors" not in body, body["errors"]
    payload = body["data"]["ingestEvents"]
    assert {e["index"] for e in payload["userErrors"]} == invalid, payload
    assert {e["code"] for e in payload["userErrors"]} <= {"INVALID_EVENT"}
    assert payload["accepted"] == len(items) - len(invalid)
    want = {ids[n] for n in range(len(items)) if n not in invalid}
    assert await _stored(api, "events", ids) == want


AUDIT_CORRUPTIONS: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("actor_id", NUL_TEXT),
    ("resource_id", NUL_TEXT),
    ("details", st.integers(65, 1000).map(_deep)),
    ("details", NUL_TEXT.map(lambda t: {t: 1})),
    ("timestamp", st.sampled_from([_year_one_east(), "9999-12-31T23:59:59Z", "soon"])),
    ("source_ip", TEXT.map(lambda t: f"not an ip {t}")),
    ("action", TEXT.map(lambda t: f"not-{t}")),
    ("wat", JSON_SCALAR),
]


@st.composite
def audit_calls(draw: st.DrawFn) -> list[tuple[dict[str, Any], bool]]:
    items = []
    for _ in range(draw(st.integers(1, 6))):
        event: dict[str, Any] = {
            "actor_type": draw(st.sampled_from(["user", "api_key", "system"])),
            "action": draw(st.sampled_from(["login", "create", "update", "export"])),
            "resource_type": draw(TEXT),
            "actor_id": draw(TEXT),
            "details": draw(st.dictionaries(TEXT, JSON_VALUE, max_size=3)),
            "timestamp": iso(datetime.now(UTC) - timedelta(seconds=draw(st.integers(0, 9999)))),
        }
        corrupt = draw(st.booleans())
        if corrupt:
            field, strategy = draw(st.sampled_from(AUDIT_CORRUPTIONS))
            event[field] = draw(strategy)
        items.append((event, not corrupt))
    return items


@FUZZ
@given(items=audit_calls())
async def test_audit_ingest_commits_exactly_the_valid_events(
    api: Api, items: list[tuple[dict[str, Any], bool]]
) -> None:
    key = await api.key("fuzz")
    ids, invalid = _with_ids(items)
    # details up to 1,000 levels: written by hand, as encoders stop at 255
    body = "[" + ",".join(_encode(e) for e, _ in items) + "]"
    response = await api.client.post(
        "/v1/audit-events",
        content=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert {e["index"] for e in result["errors"]} == invalid, result["errors"]
    assert result["accepted"] == len(items) - len(invalid)
    want = {ids[n] for n in range(len(items)) if n not in invalid}
    assert await _stored(api, "audit_events", ids) == want


def _encode(value: Any) -> str:
    """JSON text of any depth (iterative over the chain of one-key objects `_deep` makes)."""
    if isinstance(value, dict) and len(value) == 1 and "k" in value:
        opened = 0
        while isinstance(value, dict) and len(value) == 1 and "k" in value:
            value, opened = value["k"], opened + 1
        return '{"k":' * opened + _encode(value) + "}" * opened
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


@st.composite
def otlp_spans(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """An OTLP/JSON GenAI span and whether ingest must accept it."""
    now_ns = int(datetime.now(UTC).timestamp()) * 10**9
    if draw(st.booleans()):
        start = now_ns - draw(st.integers(0, 86_400 * 10**9))
    else:
        start = now_ns + draw(st.integers(2 * 86_400 * 10**9, 10**22))
    duration = draw(st.integers(0, 10**17))
    tokens = draw(st.integers(0, MAX_TOKENS) | st.integers(MAX_TOKENS + 1, 10**30))
    span = {
        "traceId": uuid.uuid4().hex,
        "spanId": uuid.uuid4().hex[:16],
        "name": draw(TEXT),
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration),
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": draw(TEXT | NUL_TEXT)}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(tokens)}},
            {
                "key": "gen_ai.request.max_tokens",
                "value": {"intValue": str(draw(st.integers(0, 10**25)))},
            },
        ],
    }
    model = span["attributes"][0]["value"]["stringValue"]
    valid = (
        start <= now_ns
        and duration / 1e6 <= MAX_DURATION_MS
        and tokens <= MAX_TOKENS
        and "\x00" not in model
    )
    return span, valid


@FUZZ
@given(spans=st.lists(otlp_spans(), min_size=1, max_size=6))
async def test_otlp_ingest_commits_exactly_the_valid_spans(
    api: Api, spans: list[tuple[dict[str, Any], bool]]
) -> None:
    key = await api.key("fuzz")
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [s for s, _ in spans]}]}]}
    response = await api.client.post(
        "/v1/traces",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    rejected = sum(1 for _, ok in spans if not ok)
    assert int(response.json().get("partialSuccess", {}).get("rejectedSpans", "0")) == rejected
    ids = [s["spanId"] for s, _ in spans]
    assert await _stored(api, "events", ids) == {s["spanId"] for s, ok in spans if ok}
