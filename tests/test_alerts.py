"""Alert rules: changes (MANAGE) with userErrors; evaluation through the engine at chosen
moments gives the firings and resolutions of a plain-Python state machine over the raw
events (values, operators, windows, filters, cooldown); replicas record each transition once;
each workspace sees only its own rules and firings."""

from __future__ import annotations

import asyncio
import operator
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tallyql.alerts.model import Operator
from tallyql.alerts.store import RuleFields, create_rule
from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.registry import Metric
from tallyql.live.subscriber import ALERT
from tallyql.services import start_services
from tallyql.storage.audit import Actor
from tallyql.storage.live_tables import alert_firings
from tallyql.storage.tables import audit_events
from tests.conftest import Api
from tests.support.helpers import iso, llm, walk_pages, workspace_id_of
from tests.support.live_client import live_server, subscribe
from tests.support.notify_helpers import Notices, quiet_settings
from tests.support.reference import close, matches, metric_value, normalise

RULE = """id name metric windowMinutes filter operator threshold cooldownMinutes webhookIds
  enabled state lastValue lastEvaluatedAt lastFiredAt"""
CREATE = f"""mutation($input: AlertRuleInput!) {{
  createAlertRule(input: $input) {{ alertRule {{ {RULE} }} userErrors {{ field code }} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: AlertRulePatch!) {{
  updateAlertRule(id: $id, input: $input) {{ alertRule {{ {RULE} }} userErrors {{ field code }} }}
}}"""
DELETE = "mutation($id: ID!) { deleteAlertRule(id: $id) { deletedId userErrors { field code } } }"
RULES = f"{{ alertRules(first: 100) {{ totalCount nodes {{ {RULE} }} }} }}"
ONE = f"query($id: ID!) {{ alertRule(id: $id) {{ {RULE} }} }}"
FIRINGS = """query($rule: ID) { alertFirings(ruleId: $rule, first: 100) { totalCount nodes {
  id ruleId ruleName metric operator threshold windowMinutes value firedAt resolvedAt
  resolvedValue state } } }"""

