"""One bad event never fails its call; small bodies never cost gigabytes (issue 14, sections 4
and 5). Each case answered 500 (or froze the server) before, dropping the good events of its
call; now the bad item is one error (index, field, message) and the rest is committed."""

from __future__ import annotations

import gzip
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import re2
from sqlalchemy import text

from tallyql.config import Settings
from tallyql.costs.overrides import compiled
from tallyql.ingest.body import MAX_JSON_VALUES
from tallyql.ingest.pricing import TokenUsage
from tests.conftest import Api, running_api
from tests.support.helpers import event_rows, iso, llm, workspace_id_of
from tests.support.reference_pricing import reference_cost_nano


async def _post(api: Api, key: str, body: bytes, **headers: str) -> Any:
    return await api.client.post(
        "/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
    )


async def _stored_ids(api: Api, key: str) -> list[str]:
    workspace = await workspace_id_of(api.services, key)
    return sorted(r["id"] for r in await event_rows(api.services, workspace))


async def test_five_million_empty_events_in_15_kb_of_gzip_are_refused_cheaply(api: Api) -> None:
    key = await api.key()
    body = gzip.compress(b"[" + b"{}," * 5_000_000 + b"{}]", 9)
    assert len(body) < 20_000
    # fewer values than MAX_JSON_VALUES: the events themselves are counted
    fewer = gzip.compress(b'{"events": [' + b"{}," * 600_000 + b"{}]}", 9)
    ndjson = gzip.compress(b"{}\n" * 600_000, 9)
    gz = {"Content-Encoding": "gzip"}
    tracemalloc.start()
    try:
        answers = [
            await _post(api, key, body, **gz),
            await _post(api, key, fewer, **gz),
            await _post(api, key, ndjson, **gz, **{"Content-Type": "application/x-ndjson"}),
        ]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [a.status_code for a in answers] == [413, 413, 413]
    messages = [a.json()["error"]["message"] for a in answers]
    assert messages[0].startswith(f"body holds more than {MAX_JSON_VALUES:,} JSON values")
    assert messages[1].startswith("more than 10000 events in one call")
    assert messages[2].startswith("more than 10000 events in one call")
    # the inflated body (15 MB) and its text copy, never millions of parsed objects (5
    # million empty events raised the peak by 2.1 GB)
    assert peak < 80 * 2**20, peak
    assert await _stored_ids(api, key) == []


async def test_a_body_with_too_many_json_values_is_refused_before_parsing(api: Api) -> None:
    key = await api.key()
    body = orjson.dumps([llm("v1", metadata={"list": [[]] * (MAX_JSON_VALUES + 1)})])
    response = await _post(api, key, body)
    assert response.status_code == 413
    assert f"more than {MAX_JSON_VALUES:,} JSON values" in response.json()["error"]["message"]


async def test_every_member_of_a_concatenated_gzip_body_is_read(api: Api) -> None:
    key = await api.key()
    text_body = orjson.dumps([llm(f"g{i}") for i in range(40)])
    cut = len(text_body) // 2
    body = gzip.compress(text_body[:cut]) + gzip.compress(text_body[cut:])
    result = await _post(api, key, body, **{"Content-Encoding": "gzip"})
    assert result.status_code == 200, result.text
    assert result.json()["accepted"] == 40
    assert await _stored_ids(api, key) == sorted(f"g{i}" for i in range(40))
    truncated = gzip.compress(text_body)[:-12]
    refused = await _post(api, key, truncated, **{"Content-Encoding": "gzip"})
    assert refused.status_code == 400
    assert "truncated" in refused.json()["error"]["message"]


async def test_an_inflated_body_past_the_limit_is_refused_as_it_streams(
    settings: Settings, db_kind: str
) -> None:
    async with running_api(replace(settings, max_body_bytes=100_000), db_kind) as api:
        key = await api.key()
        body = gzip.compress(orjson.dumps([llm("x", metadata={"pad": "y" * 10_000})] * 12))
        response = await _post(api, key, body, **{"Content-Encoding": "gzip"})
        assert response.status_code == 413
        assert "exceeds 100000 bytes" in response.json()["error"]["message"]


async def test_events_older_than_the_age_bound_are_refused_one_by_one(
    settings: Settings, db_kind: str
) -> None:
    async with running_api(replace(settings, max_event_age_days=3), db_kind) as api:
        key = await api.key()
        now = datetime.now(UTC)
        events = [
            llm("recent", timestamp=iso(now - timedelta(days=2, hours=23))),
            llm("old", timestamp=iso(now - timedelta(days=3, hours=1))),
            llm("ancient", timestamp="2001-01-01T00:00:00Z"),
        ]
        result = await api.ingest(key, events)
        assert result["accepted"] == 1
        assert [(e["index"], e["field"]) for e in result["errors"]] == [
            (1, "timestamp"),
            (2, "timestamp"),
        ]
        assert "TALLYQL_MAX_EVENT_AGE_DAYS" in result["errors"][0]["message"]
        assert await _stored_ids(api, key) == ["recent"]
        if db_kind == "postgresql":  # no partition was made for the refused days
            async with api.services.db.read() as conn:
                names = (
                    await conn.execute(
                        text("SELECT relname FROM pg_class WHERE relname LIKE 'events_2001%'")
                    )
                ).all()
            assert names == []


