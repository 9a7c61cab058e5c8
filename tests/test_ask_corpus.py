"""The question interpreter against its corpus (tests/support/ask_corpus.py): every phrasing becomes
exactly the query written out for its intent; nonsense is not understood; no database."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tallyql.engine.interpret import KnownValues, TopOverTime, interpret
from tallyql.engine.registry import Dimension, Metric
from tallyql.engine.vocabulary import DIMENSION_WORDS, METRIC_WORDS
from tallyql.schema.ask import query_input, query_json
from tests.support.ask_corpus import CASES, INTENTS, KNOWN, NONSENSE, NOW, TOP_OVER_TIME


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 150
    assert len(INTENTS) >= 50
    assert all(len(phrasings) >= 2 for _, phrasings in INTENTS)


@pytest.mark.parametrize(("question", "want"), CASES, ids=[q for q, _ in CASES])
def test_question_becomes_its_query(question: str, want: dict[str, Any]) -> None:
    got = interpret(question, "UTC", NOW, KNOWN)
    assert got.understood, got.interpretation
    assert got.query == want, got.notes
    # the JSON is MetricsQueryInput's input shape: it converts and comes back unchanged
    back = query_json(query_input(got.query))
    assert _normal(back) == _normal(want)


def _normal(query: dict[str, Any]) -> dict[str, Any]:
    """Times as instants (Z and +00:00 are one)."""
    rng = dict(query["range"])
    for k in ("start", "end"):
        if k in rng:
            rng[k] = rng[k].replace("Z", "+00:00")
    return {**query, "range": rng}


@pytest.mark.parametrize("question", NONSENSE, ids=range(len(NONSENSE)))
def test_nonsense_is_not_understood(question: str) -> None:
    got = interpret(question, "UTC", NOW, KNOWN)
    assert not got.understood
    assert got.query is None
    assert got.suggestions and all(
        interpret(s, "UTC", NOW, KNOWN).understood for s in got.suggestions
    )


def test_an_unknown_time_zone_is_not_understood() -> None:
    got = interpret("cost by model today", "Mars/Olympus", NOW, KNOWN)
    assert not got.understood and "time zone" in got.interpretation


def test_the_caller_time_zone_sets_day_boundaries() -> None:
    got = interpret("cost yesterday", "Asia/Tokyo", NOW, KNOWN)
    assert got.query is not None
    assert got.query["range"] == {
        "start": "2026-12-04T15:00:00Z",
        "end": "2026-12-05T15:00:00Z",
        "timezone": "Asia/Tokyo",
    }


def test_assumptions_are_said() -> None:
    got = interpret("gpt-4o", "UTC", NOW, KNOWN)
    assert got.understood
    assert "no measure named: counting requests" in got.notes
    assert "no time named: the last 30 days" in got.notes
    assert got.suggestions
    typo = interpret("cost of gtp-4o today", "UTC", NOW, KNOWN)
    assert "read 'gtp-4o' as gpt-4o" in typo.notes
    ignored = interpret("cost by model today frobnicate", "UTC", NOW, KNOWN)
    assert "ignored: frobnicate" in ignored.notes


def test_an_ambiguous_typo_is_not_guessed() -> None:
    # gpt4 is one letter from gpt-4o and from gpt-4.1: neither is chosen
    got = interpret("cost of gpt4 today", "UTC", NOW, KNOWN)
    assert got.query is not None and "filter" not in got.query


def test_interpretation_words() -> None:
    got = interpret("cost by model this month in Europe/Paris", "UTC", NOW, KNOWN)
    assert got.interpretation == "Cost in USD by model, this month, Europe/Paris"
    assert got.chart_kind == "BAR"
    assert interpret("daily cost", "UTC", NOW, KNOWN).chart_kind == "LINE"
    assert interpret("tokens by model per day", "UTC", NOW, KNOWN).chart_kind == "STACKED_AREA"
    assert interpret("cost today", "UTC", NOW, KNOWN).chart_kind == "TABLE"


def test_every_metric_and_dimension_has_words_that_reach_it() -> None:
    """Each metric's first phrase, asked alone, means that metric; each dimension's first
    phrase after "requests by" groups by it (METADATA aside: it needs a key)."""
    for metric in Metric:
        got = interpret(f"{METRIC_WORDS[metric].phrases[0]} today", "UTC", NOW, KNOWN)
        assert got.query is not None and got.query["metrics"][0] == metric.value, metric
    for dim in Dimension:
        if dim is Dimension.METADATA:
            continue
        got = interpret(f"requests by {DIMENSION_WORDS[dim].phrases[0]}", "UTC", NOW, KNOWN)
        assert got.query is not None, dim
        assert got.query.get("dimensions") == [{"dimension": dim.value}], dim


def test_interpreting_is_fast() -> None:
    """p95 well under 5 ms on this machine's slowest day (bench/ask.py measures it)."""
    questions = [q for q, _ in CASES]
    for q in questions:  # warm the index
        interpret(q, "UTC", NOW, KNOWN)
    times = []
    for q in questions:
        t = time.perf_counter()
        interpret(q, "UTC", NOW, KNOWN)
        times.append(time.perf_counter() - t)
    times.sort()
    assert times[int(len(times) * 0.95)] < 0.025  # generous: the machine is shared


_WORDS = [
    *(w for q, _ in CASES for w in q.split()),
    "top",
    "by",
    "per",
    "between",
    "and",
    "since",
    "0",
    "99999",
    "feb 30",
    "2026-13-45",
    "last 0 days",
    "in the last 100000 days",
    "Europe/Paris",
    "Nowhere/Land",
]


@hypothesis_settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=120),
        st.lists(st.sampled_from(_WORDS), max_size=14).map(" ".join),
    ),
    tz=st.sampled_from(["UTC", "Europe/Paris", "Pacific/Kiritimati", "bogus", ""]),
)
def test_any_text_is_read_without_raising(text: str, tz: str) -> None:
    """Whatever comes in, an interpretation comes out: understood with a query whose JSON
    converts to a MetricsQueryInput, or not understood with suggestions."""
    got = interpret(text, tz, NOW, KNOWN)
    if got.understood:
        assert got.query is not None
        query_input(got.query)
    else:
        assert got.query is None and got.suggestions


@pytest.mark.parametrize(
    ("question", "want", "top"),
    [(q, want, top) for want, top, qs in TOP_OVER_TIME for q in qs],
    ids=[q for _, _, qs in TOP_OVER_TIME for q in qs],
)
def test_top_n_over_time_ranks_groups_over_the_whole_range(
    question: str, want: dict[str, Any], top: tuple[int, bool, str]
) -> None:
    got = interpret(question, "UTC", NOW, KNOWN)
    assert got.understood, got.interpretation
    assert got.query == want, got.notes
    assert got.top_over_time == TopOverTime(*top)


def test_a_metadata_grouping_needs_its_key() -> None:
    got = interpret("cost by metadata", "UTC", NOW, KNOWN)
    assert not got.understood
    assert "env, feature" in got.interpretation
    # an unknown key is taken as written, and said
    unknown = interpret("cost by metadata customer this month", "UTC", NOW, KNOWN)
    assert unknown.understood and unknown.query is not None
    assert unknown.query["dimensions"] == [{"dimension": "METADATA", "metadataKey": "customer"}]
    assert any("customer" in n for n in unknown.notes)
    # "by feature" is a grouping only where feature is a metadata key of the workspace
    plain = KnownValues(KNOWN.values, KNOWN.user_names)
    assert (
        interpret("cost by feature this month", "UTC", NOW, plain).query
        != interpret("cost by feature this month", "UTC", NOW, KNOWN).query
    )
