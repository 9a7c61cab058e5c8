"""Admin keys of the operator workspace look across workspaces; every other key is refused."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tallyql.auth.principal import Role
from tests.conftest import Api
from tests.support.helpers import iso, workspace_id_of

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
RANGE = {"start": iso(TODAY - timedelta(days=5)), "end": iso(TODAY)}
PLAN: dict[str, list[tuple[int, int, float, str, bool]]] = {
    # workspace: (days ago, count, cost each, provider, byok)
    "acme": [(3, 10, 5.0, "openai", False), (2, 10, 5.0, "openai", False)],
    "globex": [(3, 2, 1.0, "anthropic", True), (2, 2, 1.0, "anthropic", True)],
    "initech": [(3, 1, 1.0, "openai", False), (2, 1, 3.0, "google", False)],
    "default": [(1, 1, 0.5, "openai", False)],
}


def _events(workspace: str) -> list[dict[str, Any]]:
    out = []
    for days, count, cost, provider, byok in PLAN[workspace]:
        for n in range(count):
            out.append(
                {
                    "id": f"{workspace}-{days}-{n}",
                    "timestamp": iso(TODAY - timedelta(days=days) + timedelta(hours=10)),
                    "provider": provider,
                    "model": f"{provider}-model",
                    "input_tokens": 100 * (n + 1),
                    "output_tokens": 10 * (n + 1),
                    "cost_usd": cost,
                    "is_byok": byok,
                    "status": "error" if n == 0 else "success",
                }
            )
    return out


async def _setup(api: Api) -> dict[str, Any]:
    keys = {name: await api.key(workspace=name) for name in PLAN}
    for name, key in keys.items():
        assert (await api.ingest(key, _events(name)))["accepted"] == len(_events(name))
    ids = {name: await workspace_id_of(api.services, key) for name, key in keys.items()}
    return {"keys": keys, "ids": ids}


OVERVIEW = """query($range: TimeRangeInput!, $ws: ID) {
  overview(range: $range, workspace: $ws) { totalRequests costUsd inputTokens outputTokens }
}"""
FIELDS = {
    "overview": "overview(range: $range, workspace: $ws) { totalRequests }",
    "timeseries": "timeseries(metrics: [REQUESTS], range: $range, workspace: $ws) { buckets }",
    "breakdown": "breakdown(dimension: MODEL, metrics: [REQUESTS], range: $range, "
    "workspace: $ws) { totalCount }",
    "hourlyDistribution": "hourlyDistribution(metric: REQUESTS, range: $range, workspace: $ws)",
    "errors": "errors(range: $range, workspace: $ws) { totalErrors }",
    "metrics": "metrics(query: {metrics: [REQUESTS], range: $range}, workspace: $ws) { totalRows }",
}


def _sums(events: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "totalRequests": float(len(events)),
        "costUsd": sum(e["cost_usd"] for e in events),
        "inputTokens": float(sum(e["input_tokens"] for e in events)),
        "outputTokens": float(sum(e["output_tokens"] for e in events)),
    }


def _close(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


async def test_others_are_refused(api: Api) -> None:
    setup = await _setup(api)
    acme_admin = setup["keys"]["acme"]
    operator_viewer = await api.key(workspace="default", role=Role.VIEWER)
    for key in (acme_admin, operator_viewer):
        for name, field in FIELDS.items():
            for ws in (str(setup["ids"]["globex"]), "*", str(setup["ids"]["acme"])):
                query = f"query($range: TimeRangeInput!, $ws: ID) {{ {field} }}"
                body = await api.graphql(key, query, {"range": RANGE, "ws": ws})
                assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (name, body)
        body = await api.graphql(
            key,
            "query($r: TimeRangeInput!) { workspaces(range: $r) { nodes { id } } }",
            {"r": RANGE},
        )
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # `me` tells them so (the console hides its Workspaces view)
        assert (await api.data(key, "{ me { operator } }"))["me"]["operator"] is False
    # without the argument, an admin still sees exactly its own workspace
    own = await api.data(acme_admin, OVERVIEW, {"range": RANGE, "ws": None})
    _close(own["overview"], _sums(_events("acme")))


async def test_operator_sees_exactly_the_chosen_workspace(api: Api) -> None:
    setup = await _setup(api)
    operator = setup["keys"]["default"]
    assert (await api.data(operator, "{ me { operator } }"))["me"]["operator"] is True
    for name, ws_id in setup["ids"].items():
        data = await api.data(operator, OVERVIEW, {"range": RANGE, "ws": str(ws_id)})
        _close(data["overview"], _sums(_events(name)))
    everything = [e for name in PLAN for e in _events(name)]
    data = await api.data(operator, OVERVIEW, {"range": RANGE, "ws": "*"})
    _close(data["overview"], _sums(everything))
    breakdown = await api.data(
        operator,
        """query($range: TimeRangeInput!) { breakdown(dimension: WORKSPACE,
             metrics: [COST_USD, REQUESTS], range: $range, workspace: "*", first: 100)
             { nodes { key values } } }""",
        {"range": RANGE},
    )
    got = {n["key"]: n["values"] for n in breakdown["breakdown"]["nodes"]}
    want = {
        str(setup["ids"][name]): [_sums(_events(name))["costUsd"], float(len(_events(name)))]
        for name in PLAN
    }
    assert got.keys() == want.keys()
    for key, values in want.items():
        assert got[key] == pytest.approx(values)
    for field in FIELDS.values():  # every analytics field accepts the argument
        query = f"query($range: TimeRangeInput!, $ws: ID) {{ {field} }}"
        await api.data(operator, query, {"range": RANGE, "ws": str(setup["ids"]["acme"])})
    bad = await api.graphql(operator, OVERVIEW, {"range": RANGE, "ws": "acme"})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


REPORT = """query($range: TimeRangeInput!, $order: WorkspaceOrder!, $desc: Boolean!) {
  workspaces(range: $range, orderBy: $order, descending: $desc) {
    nodes { id name requests errors inputTokens outputTokens totalTokens costUsd costShare }
    totals { workspaces activeWorkspaces requests errors totalTokens costUsd }
    dailyCostByProvider { granularity buckets series { group isOther values } }
    byokVsPlatform { byokCostUsd platformCostUsd byokRequests platformRequests byokShare }
    anomalies { kind workspaceId workspaceName day costUsd baselineUsd ratio }
  }
}"""


async def test_workspaces_report(api: Api) -> None:
    setup = await _setup(api)
    await api.key(workspace="dormant")  # a workspace without traffic
    operator = setup["keys"]["default"]
    data = await api.data(operator, REPORT, {"range": RANGE, "order": "COST", "desc": True})
    report = data["workspaces"]
    events = {name: _events(name) for name in PLAN}
    total_cost = sum(e["cost_usd"] for es in events.values() for e in es)
    want_order = [*sorted(PLAN, key=lambda n: -_sums(events[n])["costUsd"]), "dormant"]
    assert [n["name"] for n in report["nodes"]] == want_order
    for node in report["nodes"]:
        es = events.get(node["name"], [])
        sums = _sums(es)
        assert node["requests"] == sums["totalRequests"]
        assert node["errors"] == sum(e["status"] == "error" for e in es)
        assert node["totalTokens"] == sums["inputTokens"] + sums["outputTokens"]
        assert node["costUsd"] == pytest.approx(sums["costUsd"])
        assert node["costShare"] == pytest.approx(sums["costUsd"] / total_cost)
    by_name = await api.data(operator, REPORT, {"range": RANGE, "order": "NAME", "desc": False})
    names = [n["name"] for n in by_name["workspaces"]["nodes"]]
    assert names == sorted(names)
    totals = report["totals"]
    assert (totals["workspaces"], totals["activeWorkspaces"]) == (5, 4)
    assert totals["requests"] == sum(len(es) for es in events.values())
    assert totals["costUsd"] == pytest.approx(total_cost)
    # daily cost by provider, recomputed
    daily: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for es in events.values():
        for e in es:
            daily[e["provider"]][e["timestamp"][:10]] += e["cost_usd"]
    series = report["dailyCostByProvider"]
    days = [b[:10] for b in series["buckets"]]
    assert len(days) == 5 and series["granularity"] == "DAY"
    got = {s["group"]: s["values"] for s in series["series"]}
    assert got.keys() == daily.keys()
    for provider, per_day in daily.items():
        assert got[provider] == pytest.approx([per_day.get(d, 0.0) for d in days])
    split = report["byokVsPlatform"]
    byok = [e for es in events.values() for e in es if e["is_byok"]]
    assert split["byokCostUsd"] == pytest.approx(sum(e["cost_usd"] for e in byok))
    assert split["platformCostUsd"] == pytest.approx(total_cost - split["byokCostUsd"])
    assert split["byokRequests"] == len(byok)
    assert split["byokShare"] == pytest.approx(split["byokCostUsd"] / total_cost)
    # anomalies: acme is above 2x the average of active workspaces; initech jumped 1 -> 3
    costs = {n: _sums(es)["costUsd"] for n, es in events.items()}
    average = sum(costs.values()) / len(costs)
    high = [n for n, c in costs.items() if c > 2 * average]
    anomalies = report["anomalies"]
    assert [(a["kind"], a["workspaceName"]) for a in anomalies] == [
        *(("HIGH_COST", n) for n in high),
        ("COST_JUMP", "initech"),
    ]
    assert anomalies[0]["baselineUsd"] == pytest.approx(average)
    jump = anomalies[-1]
    assert jump["day"][:10] == iso(TODAY - timedelta(days=2))[:10]
    assert (jump["costUsd"], jump["baselineUsd"], jump["ratio"]) == pytest.approx((3.0, 1.0, 3.0))
