"""Price overrides: they win over genai-prices within their effective window, an event's own
cost wins over both, and each workspace sees only its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tallyql.auth.principal import Role
from tallyql.costs.book import PriceBook
from tallyql.costs.store import create_override
from tallyql.ingest.pricing import TokenUsage
from tallyql.storage.audit import Actor
from tallyql.storage.tables import audit_events
from tests.conftest import Api
from tests.support.helpers import event_rows, iso, llm, workspace_id_of
from tests.support.price_changes import CREATE, create, override_nano
from tests.support.reference_pricing import reference_cost_nano

UPDATE = """
mutation($id: ID!, $patch: PriceOverridePatch!) {
  updatePriceOverride(id: $id, patch: $patch) {
    priceOverride { id model inputPerMtok outputPerMtok effectiveUntil }
    userErrors { field code }
  }
}"""
DELETE = """
mutation($id: ID!) { deletePriceOverride(id: $id) { priceOverride { id } userErrors { code } } }
"""


async def test_override_wins_over_builtin_and_provided_cost_wins_over_both(api: Api) -> None:
    key = await api.key()
    rates = (4.0, 12.5, 0.5, None, 30.0)
    await create(
        api,
        key,
        provider="OpenAI",
        model="gpt-4o",
        inputPerMtok=rates[0],
        outputPerMtok=rates[1],
        cacheReadPerMtok=rates[2],
        reasoningPerMtok=rates[4],
    )
    usage = {"input_tokens": 12_000, "output_tokens": 900, "cache_read_tokens": 8_000}
    result = await api.ingest(
        key,
        [
            llm("o1", model="gpt-4o", **usage, reasoning_tokens=300),
            llm("o2", model="gpt-4o", cost_usd=0.25, **usage),
            llm("b1", model="gpt-4o-mini", **usage),
            llm("other-provider", provider="azure", model="gpt-4o", **usage),
        ],
    )
    assert result["accepted"] == 4
    rows = {r["id"]: r for r in await event_rows(api.services)}
    assert rows["o1"]["cost_nanousd"] == override_nano(rates, 12_000, 900, 8_000, 0, 300)
    assert rows["o1"]["cost_source"] == "computed"
    assert (rows["o2"]["cost_nanousd"], rows["o2"]["cost_source"]) == (250_000_000, "provided")
    mini = reference_cost_nano(
        "openai", "gpt-4o-mini", TokenUsage(12_000, 900, 8_000), rows["b1"]["ts"]
    )
    assert rows["b1"]["cost_nanousd"] == mini
    azure = reference_cost_nano("azure", "gpt-4o", TokenUsage(12_000, 900, 8_000), rows["b1"]["ts"])
    assert rows["other-provider"]["cost_nanousd"] == azure  # the override names openai only


async def test_effective_window_regex_and_precedence(api: Api) -> None:
    key = await api.key()
    now = datetime.now(UTC).replace(microsecond=0)
    switch = now - timedelta(hours=2)
    stop = now - timedelta(minutes=30)
    regex_rates = (1.0, 2.0, None, None, None)
    exact_rates = (10.0, 20.0, None, None, None)
    await create(
        api, key, model="claude-.*", modelIsRegex=True, inputPerMtok=1.0, outputPerMtok=2.0
    )
    await create(
        api,
        key,
        provider="anthropic",
        model="claude-sonnet-4-5",
        inputPerMtok=10.0,
        outputPerMtok=20.0,
        effectiveFrom=iso(switch),
        effectiveUntil=iso(stop),
    )
    base = {"provider": "anthropic", "input_tokens": 1_000, "output_tokens": 100}
    events = [
        llm(
            "before",
            model="claude-sonnet-4-5",
            timestamp=iso(switch - timedelta(minutes=1)),
            **base,
        ),
        llm("at-start", model="claude-sonnet-4-5", timestamp=iso(switch), **base),
        llm(
            "inside", model="claude-sonnet-4-5", timestamp=iso(stop - timedelta(seconds=1)), **base
        ),
        llm("at-end", model="claude-sonnet-4-5", timestamp=iso(stop), **base),
        llm("haiku", model="claude-haiku-4-5", timestamp=iso(switch), **base),
        llm("not-full-match", model="my-claude-x", timestamp=iso(switch), **base),
    ]
    assert (await api.ingest(key, events))["accepted"] == 6
    rows = {r["id"]: r for r in await event_rows(api.services)}
    regex = override_nano(regex_rates, 1_000, 100)
    exact = override_nano(exact_rates, 1_000, 100)
    assert rows["before"]["cost_nanousd"] == regex  # the exact override is not yet effective
    assert rows["at-start"]["cost_nanousd"] == exact  # from is inclusive
    assert rows["inside"]["cost_nanousd"] == exact
    assert rows["at-end"]["cost_nanousd"] == regex  # until is exclusive
    assert rows["haiku"]["cost_nanousd"] == regex
    assert rows["not-full-match"]["cost_source"] == "unpriced"  # regex must match the whole name


async def test_validation_permissions_and_isolation(api: Api) -> None:
    admin = await api.key()
    viewer = await api.key(role=Role.VIEWER)
    other = await api.key(workspace="globex")
    bad = await api.data(
        admin,
        CREATE,
        {
            "input": {
                "model": "gpt-(",
                "modelIsRegex": True,
                "inputPerMtok": -1,
                "outputPerMtok": 1,
                "effectiveFrom": "2026-01-02T00:00:00Z",
                "effectiveUntil": "2026-01-01T00:00:00Z",
            }
        },
    )
    fields = sorted(e["field"] for e in bad["createPriceOverride"]["userErrors"])
    assert fields == ["effectiveUntil", "inputPerMtok", "model"]
    denied = await api.graphql(
        viewer, CREATE, {"input": {"model": "x", "inputPerMtok": 1, "outputPerMtok": 1}}
    )
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    mine = await create(api, admin, model="gpt-4o", inputPerMtok=100, outputPerMtok=100)
    listed = await api.data(viewer, "{ priceOverrides { id model } }")
    assert listed["priceOverrides"] == [{"id": mine["id"], "model": "gpt-4o"}]
    assert (await api.data(other, "{ priceOverrides { id } }"))["priceOverrides"] == []
    # globex's gpt-4o events keep the built-in price; globex cannot change acme's override
    await api.ingest(other, [llm("g", model="gpt-4o")])
    row = (await event_rows(api.services, await workspace_id_of(api.services, other)))[0]
    assert row["cost_nanousd"] == reference_cost_nano(
        "openai", "gpt-4o", TokenUsage(100, 20), row["ts"]
    )
    foreign = await api.data(other, UPDATE, {"id": mine["id"], "patch": {"inputPerMtok": 1}})
    assert foreign["updatePriceOverride"]["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]


async def test_update_delete_and_audit(api: Api) -> None:
    key = await api.key()
    made = await create(api, key, model="gpt-4o-mini", inputPerMtok=1, outputPerMtok=1)
    changed = await api.data(
        key, UPDATE, {"id": made["id"], "patch": {"outputPerMtok": 3, "effectiveUntil": None}}
    )
    node = changed["updatePriceOverride"]["priceOverride"]
    assert (node["inputPerMtok"], node["outputPerMtok"]) == (1.0, 3.0)
    await api.ingest(key, [llm("a", input_tokens=1_000, output_tokens=1_000)])
    deleted = await api.data(key, DELETE, {"id": made["id"]})
    assert deleted["deletePriceOverride"]["priceOverride"]["id"] == made["id"]
    await api.ingest(key, [llm("b", input_tokens=1_000, output_tokens=1_000)])
    rows = {r["id"]: r for r in await event_rows(api.services)}
    assert rows["a"]["cost_nanousd"] == override_nano((1, 3, None, None, None), 1_000, 1_000)
    assert rows["b"]["cost_nanousd"] == reference_cost_nano(
        "openai", "gpt-4o-mini", TokenUsage(1_000, 1_000), rows["b"]["ts"]
    )
    again = await api.data(key, DELETE, {"id": made["id"]})
    assert again["deletePriceOverride"]["userErrors"] == [{"code": "NOT_FOUND"}]
    async with api.services.db.read() as conn:
        audit = (
            await conn.execute(
                select(audit_events.c.action, audit_events.c.resource_id, audit_events.c.actor_id)
                .where(audit_events.c.resource_type == "price_override")
                .order_by(audit_events.c.ts)
            )
        ).all()
    key_id = key.split("_")[1]
    assert [(a, r, k) for a, r, k in audit] == [
        ("create", made["id"], key_id),
        ("update", made["id"], key_id),
        ("delete", made["id"], key_id),
    ]


async def test_other_replicas_see_changes_after_refresh(api: Api) -> None:
    key = await api.key()
    ws = await workspace_id_of(api.services, key)
    replica = PriceBook(api.services.db)
    await replica.refresh()
    now = datetime.now(UTC)
    assert replica.find(ws, "openai", "gpt-4o", now) is None
    values = {"model": "gpt-4o", "model_match": "exact", "input_mtok": 1.0, "output_mtok": 2.0}
    made = await create_override(api.services.db, ws, values, Actor("test"))
    assert replica.find(ws, "openai", "gpt-4o", now) is None  # until its next refresh
    await replica.refresh()
    found = replica.find(ws, "openai", "gpt-4o", now)
    assert found is not None and found.id == made.id
    assert replica.find(ws + 1, "openai", "gpt-4o", now) is None
