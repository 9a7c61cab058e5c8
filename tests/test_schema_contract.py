"""The schema as a frontend developer reads it: counts are integers, every element is described,
every positional `values` list is labelled, and counts arrive as exact JSON integers."""

from __future__ import annotations

import re
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
)

from tallyql.ingest.fields import MAX_TOKENS  # the most one event reports in a token field
from tallyql.schema import build_schema
from tests.conftest import Api
from tests.support.helpers import llm

BUILT_INS = {"String", "Int", "Float", "Boolean", "ID"}


def _schema() -> GraphQLSchema:
    return build_schema()._schema


def _fields(schema: GraphQLSchema) -> list[tuple[str, str, Any]]:
    """(type, field, field or input field) for every object, interface and input type."""
    out = []
    for name, t in schema.type_map.items():
        if name.startswith("__"):
            continue
        if isinstance(t, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            out += [(name, field_name, f) for field_name, f in t.fields.items()]
    return out


def _arguments(schema: GraphQLSchema) -> list[tuple[str, str, Any]]:
    return [
        (type_name, f"{field_name}({arg_name})", arg)
        for type_name, field_name, f in _fields(schema)
        if isinstance(f, GraphQLField)
        for arg_name, arg in f.args.items()
    ]


# A Float must carry a unit or be a fraction: money, milliseconds, rates, shares, prices per
# million tokens. The names outside that rule are listed with why each is not a count.
FLOAT_NAME = re.compile(r"(Usd|Ms|Rate|Share|Percent|Ratio|PerMtok)$|^(share|ratio|percent)")
FLOAT_ALLOWED = {
    "AlertEvent.threshold": "compared with any metric, some fractional",
    "AlertEvent.value": "the measured metric, any unit",
    "AlertFiring.threshold": "as AlertEvent.threshold",
    "AlertFiring.value": "as AlertEvent.value",
    "AlertFiring.resolvedValue": "as AlertEvent.value",
    "AlertRule.threshold": "as AlertEvent.threshold",
    "AlertRule.lastValue": "as AlertEvent.value",
    "AlertRuleInput.threshold": "as AlertEvent.threshold",
    "AlertRulePatch.threshold": "as AlertEvent.threshold",
    "BreakdownNode.values": "mixed metrics, labelled by BreakdownConnection.metrics",
    "Budget.daysRemaining": "fractional days",
    "ComparisonValue.value": "a session figure (cost, duration, tokens) of any unit",
    "ComparisonValue.median": "a median, fractional",
    "DailyCostByModel.totals": "USD per day",
    "Distribution.p50": "a percentile of durations or costs",
    "Distribution.avg": "a mean",
    "Distribution.p95": "a percentile",
    "Figure.value": "any metric's value",
    "MetricGroup.total": "a coding agent's metric, in the unit it declares",
    "MetricGroup.last": "as MetricGroup.total",
    "MetricGroup.eventsTotal": "as MetricGroup.total",
    "MetricGroup.minimum": "as MetricGroup.total",
    "MetricGroup.maximum": "as MetricGroup.total",
    "MetricsColumns.values": "mixed metrics, labelled by MetricsColumns.metrics",
    "MetricsRow.values": "mixed metrics, labelled by MetricsResult.metrics",
    "ModelComparison.avgInputTokens": "a mean, fractional",
    "ModelComparison.avgOutputTokens": "a mean, fractional",
    "ModelCostSeries.values": "USD per day",
    "OverviewChange.current": "any overview figure, USD and rates included",
    "OverviewChange.previous": "as current",
    "OverviewChange.absolute": "as current",
    "OverviewChange.relative": "a fraction",
    "Query.hourlyDistribution": "any metric's value per hour",
    "Series.values": "any metric's value per bucket, labelled by Series.metric",
    "Series.previous": "as values",
    "SessionTimeline.bucketSeconds": "a duration in seconds",
    "SessionTimeline.costUsd": "USD per bucket",
    "SessionTimeline.cumulativeCostUsd": "USD",
}
# Names that count something; such a field must be an Int or a Long.
COUNT_NAME = re.compile(
    r"^(requests|errors|calls|runs|executions|blocked|count|instances|tools|users|"
    r"workspaces|sessions|events)$|Tokens$|Requests$|Calls$|Errors$|Bytes$|Count$|"
    r"^(unique|active)[A-Z]|Used$|^mcpServers$"
)


def test_no_float_field_counts_things() -> None:
    schema = _schema()
    floats = [
        f"{t}.{name}"
        for t, name, f in _fields(schema) + _arguments(schema)
        if get_named_type(f.type).name == "Float"
    ]
    assert floats, "the walk found no Float at all: it is broken"
    unexplained = [f for f in floats if not FLOAT_NAME.search(f.split(".")[1])]
    assert sorted(set(unexplained) - set(FLOAT_ALLOWED)) == []
    assert sorted(set(FLOAT_ALLOWED) - set(floats)) == [], "stale allow-list entries"
    counted_as_float = [
        f"{t}.{name}"
        for t, name, f in _fields(schema)
        if COUNT_NAME.search(name)
        and get_named_type(f.type).name == "Float"
        and not FLOAT_NAME.search(name)
        and f"{t}.{name}" not in FLOAT_ALLOWED
    ]
    assert counted_as_float == []
    counts_as_integers = [
        f"{t}.{name}"
        for t, name, f in _fields(schema)
        if COUNT_NAME.search(name) and get_named_type(f.type).name in ("Int", "Long")
    ]
    assert len(counts_as_integers) > 60  # the name rule does see the counts
    assert "Overview.totalRequests" in {
        f"{t}.{name}" for t, name, f in _fields(schema) if get_named_type(f.type).name == "Long"
    }


def _undescribed(schema: GraphQLSchema) -> list[str]:
    missing = []
    for name, t in schema.type_map.items():
        if name.startswith("__") or name in BUILT_INS:
            continue
        if not t.description:
            missing.append(f"type {name}")
        if isinstance(t, GraphQLEnumType):
            missing += [
                f"enum {name}.{v}" for v, value in t.values.items() if not value.description
            ]
    missing += [f"field {t}.{n}" for t, n, f in _fields(schema) if not f.description]
    missing += [f"argument {t}.{n}" for t, n, a in _arguments(schema) if not a.description]
    return sorted(missing)


def test_every_schema_element_is_described() -> None:
    schema = _schema()
    assert len(_fields(schema)) > 500 and len(_arguments(schema)) > 100  # the walk sees it all
    assert _undescribed(schema) == []


def test_every_values_list_is_labelled() -> None:
    """A positional `values` list sits on a type that names its metric(s) or buckets, or on a
    node whose connection or result does; the labeller is checked to exist."""
    schema = _schema()
    labelled_by = {
        "BreakdownNode": ("BreakdownConnection", "metrics"),
        "MetricsRow": ("MetricsResult", "metrics"),
        "ModelCostSeries": ("DailyCostByModel", "buckets"),
    }
    holders = [t for t, name, _ in _fields(schema) if name in ("values", "previous", "keys")]
    assert "Series" in holders and "BreakdownNode" in holders
    for holder in holders:
        fields = schema.type_map[holder].fields  # type: ignore[attr-defined]
        if not any(str(fields[n].type).startswith("[") for n in ("values", "keys") if n in fields):
            continue  # e.g. OverviewChange.previous is one number
        if {"metric", "metrics"} & set(fields):
            continue
        owner, label = labelled_by[holder]
        assert label in schema.type_map[owner].fields, (holder, owner)  # type: ignore[attr-defined]


async def test_counts_are_exact_json_integers(api: Api) -> None:
    key = await api.key()
    # their sum is above 2^31: a Long, and an exact integer in JSON
    tokens = [MAX_TOKENS] * 30 + [123_457, 1]
    assert sum(tokens) > 2**31
    await api.ingest(
        key,
        [
            llm(f"e{i}", input_tokens=n, output_tokens=i, latency_ms=100.0 + i)
            for i, n in enumerate(tokens)
        ]
        + [llm("t", kind="tool_call", tool="search", input_tokens=0, output_tokens=0)],
    )
    data = await api.data(
        key,
        """{ overview(range: {preset: LAST_24H}) {
              totalRequests inputTokens outputTokens totalTokens modelsUsed activeTools }
             breakdown(dimension: KIND, metrics: [REQUESTS, INPUT_TOKENS, AVG_LATENCY_MS],
                       range: {preset: LAST_24H}) { metrics nodes { key values } }
             toolUsage(range: {preset: LAST_24H}) { executions uniqueTools hourlyDistribution }
           }""",
    )
    overview = data["overview"]
    expected = {
        "totalRequests": len(tokens) + 1,
        "inputTokens": sum(tokens),
        "outputTokens": sum(range(len(tokens))),
        "totalTokens": sum(tokens) + sum(range(len(tokens))),
        "modelsUsed": 1,
        "activeTools": 1,
    }
    assert overview == expected
    assert all(type(v) is int for v in overview.values())
    breakdown = data["breakdown"]
    assert breakdown["metrics"] == ["REQUESTS", "INPUT_TOKENS", "AVG_LATENCY_MS"]
    by_kind = {n["key"]: n["values"] for n in breakdown["nodes"]}
    # Counts in a positional list are JSON numbers of integral value (GraphQL Float), exact.
    assert by_kind["llm_call"][:2] == [len(tokens), sum(tokens)]
    assert by_kind["llm_call"][1] == float(sum(tokens)) and sum(tokens) < 2**53
    assert by_kind["llm_call"][2] == 100.0 + sum(range(len(tokens))) / len(tokens)
    tools = data["toolUsage"]
    assert tools["executions"] == 1 and type(tools["executions"]) is int
    assert tools["uniqueTools"] == 1
    assert sum(tools["hourlyDistribution"]) == 1 and len(tools["hourlyDistribution"]) == 24
    assert all(type(v) is int for v in tools["hourlyDistribution"])
