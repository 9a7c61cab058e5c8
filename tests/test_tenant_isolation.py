"""Tenants never see each other's data. Every root field of Query, asked with one tenant's
admin key, answers exactly that tenant's data (recomputed in plain Python from what it sent)
and no string of the other's; the other tenant's ids find nothing; mutations by id cannot
touch the other tenant's objects; operator-only arguments are refused. Guards fail when a
root field, a by-id mutation or a `workspace:` argument has no case here.

tests/support/isolation_data.py builds the tenants: every string of one carries its name ("alpha",
"bravo"), and some ids exist in both with different contents."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from graphql import GraphQLSchema
from graphql import build_schema as parse_sdl

from tallyql.config import Settings
from tallyql.schema import export_sdl
from tests.conftest import Api
from tests.support.isolation_cases import CASES, ask, window
from tests.support.isolation_data import (
    SHARED_GROUP,
    SHARED_USER,
    Tenant,
    build_world,
    cost,
    markers,
    pick,
    shared,
)
from tests.support.notify_helpers import Receiver, quiet_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return quiet_settings(database_url, tmp_path)


@pytest.fixture
async def world(api: Api, receiver: Receiver) -> tuple[Tenant, Tenant]:
    return await build_world(api, receiver.url.rsplit("/", 1)[0])


def schema() -> GraphQLSchema:
    return parse_sdl(export_sdl())


def test_every_root_field_has_a_case() -> None:
    query_type = schema().query_type
    assert query_type is not None
    assert set(query_type.fields) == set(CASES)


async def test_each_root_field_answers_only_its_own_tenant(
    api: Api, world: tuple[Tenant, Tenant]
) -> None:
    w = window()
    failures = []
    for viewer, other in ((world[1], world[0]), (world[0], world[1])):
        for field, (body, check) in CASES.items():
            answer = await ask(api, viewer, body, w)
            text = orjson.dumps(answer).decode().lower()
            try:
                assert not [m for m in markers(other) if m in text], "leaked"
                if check is None:
                    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
                    assert answer["data"] is None
                else:
                    assert "errors" not in answer
                    check(answer["data"][field], viewer, w)
            except (AssertionError, KeyError, TypeError) as exc:
                failures.append((viewer.name, field, repr(exc)[:300], answer))
    assert not failures, "\n".join(map(str, failures))


# ---------------------------------------------------------------- the other tenant's ids

FOREIGN_LOOKUPS = {  # found by their owner, never by the other tenant
    "request": 'request(id: "@P-llm-0") { id }',
    "session": 'session(id: "@P-sess-0") { id }',
    "user": 'user(id: "@P-user-0") { id }',
    "group": 'group(name: "@P-group") { name }',
    "budget": "budget(id: $budget) { id }",
    "alertRule": "alertRule(id: $rule) { id }",
    "report": "report(id: $report) { id }",
    "alertFirings": "alertFirings(ruleId: $rule) { nodes { id } }",
    "webhookDeliveries": "webhookDeliveries(webhookId: $hook) { nodes { id } }",
    "requests": 'requests(filter: {users: ["@P-user-0"]}) { nodes { id } }',
}
GROUP_FILTER = "overview(range: $r, filter: {groups: [@G]}) { totalRequests costUsd }"


async def test_the_other_tenants_ids_find_nothing(api: Api, world: tuple[Tenant, Tenant]) -> None:
    w = window()
    for owner, other in (world, world[::-1]):
        for field, body in FOREIGN_LOOKUPS.items():
            for viewer, wanted in ((owner, True), (other, False)):
                spy = replace(owner, key=viewer.key)  # the owner's names and ids, viewer's key
                answer = await ask(api, spy, body, w)
                assert "errors" not in answer, answer
                value = answer["data"][field]
                found = value["nodes"] if isinstance(value, dict) and "nodes" in value else value
                assert bool(found) is wanted, (field, owner.name, viewer.name)
    a, b = world
    # "shared-group" means B's members for B (A's group lists a user that also calls in B)
    got = (await ask(api, b, GROUP_FILTER.replace("@G", f'"{SHARED_GROUP}"'), w))["data"]
    mine = pick(b, "user_id", *b.groups[SHARED_GROUP][1])
    assert got["overview"] == {"totalRequests": len(mine), "costUsd": pytest.approx(cost(mine))}
    got = (await ask(api, b, GROUP_FILTER.replace("@G", '"alpha-group"'), w))["data"]
    assert got["overview"] == {"totalRequests": 0, "costUsd": 0}
    # A's model asked about by B: no traffic and none of A's prices
    compare = (
        'modelComparison(models: [{model: "alpha-model-0"}], range: $r) '
        "{ requests costUsd price { overrideId } }"
    )
    got = (await ask(api, b, compare, w))["data"]["modelComparison"]
    assert got == [{"requests": 0, "costUsd": 0, "price": {"overrideId": None}}]
    # the names both tenants use still mean A's own things to A
    got = (await ask(api, a, f'user(id: "{SHARED_USER}") {{ email }}', w))["data"]
    assert got["user"] == {"email": a.users[SHARED_USER]["email"]}
    got = (await ask(api, a, f'group(name: "{SHARED_GROUP}") {{ memberIds }}', w))["data"]
    assert got["group"]["memberIds"] == sorted(a.groups[SHARED_GROUP][1])


# ---------------------------------------------------------------- mutations by id

FOREIGN_MUTATIONS: dict[str, tuple[str, str, str]] = {  # name: (A's object, B's args, fields)
    "updateBudget": ("budget", 'input: {name: "stolen", amountUsd: 1}', "budget { id }"),
    "deleteBudget": ("budget", "", "deletedId"),
    "updateAlertRule": ("rule", 'input: {name: "stolen", enabled: false}', "alertRule { id }"),
    "deleteAlertRule": ("rule", "", "deletedId"),
    "deleteWebhook": ("webhook", "", "deletedId"),
    "updateReport": ("report", 'input: {name: "stolen", enabled: false}', "report { id }"),
    "deleteReport": ("report", "", "deletedId"),
    "runReport": ("report", "", "run { id }"),
    "updatePriceOverride": ("override", "patch: {inputPerMtok: 0.5}", "priceOverride { id }"),
    "deletePriceOverride": ("override", "", "priceOverride { id }"),
}
WEBHOOK_REFS = {  # B may not point its budgets and rules at A's webhook either
    "createBudget": 'input: {name: "b", amountUsd: 1, webhookIds: [$hook]}',
    "createAlertRule": 'input: {name: "r", metric: REQUESTS, windowMinutes: 5, operator: GT, '
    "threshold: 1, webhookIds: [$hook]}",
    "updateBudget": "id: $mine, input: {webhookIds: [$hook]}",
    "updateAlertRule": "id: $mine, input: {webhookIds: [$hook]}",
    "createReport": 'input: {name: "r", schedule: "0 8 * * *", sections: [{kind: OVERVIEW}], '
    "webhookIds: [$hook]}",
    "updateReport": "id: $mine, input: {webhookIds: [$hook]}",
}
A_STATE = """{ budgets { nodes { id name amountUsd webhookIds } }
  alertRules { nodes { id name enabled webhookIds } } webhooks { nodes { id url } }
  reports { nodes { id name enabled webhookIds runs { totalCount } } }
  priceOverrides { id inputPerMtok outputPerMtok } }"""


def test_every_by_id_mutation_has_a_case() -> None:
    mutation_type = schema().mutation_type
    assert mutation_type is not None
    assert {n for n, f in mutation_type.fields.items() if "id" in f.args} == set(FOREIGN_MUTATIONS)


async def test_mutations_by_id_cannot_touch_the_other_tenant(
    api: Api, world: tuple[Tenant, Tenant]
) -> None:
    a, b = world
    before = await api.data(a.key, A_STATE)
    for name, (thing, args, fields) in FOREIGN_MUTATIONS.items():
        query = (
            f"mutation($id: ID!) {{ {name}(id: $id{', ' + args if args else ''}) "
            f"{{ {fields} userErrors {{ field code }} }} }}"
        )
        payload = (await api.data(b.key, query, {"id": a.ids[thing]}))[name]
        assert payload["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}], (name, payload)
        assert [v for k, v in payload.items() if k != "userErrors"] == [None], payload
    for name, args in WEBHOOK_REFS.items():
        mine = b.ids["rule" if "Alert" in name else "report" if "Report" in name else "budget"]
        declared = "$hook: ID!" + (", $mine: ID!" if "$mine" in args else "")
        query = f"mutation({declared}) {{ {name}({args}) {{ userErrors {{ field }} }} }}"
        wanted = {"hook": a.ids["webhook"], **({"mine": mine} if "$mine" in args else {})}
        assert (await api.data(b.key, query, wanted))[name]["userErrors"] == [
            {"field": "webhookIds"}
        ]
    assert await api.data(a.key, A_STATE) == before
    # A's override still prices A's new events (B's attempts left the price book alone)
    e = shared(a)
    fields = ("provider", "model", "input_tokens", "output_tokens")
    await api.ingest(a.key, [{"id": "alpha-after", **{k: e[k] for k in fields}}])
    got = await api.data(a.key, '{ request(id: "alpha-after") { costUsd } }')
    assert got["request"]["costUsd"] == pytest.approx(e["cost_usd"])
    trail = orjson.dumps(
        await api.data(a.key, "{ auditEvents(first: 100) { nodes { actorId details } } }")
    ).decode()
    assert "stolen" not in trail and b.key_id not in trail


# ---------------------------------------------------------------- operator-only arguments

WORKSPACE_ARG = {
    "overview": "overview(range: $r, workspace: $ws) { totalRequests }",
    "timeseries": "timeseries(metrics: [REQUESTS], range: $r, workspace: $ws) { buckets }",
    "breakdown": "breakdown(dimension: MODEL, metrics: [REQUESTS], range: $r, workspace: $ws) "
    "{ totalCount }",
    "hourlyDistribution": "hourlyDistribution(metric: REQUESTS, range: $r, workspace: $ws)",
    "errors": "errors(range: $r, workspace: $ws) { totalErrors }",
    "metrics": "metrics(query: {metrics: [REQUESTS], range: $r}, workspace: $ws) { totalRows }",
    "costInsights": "costInsights(range: $r, workspace: $ws) { totalUsd }",
    "modelComparison": 'modelComparison(models: [{model: "m"}], range: $r, workspace: $ws) '
    "{ requests }",
    "dailyCostByModel": "dailyCostByModel(range: $r, workspace: $ws) { totals }",
}


def test_every_workspace_argument_has_a_case() -> None:
    query_type = schema().query_type
    assert query_type is not None
    assert {n for n, f in query_type.fields.items() if "workspace" in f.args} == set(WORKSPACE_ARG)


async def test_operator_only_arguments_are_refused(api: Api, world: tuple[Tenant, Tenant]) -> None:
    a, b = world
    assert api.services.settings.operator_workspace not in (f"{a.name}-ws", f"{b.name}-ws")
    for field, body in WORKSPACE_ARG.items():
        assert "errors" not in await ask(api, b, body, window(), ws=None), field  # without it: ok
        for ws in (str(a.workspace_id), "*", str(b.workspace_id)):
            answer = await ask(api, b, body, window(), ws=ws)
            assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", (field, answer)
            assert not answer.get("data"), (field, answer)
    # `workspaces` is refused by the main test (CASES), for both tenants
