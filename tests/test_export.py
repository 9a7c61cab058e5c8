"""GET /v1/export/{dataset}: the same rows and figures as the recomputation, in CSV, JSON and
NDJSON, with a file name, audited, refused when the parameters are wrong."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import select

from tallyql.auth.principal import Role
from tallyql.storage.tables import audit_events
from tests.conftest import Api
from tests.support.helpers import iso, session_rows

NOW = datetime.now(UTC).replace(microsecond=0)
START, END = NOW - timedelta(days=2), NOW + timedelta(minutes=1)


def _events() -> list[dict[str, Any]]:
    out = []
    for n in range(40):
        out.append(
            {
                "id": f"e{n:02d}",
                "timestamp": iso(NOW - timedelta(hours=n)),
                "provider": "openai" if n % 3 else "anthropic",
                "model": "gpt-4o" if n % 3 else "claude-sonnet-4-5",
                "input_tokens": 10 * n,
                "output_tokens": n,
                "cost_usd": n / 100,
                "session_id": f"s{n % 4}",
                "user_id": f"u{n % 5}",
                "status": "error" if n % 7 == 0 else "success",
                "tags": ["a"] if n % 2 else [],
                "metadata": {"env": "prod"} if n % 2 else {},
            }
        )
    return out


async def _get(api: Api, key: str, path: str, **params: Any) -> Any:
    return await api.client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})


def _rows(response: Any) -> list[dict[str, Any]]:
    fmt = response.headers["content-type"]
    if fmt.startswith("text/csv"):
        return list(csv.DictReader(io.StringIO(response.text)))
    if fmt.startswith("application/x-ndjson"):
        return [orjson.loads(line) for line in response.text.splitlines()]
    return orjson.loads(response.content)


async def test_requests_in_every_format(api: Api) -> None:
    key = await api.key()
    other = await api.key(workspace="globex")
    await api.ingest(key, _events())
    await api.ingest(other, [{"id": "x", "model": "gpt-4o"}])
    want = sorted(
        (e for e in _events() if e["provider"] == "openai" and e["status"] == "success"),
        key=lambda e: e["timestamp"],
        reverse=True,
    )
    want = [e for e in want if START <= datetime.fromisoformat(e["timestamp"]) < END]
    for fmt in ("csv", "json", "ndjson"):
        response = await _get(
            api,
            key,
            "/v1/export/requests",
            start=iso(START),
            end=iso(END),
            providers="openai",
            statuses="SUCCESS",
            format=fmt,
        )
        assert response.status_code == 200, response.text
        disposition = response.headers["content-disposition"]
        assert disposition == (
            f'attachment; filename="tallyql-acme-requests-{START:%Y%m%dT%H%M}Z-'
            f'{END:%Y%m%dT%H%M}Z.{fmt}"'
        )
        rows = _rows(response)
        assert [r["id"] for r in rows] == [e["id"] for e in want]
        for row, event in zip(rows, want, strict=True):
            assert float(row["cost_usd"]) == pytest.approx(event["cost_usd"])
            assert int(row["input_tokens"]) == event["input_tokens"]
            assert row["model"] == event["model"]
            tags = orjson.loads(row["tags"]) if fmt == "csv" else row["tags"]
            assert tags == event["tags"]
    by_tag = _rows(
        await _get(
            api,
            key,
            "/v1/export/requests",
            preset="LAST_7D",
            tags="a",
            metadata="env:prod",
            format="json",
        )
    )
    assert sorted(r["id"] for r in by_tag) == sorted(
        e["id"] for e in _events() if int(e["id"][1:]) % 2
    )
    async with api.services.db.read() as conn:
        audits = (
            (await conn.execute(select(audit_events).where(audit_events.c.action == "export")))
            .mappings()
            .all()
        )
    assert len(audits) == 4
    assert audits[0]["resource_id"] == "requests"
    assert audits[0]["details"]["filter"] == {"providers": ["openai"], "statuses": ["success"]}


async def test_sessions_audit_breakdown_timeseries(api: Api) -> None:
    key = await api.key()
    await api.ingest(key, _events())
    table = await session_rows(api.services)
    users = sorted({r["user_id"] for r in table.values()})[:1]
    sessions = _rows(
        await _get(
            api, key, "/v1/export/sessions", preset="LAST_7D", format="json", users=",".join(users)
        )
    )
    want: dict[str, dict[str, float]] = defaultdict(lambda: {"requests": 0, "cost": 0.0})
    for e in _events():
        want[e["session_id"]]["requests"] += 1
        want[e["session_id"]]["cost"] += e["cost_usd"]
    chosen = {s for s, r in table.items() if r["user_id"] in users}
    assert chosen and {r["id"] for r in sessions} == chosen
    for row in sessions:
        assert row["requests"] == want[row["id"]]["requests"]
        assert row["cost_usd"] == pytest.approx(want[row["id"]]["cost"])
    breakdown = _rows(
        await _get(
            api,
            key,
            "/v1/export/breakdown",
            preset="LAST_7D",
            dimension="MODEL",
            metrics="COST_USD,REQUESTS",
            format="json",
        )
    )
    costs: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for e in _events():
        costs[e["model"]][0] += e["cost_usd"]
        costs[e["model"]][1] += 1
    assert [r["model"] for r in breakdown] == sorted(costs, key=lambda m: -costs[m][0])
    for row in breakdown:
        assert [row["cost_usd"], row["requests"]] == pytest.approx(costs[row["model"]])
    series = _rows(
        await _get(
            api,
            key,
            "/v1/export/timeseries",
            start=iso(START),
            end=iso(END),
            metrics="REQUESTS",
            granularity="DAY",
            groupBy="PROVIDER",
        )
    )
    per_day: dict[tuple[str, str], int] = defaultdict(int)
    for e in _events():
        if START <= datetime.fromisoformat(e["timestamp"]) < END:
            per_day[(e["timestamp"][:10], e["provider"])] += 1
    got = {(r["bucket"][:10], r["group"]): float(r["requests"]) for r in series}
    assert {k: v for k, v in got.items() if v} == {k: float(v) for k, v in per_day.items()}
    audit = _rows(
        await _get(
            api,
            key,
            "/v1/export/audit-events",
            preset="LAST_24H",
            actions="export",
            format="ndjson",
        )
    )
    assert [r["resource_id"] for r in audit] == ["timeseries", "breakdown", "sessions"]
    assert all(r["action"] == "export" for r in audit)
    # the enums as GraphQL spells them (the console sends those) select the same events
    upper = _rows(
        await _get(
            api,
            key,
            "/v1/export/audit-events",
            preset="LAST_24H",
            actions="EXPORT",
            actorTypes="API_KEY",
            outcomes="SUCCESS",
            format="ndjson",
        )
    )
    assert [r["resource_id"] for r in upper] == [
        "audit-events",
        "timeseries",
        "breakdown",
        "sessions",
    ]


async def test_refusals(api: Api) -> None:
    key = await api.key(role=Role.VIEWER)
    ingest = await api.key(role=Role.INGEST)
    cases = [
        ("/v1/export/nothing", {"preset": "LAST_24H"}, 404),
        ("/v1/export/requests", {"preset": "LAST_24H", "provider": "openai"}, 400),
        ("/v1/export/requests", {"preset": "LAST_24H", "format": "xml"}, 400),
        ("/v1/export/requests", {}, 400),
        ("/v1/export/requests", {"preset": "YESTERDAY"}, 400),
        ("/v1/export/requests", {"start": "2026-01-01", "end": "2026-01-02T00:00:00Z"}, 400),
        ("/v1/export/breakdown", {"preset": "LAST_24H"}, 400),
        ("/v1/export/breakdown", {"preset": "LAST_24H", "dimension": "METADATA"}, 400),
        ("/v1/export/audit-events", {"preset": "LAST_24H", "models": "x"}, 400),
    ]
    for path, params, status in cases:
        response = await _get(api, key, path, **params)
        assert response.status_code == status, (path, params, response.text)
    assert (await _get(api, ingest, "/v1/export/requests", preset="LAST_24H")).status_code == 403
    assert (await api.client.get("/v1/export/requests")).status_code == 401
    empty = await _get(api, key, "/v1/export/requests", preset="LAST_24H", format="json")
    assert empty.status_code == 200 and empty.json() == []


async def test_breakdown_and_timeseries_parameters(api: Api) -> None:
    """orderBy, descending and metadataKey on breakdown; timezone, groupBy and limitGroups on
    timeseries, each against a recomputation from the events."""
    key = await api.key()
    await api.ingest(key, _events())
    inside = [e for e in _events() if START <= datetime.fromisoformat(e["timestamp"]) < END]
    window = {"start": iso(START), "end": iso(END), "format": "json"}

    by_user: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for e in inside:
        by_user[e["user_id"]][0] += 1
        by_user[e["user_id"]][1] += e["cost_usd"]
    for descending in ("true", "false"):
        rows = _rows(
            await _get(
                api,
                key,
                "/v1/export/breakdown",
                **window,
                dimension="USER",
                metrics="REQUESTS,COST_USD",
                orderBy="COST_USD",
                descending=descending,
            )
        )
        order = sorted(by_user, key=lambda u: by_user[u][1], reverse=descending == "true")
        assert len(set(by_user[u][1] for u in order)) == len(order)  # no ties: one order
        assert [r["user"] for r in rows] == order
        for row in rows:
            assert [row["requests"], row["cost_usd"]] == pytest.approx(by_user[row["user"]])

    rows = _rows(
        await _get(
            api,
            key,
            "/v1/export/breakdown",
            **window,
            dimension="METADATA",
            metadataKey="env",
            metrics="REQUESTS,COST_USD",
        )
    )
    prod = [e for e in inside if e["metadata"].get("env") == "prod"]
    got = {r["metadata"]: [r["requests"], r["cost_usd"]] for r in rows}
    assert got["prod"] == pytest.approx([len(prod), sum(e["cost_usd"] for e in prod)])
    assert sum(v[0] for v in got.values()) == len(inside) > len(prod) > 0

    tokyo = ZoneInfo("Asia/Tokyo")
    rows = _rows(
        await _get(
            api,
            key,
            "/v1/export/timeseries",
            **window,
            timezone="Asia/Tokyo",
            metrics="REQUESTS",
            granularity="DAY",
            groupBy="MODEL",
            limitGroups="1",
        )
    )
    counts: dict[tuple[Any, bool], int] = defaultdict(int)
    models: dict[str, int] = defaultdict(int)
    for e in inside:
        models[e["model"]] += 1
    top = max(models, key=lambda m: models[m])
    assert models[top] > min(models.values())  # one model leads: limitGroups=1 keeps it
    for e in inside:
        local_day = datetime.fromisoformat(e["timestamp"]).astimezone(tokyo).date()
        counts[(local_day, e["model"] == top)] += 1
    got_counts: dict[tuple[Any, bool], float] = {}
    for r in rows:
        bucket = datetime.fromisoformat(r["bucket"]).astimezone(tokyo)
        assert (bucket.hour, bucket.minute) == (0, 0), r["bucket"]  # Tokyo's midnight
        assert r["is_other"] is (r["group"] != top), r
        if r["requests"]:
            got_counts[(bucket.date(), not r["is_other"])] = r["requests"]
    assert got_counts == counts
