"""ask, chartPresets, chart and the chart images on demo traffic, on both databases: answers
round-trip through metrics(query:), values match a recount of the stored events, nonsense is
not understood, images are real PNG and SVG, roles hold."""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tallyql.auth.principal import Role
from tallyql.clock import clock
from tallyql.config import Settings
from tallyql.demo.load import load_demo
from tallyql.engine.known_values import forget
from tallyql.http.charts import forget_images
from tallyql.money import NANO_PER_USD
from tests.conftest import Api, running_api
from tests.support.ask_corpus import CASES, NONSENSE
from tests.support.helpers import event_rows

ASK = """query($q: String!, $tz: String!) {
  ask(question: $q, timezone: $tz) {
    understood query interpretation notes summary suggestions
    result { metrics dimensions totalRows truncated rows { bucket keys values } }
    chart { kind title vegaLite }
  }
}"""
METRICS = """query($q: MetricsQueryInput!) {
  metrics(query: $q) { metrics dimensions totalRows truncated rows { bucket keys values } }
}"""
PRESETS = "{ chartPresets { id title description kind query } }"
CHART = """query($p: ID, $q: MetricsQueryInput, $r: TimeRangeInput) {
  chart(preset: $p, query: $q, range: $r) { kind title vegaLite }
}"""


@pytest.fixture
async def demo(api: Api) -> AsyncIterator[tuple[Api, str]]:
    """Three days of demo traffic (seed 7), the clock standing still so that every window
    the tests and the server resolve is one."""
    forget()
    moment = datetime.now(UTC).replace(second=0, microsecond=0)
    with clock.pinned(moment, tick=False):
        await load_demo(api.services, "demo", 1_500, 3, seed=7)
        yield api, await api.key("demo", Role.VIEWER)
    forget()


async def _ask(api: Api, key: str, question: str, tz: str = "UTC") -> dict[str, Any]:
    return (await api.data(key, ASK, {"q": question, "tz": tz}))["ask"]


async def _round_trip(api: Api, key: str, answer: dict[str, Any]) -> None:
    """The answer's query, sent to metrics(query:) unchanged, gives the answer's rows."""
    again = (await api.data(key, METRICS, {"q": answer["query"]}))["metrics"]
    assert again == answer["result"]


async def test_corpus_questions_round_trip_through_metrics(demo: tuple[Api, str]) -> None:
    api, key = demo
    for question, want in CASES[::6]:
        answer = await _ask(api, key, question)
        assert answer["understood"], (question, answer["interpretation"])
        assert answer["query"]["metrics"] == want["metrics"]
        await _round_trip(api, key, answer)
        assert answer["chart"]["vegaLite"]["$schema"].endswith("vega-lite/v5.json")


_GROUPS = ["", " by model", " per team", " for each gateway", " by provider", " per tool",
           " by hour of day", " by agent", " by request type", " per user"]  # fmt: skip
_VALUES = ["", " on gpt-4o-mini", " for the engineering team", " for anthropic",
           " through openrouter", " on claude-sonet-4-5", " for the support bot",
           " for github tool calls", " for Gemini 2.5 Flash"]  # fmt: skip
_TIMES = ["", " today", " yesterday", " this week", " last week", " in the last 3 days",
          " in the past 6 hours", " this month", " last month", " since december 1",
          " between nov 20 and dec 5", " in november"]  # fmt: skip
_METRICS = ["cost", "requests", "input and output tokens", "p95 latency", "errors",
            "error rate", "unique users", "tool calls", "failed tool calls", "spend",
            "ttft"]  # fmt: skip


@st.composite
def questions(draw: st.DrawFn) -> tuple[str, str]:
    if draw(st.booleans()):
        text = draw(st.sampled_from([q for q, _ in CASES]))
    else:
        top = draw(st.sampled_from(["", "top 3 ", "bottom 2 ", "daily ", "hourly "]))
        text = (
            top
            + draw(st.sampled_from(_METRICS))
            + draw(st.sampled_from(_GROUPS))
            + draw(st.sampled_from(_VALUES))
            + draw(st.sampled_from(_TIMES))
            + draw(st.sampled_from(["", " over time", " per day"]))
        )
    tz = draw(st.sampled_from(["UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Kolkata"]))
    return text, tz


