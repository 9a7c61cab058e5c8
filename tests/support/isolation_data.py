"""Two tenants with disjoint, recognisable data for tests/test_tenant_isolation.py.

Every string that belongs to tenant A contains "alpha" (B's contain "bravo"), so a leak of A
into B's answers shows up as the substring "alpha". Some ids are deliberately the same in both
tenants (an event, a session, a user, a group, an audit event, a policy, a priced model),
with different contents, so every lookup keyed by them must also be keyed by workspace.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api
from tests.support.helpers import iso, workspace_id_of
from tests.support.reference import normalise

SHARED_EVENT = "shared-evt"
SHARED_SESSION = "shared-sess"
SHARED_USER = "shared-user"
SHARED_GROUP = "shared-group"
SHARED_AUDIT = "shared-audit"
SHARED_POLICY = ("shared-pol", "shared policy")  # its description differs per tenant
COMMON_USER = "common-user"  # in both tenants' events, in neither directory
PRICED = ("openai", "gpt-4o-mini")
RATES = {"alpha": (1000.0, 1000.0), "bravo": (2.0, 4.0)}  # USD per Mtok: input, output
SCALE = {"alpha": 3, "bravo": 2}  # alpha has more, and costlier, traffic

Q = {
    "override": """mutation($i: PriceOverrideInput!) { createPriceOverride(input: $i) {
        priceOverride { id } userErrors { code } } }""",
    "users": """mutation($u: [UserInput!]!) { upsertUsers(users: $u) { userErrors { code } } }""",
    "group": """mutation($g: String!, $ids: [String!]!, $d: String) {
        setGroupMembers(group: $g, userIds: $ids, description: $d) { userErrors { code } } }""",
    "audit": """mutation($e: [AuditEventInput!]!) { recordAuditEvents(events: $e) {
        accepted rejected } }""",
    "webhook": """mutation($i: WebhookInput!) { createWebhook(input: $i) {
        webhook { id } userErrors { code } } }""",
    "report": """mutation($i: ReportInput!) { createReport(input: $i) {
        report { id } userErrors { field code } } }""",
    "budget": """mutation($i: BudgetInput!) { createBudget(input: $i) {
        budget { id } userErrors { field code } } }""",
    "rule": """mutation($i: AlertRuleInput!) { createAlertRule(input: $i) {
        alertRule { id } userErrors { field code } } }""",
}


@dataclass
class Tenant:
    name: str
    key: str = ""
    key_id: str = ""
    workspace_id: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    """Normalised (tests/support/reference.py), each with the cost it must have been given."""
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    groups: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    """override, webhook, budget, rule, firing and delivery ids."""
    webhook_url: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    """claude_code.cost.usage sent through /v1/metrics, by model (one model in both)."""


def events_of(p: str, now: datetime) -> list[dict[str, Any]]:
    """LLM calls, tool calls, an agent run and the shared event, all in the last 2 hours."""
    k = SCALE[p]
    users = (f"{p}-user-0", f"{p}-user-1", SHARED_USER)
    sessions = (f"{p}-sess-0", f"{p}-sess-1", SHARED_SESSION)
    out: list[dict[str, Any]] = []
    for i in range(4 * k):
        out.append(
            {
                "id": f"{p}-llm-{i}",
                "timestamp": iso(now - timedelta(minutes=3 + 7 * i)),
                "provider": f"{p}-prov",
                "model": f"{p}-model-{i % 2}",
                "user_id": users[i % 3],
                "session_id": sessions[i % 3],
                "api_key_id": f"{p}-apikey-{i % 2}",
                "agent_id": f"{p}-agent",
                "agent_instance_id": f"{p}-agent-i{i % 2}",
                "node": f"{p}-node",
                "trace_id": f"{p}-trace-{i % 3}",
                "gateway": f"{p}-gw",
                "request_type": f"{p}-chat",
                "tags": [f"{p}-tag"],
                "metadata": {"tenant": p},
                "input_tokens": 100 * (i + 1) * k,
                "output_tokens": 10 * (i + 1) * k,
                "latency_ms": 20.0 * (i + 1) + k,
                "cost_usd": (i + 1) * k / 1000,
                **({"status": "error", "error_type": "rate_limit"} if i % 4 == 3 else {}),
            }
        )
    for i in range(2 * k):
        out.append(
            {
                "id": f"{p}-tool-{i}",
                "timestamp": iso(now - timedelta(minutes=4 + 9 * i, seconds=k)),
                "kind": "tool_call",
                "tool": f"{p}-tool-{i % 2}",
                "mcp_server": f"{p}-mcp",
                "user_id": (COMMON_USER, users[0])[i % 2],
                "agent_id": f"{p}-agent",
                "agent_instance_id": f"{p}-agent-i{i % 2}",
                "gateway": f"{p}-gw",
                "latency_ms": 5.0 * (i + 1),
                "cost_usd": k / 10_000,
                "metadata": {"tenant": p},
                **(
                    {
                        "status": "blocked",
                        "policy_id": SHARED_POLICY[0],
                        "policy_name": SHARED_POLICY[1],
                        "policy_description": f"{p} policy text",
                    }
                    if i == 0
                    else {}
                ),
                **({"status": "error", "error_type": "timeout"} if i == 1 else {}),
            }
        )
    out.append(
        {
            "id": f"{p}-run",
            "timestamp": iso(now - timedelta(minutes=90)),
            "kind": "agent_run",
            "agent_id": f"{p}-agent",
            "run_id": f"{p}-run",
            "latency_ms": 1000.0 * k,
        }
    )
    out.append(
        {
            "id": SHARED_EVENT,
            "timestamp": iso(now - timedelta(minutes=2)),
            "provider": PRICED[0],
            "model": PRICED[1],
            "user_id": SHARED_USER,
            "session_id": SHARED_SESSION,
            "input_tokens": 1000 * k,
            "output_tokens": 100 * k,
            "latency_ms": 300.0 * k,
            "tags": ["shared-tag"],
            "metadata": {"tenant": p},
            "request": {"prompt": f"{p} secret prompt"},
            "response": {"text": f"{p} answer"},
        }
    )
    return out


def expected(p: str, sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the tenant's events must look like once stored: the shared event is priced with
    the tenant's own override (never the other tenant's)."""
    out = []
    for event in sent:
        e = normalise(event)
        if e["id"] == SHARED_EVENT:
            rate_in, rate_out = RATES[p]
            nano = round((e["input_tokens"] * rate_in + e["output_tokens"] * rate_out) * 1000)
            e["cost_usd"], e["cost_source"] = nano / 1e9, "computed"
        out.append(e)
    return out