async def test_ingest_events_keeps_the_batch_when_one_cost_overflows(api: Api) -> None:
    key = await api.key()
    mutation = """mutation($e: [EventInput!]!) {
      ingestEvents(events: $e) { accepted rejected userErrors { index field code message } } }"""
    now = iso(datetime.now(UTC) - timedelta(minutes=3))
    events = [
        {"id": "q1", "timestamp": now, "costUsd": 1.5},
        {"id": "q2", "timestamp": now, "costUsd": 9.3e9},
        {"id": "q3", "timestamp": now, "model": "gpt\x00-4o"},
        {"id": "q4", "timestamp": now, "metadata": {"k": "\x00"}},
        {"id": "q5", "timestamp": now, "costUsd": 0.25},
    ]
    data = await api.data(key, mutation, {"e": events})
    payload = data["ingestEvents"]
    assert payload["accepted"] == 2 and payload["rejected"] == 3
    assert [(e["index"], e["field"], e["code"]) for e in payload["userErrors"]] == [
        (1, "costUsd", "INVALID_EVENT"),
        (2, "model", "INVALID_EVENT"),
        (3, "metadata", "INVALID_EVENT"),
    ]
    assert await _stored_ids(api, key) == ["q1", "q5"]


async def test_maximal_tokens_on_a_priced_model_are_priced_exactly(api: Api) -> None:
    key = await api.key()
    tokens = {"input_tokens": 100_000_000, "output_tokens": 100_000_000}
    result = await api.ingest(
        key,
        [
            llm("max", model="gpt-4o-mini", **tokens),
            llm("over", model="gpt-4o-mini", input_tokens=100_000_001),
        ],
    )
    assert result["accepted"] == 1
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "input_tokens")]
    (row,) = await event_rows(api.services, await workspace_id_of(api.services, key))
    at = row["ts"]
    usage = TokenUsage(input_tokens=100_000_000, output_tokens=100_000_000)
    assert row["cost_nanousd"] == reference_cost_nano("openai", "gpt-4o-mini", usage, at)
    assert row["cost_source"] == "computed"


async def test_a_computed_cost_beyond_the_bound_is_one_events_error(api: Api) -> None:
    key = await api.key()
    created = await api.data(
        key,
        """mutation { createPriceOverride(input: {model: "pricey", inputPerMtok: 1000000,
          outputPerMtok: 1000000}) { userErrors { field message } } }""",
    )
    assert created["createPriceOverride"]["userErrors"] == []
    result = await api.ingest(
        key,
        [
            llm("cheap", model="pricey", input_tokens=1000, output_tokens=0),
            llm("dear", model="pricey", input_tokens=20_000, output_tokens=0),
        ],
    )
    # 1,000 tokens at 1,000,000 USD/MTok cost 1,000 USD; 20,000 cost 20,000, beyond 10,000
    assert result["accepted"] == 1
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "cost_usd")]
    assert "20,000.00 USD" in result["errors"][0]["message"]
    (row,) = await event_rows(api.services, await workspace_id_of(api.services, key))
    assert (row["id"], row["cost_nanousd"]) == ("cheap", 1000 * 10**9)


async def test_audit_details_nested_a_thousand_levels_are_one_error(api: Api) -> None:
    key = await api.key()
    good = {"id": "ok1", "actor_type": "user", "action": "login", "resource_type": "session"}
    deep = b'{"d":' * 999 + b"{}" + b"}" * 999  # 1,000 levels (encoders stop at 255)
    deep_event = orjson.dumps({**good, "id": "deep"})[:-1] + b',"details":' + deep + b"}"
    nul_event = orjson.dumps({**good, "id": "nul", "actor_id": "a\x00"})
    body = b"[" + b",".join([orjson.dumps(good), deep_event, nul_event]) + b"]"
    response = await api.client.post(
        "/v1/audit-events",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "details"), (2, "actor_id")]
    assert "nested deeper than 64 levels" in body["errors"][0]["message"]