@hypothesis_settings(
    max_examples=int(os.environ.get("TALLYQL_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(asked=questions())
async def test_every_answer_round_trips(demo: tuple[Api, str], asked: tuple[str, str]) -> None:
    """Whatever is asked, an understood answer's query gives the same rows through
    metrics(query:), and its chart holds exactly those rows."""
    api, key = demo
    question, tz = asked
    answer = await _ask(api, key, question, tz)
    if not answer["understood"]:
        assert answer["suggestions"] and answer["result"] is None
        return
    await _round_trip(api, key, answer)
    data = answer["chart"]["vegaLite"]["data"]["values"]
    result = answer["result"]
    if answer["chart"]["kind"] != "TABLE":
        assert len(data) == len(result["rows"]) * len(result["metrics"])
        assert [d["Value"] for d in data] == [v for r in result["rows"] for v in r["values"]]


async def test_values_match_a_recount_of_the_stored_events(demo: tuple[Api, str]) -> None:
    api, key = demo
    rows = await event_rows(api.services)
    answer = await _ask(api, key, "requests by provider in the last 7 days")
    got = {r["keys"][0]: r["values"][0] for r in answer["result"]["rows"]}
    assert got == dict(Counter(r["provider"] for r in rows))
    answer = await _ask(api, key, "tool calls by tool in the last 7 days")
    got = {r["keys"][0]: r["values"][0] for r in answer["result"]["rows"]}
    assert got == dict(Counter(r["tool"] for r in rows if r["kind"] == "tool_call"))
    # the summary's total is the whole window's cost
    answer = await _ask(api, key, "cost by model in the last 7 days")
    total = sum(r["cost_nanousd"] for r in rows) / NANO_PER_USD
    assert f"${total:,.2f}" in answer["summary"]
    by_model = Counter()
    for r in rows:
        by_model[r["model"]] += r["cost_nanousd"]
    best, cost = by_model.most_common(1)[0]
    assert answer["summary"].startswith(
        f"{best} has the largest cost in USD: ${cost / NANO_PER_USD:,.2f}"
    )
    assert f"({cost / sum(by_model.values()):.0%} of the total)" in answer["summary"]
    # a filter by a known value with a typo
    answer = await _ask(api, key, "requests of gpt-4o-mni in the last 7 days")
    assert answer["query"]["filter"] == {"models": ["gpt-4o-mini"]}
    want = sum(1 for r in rows if r["model"] == "gpt-4o-mini")
    assert answer["result"]["rows"][0]["values"] == [want]
    # a group filter counts its current members' events
    answer = await _ask(api, key, "requests for the sales team in the last 7 days")
    assert answer["query"]["filter"] == {"groups": ["sales"]}
    from tallyql.demo.catalog import build_world

    members = set(build_world(7).groups["sales"])
    want = sum(1 for r in rows if r["user_id"] in members)
    assert answer["result"]["rows"][0]["values"] == [want]


async def test_nonsense_is_answered_not_understood(api: Api) -> None:
    forget()
    key = await api.key("acme", Role.VIEWER)
    for question in NONSENSE:
        answer = await _ask(api, key, question)
        assert answer["understood"] is False, question
        assert answer["query"] is None and answer["result"] is None and answer["chart"] is None
        assert answer["suggestions"]


async def test_a_question_the_engine_refuses_is_not_understood(demo: tuple[Api, str]) -> None:
    api, key = demo
    answer = await _ask(api, key, "requests per minute in the last 90 days")
    assert answer["understood"] is False
    assert answer["query"]["granularity"] == "MINUTE"  # what was read stays visible
    assert "cannot answer" in answer["summary"] and answer["suggestions"]


async def test_roles(api: Api) -> None:
    forget()
    for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN):
        key = await api.key("acme", role)
        assert (await _ask(api, key, "cost today"))["understood"]
        assert len((await api.data(key, PRESETS))["chartPresets"]) == 6
    ingest = await api.key("acme", Role.INGEST)
    for query, variables in ((ASK, {"q": "cost today", "tz": "UTC"}), (PRESETS, None)):
        body = await api.graphql(ingest, query, variables)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    response = await api.client.post(
        "/graphql", json={"query": ASK, "variables": {"q": "cost today", "tz": "UTC"}}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_chart_presets_draw_their_query_rows(demo: tuple[Api, str]) -> None:
    api, key = demo
    presets = (await api.data(key, PRESETS))["chartPresets"]
    assert [p["id"] for p in presets] == [
        "cost-by-model",
        "tokens-over-time",
        "daily-cost-trend",
        "requests-by-provider",
        "latency-by-model",
        "cost-by-request-type",
    ]
    week = {"preset": "LAST_7D", "timezone": "Europe/Paris"}
    for preset in presets:
        chart = (await api.data(key, CHART, {"p": preset["id"], "r": week}))["chart"]
        assert chart["kind"] == preset["kind"] and chart["title"] == preset["title"]
        rows = (await api.data(key, METRICS, {"q": {**preset["query"], "range": week}}))["metrics"][
            "rows"
        ]
        assert rows, preset["id"]
        values = [d["Value"] for d in chart["vegaLite"]["data"]["values"]]
        assert values == [v for r in rows for v in r["values"]]
    # a custom query instead of a preset
    query = {"metrics": ["REQUESTS"], "range": week, "dimensions": [{"dimension": "KIND"}]}
    chart = (await api.data(key, CHART, {"q": query}))["chart"]
    assert chart["kind"] == "BAR"
    assert chart["title"] == "Requests by kind, the last 7 days, Europe/Paris"
    body = await api.graphql(key, CHART, {"p": "nope"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await api.graphql(key, CHART, {"p": "cost-by-model", "q": query})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def _png_size(body: bytes) -> tuple[int, int]:
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert body[12:16] == b"IHDR"
    width, height = struct.unpack(">II", body[16:24])
    return width, height


async def test_chart_images(demo: tuple[Api, str]) -> None:
    api, key = demo
    forget_images()
    auth = {"Authorization": f"Bearer {key}"}
    for preset in ("cost-by-model", "tokens-over-time", "latency-by-model"):
        response = await api.client.get(f"/v1/charts/{preset}.png", headers=auth)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        width, height = _png_size(response.content)
        assert 600 <= width <= 1200 and 300 <= height <= 900, (width, height)
        assert response.headers["x-tallyql-cache"] == "miss"
        again = await api.client.get(f"/v1/charts/{preset}.png", headers=auth)
        assert again.headers["x-tallyql-cache"] == "hit" and again.content == response.content
        svg = await api.client.get(
            f"/v1/charts/{preset}.svg",
            params={"preset": "LAST_24H", "timezone": "Europe/Paris", "providers": "openai"},
            headers=auth,
        )
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        root = ElementTree.fromstring(svg.content)
        assert root.tag.endswith("svg")
    # twice the pixels at scale 2
    big = await api.client.get("/v1/charts/cost-by-model.png?scale=2", headers=auth)
    small = await api.client.get("/v1/charts/cost-by-model.png", headers=auth)
    assert _png_size(big.content)[0] == 2 * _png_size(small.content)[0]
    # a filter changes the picture
    only = await api.client.get("/v1/charts/cost-by-model.png?providers=anthropic", headers=auth)
    assert only.content != small.content
    for path, status in (
        ("/v1/charts/nope.png", 404),
        ("/v1/charts/cost-by-model.png?format=csv", 400),
        ("/v1/charts/cost-by-model.png?colour=red", 400),
        ("/v1/charts/cost-by-model.png?scale=50", 400),
        ("/v1/ask.png", 400),
    ):
        assert (await api.client.get(path, headers=auth)).status_code == status, path
    response = await api.client.get("/v1/ask.png", params={"q": "cost by model"}, headers=auth)
    assert response.status_code == 200 and response.headers["x-tallyql-understood"] == "true"
    assert response.headers["x-tallyql-interpretation"].startswith("Cost in USD by model")
    _png_size(response.content)
    response = await api.client.get("/v1/ask.png", params={"q": "blorp"}, headers=auth)
    assert response.status_code == 200 and response.headers["x-tallyql-understood"] == "false"
    _png_size(response.content)
    # roles as for reads
    ingest = {"Authorization": f"Bearer {await api.key('demo', Role.INGEST)}"}
    for path in (
        "/v1/charts/cost-by-model.png",
        "/v1/charts/cost-by-model.svg",
        "/v1/ask.png?q=cost",
    ):
        assert (await api.client.get(path, headers=ingest)).status_code == 403
        assert (await api.client.get(path)).status_code == 401


async def test_ask_pays_for_its_questions(settings: Settings, db_kind: str) -> None:
    """An answer's queries are metered like metrics(query:)'s: over the request's budget the
    field fails with COST_LIMIT; a question not understood asks nothing and still answers."""
    forget()
    async with running_api(settings, db_kind) as roomy:
        key = await roomy.key("acme", Role.VIEWER)
        body = await roomy.graphql(key, ASK, {"q": "cost by model per hour this week", "tz": "UTC"})
        spent = body["extensions"]["cost"]["spent"]
        assert body["data"]["ask"]["understood"] and spent > 2
    forget()
    async with running_api(replace(settings, cost_request_limit=2), db_kind) as tight:
        key = await tight.key("acme", Role.VIEWER)
        body = await tight.graphql(key, ASK, {"q": "cost by model per hour this week", "tz": "UTC"})
        assert [e["extensions"]["code"] for e in body["errors"]] == ["COST_LIMIT"]
        body = await tight.graphql(key, ASK, {"q": "blorp", "tz": "UTC"})
        assert "errors" not in body and body["data"]["ask"]["understood"] is False
    forget()


async def test_top_n_over_time_ranks_over_the_whole_range(demo: tuple[Api, str]) -> None:
    """The top 3 models by cost over the whole window are chosen first; their daily series
    are drawn and the other models are left out (the query says which, by a filter)."""
    api, key = demo
    rows = await event_rows(api.services)
    answer = await _ask(api, key, "top 3 models by cost per day in the last 7 days")
    assert answer["understood"], answer["interpretation"]
    by_model: Counter[str] = Counter()
    for r in rows:
        if r["model"] is not None:
            by_model[r["model"]] += r["cost_nanousd"]
    top = [m for m, _ in by_model.most_common(3)]
    assert answer["query"]["filter"] == {"models": top}
    assert answer["query"]["granularity"] == "DAY"
    series: Counter[str] = Counter()
    for row in answer["result"]["rows"]:
        series[row["keys"][0]] += row["values"][0]
    assert set(series) == set(top)
    for model in top:  # each series adds up to the model's whole-window cost
        assert series[model] == pytest.approx(by_model[model] / NANO_PER_USD, abs=1e-6)
    assert "the top 3 models by cost in USD over the whole range" in answer["interpretation"]
    assert any("the other groups are left out" in n for n in answer["notes"])
    assert answer["chart"]["kind"] == "STACKED_AREA"
    await _round_trip(api, key, answer)


async def test_a_metadata_key_groups(demo: tuple[Api, str]) -> None:
    api, key = demo
    rows = await event_rows(api.services)
    answer = await _ask(api, key, "requests by feature in the last 7 days")
    assert answer["understood"], answer["interpretation"]
    assert answer["query"]["dimensions"] == [{"dimension": "METADATA", "metadataKey": "feature"}]
    got = {r["keys"][0]: r["values"][0] for r in answer["result"]["rows"]}
    want = Counter((r["metadata"] or {}).get("feature") for r in rows)
    assert got == dict(want.most_common(20))
    assert answer["interpretation"].startswith("Requests by metadata feature")
    await _round_trip(api, key, answer)