async def _ok(api: Api, key: str, name: str, variables: dict[str, Any]) -> dict[str, Any]:
    data = await api.data(key, Q[name], variables)
    payload = next(iter(data.values()))
    assert not payload.get("userErrors"), payload
    return payload


async def build(api: Api, p: str, hook_base: str, now: datetime) -> Tenant:
    """One tenant: price override, directory, audit trail, events, webhook, budget, rule."""
    t = Tenant(p)
    t.key = await api.key(workspace=f"{p}-ws")
    principal = await api.services.keys.authenticate(t.key)
    assert principal is not None
    t.key_id, t.workspace_id = principal.key_id, await workspace_id_of(api.services, t.key)
    rate_in, rate_out = RATES[p]
    made = await _ok(
        api,
        t.key,
        "override",
        {
            "i": {
                "provider": PRICED[0],
                "model": PRICED[1],
                "inputPerMtok": rate_in,
                "outputPerMtok": rate_out,
                "description": f"{p} override",
            }
        },
    )
    t.ids["override"] = made["priceOverride"]["id"]
    t.users = {
        f"{p}-user-0": {"email": f"zero@{p}.example", "displayName": f"{p} zero"},
        f"{p}-user-1": {"email": f"one@{p}.example", "displayName": f"{p} one"},
        SHARED_USER: {"email": f"shared@{p}.example", "displayName": f"{p} shared"},
    }
    people = [{"id": i, **u} for i, u in t.users.items()]
    await _ok(api, t.key, "users", {"u": people})
    # A's shared group holds a user id that also sends events in B but is not in B's group
    theirs = COMMON_USER if p == "alpha" else f"{p}-user-1"
    t.groups = {
        SHARED_GROUP: (f"{p} team", [theirs, SHARED_USER]),
        f"{p}-group": (f"{p} only", [f"{p}-user-0"]),
    }
    for name, (description, ids) in t.groups.items():
        await _ok(api, t.key, "group", {"g": name, "ids": ids, "d": description})
    t.audit = [
        {
            "id": f"{p}-audit-{n}",
            "actorType": "USER",
            "actorId": f"{p}-actor",
            "action": action,
            "resourceType": f"{p}-thing",
            "resourceId": f"{p}-res-{n}",
            "details": {"by": p},
        }
        for n, action in enumerate(("CREATE", "EXPORT", "DELETE")[: SCALE[p]])
    ] + [
        {
            "id": SHARED_AUDIT,
            "actorType": "SYSTEM",
            "actorId": f"{p}-system",
            "action": "LOGIN",
            "resourceType": "session",
            "details": {"by": p},
        }
    ]
    done = (await api.data(t.key, Q["audit"], {"e": t.audit}))["recordAuditEvents"]
    assert (done["accepted"], done["rejected"]) == (len(t.audit), 0)
    await _send_metrics(api, t, now)
    sent = events_of(p, now)
    result = await api.ingest(t.key, sent)
    assert (result["accepted"], result["duplicates"]) == (len(sent), 0), result
    t.events = expected(p, sent)
    t.webhook_url = f"{hook_base}/{p}-hook"
    made = await _ok(api, t.key, "webhook", {"i": {"url": t.webhook_url, "description": p}})
    t.ids["webhook"] = made["webhook"]["id"]
    made = await _ok(
        api,
        t.key,
        "budget",
        {"i": {"name": f"{p} budget", "amountUsd": 50 * SCALE[p], "period": "MONTH"}},
    )
    t.ids["budget"] = made["budget"]["id"]
    made = await _ok(
        api,
        t.key,
        "rule",
        {
            "i": {
                "name": f"{p} rule",
                "metric": "REQUESTS",
                "windowMinutes": 240,
                "operator": "GT",
                "threshold": 0,
                "webhookIds": [t.ids["webhook"]],
            }
        },
    )
    t.ids["rule"] = made["alertRule"]["id"]
    report = {
        "name": f"{p} report",
        "schedule": "0 8 * * *",
        "sections": [{"kind": "OVERVIEW"}],
        "webhookIds": [t.ids["webhook"]],
    }
    t.ids["report"] = (await _ok(api, t.key, "report", {"i": report}))["report"]["id"]
    return t


