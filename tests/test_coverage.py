"""The coverage rule (`registry.COVERED_DIMENSIONS`, `filters.COVERED_FILTERS`): any question
grouped and filtered only by low-cardinality dimensions, with buckets on whole UTC hours, is
answered from rollups (sums, latency and TTFT percentiles, distinct counts of low-cardinality
columns), raw events only at the window's ragged edges; and its answers equal raw events'."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tallyql.engine.query.buckets import Granularity, make_bucketing, single_bucket
from tallyql.engine.query.filters import COVERED_FILTERS, EventFilterSpec
from tallyql.engine.query.planner import plan_group
from tallyql.engine.query.registry import COVERED_DIMENSIONS, METRICS, Dimension, DimensionRef
from tallyql.engine.query.timerange import TimeWindow
from tallyql.storage.dialect import Dialect
from tallyql.storage.rollups.declarations import HIGH_CARDINALITY_ROLLUPS, LOW_CARDINALITY
from tests.conftest import Api
from tests.support.engine_properties import (
    BASE,
    SPAN,
    ask,
    compare,
    event_fields,
    expected,
    graphql_filter,
    property_event,
    workspace_with,
)

HOUR = timedelta(hours=1)
WHOLE_HOUR_ZONES = ("UTC", "Europe/Berlin", "America/New_York")
"""Zones whose offsets are whole hours (Asia/Kolkata's half hour puts day buckets off the
hour: those read raw events throughout, as explain says)."""
FILTER_VALUES: dict[str, Any] = {
    "providers": ("openai", "anthropic"),
    "models": ("m-small", "m-large"),
    "kinds": ("llm_call", "tool_call"),
    "statuses": ("error", "success"),
    "error_types": ("timeout",),
    "departments": ("d-eng", "d-ops"),
    "tools": ("search",),
    "mcp_servers": ("github",),
    "gateways": ("gw1",),
    "protocols": ("openai", "mcp"),
    "request_types": ("chat",),
    "billing_modes": ("byok",),
    "policies": ("p1",),
    "cost_sources": ("computed", "unpriced"),
    "status_codes": (200, 429, 503),
    "is_byok": True,
}
assert set(FILTER_VALUES) == COVERED_FILTERS
# every measure group a metric makes: sums, a histogram, a distinct column
HISTOGRAMS = ("latency", "ttft")
DISTINCT = sorted({m.distinct for m in METRICS.values() if m.distinct} & set(LOW_CARDINALITY))
COVERED = sorted((d for d in COVERED_DIMENSIONS if d is not Dimension.WORKSPACE), key=str)
HIGH = [Dimension.USER, Dimension.API_KEY, Dimension.CALLER, Dimension.AGENT_INSTANCE]


@st.composite
def windows(draw: st.DrawFn) -> tuple[Any, Granularity | None]:
    start = BASE + timedelta(seconds=draw(st.integers(0, int(SPAN.total_seconds()) - 7200)))
    length = timedelta(seconds=draw(st.integers(3 * 3600, 30 * 86400)))
    window = TimeWindow(start, start + length, ZoneInfo(draw(st.sampled_from(WHOLE_HOUR_ZONES))))
    granularity = draw(st.sampled_from([None, Granularity.HOUR, Granularity.DAY]))
    if granularity is Granularity.HOUR and length > timedelta(days=10):
        granularity = Granularity.DAY  # bucket count limits
    bucketing = (
        single_bucket(window) if granularity is None else make_bucketing(window, granularity)
    )
    return bucketing, granularity


@st.composite
def covered_filters(draw: st.DrawFn) -> EventFilterSpec:
    names = draw(st.lists(st.sampled_from(sorted(COVERED_FILTERS)), max_size=4, unique=True))
    values = {n: FILTER_VALUES[n] for n in names}
    return EventFilterSpec(**values)


def _plans(bucketing: Any, dims: tuple[DimensionRef, ...], spec: EventFilterSpec) -> list[Any]:
    return [
        plan_group("sums", bucketing, dims, spec),
        *(plan_group(h, bucketing, dims, spec, histogram=True) for h in HISTOGRAMS),
        *(plan_group(f"distinct {c}", bucketing, dims, spec, distinct=c) for c in DISTINCT),
    ]


@hypothesis_settings(max_examples=400, deadline=None)
@given(
    window=windows(),
    dims=st.lists(st.sampled_from(COVERED), max_size=3, unique=True),
    spec=covered_filters(),
)
def test_low_cardinality_questions_read_rollups_with_raw_only_at_the_edges(
    window: tuple[Any, Granularity | None], dims: list[Dimension], spec: EventFilterSpec
) -> None:
    bucketing, _ = window
    refs = tuple(DimensionRef(d) for d in dims)
    for plan in _plans(bucketing, refs, spec):
        assert plan.rollup is not None, (plan.group, dims, spec, plan.reason)
        assert "raw events only at the window's edges" in plan.reason, plan.reason
        middle = plan.pieces[1:-1] if len(plan.pieces) > 2 else []
        assert all(p.grain != "raw" for p in middle), plan.pieces
        for piece in plan.pieces:
            if piece.grain == "raw":  # a ragged edge: less than an hour, at an end
                assert piece.end - piece.start < HOUR, piece
                assert piece.start == bucketing.start or piece.end == bucketing.end, piece
        assert plan.pieces[0].start == bucketing.start and plan.pieces[-1].end == bucketing.end


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    window=windows(),
    high=st.sampled_from(HIGH),
    other=st.sampled_from(COVERED),
)
def test_high_cardinality_questions_read_their_rollups_or_say_why_not(
    window: tuple[Any, Granularity | None], high: Dimension, other: Dimension
) -> None:
    """A high-cardinality dimension is answered from the rollups declared for it
    (`HIGH_CARDINALITY_ROLLUPS`) when they keep what it is asked with; otherwise from raw
    events, and explain names the column that is not low-cardinality."""
    bucketing, _ = window
    refs = (DimensionRef(high), DimensionRef(other))
    column = refs[0].definition.column
    assert column is not None
    plan = plan_group("sums", bucketing, refs, EventFilterSpec())
    if plan.rollup is None:
        assert f"{column} is not low-cardinality" in plan.reason, plan.reason
        assert plan.pieces == [type(plan.pieces[0])("raw", bucketing.start, bucketing.end)]
    else:
        assert plan.rollup.name in HIGH_CARDINALITY_ROLLUPS[column], plan.rollup


def test_the_issues_questions_read_rollups() -> None:
    """The questions issue 17 found reading raw events over the whole window."""
    start = datetime(2026, 11, 2, 9, 17, tzinfo=UTC)
    bucketing = single_bucket(TimeWindow(start, start + timedelta(days=7), ZoneInfo("UTC")))
    cases = [
        ((Dimension.MODEL,), EventFilterSpec(kinds=("llm_call",))),
        ((Dimension.GATEWAY, Dimension.STATUS), EventFilterSpec()),
        ((), EventFilterSpec(models=("gpt-4o",))),
        ((), EventFilterSpec(providers=("openai",), is_byok=True)),
        ((Dimension.TOOL, Dimension.MODEL), EventFilterSpec(statuses=("error",))),
    ]
    for dims, spec in cases:
        for plan in _plans(bucketing, tuple(DimensionRef(d) for d in dims), spec):
            assert plan.rollup is not None, (dims, spec, plan.reason)
            assert [p.grain for p in plan.pieces][1:-1] != ["raw"], plan.pieces
    # agents with isByok (the agents view's three questions): agent_modes
    byok = EventFilterSpec(is_byok=True)
    for dims, kinds in (
        ((Dimension.AGENT,), ("agent_run",)),
        ((Dimension.AGENT,), ()),
        ((Dimension.AGENT, Dimension.AGENT_INSTANCE), ()),
    ):
        refs = tuple(DimensionRef(d) for d in dims)
        plan = plan_group("sums", bucketing, refs, EventFilterSpec(is_byok=True, kinds=kinds))
        assert plan.source == "rollup:agent_modes", plan.reason
    plan = plan_group(
        "n", bucketing, (DimensionRef(Dimension.AGENT),), byok, distinct="agent_instance_id"
    )
    assert plan.source == "rollup:agent_modes", plan.reason
    # latency by model for LLM calls: the models view's histogram, not base nor raw events
    plan = plan_group(
        "latency", bucketing, (DimensionRef(Dimension.MODEL),), cases[0][1], histogram=True
    )
    assert plan.source == "histogram:model_details", plan.source
    # ... which is kept on PostgreSQL only: SQLite reads the base histogram
    for dialect, source in (
        (Dialect.POSTGRESQL, "histogram:model_details"),
        (Dialect.SQLITE, "histogram:base"),
    ):
        plan = plan_group(
            "latency",
            bucketing,
            (DimensionRef(Dimension.MODEL),),
            cases[0][1],
            histogram=True,
            dialect=dialect,
        )
        assert plan.source == source, (dialect, plan.source)


# ---- values: planned answers equal a recomputation, and the raw path's, on both databases

COVERED_NAMES = [d.value for d in COVERED if d not in (Dimension.HOUR_OF_DAY,)]
METRIC_NAMES = [
    "REQUESTS",
    "ERRORS",
    "COST_USD",
    "AVG_LATENCY_MS",
    "P50_LATENCY_MS",
    "P95_LATENCY_MS",
    "P99_LATENCY_MS",
    "MAX_LATENCY_MS",
    "P95_TTFT_MS",
    "UNIQUE_MODELS",
    "UNIQUE_TOOLS",
    "UNIQUE_GATEWAYS",
]
GRAPHQL_FILTERS: dict[str, Any] = {
    "providers": ["openai", "anthropic"],
    "models": ["m-small", "m-large"],
    "kinds": ["llm_call", "tool_call"],
    "statuses": ["error", "success"],
    "departments": ["d-eng"],
    "tools": ["search"],
    "mcpServers": ["github"],
    "gateways": ["gw1"],
    "protocols": ["mcp"],
    "requestTypes": ["chat"],
    "billingModes": ["byok"],
    "policies": ["p1"],
    "statusCodes": [200, 429, 503],
}


@st.composite
def covered_questions(draw: st.DrawFn) -> dict[str, Any]:
    start_s = draw(st.integers(0, int(SPAN.total_seconds()) - 4 * 3600))
    length = draw(st.integers(3 * 3600, int(SPAN.total_seconds()) - start_s))
    names = draw(st.lists(st.sampled_from(sorted(GRAPHQL_FILTERS)), max_size=3, unique=True))
    spec: dict[str, Any] = {
        n: draw(st.lists(st.sampled_from(GRAPHQL_FILTERS[n]), min_size=1, unique=True))
        for n in names
    }
    if draw(st.integers(0, 4)) == 0:
        spec["isByok"] = draw(st.booleans())
    return {
        "start": BASE + timedelta(seconds=start_s, minutes=draw(st.integers(0, 59))),
        "length": timedelta(seconds=length),
        "zone": draw(st.sampled_from(WHOLE_HOUR_ZONES)),
        "granularity": draw(st.sampled_from([None, "DAY"])),
        "dimensions": draw(st.lists(st.sampled_from(COVERED_NAMES), max_size=2, unique=True)),
        "filter": spec,
    }


async def _plans_of(api: Api, key: str, q: dict[str, Any]) -> list[dict[str, Any]]:
    start: datetime = q["start"]
    variables = {
        "q": {
            "metrics": METRIC_NAMES,
            "range": {
                "start": start.isoformat(),
                "end": (start + q["length"]).isoformat(),
                "timezone": q["zone"],
            },
            "dimensions": [{"dimension": d} for d in q["dimensions"]],
            "filter": graphql_filter(q["filter"]),
            "granularity": q["granularity"],
            "limit": 10_000,
        }
    }
    query = "query($q: MetricsQueryInput!) { metrics(query: $q) { totalRows } }"
    response = await api.client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["extensions"]["plans"]


@hypothesis_settings(
    max_examples=int(os.environ.get("TALLYQL_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=st.lists(event_fields, min_size=1, max_size=60), q=covered_questions())
async def test_covered_questions_equal_raw_events(
    api: Api, drawn: list[dict[str, Any]], q: dict[str, Any]
) -> None:
    events = [property_event(i, d) for i, d in enumerate(drawn)]
    key = await workspace_with(api, events)
    plans = await _plans_of(api, key, q)
    assert plans and all(p["source"] != "raw" for p in plans), plans
    want = expected(events, q)
    compare(want, await ask(api, key, q, raw=False), "planned")
    compare(want, await ask(api, key, q, raw=True), "raw", exact=True)
