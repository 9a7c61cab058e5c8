"""OTLP spans go straight to rows (`otlp_map.span_row`) and through the ingest fast path; the
stored events and the rejections are those of the previous mapping (span -> REST event dict ->
the REST body path), kept as a plain-Python reference in `tests/support/otlp_reference.py`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallyql.demo.generator import generate_batches
from tallyql.ingest import fastpath
from tallyql.ingest.otlp_decode import OtlpSpan, decode_protobuf
from tallyql.ingest.otlp_map import span_row
from tallyql.ingest.pricing import Pricer
from tallyql.ingest.service import IngestService
from tallyql.ingest.validate import FieldError
from tallyql.storage.ingest.record import ID, ValidEvent
from tests.support.otlp_reference import reference_prepare, span_to_event

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from otlp_bodies import otlp_body  # bench/ is not a package

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * 1_000_000_000


def _service() -> IngestService:
    return IngestService(writer=None, pricer=Pricer())  # type: ignore[arg-type]


def _new_prepare(
    service: IngestService, spans: list[OtlpSpan]
) -> tuple[list[ValidEvent], list[FieldError]]:
    rows = [r for r in (span_row(s) for s in spans) if r is not None]
    return service.prepare_rows(7, rows, NOW)


def _comparable(valid: list[ValidEvent], spans: list[OtlpSpan]) -> list[Any]:
    """Rows by column, with the generated id of an id-less span masked (it is random)."""
    out = []
    for event in valid:
        row = event.row
        if not any(s.span_id == event.record[ID] for s in spans):
            row["id"] = "<generated>"
        out.append((row, event.request, event.response, event.has_payload))
    return out


def _assert_same(spans: list[OtlpSpan]) -> None:
    service = _service()
    new_valid, new_errors = _new_prepare(service, spans)
    try:
        old_valid, old_errors, _ = reference_prepare(service, 7, spans, NOW)
    except TypeError as exc:
        # orjson could not encode an integer beyond 64 bits (a count, or a time scaled up):
        # the previous door answered 500. Now such a value meets the REST rules like any
        # other: compare with the detailed validator on the previous mapping's dicts.
        assert "64-bit" in str(exc)
        events = [e for e in (span_to_event(s) for s in spans) if e is not None]
        old_valid, old_errors = service.prepare(7, events, NOW)
    assert _comparable(new_valid, spans) == _comparable(old_valid, spans)
    # the same errors; within one span they follow the field table's order now
    assert sorted(new_errors, key=_by_field) == sorted(old_errors, key=_by_field)


def _by_field(error: FieldError) -> tuple[int, str]:
    return error.index, error.field


def test_demo_traffic_same_as_reference() -> None:
    """The bench's spans (30 days of demo traffic, errors included) decoded from protobuf."""
    for batch in generate_batches(2_000, 30, seed=3, batch_size=500, end=NOW):
        spans = decode_protobuf(otlp_body(batch))
        _assert_same(spans)
        assert len(_new_prepare(_service(), spans)[0]) == len(batch)


TEXT = st.one_of(st.just(""), st.text(min_size=1, max_size=12), st.text(min_size=250, max_size=300))
NUMBER = st.one_of(
    st.integers(min_value=-5, max_value=5_000),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=10_000),
    st.sampled_from([0.0, 3.0, 1e15, 2.0**60]),
)
VALUE = st.one_of(
    st.none(),
    TEXT,
    NUMBER,
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(0, 9), max_size=2),
)
TEXT_KEYS = (
    "gen_ai.request.model",
    "gen_ai.response.model",
    "llm.model_name",
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "gen_ai.conversation.id",
    "session.id",
    "user.id",
    "enduser.id",
    "gen_ai.agent.id",
    "gen_ai.agent.name",
    "gen_ai.tool.name",
    "tool.name",
    "gen_ai.response.id",
    "gen_ai.tool.call.id",
    "gen_ai.tool.type",
    "server.address",
    "http.request.method",
    "unrelated.key",
)
NUMBER_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.usage.cost",
    "llm.cost.total",
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
)
CHOICE_VALUES = {
    "gen_ai.operation.name": st.sampled_from(
        ["chat", "text_completion", "embeddings", "execute_tool", "invoke_agent", "other", ""]
    ),
    "openinference.span.kind": st.sampled_from(
        ["LLM", "EMBEDDING", "TOOL", "RETRIEVER", "AGENT", "CHAIN", "RERANKER"]
    ),
    "error.type": st.sampled_from(
        ["timeout", "RateLimitError", "openai.AuthenticationError", "500", "x.ReadTimeout", "boom"]
    ),
    "http.response.status_code": st.one_of(
        st.sampled_from([200, 404, 429, "503", "abc", -1]), st.integers(0, 999)
    ),
    "gen_ai.response.finish_reasons": st.lists(st.sampled_from(["stop", "length"]), max_size=2),
}