def _otlp_value(value: Any) -> dict[str, Any]:
    return {"doubleValue": value} if isinstance(value, float) else {"stringValue": value}


async def _send_metrics(api: Api, t: Tenant, now: datetime) -> None:
    """A delta cost counter by model; the shared model's series has the same name and
    attributes (so the same series id) in both tenants."""
    p = t.name
    t.metrics = {SHARED_SESSION: 0.5 * SCALE[p], f"{p}-model-0": 0.25 * SCALE[p]}
    at = int((now - timedelta(minutes=30)).timestamp()) * 1_000_000_000
    points = [
        {
            "startTimeUnixNano": str(at - 60_000_000_000),
            "timeUnixNano": str(at),
            "asDouble": value,
            "attributes": [{"key": "model", "value": _otlp_value(model)}],
        }
        for model, value in t.metrics.items()
    ]
    metric = {
        "name": "claude_code.cost.usage",
        "unit": "USD",
        "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": points},
    }
    body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}
    response = await api.client.post(
        "/v1/metrics", json=body, headers={"Authorization": f"Bearer {t.key}"}
    )
    assert response.status_code == 200 and response.json() == {}, response.text


async def build_world(api: Api, hook_base: str) -> tuple[Tenant, Tenant]:
    """Tenants A (alpha) and B (bravo), then one alert evaluation: each rule fires once and
    enqueues one delivery to its own webhook (the receiver at `hook_base`)."""
    now = datetime.now(UTC)
    a = await build(api, "alpha", hook_base, now)
    b = await build(api, "bravo", hook_base, now)
    assert api.services.live is not None
    await api.services.live.alerts.evaluate_all()
    for t in (a, b):
        data = await api.data(
            t.key, "{ alertFirings { nodes { id } } webhookDeliveries { nodes { id } } }"
        )
        (firing,) = data["alertFirings"]["nodes"]
        (delivery,) = data["webhookDeliveries"]["nodes"]
        t.ids["firing"], t.ids["delivery"] = firing["id"], delivery["id"]
    return a, b


# ---------------------------------------------------------------- plain-Python reference

Events = list[dict[str, Any]]


def cost(events: Iterable[dict[str, Any]]) -> float:
    return sum(round(e.get("cost_usd", 0) * 1e9) for e in events) / 1e9


def by(events: Iterable[dict[str, Any]], column: str) -> dict[Any, Events]:
    out: dict[Any, Events] = defaultdict(list)
    for e in events:
        out[e.get(column)].append(e)
    return dict(out)


def counts(events: Events, column: str) -> dict[Any, int]:
    return {k: len(v) for k, v in by(events, column).items() if k is not None}


def costs(events: Events, column: str, nulls: bool = False) -> dict[Any, float]:
    return {k: cost(v) for k, v in by(events, column).items() if nulls or k is not None}


def pick(t: Tenant, column: str, *values: Any) -> Events:
    """The tenant's events whose `column` is one of `values` (any non-null one without)."""
    return [e for e in t.events if (e.get(column) in values if values else e.get(column))]


def shared(t: Tenant) -> dict[str, Any]:
    return next(e for e in t.events if e["id"] == SHARED_EVENT)


def usage(events: Events) -> dict[str, Any]:
    return {"requests": len(events), "costUsd": pytest.approx(cost(events), abs=1e-9)}


def near(got: dict[Any, float], want: dict[Any, float]) -> None:
    assert got.keys() == want.keys(), (got, want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def markers(t: Tenant) -> list[str]:
    """Strings of tenant t that must never appear in the other tenant's answers."""
    return [t.name, t.key_id.lower(), *(v.lower() for v in t.ids.values())]
