"""Budgets: admin-only changes with userErrors, and what `budgets` shows (spend, percent used,
projection, days remaining, status) for every scope and period, against a plain-Python
recomputation from the ingested events."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tallyql.auth.principal import Role
from tallyql.budgets.status import budget_status
from tallyql.budgets.store import get_budget
from tallyql.config import Settings
from tallyql.storage.tables import audit_events
from tests.conftest import Api
from tests.support.helpers import iso, workspace_id_of
from tests.support.notify_helpers import expected_budget, local_period, quiet_settings
from tests.support.reference import normalise

FIELDS = """id name amountUsd period timezone scope scopeValue filter thresholds webhookIds
  currentSpendUsd percentUsed projectedSpendUsd daysRemaining daysWithData status periodStart
  periodEnd crossedThresholds"""
CREATE = f"""mutation($input: BudgetInput!) {{
  createBudget(input: $input) {{ budget {{ {FIELDS} }} userErrors {{ field message code }} }}
}}"""
UPDATE = f"""mutation($id: ID!, $input: BudgetPatch!) {{
  updateBudget(id: $id, input: $input) {{ budget {{ {FIELDS} }} userErrors {{ field code }} }}
}}"""
DELETE = """mutation($id: ID!) { deleteBudget(id: $id) { deletedId userErrors { field code } } }"""
LIST = f"{{ budgets(first: 100) {{ totalCount nodes {{ {FIELDS} }} }} }}"
ONE = f"query($id: ID!) {{ budget(id: $id) {{ {FIELDS} }} }}"
GROUP = """mutation($g: String!, $ids: [String!]!) {
  setGroupMembers(group: $g, userIds: $ids) { userErrors { field } } }"""


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return quiet_settings(database_url, tmp_path)


async def create(api: Api, key: str, **fields: Any) -> dict[str, Any]:
    payload = (await api.data(key, CREATE, {"input": fields}))["createBudget"]
    assert payload["userErrors"] == [], payload
    return payload["budget"]


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_changes_are_admin_only_validated_and_audited(api: Api) -> None:
    admin = await api.key()
    member = await api.key(role=Role.MEMBER)
    viewer = await api.key(role=Role.VIEWER)
    made = await create(api, admin, name="Team", amountUsd=25.5)
    assert (made["period"], made["timezone"], made["scope"]) == ("MONTH", "UTC", "WORKSPACE")
    assert (made["amountUsd"], made["thresholds"], made["webhookIds"]) == (25.5, [50, 80, 100], [])
    assert (made["currentSpendUsd"], made["status"], made["crossedThresholds"]) == (0, "OK", [])

    for key in (member, viewer):
        for query, variables in (
            (CREATE, {"input": {"name": "x", "amountUsd": 1}}),
            (UPDATE, {"id": made["id"], "input": {"amountUsd": 1}}),
            (DELETE, {"id": made["id"]}),
        ):
            body = await api.graphql(key, query, variables)
            assert codes(body) == ["FORBIDDEN"], body
    listed = (await api.data(viewer, LIST))["budgets"]  # reading needs READ only
    assert [b["id"] for b in listed["nodes"]] == [made["id"]]
    assert listed["nodes"][0]["amountUsd"] == 25.5

    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": "  ", "amountUsd": 1}, "name"),
        ({"name": "x", "amountUsd": 0}, "amountUsd"),
        ({"name": "x", "amountUsd": -3}, "amountUsd"),
        ({"name": "x", "amountUsd": 2e9}, "amountUsd"),
        ({"name": "x", "amountUsd": 1, "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "x", "amountUsd": 1, "thresholds": []}, "thresholds"),
        ({"name": "x", "amountUsd": 1, "thresholds": [0, 50]}, "thresholds"),
        ({"name": "x", "amountUsd": 1, "thresholds": [1001]}, "thresholds"),
        ({"name": "x", "amountUsd": 1, "scope": "USER"}, "scopeValue"),
        ({"name": "x", "amountUsd": 1, "scope": "API_KEY", "scopeValue": ""}, "scopeValue"),
        ({"name": "x", "amountUsd": 1, "scope": "FILTER"}, "filter"),
        ({"name": "x", "amountUsd": 1, "scope": "FILTER", "filter": {}}, "filter"),
        ({"name": "x", "amountUsd": 1, "webhookIds": ["nope"]}, "webhookIds"),
    ]
    for fields, field in bad:
        payload = (await api.data(admin, CREATE, {"input": fields}))["createBudget"]
        assert payload["budget"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, "INVALID")]
    assert (await api.data(admin, LIST))["budgets"]["totalCount"] == 1

    wrong = await api.data(admin, UPDATE, {"id": made["id"], "input": {"amountUsd": 0}})
    assert wrong["updateBudget"]["userErrors"] == [{"field": "amountUsd", "code": "INVALID"}]
    patch = {"name": "Models", "thresholds": [90, 30, 30], "scope": "MODEL", "scopeValue": "m1"}
    changed = (await api.data(admin, UPDATE, {"id": made["id"], "input": patch}))["updateBudget"]
    assert changed["userErrors"] == []
    after = (await api.data(admin, ONE, {"id": made["id"]}))["budget"]
    assert after["name"] == "Models" and after["amountUsd"] == 25.5
    assert (after["thresholds"], after["scope"], after["scopeValue"]) == ([30, 90], "MODEL", "m1")
    missing = await api.data(admin, UPDATE, {"id": "nope", "input": {"name": "y"}})
    assert missing["updateBudget"]["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]

    deleted = (await api.data(admin, DELETE, {"id": made["id"]}))["deleteBudget"]
    assert deleted == {"deletedId": made["id"], "userErrors": []}
    again = (await api.data(admin, DELETE, {"id": made["id"]}))["deleteBudget"]
    assert again == {"deletedId": None, "userErrors": [{"field": "id", "code": "NOT_FOUND"}]}
    assert (await api.data(admin, ONE, {"id": made["id"]}))["budget"] is None

    async with api.services.db.read() as conn:
        rows = (
            await conn.execute(
                select(audit_events.c.action, audit_events.c.resource_id, audit_events.c.details)
                .where(audit_events.c.resource_type == "budget")
                .order_by(audit_events.c.ts)
            )
        ).all()
    assert [(r.action, r.resource_id) for r in rows] == [
        ("create", made["id"]),
        ("update", made["id"]),
        ("delete", made["id"]),
    ]
    assert rows[1].details["thresholds"] == [30, 90]


# The scopes and periods at a fixed moment in a past month (Wednesday 19 November 2025), so
# weeks and months hold many days. New York's November has a 25-hour day (DST ends on the
# 2nd); Kolkata's days start at :30 UTC.
FIXED_NOW = datetime(2025, 11, 19, 20, 30, tzinfo=UTC)
USERS = ("u1", "u2", "u3", "u4")
MODELS = (("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku"))


def month_events() -> list[dict[str, Any]]:
    rng = random.Random(5)
    start = datetime(2025, 10, 28, tzinfo=UTC)
    quiet_days = {3, 4, 9, 15, 16, 20, 23}  # days (from start) without traffic
    events = []
    for i in range(160):
        day = rng.choice([d for d in range(37) if d not in quiet_days])
        ts = start + timedelta(days=day, seconds=rng.randrange(86400))
        provider, model = rng.choice(MODELS)
        events.append(
            {
                "id": f"e{i}",
                "timestamp": iso(ts),
                "provider": provider,
                "model": model,
                "user_id": rng.choice(USERS),
                "api_key_id": rng.choice(("k1", "k2", None)),
                "tags": rng.sample(["prod", "batch", "eval"], rng.randrange(3)),
                "input_tokens": rng.randrange(10, 5000),
                "output_tokens": rng.randrange(1, 800),
                "cost_usd": rng.randrange(0, 900_000) / 1_000_000,
            }
        )
    # on the boundaries: New York's November starts at 04:00 UTC and ends at 05:00 UTC
    edges = ("2025-11-01T04:00:00Z", "2025-12-01T05:00:00Z", "2025-11-01T03:59:59.999Z")
    for n, ts_text in enumerate(edges):
        events.append(
            {"id": f"edge{n}", "timestamp": ts_text, "provider": "openai", "model": "gpt-4o",
             "user_id": "u1", "api_key_id": "k1", "cost_usd": 0.125 * (n + 1)}
        )  # fmt: skip
    return [{k: v for k, v in e.items() if v is not None} for e in events]


BUDGETS: list[dict[str, Any]] = [
    {"name": "all", "period": "MONTH", "timezone": "America/New_York", "amountUsd": 80},
    {"name": "all-day", "period": "DAY", "timezone": "UTC", "amountUsd": 2.5},
    {"name": "u1", "period": "WEEK", "timezone": "America/New_York", "scope": "USER",
     "scopeValue": "u1", "amountUsd": 6},
    {"name": "team", "period": "MONTH", "timezone": "UTC", "scope": "GROUP",
     "scopeValue": "team-a", "amountUsd": 150},
    {"name": "k1", "period": "DAY", "timezone": "Asia/Kolkata", "scope": "API_KEY",
     "scopeValue": "k1", "amountUsd": 1.25},
    {"name": "4o", "period": "WEEK", "timezone": "Europe/Paris", "scope": "MODEL",
     "scopeValue": "gpt-4o", "amountUsd": 6, "thresholds": [25, 90]},
    {"name": "anthropic", "period": "MONTH", "timezone": "UTC", "scope": "PROVIDER",
     "scopeValue": "anthropic", "amountUsd": 40},
    {"name": "prod-mini", "period": "MONTH", "timezone": "America/New_York", "scope": "FILTER",
     "filter": {"models": ["gpt-4o-mini"], "tags": ["prod"]}, "amountUsd": 3},
]  # fmt: skip


def check(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["currentSpendUsd"] == pytest.approx(want["spendNano"] / 1e9, abs=1e-12)
    assert got["percentUsed"] == pytest.approx(want["percentUsed"], rel=1e-12, abs=1e-12)
    assert got["projectedSpendUsd"] == pytest.approx(want["projectedNano"] / 1e9, abs=1e-12)
    assert got["daysWithData"] == want["daysWithData"]
    assert got["status"] == want["status"]
    assert datetime.fromisoformat(got["periodStart"]) == want["periodStart"]
    assert datetime.fromisoformat(got["periodEnd"]) == want["periodEnd"]


async def test_status_of_every_scope_and_period_equals_a_recomputation(api: Api) -> None:
    key = await api.key()
    body = await api.data(key, GROUP, {"g": "team-a", "ids": ["u1", "u3"]})
    assert body["setGroupMembers"]["userErrors"] == []
    members = {"team-a": {"u1", "u3"}}
    sent = month_events()
    assert (await api.ingest(key, sent))["accepted"] == len(sent)
    events = [normalise(e) for e in sent]
    workspace_id = await workspace_id_of(api.services, key)
    statuses = set()
    for fields in BUDGETS:
        made = await create(api, key, **fields)
        if "filter" in fields:
            assert {k: v for k, v in made["filter"].items() if v} == fields["filter"]
        else:
            assert made["filter"] is None
        want = expected_budget(events, fields, FIXED_NOW, members)
        assert want["spendNano"] > 0
        budget = await get_budget(api.services.db, workspace_id, made["id"])
        assert budget is not None
        status = await budget_status(api.services.db, budget, FIXED_NOW)
        assert status.spend_nanousd == want["spendNano"], fields["name"]
        assert status.days_with_data == want["daysWithData"], fields["name"]
        assert status.days_in_period == want["daysInPeriod"], fields["name"]
        assert status.projected_nanousd == want["projectedNano"], fields["name"]
        assert math.isclose(status.percent_used, want["percentUsed"], rel_tol=1e-12)
        assert math.isclose(status.days_remaining, want["daysRemaining"], rel_tol=1e-12)
        assert (status.period_start, status.period_end) == (want["periodStart"], want["periodEnd"])
        assert status.state.name == want["status"], fields["name"]
        statuses.add(want["status"])
    assert statuses == {"OK", "AT_RISK", "WARNING", "EXCEEDED"}  # every status is exercised


async def test_budgets_field_shows_the_current_period(api: Api) -> None:
    """`budgets` through GraphQL, at the real clock: traffic spread over each current period
    (and just before it), for DAY, WEEK and MONTH."""
    key = await api.key()
    now = datetime.now(UTC)
    sent: list[dict[str, Any]] = []
    wanted = [
        {"name": "day", "period": "DAY", "timezone": "UTC", "amountUsd": 3},
        {"name": "week", "period": "WEEK", "timezone": "America/Los_Angeles", "amountUsd": 4,
         "scope": "USER", "scopeValue": "w"},
        {"name": "month", "period": "MONTH", "timezone": "Asia/Kolkata", "amountUsd": 5,
         "scope": "PROVIDER", "scopeValue": "anthropic"},
    ]  # fmt: skip
    for n, (fields, user, provider) in enumerate(
        zip(wanted, ("d", "w", "m"), ("openai", "openai", "anthropic"), strict=True)
    ):
        start, _, _ = local_period(fields["period"], now, fields["timezone"])
        span = (now - start).total_seconds()
        for i in range(8):
            ts = start + timedelta(seconds=span * i / 8) if i else start
            cost = (n + 1) * 0.0625 * (i + 1)
            sent.append({"id": f"{user}{i}", "timestamp": iso(ts), "user_id": user,
                         "provider": provider, "model": "m", "cost_usd": cost})  # fmt: skip
        before = iso(start - timedelta(seconds=1))
        sent.append({"id": f"{user}-before", "timestamp": before, "user_id": user,
                     "provider": provider, "model": "m", "cost_usd": 9})  # fmt: skip
    assert (await api.ingest(key, sent))["accepted"] == len(sent)
    for fields in wanted:
        await create(api, key, **fields)
    asked = datetime.now(UTC)
    nodes = (await api.data(key, LIST))["budgets"]["nodes"]
    events = [normalise(e) for e in sent]
    assert [b["name"] for b in nodes] == ["day", "week", "month"]
    for got, fields in zip(nodes, wanted, strict=True):
        want = expected_budget(events, fields, asked)
        check(got, want)
        assert abs(got["daysRemaining"] - want["daysRemaining"]) < 30 / 86400
        assert got["crossedThresholds"] == []  # announced by the monitor, not by reading


async def test_each_workspace_sees_only_its_budgets(api: Api) -> None:
    a = await api.key("acme")
    b = await api.key("globex")
    mine = await create(api, a, name="acme budget", amountUsd=1, period="DAY")
    await api.ingest(a, [{"id": "x", "model": "m", "provider": "p", "cost_usd": 0.75}])
    theirs = await create(api, b, name="globex budget", amountUsd=1, period="DAY")
    assert theirs["currentSpendUsd"] == 0  # acme's spend never counts for globex
    seen = (await api.data(b, LIST))["budgets"]
    assert (seen["totalCount"], [n["id"] for n in seen["nodes"]]) == (1, [theirs["id"]])
    assert (await api.data(b, ONE, {"id": mine["id"]}))["budget"] is None
    upd = await api.data(b, UPDATE, {"id": mine["id"], "input": {"name": "stolen"}})
    assert upd["updateBudget"]["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]
    gone = await api.data(b, DELETE, {"id": mine["id"]})
    assert gone["deleteBudget"]["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]
    kept = (await api.data(a, ONE, {"id": mine["id"]}))["budget"]
    assert (kept["name"], kept["currentSpendUsd"], kept["percentUsed"]) == (
        "acme budget",
        0.75,
        75.0,
    )
