"""Random events and metric questions for the property tests, and their plain-Python answers
(shared by test_engine_properties and test_coverage). Timestamps straddle the 2026 DST changes
of Europe and the US."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from tallyql.engine.registry import Dimension, Metric
from tallyql.storage.directory import set_group_members, set_user_departments
from tallyql.storage.workspaces import get_or_create_workspace
from tests.conftest import Api
from tests.support import reference

BASE = datetime(2026, 10, 23, tzinfo=UTC)


SPAN = timedelta(days=12)


ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")


METRICS = [m.value for m in Metric]


MEMBERS = {"eng": {"u1", "u2"}, "ops": {"u2", "u3"}}


DEPARTMENTS = {"u1": "d-eng", "u2": "d-eng", "u3": "d-ops"}  # u4 has none


_counter = itertools.count()


def _maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def property_event(index: int, draw_data: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"ev-{index}", **draw_data}


event_fields = st.fixed_dictionaries(
    {
        "timestamp": st.integers(0, int(SPAN.total_seconds()) - 1).map(
            lambda s: (BASE + timedelta(seconds=s, microseconds=s % 7 * 1000)).isoformat()
        ),
    },
    optional={
        "provider": _maybe(["openai", "anthropic", "google"]),
        "model": _maybe(["m-small", "m-large", "m-mini"]),
        "kind": _maybe(["llm_call", "tool_call", "agent_run", "http_request"]),
        "status": _maybe(["success", "success", "error", "blocked"]),
        "status_code": _maybe([101, 200, 201, 302, 400, 404, 429, 500, 503, 504]),
        "user_id": _maybe(["u1", "u2", "u3", "u4"]),
        "agent_id": _maybe(["ag1", "ag2"]),
        "agent_instance_id": _maybe(["i1", "i2", "i3"]),
        "node": _maybe(["plan", "act"]),
        "tool": _maybe(["search", "sql"]),
        "mcp_server": _maybe(["github", "db"]),
        "gateway": _maybe(["gw1", "gw2"]),
        "protocol": _maybe(["openai", "mcp"]),
        "api_key_id": _maybe(["k1", "k2"]),
        "caller_ip": _maybe(["10.0.0.1", "10.0.0.2"]),
        "request_type": _maybe(["chat", "embedding"]),
        "billing_mode": _maybe(["platform", "byok"]),
        "is_byok": st.booleans(),
        "policy_id": _maybe(["p1", "p2"]),
        "policy_name": _maybe(["PII guard", "Prod writes"]),
        "session_id": _maybe(["s1", "s2", "s3"]),
        "tags": st.lists(_maybe(["a", "b", "c"]), max_size=3, unique=True),
        "metadata": st.fixed_dictionaries({}, optional={"env": _maybe(["prod", "dev"])}),
        "latency_ms": st.floats(0.0, 120_000.0, allow_nan=False),
        "ttft_ms": st.floats(0.5, 5_000.0, allow_nan=False),
        "input_tokens": st.integers(0, 50_000),
        "output_tokens": st.integers(0, 5_000),
        "cost_usd": st.integers(0, 5_000_000).map(lambda n: n / 1_000_000),
        "request_bytes": st.integers(0, 100_000),
        "response_bytes": st.integers(0, 100_000),
    },
)


# WORKSPACE is one value per test workspace here; tests/test_operator.py covers it
dimension_choices = [
    d.value for d in Dimension if d not in (Dimension.METADATA, Dimension.WORKSPACE)
]


@st.composite
def questions(draw: st.DrawFn) -> dict[str, Any]:
    start_s = draw(st.integers(0, int(SPAN.total_seconds()) - 7200))
    length = draw(st.integers(3600, int(SPAN.total_seconds()) - start_s))
    every = [*dimension_choices, "METADATA"]
    dims = draw(st.lists(st.sampled_from(every), max_size=2, unique=True))
    spec: dict[str, Any] = {}
    for name, values in (
        ("providers", ["openai", "anthropic"]),
        ("kinds", ["llm_call", "tool_call"]),
        ("statuses", ["error", "blocked"]),
        ("users", ["u1", "u3"]),
        ("groups", ["eng"]),
        ("departments", ["d-eng", "d-ops"]),
        ("tags", ["a"]),
        ("statusCodes", [200, 429, 500]),
    ):
        if draw(st.integers(0, 5)) == 0:
            spec[name] = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
    if draw(st.integers(0, 6)) == 0:
        spec["metadata"] = [{"key": "env", "value": "prod"}]
    return {
        "start": BASE + timedelta(seconds=start_s, minutes=draw(st.integers(0, 59))),
        "length": timedelta(seconds=length),
        "zone": draw(st.sampled_from(ZONES)),
        "granularity": draw(st.sampled_from([None, "HOUR", "DAY", "WEEK"])),
        "dimensions": dims,
        "filter": spec,
    }


QUERY = """query($q: MetricsQueryInput!) {
  metrics(query: $q) { totalRows rows { bucket keys values } }
}"""


def graphql_filter(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The filter as GraphQL takes it (enum values in upper case)."""
    out = {
        k: [v.upper() for v in vals] if k in ("kinds", "statuses") else vals
        for k, vals in spec.items()
    }
    return out or None