BASE = datetime(2025, 11, 19, 12, tzinfo=UTC)
OPS: dict[str, Callable[[float, float], bool]] = {
    "GT": operator.gt,
    "GTE": operator.ge,
    "LT": operator.lt,
    "LTE": operator.le,
    "EQ": operator.eq,
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return quiet_settings(database_url, tmp_path)


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def create(api: Api, key: str, **fields: Any) -> dict[str, Any]:
    payload = (await api.data(key, CREATE, {"input": fields}))["createAlertRule"]
    assert payload["userErrors"] == [], payload
    return payload["alertRule"]


async def test_changes_need_manage_are_validated_and_audited(api: Api) -> None:
    admin = await api.key()
    member = await api.key(role=Role.MEMBER)
    viewer = await api.key(role=Role.VIEWER)
    rule = await create(
        api, member, name="spend", metric="COST_USD", windowMinutes=60, operator="GT",
        threshold=5, filter={"providers": ["openai"]},
    )  # fmt: skip
    assert (rule["cooldownMinutes"], rule["enabled"], rule["state"]) == (60, True, "OK")
    assert rule["filter"]["providers"] == ["openai"]
    assert (rule["lastValue"], rule["lastEvaluatedAt"], rule["lastFiredAt"]) == (None,) * 3
    for query, variables in (
        (CREATE, {"input": {"name": "x", "metric": "REQUESTS", "windowMinutes": 5,
                            "operator": "GT", "threshold": 1}}),
        (UPDATE, {"id": rule["id"], "input": {"threshold": 1}}),
        (DELETE, {"id": rule["id"]}),
    ):  # fmt: skip
        assert codes(await api.graphql(viewer, query, variables)) == ["FORBIDDEN"]
    assert (await api.data(viewer, RULES))["alertRules"]["totalCount"] == 1

    base = {"name": "x", "metric": "REQUESTS", "windowMinutes": 5, "operator": "GT", "threshold": 1}
    for change, field in (
        ({"name": " "}, "name"),
        ({"windowMinutes": 0}, "windowMinutes"),
        ({"windowMinutes": 31 * 1440 + 1}, "windowMinutes"),
        ({"cooldownMinutes": -1}, "cooldownMinutes"),
        ({"webhookIds": ["missing"]}, "webhookIds"),
    ):
        payload = await api.data(admin, CREATE, {"input": {**base, **change}})
        assert payload["createAlertRule"] == {
            "alertRule": None,
            "userErrors": [{"field": field, "code": "INVALID"}],
        }
    assert (await api.data(admin, RULES))["alertRules"]["totalCount"] == 1

    patch = {"operator": "LTE", "threshold": 2.5, "windowMinutes": 1440, "enabled": False}
    changed = await api.data(admin, UPDATE, {"id": rule["id"], "input": patch})
    got = changed["updateAlertRule"]["alertRule"]
    assert (got["operator"], got["threshold"], got["windowMinutes"], got["enabled"]) == (
        "LTE", 2.5, 1440, False
    )  # fmt: skip
    assert (got["metric"], got["name"], got["filter"]["providers"]) == (
        "COST_USD",
        "spend",
        ["openai"],
    )
    wrong = await api.data(admin, UPDATE, {"id": rule["id"], "input": {"windowMinutes": 0}})
    assert wrong["updateAlertRule"]["userErrors"] == [{"field": "windowMinutes", "code": "INVALID"}]
    assert (await api.data(admin, ONE, {"id": rule["id"]}))["alertRule"]["windowMinutes"] == 1440
    gone = await api.data(member, DELETE, {"id": rule["id"]})
    assert gone["deleteAlertRule"] == {"deletedId": rule["id"], "userErrors": []}
    again = await api.data(member, DELETE, {"id": rule["id"]})
    assert again["deleteAlertRule"]["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]
    async with api.services.db.read() as conn:
        audited = (
            await conn.execute(
                select(audit_events.c.action)
                .where(audit_events.c.resource_type == "alert_rule")
                .order_by(audit_events.c.ts)
            )
        ).scalars()
        assert list(audited) == ["create", "update", "delete"]


def traffic() -> list[dict[str, Any]]:
    """A day of traffic, dense in the five minutes before BASE, one event after it."""
    rng = random.Random(11)
    offsets = [rng.randrange(1, 26 * 3600) for _ in range(70)]
    offsets += [rng.randrange(1, 300) for _ in range(25)] + [300]  # 300: on the window edge
    events = []
    for i, seconds in enumerate([*offsets, 0, -420]):  # at BASE, and 7 minutes after it
        provider, model = rng.choice((("openai", "gpt-4o"), ("anthropic", "claude"), ("x", "y")))
        error = rng.random() < 0.25
        events.append({
            "id": f"e{i}", "timestamp": iso(BASE - timedelta(seconds=seconds)),
            "provider": provider, "model": model, "user_id": rng.choice(("u1", "u2", "u3")),
            "status": "error" if error else "success",
            **({"error_type": "timeout"} if error else {}),
            "latency_ms": rng.randrange(40, 4000), "input_tokens": rng.randrange(1, 3000),
            "output_tokens": rng.randrange(1, 500), "cost_usd": rng.randrange(1, 90_000) / 1e6,
        })  # fmt: skip
    return events


def observed(events: list[dict[str, Any]], rule: dict[str, Any], now: datetime) -> float | None:
    start = now - timedelta(minutes=rule["windowMinutes"])
    spec = rule.get("filter") or {}
    chosen = [e for e in events if start <= e["ts"] < now and matches(e, spec, {})]
    return metric_value(rule["metric"], chosen)


def simulate(
    rules: list[dict[str, Any]], events: list[dict[str, Any]], times: list[datetime]
) -> list[dict[str, Any]]:
    """The firings a rule engine should record: OK -> FIRING when the condition holds and the
    cooldown since the last firing has passed; FIRING -> OK when it no longer holds."""
    firings: list[dict[str, Any]] = []
    state: dict[str, dict[str, Any] | None] = {r["name"]: None for r in rules}
    last_fired: dict[str, datetime] = {}
    for now in times:
        for rule in rules:
            value = observed(events, rule, now)
            holds = value is not None and OPS[rule["operator"]](value, rule["threshold"])
            current = state[rule["name"]]
            cooled = rule["name"] not in last_fired or now - last_fired[rule["name"]] >= (
                timedelta(minutes=rule.get("cooldownMinutes", 60))
            )
            if current is None and holds and cooled:
                current = {"rule": rule["name"], "firedAt": now, "value": value,
                           "resolvedAt": None, "resolvedValue": None}  # fmt: skip
                firings.append(current)
                state[rule["name"]], last_fired[rule["name"]] = current, now
            elif current is not None and not holds:
                current.update(resolvedAt=now, resolvedValue=value)
                state[rule["name"]] = None
    return firings


async def test_firings_and_resolutions_equal_a_recomputation(api: Api) -> None:
    key = await api.key()
    sent = traffic()
    assert (await api.ingest(key, sent))["accepted"] == len(sent)
    events = [normalise(e) for e in sent]

    def at_base(metric: str, minutes: int, spec: dict[str, Any] | None = None) -> float:
        value = observed(events, {"metric": metric, "windowMinutes": minutes, "filter": spec}, BASE)
        assert value is not None
        return value

    openai = {"providers": ["openai"]}
    requests_5 = at_base("REQUESTS", 5)
    rules: list[dict[str, Any]] = [
        {"name": "cost", "metric": "COST_USD", "windowMinutes": 60, "filter": openai,
         "operator": "GT", "threshold": round(at_base("COST_USD", 60, openai) * 0.9, 6)},
        {"name": "any", "metric": "REQUESTS", "windowMinutes": 5, "operator": "GT",
         "threshold": 0, "cooldownMinutes": 10},
        {"name": "req>=", "metric": "REQUESTS", "windowMinutes": 5, "operator": "GTE",
         "threshold": requests_5},
        {"name": "req>", "metric": "REQUESTS", "windowMinutes": 5, "operator": "GT",
         "threshold": requests_5},
        {"name": "idle", "metric": "REQUESTS", "windowMinutes": 5, "operator": "LT",
         "threshold": 1},
        {"name": "errors", "metric": "ERROR_RATE", "windowMinutes": 60, "operator": "GTE",
         "threshold": round(at_base("ERROR_RATE", 60), 6) - 0.01},
        {"name": "p95", "metric": "P95_LATENCY_MS", "windowMinutes": 1440, "operator": "GT",
         "threshold": 3000},
        {"name": "tokens", "metric": "TOTAL_TOKENS", "windowMinutes": 60, "operator": "LTE",
         "threshold": at_base("TOTAL_TOKENS", 60)},
        {"name": "avg", "metric": "AVG_LATENCY_MS", "windowMinutes": 60, "operator": "LT",
         "threshold": 10},
        {"name": "eq", "metric": "REQUESTS", "windowMinutes": 1440, "operator": "EQ",
         "threshold": at_base("REQUESTS", 1440), "cooldownMinutes": 0},
        {"name": "u3", "metric": "UNIQUE_MODELS", "windowMinutes": 60, "operator": "GTE",
         "filter": {"users": ["u3"]}, "threshold": 2},
    ]  # fmt: skip
    made = {r["name"]: await create(api, key, **r) for r in rules}
    disabled = await create(api, key, name="off", metric="REQUESTS", windowMinutes=5,
                            operator="GTE", threshold=0, enabled=False)  # fmt: skip
    assert api.services.live is not None
    scheduler = api.services.live.alerts
    notices = Notices(api.services, await workspace_id_of(api.services, key), frozenset({ALERT}))
    minute = timedelta(minutes=1)
    times = [BASE, BASE, BASE + 6 * minute, BASE + 8 * minute, BASE + 12 * minute,
             BASE + 18 * minute, BASE + 6 * 60 * minute]  # fmt: skip
    transitions = 0
    for now in times:
        transitions += len(await scheduler.evaluate_all(now))
    want = simulate(rules, events, times)
    assert {f["rule"] for f in want if f["firedAt"] == BASE} >= {"cost", "req>=", "errors", "eq"}
    # fired, resolved at +6, held back by the cooldown at +8, fired again at +12
    assert [f["firedAt"] for f in want if f["rule"] == "any"] == [BASE, BASE + 12 * minute]
    assert observed(events, rules[1], BASE + 8 * minute) == 1
    assert any(f["rule"] == "idle" for f in want)  # an empty window is 0 requests, not "no value"
    assert transitions == len(want) + sum(f["resolvedAt"] is not None for f in want)
    assert len(await notices.wait_for(transitions)) == transitions

    got = (await api.data(key, FIRINGS, {"rule": None}))["alertFirings"]
    assert got["totalCount"] == len(want)
    ids = {v["id"]: k for k, v in made.items()}
    actual = sorted((ids[n["ruleId"]], datetime.fromisoformat(n["firedAt"])) for n in got["nodes"])
    assert actual == sorted((f["rule"], f["firedAt"]) for f in want)
    by_key = {(ids[n["ruleId"]], datetime.fromisoformat(n["firedAt"])): n for n in got["nodes"]}
    for firing in want:
        node = by_key[(firing["rule"], firing["firedAt"])]
        rule = made[firing["rule"]]
        assert close(firing["value"], node["value"], rule["metric"]), (firing, node)
        resolved = node["resolvedAt"] and datetime.fromisoformat(node["resolvedAt"])
        assert resolved == firing["resolvedAt"]
        assert close(firing["resolvedValue"], node["resolvedValue"], rule["metric"])
        assert node["state"] == ("RESOLVED" if resolved else "FIRING")
        assert (node["ruleName"], node["metric"], node["operator"]) == (
            rule["name"], rule["metric"], rule["operator"]
        )  # fmt: skip
        assert (node["threshold"], node["windowMinutes"]) == (
            rule["threshold"], rule["windowMinutes"]
        )  # fmt: skip
    # paged one at a time through `after`: the same firings in the same order
    walked = await walk_pages(api, key, "alertFirings", "id")
    assert [n["id"] for n in walked] == [n["id"] for n in got["nodes"]]
    one = (await api.data(key, FIRINGS, {"rule": made["any"]["id"]}))["alertFirings"]
    assert [datetime.fromisoformat(n["firedAt"]) for n in one["nodes"]] == [
        BASE + 12 * minute,
        BASE,
    ]  # newest first

    last = times[-1]
    shown = {r["name"]: r for r in (await api.data(key, RULES))["alertRules"]["nodes"]}
    for rule in rules:
        node = shown[rule["name"]]
        assert close(observed(events, rule, last), node["lastValue"], rule["metric"])
        assert datetime.fromisoformat(node["lastEvaluatedAt"]) == last
        open_firing = [f for f in want if f["rule"] == rule["name"] and not f["resolvedAt"]]
        assert node["state"] == ("FIRING" if open_firing else "OK")
    assert shown["off"]["lastEvaluatedAt"] is None and disabled["state"] == "OK"


async def test_two_replicas_record_each_transition_once(
    settings: Settings, db_kind: str, services: Any
) -> None:
    other = await start_services(settings)
    try:
        key, _ = await services.keys.create("acme", Role.ADMIN, "t")
        ws = await workspace_id_of(services, key)
        events = [{"id": f"r{i}", "timestamp": iso(BASE - timedelta(seconds=10 + i)),
                   "provider": "p", "model": "m"} for i in range(3)]  # fmt: skip
        assert (await services.ingest.ingest(ws, events)).accepted == 3
        for n in range(5):
            fields = RuleFields(name=f"r{n}", metric=Metric.REQUESTS, window_seconds=300,
                                threshold=float(n), filter=EventFilterSpec())  # fmt: skip
            await create_rule(services.db, ws, fields, Actor("t"))
        schedulers = [s.live.alerts for s in (services, other, services, other)]
        runs = await asyncio.gather(*(s.evaluate_all(BASE) for s in schedulers))
        fired = sorted(n["rule_name"] for run in runs for n in run)
        assert fired == ["r0", "r1", "r2"]  # 3 requests > 0, 1, 2 (not 3, 4)
        later = BASE + timedelta(minutes=10)
        runs = await asyncio.gather(*(s.evaluate_all(later) for s in schedulers))
        resolved = sorted((n["rule_name"], n["state"], n["value"]) for run in runs for n in run)
        assert resolved == [("r0", "ok", 0), ("r1", "ok", 0), ("r2", "ok", 0)]
        async with services.db.read() as conn:
            rows = (await conn.execute(select(alert_firings))).mappings().all()
        assert sorted((r["rule_name"], r["value"], r["resolved_value"]) for r in rows) == [
            ("r0", 3, 0), ("r1", 3, 0), ("r2", 3, 0)
        ]  # fmt: skip
    finally:
        await other.stop()


async def test_each_workspace_sees_only_its_rules_and_firings(api: Api) -> None:
    a = await api.key("acme")
    b = await api.key("globex")
    rule = await create(api, a, name="any", metric="REQUESTS", windowMinutes=5,
                        operator="GT", threshold=0)  # fmt: skip
    await api.ingest(a, [llm("x", timestamp=iso(BASE - timedelta(minutes=1)))])
    await api.ingest(b, [llm("y", timestamp=iso(BASE - timedelta(minutes=1)))])
    assert api.services.live is not None
    await api.services.live.alerts.evaluate_all(BASE)
    fired = (await api.data(a, FIRINGS, {"rule": None}))["alertFirings"]["nodes"]
    assert [(n["ruleId"], n["value"]) for n in fired] == [(rule["id"], 1)]  # acme's event only
    assert (await api.data(b, RULES))["alertRules"]["totalCount"] == 0
    assert (await api.data(b, ONE, {"id": rule["id"]}))["alertRule"] is None
    for rule_id in (None, rule["id"]):
        seen = (await api.data(b, FIRINGS, {"rule": rule_id}))["alertFirings"]
        assert (seen["totalCount"], seen["nodes"]) == (0, [])
    upd = await api.data(b, UPDATE, {"id": rule["id"], "input": {"threshold": 9}})
    assert upd["updateAlertRule"]["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]
    gone = await api.data(b, DELETE, {"id": rule["id"]})
    assert gone["deleteAlertRule"]["userErrors"] == [{"field": "id", "code": "NOT_FOUND"}]
    assert (await api.data(a, ONE, {"id": rule["id"]}))["alertRule"]["threshold"] == 0
    deleted = await api.data(a, DELETE, {"id": rule["id"]})
    assert deleted["deleteAlertRule"]["deletedId"] == rule["id"]
    (kept,) = (await api.data(a, FIRINGS, {"rule": None}))["alertFirings"]["nodes"]
    assert (kept["id"], kept["state"], kept["resolvedValue"]) == (fired[0]["id"], "RESOLVED", None)
    assert kept["resolvedAt"] is not None  # deleting a firing rule closes its firing


async def test_disabling_a_firing_rule_ends_its_firing(api: Api) -> None:
    key = await api.key()
    rule = await create(api, key, name="any", metric="REQUESTS", windowMinutes=5,
                        operator="GT", threshold=0, cooldownMinutes=0)  # fmt: skip
    await api.ingest(key, [llm("x", timestamp=iso(BASE - timedelta(minutes=1)))])
    assert api.services.live is not None
    alerts = api.services.live.alerts
    await alerts.evaluate_all(BASE)
    (fired,) = (await api.data(key, FIRINGS, {"rule": rule["id"]}))["alertFirings"]["nodes"]
    assert fired["state"] == "FIRING" and fired["resolvedAt"] is None

    off = await api.data(key, UPDATE, {"id": rule["id"], "input": {"enabled": False}})
    assert off["updateAlertRule"]["alertRule"]["state"] == "OK"
    (ended,) = (await api.data(key, FIRINGS, {"rule": rule["id"]}))["alertFirings"]["nodes"]
    assert (ended["id"], ended["state"]) == (fired["id"], "RESOLVED")
    assert ended["resolvedAt"] is not None
    await alerts.evaluate_all(BASE + timedelta(seconds=30))  # disabled: not evaluated
    assert (await api.data(key, ONE, {"id": rule["id"]}))["alertRule"]["state"] == "OK"

    # enabled again with the condition still true: a new firing, not the old one
    on = await api.data(key, UPDATE, {"id": rule["id"], "input": {"enabled": True}})
    assert on["updateAlertRule"]["alertRule"]["state"] == "OK"
    await alerts.evaluate_all(BASE + timedelta(minutes=1))
    nodes = (await api.data(key, FIRINGS, {"rule": rule["id"]}))["alertFirings"]["nodes"]
    assert len(nodes) == 2 and {n["state"] for n in nodes} == {"FIRING", "RESOLVED"}
    assert next(n for n in nodes if n["state"] == "FIRING")["id"] != fired["id"]


ALERTS = """subscription { events(types: [ALERT]) { __typename ... on AlertEvent {
  ruleId ruleName firingId transition metric operator threshold value windowMinutes at } } }"""


async def test_transitions_reach_the_rule_workspace_subscription(
    database_url: str, tmp_path: Path, db_kind: str
) -> None:
    settings = quiet_settings(database_url, tmp_path)
    async with live_server(settings, db_kind) as server:
        svc = server.app.state.services
        a, _ = await svc.keys.create("acme", Role.ADMIN, "a")
        b, _ = await svc.keys.create("globex", Role.ADMIN, "b")
        ws_a, ws_b = await workspace_id_of(svc, a), await workspace_id_of(svc, b)
        spec = EventFilterSpec(models=("m",))
        fields = RuleFields(name="a-rule", metric=Metric.P95_LATENCY_MS, window_seconds=600,
                            threshold=100.0, filter=spec, operator=Operator.GTE)  # fmt: skip
        rule_a = await create_rule(svc.db, ws_a, fields, Actor("t"))
        fields = RuleFields(name="b-rule", metric=Metric.REQUESTS, window_seconds=60)
        rule_b = await create_rule(svc.db, ws_b, fields, Actor("t"))
        now = datetime.now(UTC)
        latencies = [120, 80, 400, 250]
        mine = [llm(f"a{i}", model="m", timestamp=iso(now - timedelta(seconds=30 + i)),
                    latency_ms=ms) for i, ms in enumerate(latencies)]  # fmt: skip
        assert (await svc.ingest.ingest(ws_a, mine)).accepted == 4
        assert (await svc.ingest.ingest(ws_b, [llm("b0", timestamp=iso(now))])).accepted == 1
        async with subscribe(server, a, ALERTS) as sub_a, subscribe(server, b, ALERTS) as sub_b:
            async with asyncio.timeout(30):  # a regression fails here instead of hanging
                while svc.live.service.bus.subscriber_count < 2:  # noqa: ASYNC110 (no event)
                    await asyncio.sleep(0.01)
            await svc.live.alerts.evaluate_all(now + timedelta(seconds=1))
            fired = await sub_a.next()
            assert fired["__typename"] == "AlertEvent"
            assert (fired["ruleId"], fired["ruleName"], fired["transition"]) == (
                rule_a.id, "a-rule", "FIRING"
            )  # fmt: skip
            assert (fired["metric"], fired["operator"], fired["threshold"]) == (
                "P95_LATENCY_MS", "GTE", 100.0
            )  # fmt: skip
            p95 = metric_value("P95_LATENCY_MS", [normalise(e) for e in mine])
            assert close(p95, fired["value"], "P95_LATENCY_MS") and fired["windowMinutes"] == 10
            own = await sub_b.next()  # globex's first item is its own rule's
            assert (own["ruleId"], own["value"]) == (rule_b.id, 1)
            await svc.live.alerts.evaluate_all(now + timedelta(minutes=11))
            resolved = await sub_a.next()
            assert (resolved["transition"], resolved["firingId"], resolved["value"]) == (
                "RESOLVED", fired["firingId"], None
            )  # fmt: skip
