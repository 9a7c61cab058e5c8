"""repriceEvents: stored costs follow today's prices; rollups and sessions follow the events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from genai_prices import data_snapshot
from sqlalchemy import select

from tallyql.costs.repricing import reprice
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.timerange import resolve_window
from tallyql.ingest.pricing import TokenUsage
from tallyql.money import NANO_PER_USD
from tallyql.storage.audit import Actor
from tallyql.storage.tables import audit_events
from tests.conftest import Api
from tests.support.helpers import (
    event_rows,
    iso,
    llm,
    session_model_rows,
    session_rows,
    workspace_id_of,
)
from tests.support.price_changes import REPRICE, create, override_nano
from tests.support.reference_pricing import reference_cost_nano

GPT4O = (3.0, 9.0, 1.0, None, None)
HOUSE = (0.5, 1.5, None, None, None)


def _events(now: datetime) -> list[dict[str, Any]]:
    out = []
    for day in range(3):
        ts = now - timedelta(days=day, minutes=7)
        for n in range(3):
            tokens = {"input_tokens": 1_000 * (n + 1), "output_tokens": 50 * (n + 2)}
            session = f"s{n % 2}"
            out.append(
                llm(f"g{day}{n}", model="gpt-4o", timestamp=iso(ts), session_id=session, **tokens)
            )
            out.append(
                llm(
                    f"h{day}{n}",
                    provider="acme",
                    model="house-model",
                    timestamp=iso(ts),
                    session_id=session,
                    cache_read_tokens=100,
                    **tokens,
                )
            )
            out.append(llm(f"p{day}{n}", model="gpt-4o", timestamp=iso(ts), cost_usd=0.5, **tokens))
    return out


def _expected(event: dict[str, Any]) -> int:
    if "cost_usd" in event:
        return round(event["cost_usd"] * NANO_PER_USD)
    rates = GPT4O if event["model"] == "gpt-4o" else HOUSE
    return override_nano(
        rates, event["input_tokens"], event["output_tokens"], event.get("cache_read_tokens", 0)
    )


async def _setup(api: Api) -> tuple[str, str, list[dict[str, Any]]]:
    key = await api.key()
    other = await api.key(workspace="globex")
    now = datetime.now(UTC)
    events = _events(now)
    assert (await api.ingest(key, events))["accepted"] == len(events)
    await api.ingest(other, [llm("g00", model="gpt-4o", timestamp=iso(now - timedelta(hours=1)))])
    await create(
        api,
        key,
        provider="openai",
        model="gpt-4o",
        inputPerMtok=3,
        outputPerMtok=9,
        cacheReadPerMtok=1,
    )
    await create(api, key, model="house-.*", modelIsRegex=True, inputPerMtok=0.5, outputPerMtok=1.5)
    return key, other, events


async def _raw_graphql(api: Api, key: str, query: str) -> dict[str, Any]:
    response = await api.client.post(
        "/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {key}", "X-Tallyql-Plan": "raw"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def test_reprice_updates_events_rollups_and_sessions(api: Api) -> None:
    key, other, events = await _setup(api)
    ws = await workspace_id_of(api.services, key)
    before = {r["id"]: r for r in await event_rows(api.services, ws)}
    start = iso(datetime.now(UTC) - timedelta(days=4))
    end = iso(datetime.now(UTC) + timedelta(minutes=1))
    result = (await api.data(key, REPRICE, {"range": {"start": start, "end": end}}))[
        "repriceEvents"
    ]
    expected = {e["id"]: _expected(e) for e in events}
    rows = {r["id"]: r for r in await event_rows(api.services, ws)}
    for event_id, cost in expected.items():
        assert rows[event_id]["cost_nanousd"] == cost, event_id
        want_source = "provided" if event_id.startswith("p") else "computed"
        assert rows[event_id]["cost_source"] == want_source
    repriceable = [e for e in events if "cost_usd" not in e]
    assert result["scanned"] == len(repriceable)
    assert result["changed"] == len(repriceable)
    assert result["newlyPriced"] == sum(e["model"] == "house-model" for e in events)
    assert result["stillUnpriced"] == 0
    delta = sum(expected[i] - before[i]["cost_nanousd"] for i in expected)
    assert abs(result["costDeltaUsd"] - delta / NANO_PER_USD) < 1e-9
    days = sorted({rows[e["id"]]["ts"].date().isoformat() for e in repriceable})
    assert result["daysRebuilt"] == days
    # the other workspace keeps its built-in price
    theirs = (await event_rows(api.services, await workspace_id_of(api.services, other)))[0]
    assert theirs["cost_nanousd"] == reference_cost_nano(
        "openai", "gpt-4o", TokenUsage(100, 20), theirs["ts"]
    )
    # rollups (the default plan) and raw events agree with the recomputation
    total = sum(expected.values()) / NANO_PER_USD
    query = f"""{{ breakdown(dimension: MODEL, metrics: [COST_USD],
        range: {{start: "{start}", end: "{end}"}}) {{ nodes {{ key values }} }}
        overview(range: {{start: "{start}", end: "{end}"}}) {{ costUsd }} }}"""
    by_model: dict[str, float] = defaultdict(float)
    for e in events:
        by_model[e["model"]] += expected[e["id"]] / NANO_PER_USD
    for data in (await api.data(key, query), await _raw_graphql(api, key, query)):
        assert abs(data["overview"]["costUsd"] - total) < 1e-9
        got = {n["key"]: n["values"][0] for n in data["breakdown"]["nodes"]}
        assert got.keys() == by_model.keys()
        for model, cost in by_model.items():
            assert abs(got[model] - cost) < 1e-9
    # sessions and session models carry the new sums
    sessions = await session_rows(api.services)
    models = await session_model_rows(api.services)
    want_sessions: dict[str, int] = defaultdict(int)
    want_models: dict[tuple[str, str, str], int] = defaultdict(int)
    for e in events:
        if "session_id" in e:
            want_sessions[e["session_id"]] += expected[e["id"]]
            want_models[(e["session_id"], e["provider"], e["model"])] += expected[e["id"]]
    assert {s: r["cost_nanousd"] for s, r in sessions.items()} == dict(want_sessions)
    assert {k: r["cost_nanousd"] for k, r in models.items()} == dict(want_models)
    async with api.services.db.read() as conn:
        audit = (
            (
                await conn.execute(
                    select(audit_events).where(audit_events.c.resource_type == "reprice")
                )
            )
            .mappings()
            .all()
        )
    assert [a["id"] for a in audit] == [result["auditEventId"]]
    assert audit[0]["action"] == "execute" and audit[0]["details"]["changed"] == len(repriceable)
    # a second run finds nothing left to change
    again = (await api.data(key, REPRICE, {"range": {"start": start, "end": end}}))["repriceEvents"]
    assert (again["scanned"], again["changed"], again["daysRebuilt"]) == (len(repriceable), 0, [])


async def test_reprice_filter_and_small_batches(api: Api) -> None:
    key, _, events = await _setup(api)
    ws = await workspace_id_of(api.services, key)
    window = resolve_window(None, datetime.now(UTC) - timedelta(days=4), datetime.now(UTC), "UTC")
    spec = EventFilterSpec(models=("house-model",))
    report, _ = await reprice(
        api.services.db,
        api.services.prices,
        api.services.ingest.pricer,
        ws,
        window,
        spec,
        Actor("t"),
        batch_size=2,
    )
    houses = [e for e in events if e["model"] == "house-model"]
    assert report.scanned == report.changed == report.newly_priced == len(houses)
    assert report.batches == len(houses) // 2 + 1
    rows = {r["id"]: r for r in await event_rows(api.services, ws)}
    before_gpt = reference_cost_nano("openai", "gpt-4o", TokenUsage(1_000, 100), rows["g00"]["ts"])
    assert rows["g00"]["cost_nanousd"] == before_gpt  # outside the filter
    for e in houses:
        assert rows[e["id"]]["cost_nanousd"] == _expected(e)
    data = await api.data(
        key,
        """{ breakdown(dimension: COST_SOURCE, metrics: [REQUESTS], range: {preset: LAST_7D})
             { nodes { key values } } }""",
    )
    counts = {n["key"]: n["values"][0] for n in data["breakdown"]["nodes"]}
    assert counts == {"computed": 18.0, "provided": 9.0}


async def test_models_lists_prices_sources_and_context_windows(api: Api) -> None:
    key = await api.key()
    await api.ingest(
        key,
        [
            llm("a", model="gpt-4o"),
            llm("b", model="gpt-4o"),
            llm("c", model="gpt-4o-mini"),
            llm("d", provider="acme", model="house-model"),
        ],
    )
    await create(api, key, provider="openai", model="gpt-4o", inputPerMtok=3, outputPerMtok=9)
    other = await api.key(workspace="globex")
    await api.ingest(other, [llm("x", model="o3")])
    data = await api.data(
        key,
        """{ models { provider model contextWindow requests costUsd
             price { source inputPerMtok outputPerMtok cacheReadPerMtok reasoningPerMtok } } }""",
    )
    got = {m["model"]: m for m in data["models"]}
    assert list(got) == ["gpt-4o", "house-model", "gpt-4o-mini"]  # most used, then provider
    snapshot = data_snapshot.get_snapshot()
    _, info = snapshot.find_provider_model("gpt-4o-mini", None, "openai", None)
    price = info.get_prices(datetime.now(UTC))
    assert got["gpt-4o"]["price"] == {
        "source": "OVERRIDE",
        "inputPerMtok": 3.0,
        "outputPerMtok": 9.0,
        "cacheReadPerMtok": 3.0,
        "reasoningPerMtok": 9.0,
    }
    assert got["gpt-4o"]["requests"] == 2.0
    assert got["gpt-4o-mini"]["price"]["source"] == "BUILTIN"
    assert got["gpt-4o-mini"]["price"]["inputPerMtok"] == float(price.input_mtok)
    assert got["gpt-4o-mini"]["price"]["outputPerMtok"] == float(price.output_mtok)
    assert got["gpt-4o-mini"]["contextWindow"] == info.context_window
    _, info4o = snapshot.find_provider_model("gpt-4o", None, "openai", None)
    assert got["gpt-4o"]["contextWindow"] == info4o.context_window
    assert got["house-model"]["price"]["source"] == "UNPRICED"
    assert got["house-model"]["contextWindow"] is None
