"""Scheduled reports: a run at its scheduled moment covers the range relative to it (a whole
local day here), renders CSV (zip), HTML and PDF whose figures are recomputed from the events,
emails them (a real SMTP server), notifies webhooks, keeps the files for download and moves
the schedule on; each moment runs exactly once however many runners race for it, a moment
missed while down runs once, cron arithmetic holds across DST, and input is checked."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from pypdf import PdfReader
from sqlalchemy import update

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.reports.model import ReportRange, next_run, range_window
from tallyql.reports.runner import ReportRunner
from tallyql.storage.report_tables import reports
from tests.conftest import Api
from tests.support.helpers import iso, llm
from tests.support.notify_helpers import (
    Mailbox,
    Receiver,
    quiet_settings,
)
from tests.support.reports import CREATE, RUNS

PARIS = ZoneInfo("Europe/Paris")
DAY = datetime(2025, 11, 19, tzinfo=PARIS)  # the day the run reports on
DUE = datetime(2025, 11, 20, 8, tzinfo=PARIS)  # the scheduled moment: 08:00 the next day
MODELS = [("openai", "gpt-4o", 3.0), ("anthropic", "claude-x", 2.0), ("acme", "m1", 0.5)]


@pytest.fixture
def settings(database_url: str, tmp_path: Path, mailbox: Mailbox) -> Settings:
    return quiet_settings(
        database_url,
        tmp_path,
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
        report_poll_seconds=0.0,  # the tests run the runner themselves
    )


def _events() -> list[dict[str, Any]]:
    """Traffic on the reported day, the day before (the previous period) and after."""
    out = []
    for day, count in ((DAY - timedelta(days=1), 4), (DAY, 9), (DAY + timedelta(days=1), 2)):
        for i in range(count):
            provider, model, cost = MODELS[i % 3]
            event = llm(
                f"{day.date()}-{i}",
                timestamp=iso(day + timedelta(hours=1 + 2 * i)),
                provider=provider,
                model=model,
                cost_usd=cost + i / 10,
                input_tokens=100 * (i + 1),
                output_tokens=10 * (i + 1),
            )
            if i == 4:
                event["status"] = "error"
                event["error_type"] = "rate_limit"
            out.append(event)
    return out


def _on(events: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [e for e in events if start <= datetime.fromisoformat(e["timestamp"]) < end]


async def _create(api: Api, key: str, **fields: Any) -> dict[str, Any]:
    payload = (await api.data(key, CREATE, {"i": fields}))["createReport"]
    assert payload["userErrors"] == [], payload
    return payload["report"]


def _runner(api: Api) -> ReportRunner:
    assert api.services.report_runner is not None
    return api.services.report_runner


async def _move_schedule(api: Api, report_id: str, when: datetime) -> None:
    async with api.services.db.write() as conn:
        await conn.execute(
            update(reports).where(reports.c.id == report_id).values(next_run_at=when)
        )


async def test_scheduled_run_renders_delivers_and_moves_on(
    api: Api, mailbox: Mailbox, receiver: Receiver
) -> None:
    admin = await api.key()
    member = await api.key(role=Role.MEMBER)
    hook = await api.data(
        admin,
        "mutation($u: String!) { createWebhook(input: {url: $u}) { webhook { id } } }",
        {"u": receiver.url},
    )
    hook_id = hook["createWebhook"]["webhook"]["id"]
    events = _events()
    assert (await api.ingest(admin, events))["accepted"] == len(events)
    report = await _create(
        api,
        member,
        name="Daily spend",
        schedule="0 8 * * *",
        timezone="Europe/Paris",
        range="PREVIOUS_DAY",
        sections=[
            {"kind": "OVERVIEW"},
            {"kind": "BREAKDOWN", "dimension": "MODEL", "top": 2},
            {"kind": "ERRORS"},
            {"kind": "COST_INSIGHTS"},
            {"kind": "SESSION_STATS"},
            {"kind": "BUDGETS"},
        ],
        formats=["CSV", "HTML", "PDF"],
        recipients=["fin@corp.example"],
        webhookIds=[hook_id],
    )
    first = datetime.fromisoformat(report["nextRunAt"])
    assert first.astimezone(PARIS).time().isoformat() == "08:00:00" and first > datetime.now(UTC)

    await _move_schedule(api, report["id"], DUE.astimezone(UTC))
    now = DUE.astimezone(UTC) + timedelta(seconds=5)
    made = await _runner(api).run_due(now)
    assert len(made) == 1
    data = (await api.data(admin, RUNS, {"id": report["id"]}))["report"]
    assert datetime.fromisoformat(data["nextRunAt"]) == datetime(2025, 11, 21, 8, tzinfo=PARIS)
    (run,) = data["runs"]["nodes"]
    start, end = DAY.astimezone(UTC), (DAY + timedelta(days=1)).astimezone(UTC)
    assert (run["status"], run["manual"], run["error"]) == ("SUCCEEDED", False, None)
    assert datetime.fromisoformat(run["dueAt"]) == DUE
    assert (datetime.fromisoformat(run["rangeStart"]), datetime.fromisoformat(run["rangeEnd"])) == (
        start,
        end,
    )
    assert run["delivery"] == {"email": {"status": "sent", "attempts": 1, "recipients": 1}}
    assert [f["format"] for f in run["files"]] == ["CSV", "HTML", "PDF"]

    # the figures, recomputed from the events
    today = _on(events, start, end)
    before = _on(events, start - timedelta(days=1), start)

    async def download(url: str) -> bytes:
        answer = await api.client.get(url, headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 200, answer.text
        return answer.content

    files = {f["format"]: await download(f["url"]) for f in run["files"]}
    archive = zipfile.ZipFile(io.BytesIO(files["CSV"]))
    names = archive.namelist()
    assert len(names) == 6 and names[0].startswith("01-overview")
    overview = {
        r["Figure"]: r for r in csv.DictReader(io.StringIO(archive.read(names[0]).decode()))
    }
    assert overview["Requests"]["This period"] == str(len(today)) == "9"
    assert overview["Requests"]["Previous period"] == str(len(before))
    cost = sum(e["cost_usd"] for e in today)
    assert float(overview["Cost (USD)"]["This period"]) == pytest.approx(cost, abs=1e-9)
    tokens = sum(e["input_tokens"] + e["output_tokens"] for e in today)
    assert overview["Total tokens"]["This period"] == str(tokens)
    breakdown = list(csv.DictReader(io.StringIO(archive.read(names[1]).decode())))
    by_model: Counter[str] = Counter()
    for e in today:
        by_model[e["model"]] += e["cost_usd"]
    top = sorted(by_model.items(), key=lambda kv: -kv[1])[:2]
    assert [r["Model"] for r in breakdown] == [m for m, _ in top]
    for row, (_, c) in zip(breakdown, top, strict=True):
        assert float(row["Cost (USD)"]) == pytest.approx(c, abs=1e-9)
    errors = list(csv.DictReader(io.StringIO(archive.read(names[2]).decode())))
    assert errors[0]["Errors"] == str(sum(1 for e in today if e.get("status") == "error"))
    html = files["HTML"].decode()
    assert "<h1>Daily spend</h1>" in html and "Top 2 by model, by cost" in html
    pages = PdfReader(io.BytesIO(files["PDF"])).pages
    text = "\n".join(p.extract_text() for p in pages)
    # the breakdown's bar chart, drawn by Vega-Lite, is the one picture in the document
    assert sum(len(p.images) for p in pages) == 1
    assert "Daily spend" in text and "Top 2 by model, by cost" in text
    assert f"{cost:,.4f}".rstrip("0").rstrip(".") in text

    # the email carries the same files
    ((to, mail),) = await mailbox.wait_for(1)
    assert to == ["fin@corp.example"]
    assert mail["Subject"] == "[tallyql] Daily spend: 2025-11-19"
    attached = {
        part.get_filename(): part.get_payload(decode=True) for part in mail.iter_attachments()
    }
    assert sorted(attached.values(), key=len) == sorted(files.values(), key=len)
    # the webhook says where the files are
    (got,) = await receiver.wait_for(1)
    body = orjson.loads(got.body)
    assert body["type"] == "report.completed" and body["data"]["runId"] == run["id"]
    assert [f["path"] for f in body["data"]["files"]] == [f["url"] for f in run["files"]]
    # nothing more is due until the next moment
    assert await _runner(api).run_due(now + timedelta(minutes=1)) == []
    audit = await api.data(
        admin,
        '{ auditEvents(first: 20, filter: {resourceTypes: ["report"]}) { nodes { action } } }',
    )
    assert sorted(n["action"] for n in audit["auditEvents"]["nodes"]) == ["CREATE", "EXECUTE"]


async def test_each_moment_runs_once_and_missed_ones_once(api: Api) -> None:
    key = await api.key()
    report = await _create(
        api, key, name="r", schedule="0 * * * *", sections=[{"kind": "OVERVIEW"}], formats=["HTML"]
    )
    now = datetime(2025, 11, 20, 12, 0, 30, tzinfo=UTC)
    await _move_schedule(api, report["id"], now - timedelta(days=3))  # down for three days
    runners = [ReportRunner(api.services.db, api.services.mailer, 0.0, {}) for _ in range(4)]
    made = await asyncio.gather(*(r.run_due(now) for r in runners))
    assert sum(len(m) for m in made) == 1
    data = (await api.data(key, RUNS, {"id": report["id"]}))["report"]
    assert data["runs"]["totalCount"] == 1
    assert datetime.fromisoformat(data["runs"]["nodes"][0]["dueAt"]) == now - timedelta(days=3)
    assert datetime.fromisoformat(data["nextRunAt"]) == datetime(2025, 11, 20, 13, tzinfo=UTC)
    made = await asyncio.gather(*(r.run_due(now + timedelta(minutes=1)) for r in runners))
    assert sum(len(m) for m in made) == 0


async def test_run_now_and_download_rules(api: Api) -> None:
    key = await api.key()
    other = await api.key(workspace="globex")
    viewer = await api.key(role=Role.VIEWER)
    report = await _create(
        api,
        key,
        name="Now",
        schedule="0 8 * * 1",
        range="LAST_24H",
        sections=[{"kind": "BREAKDOWN", "dimension": "PROVIDER"}],
        formats=["CSV", "PDF"],
    )
    await api.ingest(key, [llm("n1", cost_usd=1.25)])
    started = await api.data(
        key,
        "mutation($id: ID!) { runReport(id: $id) { run { id status manual } } }",
        {"id": report["id"]},
    )
    run = started["runReport"]["run"]
    assert (run["status"], run["manual"]) == ("RUNNING", True)
    deadline = time.monotonic() + 20
    while True:
        nodes = (await api.data(viewer, RUNS, {"id": report["id"]}))["report"]["runs"]["nodes"]
        if nodes[0]["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert nodes[0]["status"] == "SUCCEEDED"
    url = next(f["url"] for f in nodes[0]["files"] if f["format"] == "CSV")
    mine = await api.client.get(url, headers={"Authorization": f"Bearer {viewer}"})
    assert mine.status_code == 200
    rows = list(
        csv.DictReader(
            io.StringIO(
                zipfile.ZipFile(io.BytesIO(mine.content))
                .read(zipfile.ZipFile(io.BytesIO(mine.content)).namelist()[0])
                .decode()
            )
        )
    )
    assert [(r["Provider"], float(r["Cost (USD)"])) for r in rows] == [("openai", 1.25)]
    theirs = await api.client.get(url, headers={"Authorization": f"Bearer {other}"})
    assert theirs.status_code == 404
    bad = await api.client.get(
        url.replace("=csv", "=xls"), headers={"Authorization": f"Bearer {viewer}"}
    )
    assert bad.status_code == 400
    assert (await api.graphql(other, RUNS, {"id": report["id"]}))["data"]["report"] is None
    denied = await api.graphql(
        viewer, "mutation($id: ID!) { runReport(id: $id) { run { id } } }", {"id": report["id"]}
    )
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_reports_are_checked(api: Api) -> None:
    key = await api.key()
    base = {"name": "r", "schedule": "0 8 * * *", "sections": [{"kind": "OVERVIEW"}]}

    async def error(**fields: Any) -> dict[str, str]:
        payload = (await api.data(key, CREATE, {"i": {**base, **fields}}))["createReport"]
        assert payload["report"] is None
        (found,) = payload["userErrors"]
        return found

    assert (await error(schedule="every day"))["field"] == "schedule"
    assert (await error(schedule="61 8 * * *"))["field"] == "schedule"
    assert (await error(schedule="* * * * *"))[
        "message"
    ] == "runs must lie at least 5 minutes apart"
    assert (await error(timezone="Mars/Olympus"))["field"] == "timezone"
    assert (await error(sections=[{"kind": "BREAKDOWN"}]))["field"] == "sections"
    assert (await error(sections=[{"kind": "OVERVIEW", "dimension": "MODEL"}]))[
        "field"
    ] == "sections"
    assert (await error(sections=[]))["field"] == "sections"
    assert (await error(recipients=["not an address"]))["field"] == "recipients"
    assert (await error(webhookIds=["nope"]))["field"] == "webhookIds"
    assert (await error(name=" "))["field"] == "name"
    assert (await error(formats=[]))["field"] == "formats"


def test_schedule_and_ranges_across_dst() -> None:
    # 08:00 in Paris is 07:00 UTC in winter and 06:00 UTC in summer
    spring = next_run("0 8 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert spring == datetime(2026, 3, 29, 6, tzinfo=UTC)
    autumn = next_run("0 8 * * *", "Europe/Paris", datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert autumn == datetime(2026, 10, 25, 7, tzinfo=UTC)
    monday = next_run("30 9 * * 1", "America/New_York", datetime(2026, 12, 6, tzinfo=UTC))
    assert monday == datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
    # the previous local day of a run just after the spring change is 23 hours long
    start, end = range_window(ReportRange.PREVIOUS_DAY, datetime(2026, 3, 30, 6, tzinfo=UTC), PARIS)
    assert (start, end) == (
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 29, 22, tzinfo=UTC),
    )
    start, end = range_window(
        ReportRange.PREVIOUS_MONTH, datetime(2026, 3, 1, 7, tzinfo=UTC), PARIS
    )
    assert (start, end) == (
        datetime(2026, 1, 31, 23, tzinfo=UTC),
        datetime(2026, 2, 28, 23, tzinfo=UTC),
    )
    start, end = range_window(ReportRange.PREVIOUS_WEEK, datetime(2026, 12, 9, tzinfo=UTC), PARIS)
    assert (start.astimezone(PARIS).weekday(), (end - start).days) == (0, 7)
