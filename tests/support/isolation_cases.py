"""What every root field of Query must answer to one tenant: a query body per field and a
check of its answer against a plain-Python recomputation from the tenant's own data
(tests/support/isolation_data.py). Used by tests/test_tenant_isolation.py, whose guard fails when a
root field of the schema has no case here."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api
from tests.support.isolation_data import (
    PRICED,
    RATES,
    SHARED_EVENT,
    SHARED_GROUP,
    SHARED_POLICY,
    SHARED_SESSION,
    SHARED_USER,
    Tenant,
    by,
    cost,
    costs,
    counts,
    near,
    pick,
    shared,
    usage,
)
from tests.support.notify_helpers import local_period
from tests.support.reference import aggregate, metric_value

W = dict[str, datetime]
Check = Callable[[Any, Tenant, W], None]
CASES: dict[str, tuple[str, Check | None]] = {  # None: refused to every tenant's admin
    "workspaces": ("workspaces(range: $r) { nodes { id name costUsd } }", None),
}


def window() -> W:
    """The range every case asks about: it holds all the tenants' events."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    return {"start": start, "end": start + timedelta(hours=4)}


def case(field: str, body: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        assert field not in CASES, field
        CASES[field] = (body, check)
        return check

    return register


# ---------------------------------------------------------------- one case per root field


@case("me", "me { workspace workspaceId role keyId }")
def _me(d: Any, t: Tenant, w: W) -> None:
    assert [*d.values()] == [f"{t.name}-ws", str(t.workspace_id), "admin", t.key_id]


@case(
    "requests",
    "requests(range: $r, first: 100) { totalCount nodes { id costUsd userId "
    "sessionId user { email } session { requestCount } payload { request response } } }",
)
def _requests(d: Any, t: Tenant, w: W) -> None:
    assert d["totalCount"] == len(t.events)
    near({n["id"]: n["costUsd"] for n in d["nodes"]}, {e["id"]: cost([e]) for e in t.events})
    for n in d["nodes"]:
        assert (n["user"] or {}).get("email") == t.users.get(n["userId"], {}).get("email")
        if n["sessionId"]:
            assert n["session"]["requestCount"] == len(pick(t, "session_id", n["sessionId"]))
    e = shared(t)
    payloads = {n["id"]: n["payload"] for n in d["nodes"] if n["payload"]}
    assert payloads == {SHARED_EVENT: {"request": e["request"], "response": e["response"]}}


@case(
    "request",
    f'request(id: "{SHARED_EVENT}") {{ id model inputTokens costSource metadata costUsd '
    "payload { request response } user { email } session { requestCount } }",
)
def _request(d: Any, t: Tenant, w: W) -> None:
    e = shared(t)
    assert [*d.values()][:4] == [e["id"], e["model"], e["input_tokens"], "COMPUTED"]
    assert (d["metadata"], d["costUsd"]) == ({"tenant": t.name}, pytest.approx(e["cost_usd"]))
    assert d["payload"] == {"request": e["request"], "response": e["response"]}
    assert d["user"]["email"] == t.users[SHARED_USER]["email"]
    assert d["session"]["requestCount"] == len(pick(t, "session_id", SHARED_SESSION))


OVERVIEW_PAIRS = """totalRequests:REQUESTS errorRate:ERROR_RATE costUsd:COST_USD
    blockedRequests:BLOCKED inputTokens:INPUT_TOKENS outputTokens:OUTPUT_TOKENS
    activeUsers:UNIQUE_USERS activeAgents:UNIQUE_AGENTS activeTools:UNIQUE_TOOLS
    activeGateways:UNIQUE_GATEWAYS modelsUsed:UNIQUE_MODELS uniqueCallers:UNIQUE_CALLERS
    avgLatencyMs:AVG_LATENCY_MS"""
OVERVIEW = dict(pair.split(":") for pair in OVERVIEW_PAIRS.split())  # field: reference metric


@case("overview", f"overview(range: $r) {{ {' '.join(OVERVIEW)} }}")
def _overview(d: Any, t: Tenant, w: W) -> None:
    # The overview's latency covers LLM calls when the filter names no kinds (issue 23).
    llm_calls = [e for e in t.events if e["kind"] == "llm_call"]
    assert len(llm_calls) < len(t.events)  # the tenants' traffic mixes kinds
    want = {f: metric_value(m, t.events) for f, m in OVERVIEW.items()}
    want["avgLatencyMs"] = metric_value("AVG_LATENCY_MS", llm_calls)
    near(d, want)


def grouped(t: Tenant, w: W, metrics: list[str], dims: list[str], grain: str | None = None) -> Any:
    dimensions = [(d, None) for d in dims]
    return aggregate(t.events, metrics, dimensions, w["start"], w["end"], UTC, grain, {}, {})


@case(
    "timeseries",
    "timeseries(metrics: [REQUESTS, COST_USD], range: $r, granularity: HOUR, "
    "groupBy: MODEL, limitGroups: 20) { buckets series { metric group isOther values } }",
)
def _timeseries(d: Any, t: Tenant, w: W) -> None:
    want = grouped(t, w, ["REQUESTS", "COST_USD"], ["MODEL"], "HOUR")
    got: dict[tuple[Any, ...], float] = {}
    for s in d["series"]:
        assert not s["isOther"]
        for bucket, v in zip(d["buckets"], s["values"], strict=True):
            if v:
                got[(datetime.fromisoformat(bucket).isoformat(), s["group"], s["metric"])] = v
    assert {k[1] for k in got} == {e.get("model") for e in t.events}
    near(got, {(*k, m): v for k, vs in want.items() for m, v in vs.items() if v})


@case(
    "breakdown",
    "breakdown(dimension: USER, metrics: [REQUESTS, COST_USD], range: $r, "
    "first: 50) { totalCount nodes { key values } }",
)
def _breakdown(d: Any, t: Tenant, w: W) -> None:
    want = grouped(t, w, ["REQUESTS", "COST_USD"], ["USER"])
    got = {(None, n["key"]): n["values"] for n in d["nodes"]}
    assert d["totalCount"] == len(got) and got.keys() == want.keys()
    for k, values in got.items():
        assert values == pytest.approx([want[k]["REQUESTS"], want[k]["COST_USD"]]), k


@case("hourlyDistribution", "hourlyDistribution(metric: REQUESTS, range: $r)")
def _hourly(d: Any, t: Tenant, w: W) -> None:
    assert d == [sum(e["ts"].hour == h for e in t.events) for h in range(24)]


@case(
    "errors",
    "errors(range: $r) { totalErrors byType { type count } byModel { provider model errors } }",
)
def _errors(d: Any, t: Tenant, w: W) -> None:
    errors = pick(t, "status", "error")
    assert d["totalErrors"] == len(errors)
    assert {x["type"]: x["count"] for x in d["byType"]} == counts(errors, "error_type")
    got = {(m["provider"], m["model"]): m["errors"] for m in d["byModel"] if m["errors"]}
    assert got == Counter((e.get("provider"), e.get("model")) for e in errors)


@case(
    "metrics",
    "metrics(query: {metrics: [REQUESTS, COST_USD, INPUT_TOKENS], range: $r, "
    "dimensions: [{dimension: TAG}, {dimension: PROVIDER}]}) { totalRows rows { keys values } }",
)
def _metrics(d: Any, t: Tenant, w: W) -> None:
    names = ["REQUESTS", "COST_USD", "INPUT_TOKENS"]
    want = grouped(t, w, names, ["TAG", "PROVIDER"])
    got = {(None, *r["keys"]): r["values"] for r in d["rows"]}
    assert d["totalRows"] == len(got) and got.keys() == want.keys()
    for k, values in got.items():
        assert values == pytest.approx([want[k][m] for m in names]), k


@case("priceOverrides", "priceOverrides { id provider model inputPerMtok description }")
def _overrides(d: Any, t: Tenant, w: W) -> None:
    mine = [t.ids["override"], *PRICED, RATES[t.name][0], f"{t.name} override"]
    assert [[*o.values()] for o in d] == [mine]


@case("models", "models(range: $r) { provider model requests costUsd price { source overrideId } }")
def _models(d: Any, t: Tenant, w: W) -> None:
    llm = by(pick(t, "model"), "model")
    got = {(m["provider"], m["model"]): m["costUsd"] for m in d}
    near(got, {(v[0]["provider"], k): cost(v) for k, v in llm.items()})
    assert {m["model"]: m["requests"] for m in d} == {k: len(v) for k, v in llm.items()}
    price = next(m["price"] for m in d if m["model"] == PRICED[1])
    assert price == {"source": "OVERRIDE", "overrideId": t.ids["override"]}


TOPS = {"topModels": "model", "topUsers": "user_id", "topAgents": "agent_id"}


@case(
    "costInsights",
    "costInsights(range: $r) { totalUsd topModels { key costUsd } topUsers { key costUsd } "
    "topAgents { key costUsd } byRequestType { key costUsd } recommendations { model title } }",
)
def _cost_insights(d: Any, t: Tenant, w: W) -> None:
    assert d["totalUsd"] == pytest.approx(cost(t.events))
    for field, column in {**TOPS, "byRequestType": "request_type"}.items():
        near({s["key"]: s["costUsd"] for s in d[field] if s["key"]}, costs(t.events, column))


@case(
    "modelComparison",
    f'modelComparison(models: [{{provider: "{PRICED[0]}", model: "{PRICED[1]}"}}, '
    '{model: "@P-model-0"}], range: $r) { model requests costUsd price { source overrideId } }',
)
def _comparison(d: Any, t: Tenant, w: W) -> None:
    for row, model in zip(d, (PRICED[1], f"{t.name}-model-0"), strict=True):
        mine = pick(t, "model", model)
        assert (row["model"], row["requests"]) == (model, len(mine))
        assert row["costUsd"] == pytest.approx(cost(mine))
    assert d[0]["price"] == {"source": "OVERRIDE", "overrideId": t.ids["override"]}


@case("dailyCostByModel", "dailyCostByModel(range: $r) { totals series { model totalUsd } }")
def _daily(d: Any, t: Tenant, w: W) -> None:
    assert sum(d["totals"]) == pytest.approx(cost(t.events))
    near({s["model"]: s["totalUsd"] for s in d["series"]}, costs(t.events, "model", nulls=True))


def _quarter_events(t: Tenant, w: W) -> list[dict[str, Any]]:
    first = w["start"].replace(
        month=(w["start"].month - 1) // 3 * 3 + 1, day=1, hour=0, minute=0, second=0
    )
    index = first.year * 12 + first.month - 1 + 3
    end = first.replace(year=index // 12, month=index % 12 + 1)
    return [e for e in t.events if first <= e["ts"] < end]


STATEMENT_LINES = "totals { requests costUsd } members { key requests costUsd }"


@case(
    "statements",
    "statements(period: QUARTER, of: $of) { totals { requests costUsd } "
    f"departments {{ department {STATEMENT_LINES} }} }}",
)
def _statements(d: Any, t: Tenant, w: W) -> None:
    events = _quarter_events(t, w)
    assert d["totals"]["requests"] == len(events)
    assert d["totals"]["costUsd"] == pytest.approx(cost(events), abs=1e-9)
    assert [x["department"] for x in d["departments"]] == [None]  # no tenant has departments
    members = d["departments"][0]["members"]
    assert {m["key"]: m["requests"] for m in members} == {
        k: len(v) for k, v in by(events, "user_id").items()
    }
    near({m["key"]: m["costUsd"] for m in members}, costs(events, "user_id", nulls=True))


@case(
    "statement",
    f"statement(period: QUARTER, of: $of, department: null) {{ department {STATEMENT_LINES} }}",
)
def _statement(d: Any, t: Tenant, w: W) -> None:
    events = _quarter_events(t, w)
    assert d["department"] is None and d["totals"]["requests"] == len(events)
    near({m["key"]: m["costUsd"] for m in d["members"]}, costs(events, "user_id", nulls=True))


@case(
    "sessions",
    "sessions(range: $r, first: 50) { totalCount nodes { id userId requestCount "
    "costUsd user { email } models { model requests } } }",
)
def _sessions(d: Any, t: Tenant, w: W) -> None:
    sessions = by(pick(t, "session_id"), "session_id")
    assert d["totalCount"] == len(sessions) == len(d["nodes"])
    for n in d["nodes"]:
        mine = sessions[n["id"]]
        assert (n["requestCount"], n["userId"]) == (len(mine), mine[0]["user_id"])
        assert n["costUsd"] == pytest.approx(cost(mine))
        assert n["user"]["email"] == t.users[n["userId"]]["email"]
        assert {m["model"]: m["requests"] for m in n["models"]} == counts(mine, "model")


@case(
    "session",
    f'session(id: "{SHARED_SESSION}") {{ id requestCount costUsd user {{ email }} '
    "requests(first: 50) { nodes { id } } comparison { baselineSessions } }",
)
def _session(d: Any, t: Tenant, w: W) -> None:
    mine = pick(t, "session_id", SHARED_SESSION)
    assert [*d.values()][:3] == [SHARED_SESSION, len(mine), pytest.approx(cost(mine))]
    assert d["user"]["email"] == t.users[SHARED_USER]["email"]
    assert sorted(n["id"] for n in d["requests"]["nodes"]) == sorted(e["id"] for e in mine)
    assert d["comparison"]["baselineSessions"] == len(by(pick(t, "session_id"), "session_id"))


@case("sessionStats", "sessionStats(range: $r) { sessions requests { avg } costUsd { avg } }")
def _session_stats(d: Any, t: Tenant, w: W) -> None:
    in_sessions = pick(t, "session_id")
    n = len(by(in_sessions, "session_id"))
    assert d["sessions"] == n
    assert d["requests"]["avg"] == pytest.approx(len(in_sessions) / n)
    assert d["costUsd"]["avg"] == pytest.approx(cost(in_sessions) / n)


TOOL_TOPS = {
    "topTools": "tool",
    "topUsers": "user_id",
    "topMcpServers": "mcp_server",
    "topAgentInstances": "agent_instance_id",
}


@case(
    "toolUsage",
    "toolUsage(range: $r) { executions errors blocked uniqueTools mcpServers activeUsers "
    "activeAgentInstances topTools { nodes { key: tool calls } } topUsers { nodes { key: userId "
    "calls user { email } } } topMcpServers { nodes { key: mcpServer calls } } "
    "topAgentInstances { nodes { key: agentInstanceId calls } } }",
)
def _tool_usage(d: Any, t: Tenant, w: W) -> None:
    tools = pick(t, "kind", "tool_call")
    errors, blocked = metric_value("ERRORS", tools), metric_value("BLOCKED", tools)
    assert [*d.values()][:3] == [len(tools), errors, blocked]
    distinct = [len(counts(tools, c)) for c in ("tool", "mcp_server", "user_id")]
    assert [*d.values()][3:7] == [*distinct, len(counts(tools, "agent_instance_id"))]
    for field, column in TOOL_TOPS.items():
        assert {n["key"]: n["calls"] for n in d[field]["nodes"]} == counts(tools, column), field


@case(
    "security",
    "security(range: $r) { blockedCalls totalRequests topPolicies { nodes { policyId "
    "policyName policyDescription blockedCalls } } topBlockedUsers { nodes { userId calls } } }",
)
def _security(d: Any, t: Tenant, w: W) -> None:
    blocked = pick(t, "status", "blocked")
    assert (d["blockedCalls"], d["totalRequests"]) == (len(blocked), len(t.events))
    policy = [*SHARED_POLICY, f"{t.name} policy text", len(blocked)]
    assert [[*n.values()] for n in d["topPolicies"]["nodes"]] == [policy]
    got = {n["userId"]: n["calls"] for n in d["topBlockedUsers"]["nodes"]}
    assert got == counts(blocked, "user_id")


@case(
    "agents",
    "agents(range: $r, first: 50) { totalCount nodes { agentId runs requests instances "
    "costUsd nodes { node } } }",
)
def _agents(d: Any, t: Tenant, w: W) -> None:
    mine, runs = pick(t, "agent_id"), pick(t, "kind", "agent_run")
    assert d["totalCount"] == 1
    (agent,) = d["nodes"]
    instances = len(counts(mine, "agent_instance_id"))
    assert [*agent.values()][:4] == [f"{t.name}-agent", len(runs), len(mine), instances]
    assert agent["costUsd"] == pytest.approx(cost(mine))
    assert agent["nodes"] == [{"node": f"{t.name}-node"}]


@case("gateways", "gateways(range: $r, first: 50) { nodes { gateway requests costUsd } }")
def _gateways(d: Any, t: Tenant, w: W) -> None:
    near({n["gateway"]: n["requests"] for n in d["nodes"]}, counts(t.events, "gateway"))
    near({n["gateway"]: n["costUsd"] for n in d["nodes"]}, costs(t.events, "gateway"))


@case(
    "auditEvents",
    "auditEvents(first: 100) { totalCount nodes { id actorId resourceType resourceId details } }",
)
def _audit(d: Any, t: Tenant, w: W) -> None:
    assert d["totalCount"] == len(d["nodes"])
    recorded = {n["id"]: n for n in d["nodes"] if n["id"] in {a["id"] for a in t.audit}}
    got = {i: (n["actorId"], n["details"]) for i, n in recorded.items()}
    assert got == {a["id"]: (a["actorId"], {"by": t.name}) for a in t.audit}
    changes = {(n["resourceType"], n["resourceId"]) for n in d["nodes"] if n["id"] not in recorded}
    for name, resource in (("budget", "budget"), ("rule", "alert_rule"), ("webhook", "webhook")):
        assert (resource, t.ids[name]) in changes  # the tenant's own changes are in its trail


@case(
    "agentMetrics",
    'agentMetrics(range: $r, groupBy: ["model"]) { name unit group total series points }',
)
def _agent_metrics(d: Any, t: Tenant, w: W) -> None:
    assert {g["group"]["model"]: g["total"] for g in d} == t.metrics
    assert {(g["name"], g["unit"], g["series"], g["points"]) for g in d} == {
        ("claude_code.cost.usage", "USD", 1, 1)
    }


USAGE = "usage(range: $r) { requests costUsd }"
USER = f"id email displayName groups {USAGE}"
GROUP = f"name description memberIds members {{ id }} {USAGE}"


def check_users(nodes: list[dict[str, Any]], t: Tenant, ids: set[str]) -> None:
    assert {n["id"] for n in nodes} == ids
    for n in nodes:
        assert {"email": n["email"], "displayName": n["displayName"]} == t.users[n["id"]]
        assert n["groups"] == sorted(g for g, (_, ids) in t.groups.items() if n["id"] in ids)
        assert n["usage"] == usage(pick(t, "user_id", n["id"]))


def check_groups(nodes: list[dict[str, Any]], t: Tenant, names: set[str]) -> None:
    assert {n["name"] for n in nodes} == names
    for n in nodes:
        description, ids = t.groups[n["name"]]
        assert (n["description"], n["memberIds"]) == (description, sorted(ids))
        assert [m["id"] for m in n["members"]] == sorted(set(ids) & set(t.users))
        assert n["usage"] == usage(pick(t, "user_id", *ids))


@case("users", f"users(first: 100) {{ totalCount nodes {{ {USER} }} }}")
def _users(d: Any, t: Tenant, w: W) -> None:
    assert d["totalCount"] == len(d["nodes"])
    check_users(d["nodes"], t, set(t.users))


@case("user", f'user(id: "{SHARED_USER}") {{ {USER} }}')
def _user(d: Any, t: Tenant, w: W) -> None:
    check_users([d], t, {SHARED_USER})


@case("groups", f"groups(first: 50) {{ totalCount nodes {{ {GROUP} }} }}")
def _groups(d: Any, t: Tenant, w: W) -> None:
    assert d["totalCount"] == len(d["nodes"])
    check_groups(d["nodes"], t, set(t.groups))


@case("group", f'group(name: "{SHARED_GROUP}") {{ {GROUP} }}')
def _group(d: Any, t: Tenant, w: W) -> None:
    check_groups([d], t, {SHARED_GROUP})


@case("budgets", "budgets(first: 50) { totalCount nodes { id name currentSpendUsd } }")
def _budgets(d: Any, t: Tenant, w: W) -> None:
    assert d["totalCount"] == 1
    _budget(d["nodes"][0], t, w)


@case("budget", "budget(id: $budget) { id name currentSpendUsd }")
def _budget(d: Any, t: Tenant, w: W) -> None:
    start, end, _ = local_period("MONTH", datetime.now(UTC), "UTC")
    spend = cost(e for e in t.events if start <= e["ts"] < end)
    assert [*d.values()] == [t.ids["budget"], f"{t.name} budget", pytest.approx(spend)]


@case(
    "alertRules",
    "alertRules(first: 50) { totalCount nodes { id name state lastValue webhookIds } }",
)
def _rules(d: Any, t: Tenant, w: W) -> None:
    assert d["totalCount"] == 1
    _rule(d["nodes"][0], t, w)


@case("alertRule", "alertRule(id: $rule) { id name state lastValue webhookIds }")
def _rule(d: Any, t: Tenant, w: W) -> None:
    mine = [t.ids["rule"], f"{t.name} rule", "FIRING", len(t.events), [t.ids["webhook"]]]
    assert [*d.values()] == mine


@case("alertFirings", "alertFirings(first: 50) { totalCount nodes { id ruleId ruleName value } }")
def _firings(d: Any, t: Tenant, w: W) -> None:
    mine = [t.ids["firing"], t.ids["rule"], f"{t.name} rule", len(t.events)]
    assert (d["totalCount"], [[*n.values()] for n in d["nodes"]]) == (1, [mine])


@case("reports", "reports(first: 50) { totalCount nodes { id name webhookIds } }")
def _reports(d: Any, t: Tenant, w: W) -> None:
    mine = {"id": t.ids["report"], "name": f"{t.name} report", "webhookIds": [t.ids["webhook"]]}
    assert d == {"totalCount": 1, "nodes": [mine]}


@case("report", "report(id: $report) { id name runs(first: 5) { totalCount } }")
def _report(d: Any, t: Tenant, w: W) -> None:
    assert d == {"id": t.ids["report"], "name": f"{t.name} report", "runs": {"totalCount": 0}}


@case("chartPresets", "chartPresets { id title }")
def _chart_presets(d: Any, t: Tenant, w: W) -> None:
    assert len(d) == 6  # the same six for every workspace


@case(
    "chart",
    'chart(preset: "requests-by-provider", range: $r) { kind vegaLite }',
)
def _chart(d: Any, t: Tenant, w: W) -> None:
    drawn = {r["Provider"]: r["Value"] for r in d["vegaLite"]["data"]["values"]}
    assert drawn == {k or "(none)": len(v) for k, v in by(t.events, "provider").items()}


@case(
    "ask",
    'ask(question: "requests by model in the last 24 hours") '
    "{ understood result { rows { keys values } } }",
)
def _ask(d: Any, t: Tenant, w: W) -> None:
    assert d["understood"] is True
    rows = {r["keys"][0]: r["values"][0] for r in d["result"]["rows"]}
    assert rows == {k: len(v) for k, v in by(t.events, "model").items()}


@case("providerConnection", "providerConnection { provider lastSyncAt }")
@case("providerCredits", "providerCredits { remainingUsd }")
@case("providerKey", "providerKey { label }")
def _no_provider(d: Any, t: Tenant, w: W) -> None:
    assert d is None  # no tenant connected a provider account


@case("webhooks", "webhooks(first: 50) { totalCount nodes { id url } }")
def _webhooks(d: Any, t: Tenant, w: W) -> None:
    assert d == {"totalCount": 1, "nodes": [{"id": t.ids["webhook"], "url": t.webhook_url}]}


@case(
    "webhookDeliveries",
    "webhookDeliveries(first: 50) { totalCount nodes { id webhookId url eventType payload } }",
)
def _deliveries(d: Any, t: Tenant, w: W) -> None:
    assert d["totalCount"] == 1
    (n,) = d["nodes"]
    mine = [t.ids["delivery"], t.ids["webhook"], t.webhook_url, "alert.firing"]
    assert ([*n.values()][:4], n["payload"]["workspaceId"]) == (mine, t.workspace_id)


VARS = {
    "r": "TimeRangeInput!",
    "of": "Date!",
    "budget": "ID!",
    "rule": "ID!",
    "hook": "ID!",
    "report": "ID!",
    "ws": "ID",
}
IDS = {"budget": "budget", "rule": "rule", "hook": "webhook", "report": "report"}


async def ask(api: Api, t: Tenant, body: str, w: W, **extra: Any) -> Any:
    """`body` as a query from tenant t, declaring the variables it uses ("@P": t's name)."""
    body = body.replace("@P", t.name)
    used = [n for n in VARS if re.search(rf"\${n}\b", body)]
    head = "query(" + ", ".join(f"${n}: {VARS[n]}" for n in used) + ")" if used else "query"
    r = {"start": w["start"].isoformat(), "end": w["end"].isoformat()}
    of = w["start"].date().isoformat()  # statements: the UTC quarter the window starts in
    values = {"r": r, "of": of, **{k: t.ids[v] for k, v in IDS.items()}, **extra}
    return await api.graphql(t.key, f"{head} {{ {body} }}", {n: values[n] for n in used})