async def ask(api: Api, key: str, q: dict[str, Any], raw: bool) -> dict[tuple[Any, ...], list]:
    headers = {"Authorization": f"Bearer {key}"}
    if raw:
        headers["X-Tallyql-Plan"] = "raw"
    start: datetime = q["start"]
    end = start + q["length"]
    variables = {
        "q": {
            "metrics": METRICS,
            "range": {"start": start.isoformat(), "end": end.isoformat(), "timezone": q["zone"]},
            "dimensions": [
                {"dimension": d, **({"metadataKey": "env"} if d == "METADATA" else {})}
                for d in q["dimensions"]
            ],
            "filter": graphql_filter(q["filter"]),
            "granularity": q["granularity"],
            "limit": 10_000,
        }
    }
    response = await api.client.post(
        "/graphql", json={"query": QUERY, "variables": variables}, headers=headers
    )
    body = response.json()
    assert "errors" not in body, body
    rows = body["data"]["metrics"]["rows"]
    return {(r["bucket"], *r["keys"]): r["values"] for r in rows}


def expected(events: list[dict[str, Any]], q: dict[str, Any]) -> dict[tuple[Any, ...], Any]:
    start: datetime = q["start"]
    return reference.aggregate(
        [reference.normalise(e, DEPARTMENTS) for e in events],
        METRICS,
        [(d, "env" if d == "METADATA" else None) for d in q["dimensions"]],
        start,
        start + q["length"],
        ZoneInfo(q["zone"]),
        q["granularity"],
        q["filter"],
        MEMBERS,
    )


def compare(
    want: dict[tuple[Any, ...], Any],
    got: dict[tuple[Any, ...], list],
    label: str,
    exact: bool = False,
) -> None:
    """`exact`: the raw path's percentiles are exact, not within the sketch's 1%."""
    assert set(got) == set(want), f"{label}: groups differ: {set(got) ^ set(want)}"
    for key, values in want.items():
        for metric, actual in zip(METRICS, got[key], strict=True):
            assert reference.close(values[metric], actual, metric, exact), (
                f"{label} {key} {metric}: expected {values[metric]}, got {actual}"
            )


async def workspace_with(api: Api, events: list[dict[str, Any]]) -> str:
    name = f"prop-{next(_counter)}"
    key = await api.key(workspace=name)
    async with api.services.db.write() as conn:
        workspace_id = await get_or_create_workspace(conn, name)
        for group, users in MEMBERS.items():
            await set_group_members(conn, workspace_id, group, users)
        for user, department in DEPARTMENTS.items():
            await set_user_departments(conn, workspace_id, [user], department)
    result = await api.services.ingest.ingest(workspace_id, events)
    assert result.rejected == 0, result.errors
    return key
