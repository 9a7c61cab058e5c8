"""The agents view filtered by provider, model or gateway reads the `agent_models` rollup
(its agents, their instances, runs and nodes), raw events only at the window's ragged edges,
and answers exactly as raw events do, on both databases; explain says why when it still
reads raw events."""

from __future__ import annotations

import importlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import text

from tallyql.config import Settings
from tallyql.engine.query.buckets import single_bucket
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.planner import plan_group
from tallyql.engine.query.registry import Dimension, DimensionRef
from tallyql.engine.query.timerange import TimeWindow
from tallyql.storage.migrate import _config, upgrade
from tallyql.storage.rollups.compaction import compact
from tests.conftest import Api, running_api
from tests.support.helpers import iso, llm

MIGRATION = importlib.import_module("tallyql.storage.migrations.versions.0024_agent_models")

START = datetime(2026, 11, 17, 0, 0, tzinfo=UTC)
AGENTS = """query($range: TimeRangeInput!, $filter: EventFilter, $order: AgentOrder!) {
  agents(range: $range, filter: $filter, orderBy: $order, first: 25) {
    totalCount
    nodes {
      agentId runs successRate avgRunDurationMs requests errors inputTokens outputTokens
      totalTokens costUsd instances
      nodes { node requests errors errorRate costUsd avgLatencyMs avgRunDurationMs }
    }
  }
}"""
RANGE = {"start": "2026-11-17T03:17:00Z", "end": "2026-11-19T21:43:00Z"}
FILTERS: list[dict[str, Any]] = [
    {"models": ["m1"]},
    {"providers": ["anthropic"]},
    {"gateways": ["gw1"]},
    {"models": ["m1", "m3"], "gateways": ["gw2"]},
    {"providers": ["openai"], "statuses": ["ERROR"]},
    {"models": ["m2"], "agents": ["a1", "a3"]},
    {"providers": ["anthropic"], "kinds": ["LLM_CALL", "AGENT_RUN"]},
    {"gateways": ["gw2"], "isByok": True},
]