@st.composite
def attributes(draw: st.DrawFn) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(TEXT_KEYS), max_size=6, unique=True)):
        attrs[key] = draw(st.one_of(TEXT, TEXT, VALUE))
    for key in draw(st.lists(st.sampled_from(NUMBER_KEYS), max_size=6, unique=True)):
        attrs[key] = draw(st.one_of(NUMBER, NUMBER, VALUE))
    for key, values in CHOICE_VALUES.items():
        if draw(st.booleans()):
            attrs[key] = draw(st.one_of(values, values, VALUE))
    return attrs


@st.composite
def spans(draw: st.DrawFn) -> OtlpSpan:
    start = draw(
        st.one_of(
            st.just(0),
            st.integers(NOW_NS - 40 * 86_400 * 10**9, NOW_NS),
            st.integers(NOW_NS, NOW_NS + 3 * 86_400 * 10**9),
            st.integers(1, 2**64 - 1),
        )
    )
    end = start + draw(st.integers(-(10**9), 10**11))
    hexid = st.one_of(st.none(), st.binary(min_size=8, max_size=8).map(bytes.hex))
    exception = st.tuples(st.just("exception"), st.fixed_dictionaries({"exception.message": TEXT}))
    return OtlpSpan(
        trace_id=draw(st.one_of(st.none(), st.binary(min_size=16, max_size=16).map(bytes.hex))),
        span_id=draw(hexid),
        parent_id=draw(hexid),
        name=draw(st.sampled_from(["", "chat gpt-4o", "x" * 40])),
        start_ns=start,
        end_ns=end,
        attributes=draw(attributes()),
        resource=draw(
            st.fixed_dictionaries(
                {}, optional={"service.name": TEXT, "deployment.environment.name": VALUE}
            )
        ),
        scope=draw(st.one_of(st.none(), st.just("openai.instrumentation"))),
        status_code=draw(st.sampled_from([0, 1, 2])),
        status_message=draw(st.one_of(st.just(""), TEXT, st.text(min_size=2001, max_size=2100))),
        events=draw(st.lists(st.one_of(exception, st.just(("log", {}))), max_size=2)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans(), min_size=1, max_size=6))
def test_rows_same_as_reference(batch: list[OtlpSpan]) -> None:
    """A wide set of spans, valid or not: the same stored records and the same errors."""
    _assert_same(batch)


def test_one_bad_span_keeps_the_others_on_the_fast_path() -> None:
    """A bad span is rejected with the detailed validator's reason; its neighbours are
    stored exactly as before."""
    good = [
        OtlpSpan(
            trace_id=None,
            span_id=f"{i:016x}",
            parent_id=None,
            name="chat",
            start_ns=NOW_NS - 10**9,
            end_ns=NOW_NS,
            attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10 + i},
            resource={},
        )
        for i in range(1, 4)
    ]
    bad = OtlpSpan(
        trace_id=None,
        span_id="00000000000000ff",
        parent_id=None,
        name="chat",
        start_ns=NOW_NS + 2 * 86_400 * 10**9,  # two days in the future
        end_ns=NOW_NS + 2 * 86_400 * 10**9,
        attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.output_tokens": -1},
        resource={},
    )
    batch = [good[0], bad, *good[1:]]
    _assert_same(batch)
    valid, errors = _new_prepare(_service(), batch)
    assert [e.record[ID] for e in valid] == [s.span_id for s in good]
    assert {(e.index, e.field) for e in errors} == {(1, "timestamp"), (1, "output_tokens")}