async def test_an_otlp_span_starting_in_year_300000_is_one_rejected_span(api: Api) -> None:
    key = await api.key()
    now_ns = int(datetime.now(UTC).timestamp() * 1e9)

    def span(span_id: str, start: int, tokens: Any = 10) -> dict[str, Any]:
        return {
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "spanId": span_id,
            "name": "chat",
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 1_000_000),
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(tokens)}},
            ],
        }

    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            span("00f067aa0ba902b7", now_ns),
                            span("00f067aa0ba902b8", 10**22),
                            span("00f067aa0ba902b9", now_ns, tokens=10**30),
                        ]
                    }
                ]
            }
        ]
    }
    response = await api.client.post(
        "/v1/traces",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "timestamp is more than 24 hours in the future" in partial["errorMessage"]
    assert "input_tokens must be an integer" in partial["errorMessage"]
    assert await _stored_ids(api, key) == ["00f067aa0ba902b7"]


async def test_a_backtracking_override_pattern_is_matched_in_linear_time(api: Api) -> None:
    key = await api.key()
    created = await api.data(
        key,
        """mutation { createPriceOverride(input: {model: "(a+)+b", modelIsRegex: true,
          inputPerMtok: 1, outputPerMtok: 2}) { userErrors { field message } } }""",
    )
    assert created["createPriceOverride"]["userErrors"] == []
    # Python's re takes seconds on 29 'a's and triples every two more; RE2 is linear
    assert isinstance(compiled("(a+)+b"), re2._Regexp)
    names = ["a" * 256, "a" * 40 + "b"]
    result = await api.ingest(key, [llm(f"r{i}", model=m) for i, m in enumerate(names)])
    assert result["accepted"] == 2
    rows = {
        r["id"]: r for r in await event_rows(api.services, await workspace_id_of(api.services, key))
    }
    assert rows["r0"]["cost_source"] == "unpriced"  # no match, and not a known model
    # 100 input tokens at 1 USD/MTok and 20 output tokens at 2 USD/MTok
    assert rows["r1"]["cost_nanousd"] == 100 * 1000 + 20 * 2000


async def test_override_patterns_re2_cannot_run_are_user_errors(api: Api) -> None:
    key = await api.key()
    for pattern, reason in (
        (r"(x)\1", "invalid escape sequence"),
        ("(?<=a)b", "invalid perl operator"),
        ("(a", "missing )"),
        ("a{1000}{1000}", "bad repetition operator"),
    ):
        data = await api.data(
            key,
            """mutation($m: String!) { createPriceOverride(input: {model: $m,
              modelIsRegex: true, inputPerMtok: 1, outputPerMtok: 2}) {
              userErrors { field message } } }""",
            {"m": pattern},
        )
        (error,) = data["createPriceOverride"]["userErrors"]
        assert error["field"] == "model"
        assert "RE2 syntax" in error["message"] and reason in error["message"], error


async def test_an_event_nested_deeper_than_parsers_read_is_one_error(api: Api) -> None:
    key = await api.key()
    deep = b'{"k":' * 3000 + b"{}" + b"}" * 3000  # beyond orjson's 1,024 levels
    bad = orjson.dumps(llm("deep"))[:-1] + b',"request":' + deep + b"}"
    middle = orjson.dumps(llm("mid", request=_nested(100)))
    body = b"[" + b",".join([orjson.dumps(llm("d1")), bad, middle, orjson.dumps(llm("d2"))]) + b"]"
    response = await _post(api, key, body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 2
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "request"), (2, "request")]
    assert "nested too deep" in result["errors"][0]["message"]
    assert "nested deeper than 64 levels" in result["errors"][1]["message"]
    assert await _stored_ids(api, key) == ["d1", "d2"]


DEEP = b'{"k":' * 3000 + b"{}" + b"}" * 3000  # beyond orjson's 1,024 levels


def _audit(audit_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": audit_id,
        "actor_type": "user",
        "action": "login",
        "resource_type": "app",
    } | fields


async def test_a_wrapped_event_nested_beyond_parsers_is_one_error_on_both_doors(api: Api) -> None:
    """{"events": [...]} holding one event deeper than orjson reads: that event's error, the
    others committed (it was a whole-body 400), on /v1/events and /v1/audit-events."""
    key = await api.key()
    bad = orjson.dumps(llm("deep"))[:-1] + b',"metadata":' + DEEP + b"}"
    events = [orjson.dumps(llm("w1")), bad, orjson.dumps(llm("w2"))]
    body = b'{"source": "sdk", "events": [' + b",".join(events) + b"]}"
    response = await _post(api, key, body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "metadata")]
    assert "nested too deep to be read (more than 1,024 levels)" in result["errors"][0]["message"]
    assert await _stored_ids(api, key) == ["w1", "w2"]

    bad_audit = orjson.dumps(_audit("deep"))[:-1] + b',"details":' + DEEP + b"}"
    audits = [orjson.dumps(_audit("a1")), bad_audit, orjson.dumps(_audit("a2"))]
    response = await api.client.post(
        "/v1/audit-events",
        content=b'{"events": [' + b",".join(audits) + b"]}",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "details")]
    data = await api.data(key, "{ auditEvents(first: 10) { edges { node { id } } } }")
    ids = {e["node"]["id"] for e in data["auditEvents"]["edges"]}
    assert {"a1", "a2"} <= ids and "deep" not in ids  # (the others: the key's own records)