def _events() -> list[dict[str, Any]]:
    """Three days of agent traffic: three agents, instances, nodes, kinds, providers, models
    and gateways; latencies in halves, so float sums are exact in any order."""
    out = []
    for i in range(240):
        event = llm(
            f"g{i}",
            timestamp=iso(START + timedelta(minutes=17 * i + i % 5)),
            provider=("openai", "anthropic")[i % 2],
            model=("m1", "m2", "m3")[i % 3],
            latency_ms=0.5 * (i % 29) + 2,
            cost_usd=0.001 * (i % 11),
            status=("success", "error", "success", "blocked", "success", "error", "success")[i % 7],
            kind=("llm_call", "tool_call", "agent_run", "llm_call", "http_request")[i % 5],
            input_tokens=i % 13,
            output_tokens=i % 7,
            is_byok=i % 6 == 1,
        )
        if i % 7:
            event["agent_id"] = ("a1", "a2", "a3")[i % 3 if i % 2 else (i // 2) % 3]
            event["agent_instance_id"] = f"{event['agent_id']}-{i % 9}"
        if i % 4 and "agent_id" in event:
            event["node"] = ("plan", "act", "check")[i % 3]
        if i % 3:
            event["gateway"] = ("gw1", "gw2")[i % 2]
        if event["kind"] == "tool_call":
            event["tool"] = "search"
        out.append(event)
    return out


async def _agents(
    api: Api, key: str, filter: dict[str, Any], order: str, raw: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    headers = {"X-Tallyql-Plan": "raw"} if raw else {"X-Tallyql-Explain": "1"}
    body = await api.graphql(
        key, AGENTS, {"range": RANGE, "filter": filter, "order": order}, headers=headers
    )
    assert "errors" not in body, body["errors"]
    return body["data"], body.get("extensions", {}).get("plans", [])


async def test_the_filtered_agents_view_reads_agent_models_and_equals_raw_events(
    api: Api,
) -> None:
    key = await api.key()
    events = _events()
    assert (await api.ingest(key, events))["accepted"] == len(events)
    for filter in FILTERS:
        for order in ("COST", "RUNS"):
            planned, plans = await _agents(api, key, filter, order, raw=False)
            assert planned["agents"]["nodes"] and plans, filter
            for plan in plans:
                assert plan["source"] == "rollup:agent_models", (filter, plan["reason"])
                assert "raw events only at the window's edges" in plan["reason"]
                grains = [p["grain"] for p in plan["pieces"]]
                assert "raw" not in grains[1:-1], grains
            raw, _ = await _agents(api, key, filter, order, raw=True)
            assert planned == raw, filter
    # the figures themselves, from the events: requests, cost and instances for a model
    planned, _ = await _agents(api, key, {"models": ["m1"]}, "COST", raw=False)
    lo, hi = datetime(2026, 11, 17, 3, 17, tzinfo=UTC), datetime(2026, 11, 19, 21, 43, tzinfo=UTC)
    inside = [
        e
        for e in events
        if e["model"] == "m1"
        and "agent_id" in e
        and lo <= datetime.fromisoformat(e["timestamp"]) < hi
    ]
    by_agent = {n["agentId"]: n for n in planned["agents"]["nodes"]}
    assert set(by_agent) == {e["agent_id"] for e in inside}
    for agent, figures in by_agent.items():
        mine = [e for e in inside if e["agent_id"] == agent]
        assert figures["requests"] == len(mine)
        assert figures["instances"] == len({e["agent_instance_id"] for e in mine})
        assert figures["runs"] == sum(e["kind"] == "agent_run" for e in mine)
        assert figures["costUsd"] == pytest.approx(sum(e["cost_usd"] for e in mine), abs=1e-9)


def test_the_planner_sends_filtered_agent_questions_to_agent_models() -> None:
    start = datetime(2026, 11, 2, 9, 17, tzinfo=UTC)
    bucketing = single_bucket(TimeWindow(start, start + timedelta(days=7), ZoneInfo("UTC")))
    agent = (DimensionRef(Dimension.AGENT),)
    node = (DimensionRef(Dimension.AGENT), DimensionRef(Dimension.NODE))
    for spec in (
        EventFilterSpec(models=("m1",)),
        EventFilterSpec(providers=("openai",), kinds=("agent_run",)),
        EventFilterSpec(gateways=("gw1",), statuses=("error",)),
        EventFilterSpec(models=("m1",), agents=("a1",), kinds=("llm_call", "tool_call")),
        EventFilterSpec(providers=("openai",), is_byok=True, billing_modes=("byok",)),
    ):
        for dims in (agent, node):
            assert plan_group("sums", bucketing, dims, spec).source == "rollup:agent_models"
        distinct = plan_group("n", bucketing, agent, spec, distinct="agent_instance_id")
        assert distinct.source == "rollup:agent_models", distinct.reason
    # what older rollups answered stays on them
    assert plan_group("s", bucketing, agent, EventFilterSpec()).source == "rollup:agent_kinds"
    byok = EventFilterSpec(is_byok=True)
    assert plan_group("s", bucketing, agent, byok).source == "rollup:agent_modes"
    # still raw, and explain says why: a model filter with a user, or with an API key
    for spec, dims in (
        (EventFilterSpec(models=("m1",), users=("u1",)), agent),
        (EventFilterSpec(gateways=("gw1",), api_keys=("k1",)), node),
    ):
        plan = plan_group("s", bucketing, dims, spec)
        assert plan.source == "raw"
        assert "agent_id is not low-cardinality" in plan.reason, plan.reason
        assert "agent_models lacks" in plan.reason, plan.reason


async def test_the_backfill_equals_what_the_writer_keeps(api: Api) -> None:
    key = await api.key()
    assert (await api.ingest(key, _events()))["accepted"] == 240
    db = api.services.db
    await compact(db, wait=True)  # PostgreSQL: staged deltas into the tables
    tables = [f"rollup_agent_models_{g}" for g in "hdw"]
    order = ", ".join(("workspace_id", "period", *MIGRATION.AGENT_MODELS))

    async def rows(table: str) -> list[tuple[Any, ...]]:
        async with db.read() as conn:
            return list((await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))).all())

    kept = {t: await rows(t) for t in tables}
    assert all(len(r) > 20 for r in kept.values()), {t: len(r) for t, r in kept.items()}
    async with db.write() as conn:
        for table in tables:
            await conn.execute(text(f"DELETE FROM {table}"))
        await conn.run_sync(MIGRATION.backfill)
    for table in tables:
        assert await rows(table) == kept[table], table


async def _requests(api: Api, tables: list[str]) -> dict[str, int]:
    async with api.services.db.read() as conn:
        return {
            t: int((await conn.execute(text(f"SELECT sum(requests) FROM {t}"))).scalar() or 0)
            for t in tables
        }


def _stage_copy(delta: str, table: str, dims: tuple[str, ...]) -> str:
    """PostgreSQL: stage a copy of a rollup's hour rows in a delta, as a writer of the previous
    revision would have staged batches (the copy counts every event once more)."""
    columns = ", ".join(("workspace_id", "period", *dims, *MIGRATION.SUMS, "latency_max"))
    return f"INSERT INTO {delta} ({columns}) SELECT {columns} FROM {table}"


async def test_a_round_trip_folds_staged_deltas_once(settings: Settings, db_kind: str) -> None:
    """The migration's downgrade and upgrade move staged PostgreSQL deltas between the old and
    new fold groups: none is lost, none is counted twice (`agent_kinds` changes group)."""
    async with running_api(replace(settings, rollup_compaction_seconds=0), db_kind) as api:
        key = await api.key()
        events = _events()
        assert (await api.ingest(key, events))["accepted"] == len(events)
        await compact(api.services.db, wait=True)
        late = [
            llm(f"late{i}", timestamp=iso(START + timedelta(hours=i)), agent_id="a1")
            for i in (3, 30, 60)
        ]
        assert (await api.ingest(key, late))["accepted"] == 3  # staged on PostgreSQL
        async with api.services.db.write() as conn:
            await conn.run_sync(_downgrade, "0022_delta_staged_at")
        staged = db_kind == "postgresql"
        if staged:  # rows staged by writers of the previous revision
            async with api.services.db.write() as conn:
                await conn.execute(
                    text(_stage_copy("rollup_delta_agents", "rollup_agents_h", MIGRATION.AGENTS))
                )
                await conn.execute(
                    text(
                        _stage_copy(
                            "rollup_delta_agent_modes",
                            "rollup_agent_modes_h",
                            MIGRATION.AGENT_MODES,
                        )
                    )
                )
        await upgrade(api.services.db)
        await compact(api.services.db, wait=True)
        n = len(events) + 3
        copied = n if staged else 0
        names = ("agent_kinds", "agents", "user_kinds", "agent_modes", "agent_models")
        tables = [f"rollup_{name}_{g}" for name in names for g in "hdw"]
        want = {t: n if "agent_models" in t else n + copied for t in tables}
        assert await _requests(api, tables) == want


def _downgrade(connection: Any, revision: str) -> None:
    command.downgrade(_config(connection), revision)