def test_span_beyond_year_9999_is_rejected_not_a_crash() -> None:
    """OTLP/JSON may carry any integer; a start past datetime's range is a validation error."""
    span = OtlpSpan(
        None, "00000000000000aa", None, "chat", 10**30, 10**30, {"llm.model_name": "m"}, {}
    )
    row = span_row(span)
    assert row is not None
    valid, errors = _service().prepare_rows(7, [row], NOW)
    assert valid == [] and [(e.index, e.field) for e in errors] == [(0, "timestamp")]
    assert fastpath.row_event(row)["timestamp"].startswith("9999-12-31")


def test_token_count_beyond_64_bits_is_rejected_not_a_crash() -> None:
    """A float count such as 1e20 became an integer orjson could not encode (a 500 before)."""
    span = OtlpSpan(
        None,
        "00000000000000ab",
        None,
        "chat",
        NOW_NS,
        NOW_NS,
        {"llm.model_name": "m", "gen_ai.usage.output_tokens": 1e20},
        {},
    )
    row = span_row(span)
    assert row is not None
    valid, errors = _service().prepare_rows(7, [row], NOW)
    assert valid == [] and [(e.index, e.field) for e in errors] == [(0, "output_tokens")]


def test_span_kind_of_any_type_is_not_a_crash() -> None:
    """An `openinference.span.kind` list made the GenAI check raise (a 500 for the request)."""
    plain = OtlpSpan(None, "00000000000000ac", None, "x", NOW_NS, NOW_NS, {}, {})
    plain.attributes = {"openinference.span.kind": ["LLM"]}
    assert span_row(plain) is None  # nothing else marks it as GenAI: skipped
    plain.attributes = {"openinference.span.kind": ["LLM"], "llm.model_name": "m"}
    row = span_row(plain)
    assert row is not None and row[fastpath.ROW_AT["kind"]] == "llm_call"


def test_status_code_of_non_ascii_digits_is_not_a_crash() -> None:
    """'²' is a digit to str.isdigit but not to int(): the mapping raised (a 500); it is no
    status code, like any other text that is not one."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    span = OtlpSpan(None, "00000000000000ad", None, "x", NOW_NS, NOW_NS, attributes, {})
    for text, code in (("²", None), ("٣٠٠", None), ("503", 503)):
        attributes["http.response.status_code"] = text
        row = span_row(span)
        assert row is not None and row[fastpath.ROW_AT["status_code"]] == code


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["\x00", "a\ud800b", "null", "\\u0000", "[{"]),
    st.binary(max_size=2),
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, fastpath.ROW_WIDTH - 1), _JSON_VALUES), max_size=6),
    st.booleans(),
    st.integers(0, 70),
)
def test_storable_screen_answers_as_the_exact_check(
    values: list[tuple[int, Any]], timed: bool, depth: int
) -> None:
    """`_storable` screens a row with one orjson encoding and settles any doubt value by
    value: for decoded values (texts, numbers, booleans, bytes, None, lists and objects of
    them, nested up to past the depth bound) it answers as `_storable_exactly`."""
    row: list[Any] = [None] * fastpath.ROW_WIDTH
    row[fastpath.ROW_AT["timestamp"]] = NOW if timed else None
    for position, value in values:
        row[position] = value
    nested: Any = "x"
    for _ in range(depth):
        nested = [nested]
    row[fastpath.ROW_AT["metadata"]] = {"deep": nested}
    assert fastpath._storable(row) == fastpath._storable_exactly(row)
