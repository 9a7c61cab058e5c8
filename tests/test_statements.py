"""Chargeback statements: per department of a month or quarter in an IANA zone, line items by
member and by model recomputed from the ingested events, totals equal to `overview` over the
same window, unpriced events listed; a closed period is issued once (late events do not change
it) and restated, saying why, only after prices are re-applied."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pypdf import PdfReader

from tallyql.auth.principal import Role
from tallyql.clock import clock
from tests.conftest import Api
from tests.support.helpers import llm

PARIS = ZoneInfo("Europe/Paris")
LINE = "key provider requests inputTokens outputTokens totalTokens costUsd unpricedEvents"
PERIOD = "period first_day: firstDay start end timezone closed issuedAt version restatedReason"
STATEMENTS = f"""query($p: StatementPeriod!, $of: Date!, $tz: String!) {{
  statements(period: $p, of: $of, timezone: $tz) {{
    period {{ {PERIOD} }}
    totals {{ {LINE} }}
    departments {{ department totals {{ {LINE} }} members {{ {LINE} }} models {{ {LINE} }}
                   unpricedModels {{ {LINE} }} }}
  }}
}}"""
ONE = f"""query($p: StatementPeriod!, $of: Date!, $tz: String!, $d: String) {{
  statement(period: $p, of: $of, department: $d, timezone: $tz) {{
    period {{ closed version }} department totals {{ {LINE} }} members {{ {LINE} }}
  }}
}}"""
OVERVIEW = """query($r: TimeRangeInput!, $f: EventFilter) {
  overview(range: $r, filter: $f) { totalRequests totalTokens costUsd }
}"""
UPSERT = """mutation($u: [UserInput!]!) { upsertUsers(users: $u) { users { id } } }"""
DEPARTMENTS = {"alice": "eng", "bob": "eng", "carol": "finance", "dan": None}


def _month_before_last() -> date:
    """The first day of the month before last (Paris): a period that has ended."""
    today = clock.now().astimezone(PARIS).date()
    index = today.year * 12 + today.month - 1 - 2
    return date(index // 12, index % 12 + 1, 1)


def _events(first: date) -> list[dict[str, Any]]:
    """Events in and around the Paris month that begins on `first`: the first hour of the
    month is still the month before in UTC, the last local hour after it is the next month."""
    start = datetime(first.year, first.month, 1, tzinfo=PARIS).astimezone(UTC)
    stamps = [
        start + timedelta(minutes=30),  # before midnight UTC: in the month in Paris
        start - timedelta(minutes=30),  # the month before, in Paris
        start + timedelta(days=3, hours=5),
        start + timedelta(days=9, hours=1),
        start + timedelta(days=20),
    ]
    out = []
    users = [*DEPARTMENTS, None]
    models = [("openai", "gpt-4o-mini", None), ("anthropic", "claude-x", 0.5), ("acme", "m9", None)]
    n = 0
    for i, ts in enumerate(stamps):
        for j, user in enumerate(users):
            provider, model, cost = models[(i + j) % 3]
            event = llm(
                f"e{n}",
                timestamp=ts.isoformat(),
                provider=provider,
                model=model,
                input_tokens=100 + 7 * n,
                output_tokens=10 + n,
            )
            if user is not None:
                event["user_id"] = user
            if cost is not None:
                event["cost_usd"] = cost + n / 100
            out.append(event)
            n += 1
    return out


def _expected(
    events: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    costs: dict[str, float],
    unpriced: set[str],
) -> dict[str | None, dict[str, Any]]:
    """Per department: totals, member and model lines and unpriced models, from the events."""

    def blank() -> list[float]:
        return [0, 0, 0, 0.0]  # requests, input, output, cost

    out: dict[str | None, dict[str, Any]] = {}
    for e in events:
        ts = datetime.fromisoformat(e["timestamp"])
        if not start <= ts < end:
            continue
        user = e.get("user_id")
        dept = DEPARTMENTS.get(user) if user else None
        d = out.setdefault(
            dept,
            {
                "totals": blank(),
                "members": defaultdict(blank),
                "models": defaultdict(blank),
                "unpriced": defaultdict(int),
            },
        )
        cost = costs[e["id"]]
        for line in (d["totals"], d["members"][user], d["models"][(e["provider"], e["model"])]):
            line[0] += 1
            line[1] += e["input_tokens"]
            line[2] += e["output_tokens"]
            line[3] += cost
        if e["id"] in unpriced:
            d["unpriced"][(e["provider"], e["model"])] += 1
    return out


def _check_line(line: dict[str, Any], want: list[float]) -> None:
    assert [line["requests"], line["inputTokens"], line["outputTokens"]] == want[:3]
    assert line["totalTokens"] == want[1] + want[2]
    assert abs(line["costUsd"] - want[3]) < 1e-9


def _check(data: dict[str, Any], want: dict[str | None, dict[str, Any]]) -> None:
    got = {d["department"]: d for d in data["departments"]}
    assert set(got) == set(want)
    for dept, w in want.items():
        d = got[dept]
        _check_line(d["totals"], w["totals"])
        assert d["totals"]["unpricedEvents"] == sum(w["unpriced"].values())
        assert {m["key"] for m in d["members"]} == set(w["members"])
        for m in d["members"]:
            _check_line(m, w["members"][m["key"]])
        assert {(m["provider"], m["key"]) for m in d["models"]} == set(w["models"])
        for m in d["models"]:
            _check_line(m, w["models"][(m["provider"], m["key"])])
            assert m["unpricedEvents"] == w["unpriced"].get((m["provider"], m["key"]), 0)
        assert {(u["provider"], u["key"]): u["requests"] for u in d["unpricedModels"]} == dict(
            w["unpriced"]
        )
        costs = [m["totals"]["costUsd"] for m in data["departments"] if m["department"]]
        assert costs == sorted(costs, reverse=True)
    assert data["departments"][-1]["department"] is None  # without a department: last


async def _overview(api: Api, key: str, start: datetime, end: datetime, f: Any = None) -> Any:
    r = {"start": start.isoformat(), "end": end.isoformat(), "timezone": "Europe/Paris"}
    return (await api.data(key, OVERVIEW, {"r": r, "f": f}))["overview"]


async def test_statements_recompute_freeze_and_restate(api: Api) -> None:
    key = await api.key()
    users = [{"id": u, "department": d} for u, d in DEPARTMENTS.items()]
    await api.data(key, UPSERT, {"u": users})
    first = _month_before_last()
    events = _events(first)
    assert (await api.ingest(key, events))["accepted"] == len(events)
    costs_before = {
        e["id"]: e.get("cost_usd", 0.0) if e["model"] != "gpt-4o-mini" else None for e in events
    }
    # gpt-4o-mini is priced by tallyql: read its computed cost back from the request log
    log = await api.data(
        key,
        """query($r: TimeRangeInput!) { requests(range: $r, first: 100) {
             edges { node { id costUsd costSource } } } }""",
        {"r": {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}},
    )
    nodes = {e["node"]["id"]: e["node"] for e in log["requests"]["edges"]}
    unpriced = {i for i, n in nodes.items() if n["costSource"] == "UNPRICED"}
    assert unpriced == {e["id"] for e in events if e["model"] == "m9"}
    costs = {i: (c if c is not None else nodes[i]["costUsd"]) for i, c in costs_before.items()}

    start = datetime(first.year, first.month, 1, tzinfo=PARIS).astimezone(UTC)
    after = first.replace(day=28) + timedelta(days=5)
    end = datetime(after.year, after.month, 1, tzinfo=PARIS).astimezone(UTC)
    variables = {"p": "MONTH", "of": (first + timedelta(days=14)).isoformat(), "tz": "Europe/Paris"}
    issued = (await api.data(key, STATEMENTS, variables))["statements"]
    period = issued["period"]
    assert period["first_day"] == first.isoformat()
    assert (period["start"], period["end"]) == (start.isoformat(), end.isoformat())
    assert period["closed"] is True and period["version"] == 1
    assert period["restatedReason"] is None and period["issuedAt"] is not None
    _check(issued, _expected(events, start, end, costs, unpriced))
    # totals equal overview's, the whole set and each department
    overview = await _overview(api, key, start, end)
    totals = issued["totals"]
    assert totals["requests"] == overview["totalRequests"] == 20
    assert totals["totalTokens"] == overview["totalTokens"]
    assert totals["costUsd"] == overview["costUsd"]
    in_month = [e for e in events if start <= datetime.fromisoformat(e["timestamp"]) < end]
    assert totals["unpricedEvents"] == len([e for e in in_month if e["id"] in unpriced]) > 0
    for d in issued["departments"]:
        if d["department"] is not None:
            o = await _overview(api, key, start, end, {"departments": [d["department"]]})
            assert (d["totals"]["requests"], d["totals"]["costUsd"]) == (
                o["totalRequests"],
                o["costUsd"],
            )
    one = (await api.data(key, ONE, {**variables, "d": "eng"}))["statement"]
    eng = next(d for d in issued["departments"] if d["department"] == "eng")
    assert one["department"] == "eng" and one["totals"] == eng["totals"]
    assert one["members"] == eng["members"] and one["period"] == {"closed": True, "version": 1}
    nobody = (await api.data(key, ONE, {**variables, "d": "legal"}))["statement"]
    assert nobody["totals"]["requests"] == 0 and nobody["members"] == []

    # a late event for the closed month: overview sees it, the issued statement does not
    late = llm("late", timestamp=(start + timedelta(days=2)).isoformat(), user_id="carol")
    late["cost_usd"] = 3.0
    assert (await api.ingest(key, [late]))["accepted"] == 1
    assert (await _overview(api, key, start, end))["totalRequests"] == 21
    again = (await api.data(key, STATEMENTS, variables))["statements"]
    assert again == issued

    # prices re-applied: the statement is restated (version 2), with the late event and m9
    price = """mutation { createPriceOverride(input: {model: "m9", provider: "acme",
      inputPerMtok: 1000, outputPerMtok: 2000}) { userErrors { message } } }"""
    assert (await api.data(key, price))["createPriceOverride"]["userErrors"] == []
    reprice = """mutation($r: TimeRangeInput!) { repriceEvents(range: $r) { changed } }"""
    r = {"start": start.isoformat(), "end": end.isoformat()}
    assert (await api.data(key, reprice, {"r": r}))["repriceEvents"]["changed"] > 0
    restated = (await api.data(key, STATEMENTS, variables))["statements"]
    assert restated["period"]["version"] == 2
    assert "prices re-applied" in restated["period"]["restatedReason"]
    new_costs = dict(costs)
    for e in events:
        if e["model"] == "m9":
            new_costs[e["id"]] = (e["input_tokens"] * 1000 + e["output_tokens"] * 2000) / 1e6
    new_costs["late"] = 3.0
    _check(restated, _expected([*events, late], start, end, new_costs, set()))
    overview = await _overview(api, key, start, end)
    assert restated["totals"]["costUsd"] == overview["costUsd"]
    assert restated["totals"]["requests"] == 21
    # and kept again
    assert (await api.data(key, STATEMENTS, variables))["statements"] == restated


async def test_open_period_and_quarter(api: Api) -> None:
    key = await api.key(role=Role.VIEWER)
    ingest_key = await api.key()
    now = clock.now()
    assert (await api.ingest(ingest_key, [llm("now1", cost_usd=1.5)]))["accepted"] == 1
    today = now.astimezone(UTC).date()
    variables = {"p": "QUARTER", "of": today.isoformat(), "tz": "UTC"}
    data = (await api.data(key, STATEMENTS, variables))["statements"]
    quarter_first = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    assert data["period"]["first_day"] == quarter_first.isoformat()
    assert data["period"]["closed"] is False
    assert data["period"]["issuedAt"] is None and data["period"]["version"] is None
    start = datetime.fromisoformat(data["period"]["start"])
    end = datetime.fromisoformat(data["period"]["end"])
    assert start == datetime(quarter_first.year, quarter_first.month, 1, tzinfo=UTC)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 3
    assert data["totals"]["requests"] == 1 and data["totals"]["costUsd"] == 1.5
    assert [d["department"] for d in data["departments"]] == [None]


async def test_bad_input_and_roles(api: Api) -> None:
    ingest_only = await api.key(role=Role.INGEST)
    viewer = await api.key(role=Role.VIEWER)
    variables = {"p": "MONTH", "of": "2026-01-15", "tz": "UTC"}
    body = await api.graphql(ingest_only, STATEMENTS, variables)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await api.graphql(viewer, STATEMENTS, {**variables, "tz": "Mars/Olympus"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await api.graphql(viewer, STATEMENTS, {**variables, "of": "9999-12-15"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_statement_files_match_the_api(api: Api) -> None:
    key = await api.key()
    viewer = await api.key(role=Role.VIEWER)
    await api.data(key, UPSERT, {"u": [{"id": u, "department": d} for u, d in DEPARTMENTS.items()]})
    first = _month_before_last()
    events = _events(first)
    assert (await api.ingest(key, events))["accepted"] == len(events)
    of = first.isoformat()
    variables = {"p": "MONTH", "of": of, "tz": "Europe/Paris"}
    data = (await api.data(key, STATEMENTS, variables))["statements"]

    def get(path: str, who: str = viewer, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {who}"}
        return api.client.get(path, params=params, headers=headers)

    answer = await get(f"/v1/statements/month/{of}.csv", timezone="Europe/Paris")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    # issued above through GraphQL: read from its snapshot, it costs the root field's point only
    assert answer.headers["x-tallyql-cost"] == "1"
    name = f"tallyql-acme-statement-month-{of}-all.csv"
    assert answer.headers["content-disposition"] == f'attachment; filename="{name}"'
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    want = []
    for d in data["departments"]:
        for kind, lines in (
            ("total", [d["totals"]]),
            ("member", d["members"]),
            ("model", d["models"]),
            ("unpriced_model", d["unpricedModels"]),
        ):
            for line in lines:
                want.append(
                    {
                        "department": d["department"] or "",
                        "line": kind,
                        "key": line["key"] or "",
                        "provider": line["provider"] or "",
                        "requests": str(line["requests"]),
                        "input_tokens": str(line["inputTokens"]),
                        "output_tokens": str(line["outputTokens"]),
                        "total_tokens": str(line["totalTokens"]),
                        "cost_usd": repr(line["costUsd"]),
                        "unpriced_events": str(line["unpricedEvents"]),
                    }
                )
    assert rows == want
    only = await get(f"/v1/statements/month/{of}.csv", timezone="Europe/Paris", department="eng")
    eng_rows = list(csv.DictReader(io.StringIO(only.text)))
    assert eng_rows == [r for r in want if r["department"] == "eng"]
    nobody = await get(f"/v1/statements/month/{of}.csv", timezone="Europe/Paris", department="")
    assert {r["department"] for r in csv.DictReader(io.StringIO(nobody.text))} == {""}

    pdf = await get(f"/v1/statements/month/{of}.pdf", timezone="Europe/Paris")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf.content))
    assert len(reader.pages) == 1 + len(data["departments"])  # a summary, then one each
    text = "\n".join(page.extract_text() for page in reader.pages)
    total = data["totals"]
    assert f"Total: ${total['costUsd']:,.2f} - {total['requests']:,} requests" in text
    for d in data["departments"]:
        assert f"Statement: {d['department'] or '(no department)'}" in text
        assert f"Total: ${d['totals']['costUsd']:,.2f}" in text
        for m in d["members"]:
            assert f"${m['costUsd']:,.2f}" in text
    assert "events had no price" in text

    audit = await api.data(
        key,
        '{ auditEvents(first: 10, filter: {resourceTypes: ["statement"]}) '
        "{ nodes { action resourceId } } }",
    )
    assert {n["resourceId"] for n in audit["auditEvents"]["nodes"]} == {f"month:{of}"}
    assert len(audit["auditEvents"]["nodes"]) == 4

    ingest_only = await api.key(role=Role.INGEST)
    assert (await get(f"/v1/statements/month/{of}.csv", ingest_only)).status_code == 403
    assert (await api.client.get(f"/v1/statements/month/{of}.csv")).status_code == 401
    assert (await get(f"/v1/statements/week/{of}.csv")).status_code == 404
    assert (await get(f"/v1/statements/month/{of}.xls")).status_code == 404
    bad_zone = await get(f"/v1/statements/month/{of}.csv", timezone="Mars/Olympus")
    assert bad_zone.status_code == 400 and bad_zone.json()["error"]["code"] == "BAD_REQUEST"
    assert (await get("/v1/statements/month/2026-13-01.csv")).status_code == 400
    assert (await get(f"/v1/statements/month/{of}.csv", since="x")).status_code == 400