async def test_a_raw_control_character_is_its_events_error(api: Api) -> None:
    """A raw control character (U+0000-U+001F) inside one event's string is invalid JSON: that
    event is rejected, naming its field and the character, and the rest of the call is
    committed, in an array, a wrapper, NDJSON and on /v1/audit-events. A control character
    between events breaks what delimits them: the body stays a 400."""
    key = await api.key()
    array = (
        b"["
        + b",".join(
            [
                orjson.dumps(llm("c1")),
                orjson.dumps(llm("c2"))[:-1] + b',"tool":"se\x01arch"}',
                orjson.dumps(llm("c3"))[:-1] + b',"metadata":{"note":"a\tb"}}',
                orjson.dumps(llm("c4")),
            ]
        )
        + b"]"
    )
    response = await _post(api, key, array)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 2)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "tool"), (2, "metadata")]
    assert "raw control character (U+0001)" in result["errors"][0]["message"]
    assert "raw control character (U+0009)" in result["errors"][1]["message"]

    wrapped = b'{\n "events": [\n  ' + orjson.dumps(llm("c5")) + b",\n  "
    wrapped += orjson.dumps(llm("c6"))[:-1] + b',"user_id":"a\nb"}' + b"\n ]\n}"
    response = await _post(api, key, wrapped)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "user_id")]
    assert "U+000A" in result["errors"][0]["message"]

    lines = [orjson.dumps(llm("c7")), orjson.dumps(llm("c8"))[:-1] + b',"node":"n\x02"}']
    response = await _post(api, key, b"\n".join(lines), **{"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "node")]
    assert await _stored_ids(api, key) == ["c1", "c4", "c5", "c7"]

    audits = [orjson.dumps(_audit("x1")), orjson.dumps(_audit("x2"))[:-1] + b',"actor_id":"\x1f"}']
    response = await api.client.post(
        "/v1/audit-events",
        content=b"[" + b",".join(audits) + b"]",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "actor_id")]
    assert "U+001F" in result["errors"][0]["message"]

    for broken in (
        b'[{"id": "b1"},\x01{"id": "b2"}]',  # between events
        b'[{"id": "b1"}, {"id": "b2", "model": "x\x01}]',  # and the string never ends
    ):
        response = await _post(api, key, broken)
        assert response.status_code == 400, (broken, response.text)
        assert response.json()["error"]["code"] == "BAD_REQUEST"
    assert await _stored_ids(api, key) == ["c1", "c4", "c5", "c7"]


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        if value < 0x80:
            return bytes(out + bytes([value]))
        out.append(value & 0x7F | 0x80)
        value >>= 7


async def test_an_otlp_call_of_a_million_empty_spans_is_refused_before_parsing(
    api: Api,
) -> None:
    from tallyql.ingest.otlp_decode import MAX_SPANS, count_protobuf_spans

    key = await api.key()
    spans = b"\x12\x00" * 1_000_000  # ScopeSpans.spans (2), each an empty Span
    scope = b"\x12" + _varint(len(spans)) + spans  # ResourceSpans.scope_spans (2)
    protobuf = b"\x0a" + _varint(len(scope)) + scope  # ExportTraceServiceRequest (1)
    assert count_protobuf_spans(protobuf) == MAX_SPANS + 1  # counting stops past the bound
    json_body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + b"{}," * 110_000 + b"{}]}]}]}"
    tracemalloc.start()
    try:
        answers = [
            await api.client.post(
                "/v1/traces",
                content=gzip.compress(body, 9),
                headers={
                    "Authorization": f"Bearer {key}",
                    "Content-Type": media,
                    "Content-Encoding": "gzip",
                },
            )
            for body, media in (
                (protobuf, "application/x-protobuf"),
                (json_body, "application/json"),
            )
        ]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [a.status_code for a in answers] == [413, 413]
    assert b"more than 100,000 spans in one call" in answers[0].content
    assert answers[1].json()["message"].startswith("more than 100,000 spans in one call")
    assert peak < 200 * 2**20, peak
    # a normal protobuf body counts what it holds
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    for r in range(2):
        resource = request.resource_spans.add()
        resource.resource.attributes.add(key="service.name").value.string_value = "svc"
        for s in range(3):
            scope = resource.scope_spans.add()
            scope.scope.name = "lib"
            for n in range(r + s + 1):
                span = scope.spans.add(name=f"s{n}", start_time_unix_nano=5)
                span.attributes.add(key="k").value.int_value = 7
    assert count_protobuf_spans(request.SerializeToString()) == sum(
        r + s + 1 for r in range(2) for s in range(3)
    )
