"""The console (GET /) in a real browser (Debian's chromium through Playwright) on demo data,
SQLite and PostgreSQL: every view loads with no console error and no request to another
host; the Overview's figures (read through data-value) equal the API's own answers for the
same range, filters and time zone; a filter chosen in the bar changes the URL and the
figures, and a reload keeps both; sign-in, the role's effect, sign-out and a bad key's
message; the Live view shows an event ingested during the test within 2 seconds. Screenshots
of each view go to .tallyql/artifacts/console/. Sessions: the distribution cards and the ranked
list equal sessionStats and sessions, a column header re-sorts (in the URL), and a session's
page equals session(id). Costs: the figures, shares and savings equal costInsights, and models
ticked for comparison go into the URL and equal modelComparison. Usage, Tools & MCP, Agents,
Gateways, Security, Errors, the audit trail and Workspaces equal their API answers (sorts,
dimensions and audit filters in the URL; the Usage and audit CSVs are the exports' rows); the
filter bar offers every EventFilter field; budgets and alert rules are created, edited and
deleted from the UI by the roles allowed to; the Live view survives a dropped connection and
tells how many items the server dropped (Lagged). Costs shows when the OpenRouter connection last
synced and how it went, and admins (only) sync it now from there (a local fake of its API)."""

from __future__ import annotations

import csv
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from graphql import build_schema
from playwright.sync_api import Browser, ConsoleMessage, Page, WebSocket, WebSocketRoute

from tallyql.schema import export_sdl
from tests.conftest import DATABASES
from tests.support.browser import ARTIFACTS, Offline, Served, module_database
from tests.support.server import cli, create_key, start_server

DEMO_EVENTS = 2_000
TIME_ZONE = "Europe/Paris"  # the browser's: the console must default to it, not to UTC
SHOTS = ARTIFACTS / "console"

OVERVIEW = """query($range: TimeRangeInput!, $filter: EventFilter) {
  overview(range: $range, filter: $filter) {
    totalRequests successRate p95LatencyMs totalTokens costUsd
    activeUsers activeAgents activeTools activeGateways
    changes { field previous }
  }
  topModels: breakdown(dimension: MODEL, metrics: [COST_USD, REQUESTS, TOTAL_TOKENS],
                       range: $range, filter: $filter, first: 5) { nodes { key values } }
}"""
# every field of EventFilter, from the exported schema: the filter bar offers each
EVENT_FILTER_FIELDS = set(build_schema(export_sdl()).type_map["EventFilter"].fields)  # type: ignore[union-attr]
KPIS = (
    "totalRequests",
    "successRate",
    "p95LatencyMs",
    "totalTokens",
    "costUsd",
    "activeUsers",
    "activeAgents",
    "activeTools",
    "activeGateways",
)


@dataclass
class Console(Served):
    viewer: str = ""
    ingest_key: str = ""
    member: str = ""
    db: str = ""
    openrouter_paths: list[str] = field(default_factory=list)
    """What the fake OpenRouter API was asked."""


@contextmanager
def fake_openrouter() -> Iterator[tuple[str, list[str]]]:
    """OpenRouter's API on loopback: no activity to import (the demo figures stay as they
    are); its base URL and the paths asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            raw = json.dumps({"data": []}).encode()
            self.send_response(200 if self.path.startswith("/api/v1/activity") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Tab:
    page: Page
    offline: Offline
    errors: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.page.context.close()
        assert self.offline.blocked == [], f"the console asked other hosts: {self.offline.blocked}"
        assert self.errors == [], f"the console logged errors: {self.errors}"


@pytest.fixture(scope="module", params=DATABASES)
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    url, data_dir = module_database(request, tmp_path_factory, "console")
    # three days ending now: the last-7-days window cannot lose events while a test runs
    cli("demo", "--workspace", "acme", "--events", str(DEMO_EVENTS), "--days", "3",
        "--database-url", url, data_dir=data_dir)  # fmt: skip
    admin = create_key(url, data_dir, role="admin")
    viewer = create_key(url, data_dir, role="viewer")
    ingest = create_key(url, data_dir, role="ingest")
    member = create_key(url, data_dir, role="member")
    # acme's admins are the operator's here, so that the Workspaces view has a key to show it
    with fake_openrouter() as (openrouter_url, asked):
        env = {"TALLYQL_OPERATOR_WORKSPACE": "acme", "TALLYQL_OPENROUTER_BASE_URL": openrouter_url}
        server = start_server(url, data_dir, "console", extra_env=env)
        try:
            yield Console(
                server,
                admin,
                viewer=viewer,
                ingest_key=ingest,
                member=member,
                db=request.param,
                openrouter_paths=asked,
            )
        finally:
            server.stop()


def _open(
    browser: Browser,
    console: Console,
    path: str = "/",
    on_socket: Callable[[WebSocket], None] | None = None,
) -> Tab:
    context = browser.new_context(
        timezone_id=TIME_ZONE, viewport={"width": 1300, "height": 900}
    )  # fresh session storage
    tab = Tab(context.new_page(), Offline())
    if on_socket:
        tab.page.on("websocket", on_socket)
    context.route("**/*", tab.offline.route)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.errors.append(message.text)

    tab.page.on("console", on_console)
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.page.goto(f"{console.server.url}{path}", wait_until="load")
    return tab


def _signed_in(browser: Browser, console: Console, query: str = "", key: str = "") -> Tab:
    tab = _open(browser, console, f"/{query}#key={key or console.key}")
    tab.page.wait_for_selector("nav.views")
    return tab


def _params(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _value(page: Page, metric: str, within: str = "main") -> float | None:
    raw = page.get_attribute(f"{within} [data-metric='{metric}']", "data-value")
    assert raw is not None, f"no {metric} on the page"
    return None if raw == "" else float(raw)


def _wait_overview(page: Page) -> None:
    page.wait_for_selector("main [data-metric='totalRequests']")


def _shot(page: Page, console: Console, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{console.db}.png"), full_page=True)


def _expected(console: Console, tz: str, filter: dict[str, list[str]] | None = None) -> dict:
    return console.graphql(
        OVERVIEW, {"range": {"preset": "LAST_7D", "timezone": tz}, "filter": filter}
    )


def _assert_overview_matches(page: Page, expected: dict) -> None:
    overview = expected["overview"]
    for field_name in KPIS:
        shown = _value(page, field_name, "section.kpis")
        assert shown == overview[field_name], field_name
    for change in overview["changes"]:
        if (
            change["field"] in KPIS
            and page.locator(f"[data-metric='{change['field']}.previous']").count()
        ):
            assert _value(page, f"{change['field']}.previous") == change["previous"]
    shown_costs = [
        float(v)
        for v in page.locator("section.tops table")
        .first.locator("[data-metric='COST_USD']")
        .evaluate_all("els => els.map(e => e.dataset.value)")
    ]
    assert shown_costs == [n["values"][0] for n in expected["topModels"]["nodes"]]


def test_views_load_offline_with_no_error(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console)
    page = tab.page
    # the key came in the fragment: taken and wiped from the address bar at once
    assert "key=" not in page.url
    # the defaults are written into the URL, the time zone being the browser's
    assert _params(page) == {"view": ["overview"], "range": ["LAST_7D"], "tz": [TIME_ZONE]}
    _wait_overview(page)
    page.wait_for_selector("figure.chart canvas")
    assert page.locator("figure.chart").count() == 2
    _shot(page, console, "overview")
    page.emulate_media(color_scheme="dark")
    _shot(page, console, "overview-dark")
    page.emulate_media(color_scheme="light")

    page.click("nav.views >> text=Requests")
    page.wait_for_selector("table.requests tbody tr")
    assert _params(page)["view"] == ["requests"]
    assert page.locator("table.requests tbody tr").count() == 50
    total = console.graphql("{ requests(range: {preset: LAST_7D}) { totalCount } }")["requests"][
        "totalCount"
    ]
    assert _value(page, "totalCount") == total == DEMO_EVENTS
    _shot(page, console, "requests")

    page.click("nav.views >> text=Costs")
    page.wait_for_selector("section.compare")
    page.wait_for_selector("figure.chart canvas")
    _shot(page, console, "costs")

    page.click("nav.views >> text=Sessions")
    page.wait_for_selector("table.sessions tbody tr")
    _shot(page, console, "sessions")

    page.click("nav.views >> text=Live")
    page.wait_for_selector(".live-status.up")
    page.wait_for_selector("[data-metric='today.costUsd']")
    _shot(page, console, "live")
    tab.close()


def test_overview_figures_equal_the_api_answer(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console)
    _wait_overview(tab.page)
    expected = _expected(console, TIME_ZONE)
    assert expected["overview"]["totalRequests"] == DEMO_EVENTS
    _assert_overview_matches(tab.page, expected)
    tab.close()


def test_filter_changes_url_and_figures_and_reload_keeps_both(
    browser: Browser, console: Console
) -> None:
    tab = _signed_in(browser, console)
    page = tab.page
    _wait_overview(page)
    page.select_option("#filter-dimension", "models")
    # the values come from the workspace's data: the second most expensive model
    model = _expected(console, TIME_ZONE)["topModels"]["nodes"][1]["key"]
    page.wait_for_selector(f"#filter-values option[value='{model}']", state="attached")
    page.fill("#filter-value", model)
    page.click("form.add-filter button[type=submit]")
    page.wait_for_function("new URL(location).searchParams.has('models')")
    assert _params(page)["models"] == [model]
    page.wait_for_selector(f".chip[data-value='{model}']")
    _wait_overview(page)
    filtered = _expected(console, TIME_ZONE, {"models": [model]})
    assert 0 < filtered["overview"]["totalRequests"] < DEMO_EVENTS
    page.wait_for_function(
        "n => document.querySelector(\"[data-metric='totalRequests']\")?.dataset.value == n",
        arg=str(filtered["overview"]["totalRequests"]),
    )
    _assert_overview_matches(page, filtered)
    _shot(page, console, "overview-filtered")

    url = page.url
    page.reload(wait_until="load")
    _wait_overview(page)
    assert page.url == url
    assert page.locator(f".chip[data-value='{model}']").count() == 1
    _assert_overview_matches(page, filtered)

    # the same filter holds in the request log
    page.click("nav.views >> text=Requests")
    page.wait_for_selector("table.requests tbody tr")
    assert _params(page)["models"] == [model]
    count = console.graphql(
        "query($m: [String!]) { requests(range: {preset: LAST_7D}, filter: {models: $m})"
        " { totalCount } }",
        {"m": [model]},
    )["requests"]["totalCount"]
    assert _value(page, "totalCount") == count == filtered["overview"]["totalRequests"]

    # removing the chip goes back to every event
    page.click(f".chip[data-value='{model}'] button")
    page.wait_for_function("!new URL(location).searchParams.has('models')")
    page.wait_for_function(
        "n => document.querySelector(\"[data-metric='totalCount']\")?.dataset.value == n",
        arg=str(DEMO_EVENTS),
    )
    tab.close()


def test_request_drawer_shows_the_request_and_survives_reload(
    browser: Browser, console: Console
) -> None:
    tab = _signed_in(browser, console, "?view=requests")
    page = tab.page
    page.wait_for_selector("table.requests tbody tr")
    page.locator("table.requests tbody tr button.link").nth(2).click()
    page.wait_for_selector(".drawer dl.facts")
    request_id = _params(page)["request"][0]
    detail = console.graphql(
        "query($id: ID!) { request(id: $id) { id costUsd totalTokens inputTokens } }",
        {"id": request_id},
    )["request"]
    assert detail["id"] == request_id
    for metric in ("costUsd", "totalTokens", "inputTokens"):
        assert _value(page, metric, ".drawer") == detail[metric]
    _shot(page, console, "request-drawer")
    # a modal dialog: focus starts on its close button and Tab stays inside it
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "Close the request detail"
    )
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.drawer') !== null")
    page.reload(wait_until="load")
    page.wait_for_selector(".drawer dl.facts")
    assert request_id in page.inner_text(".drawer header")
    page.keyboard.press("Escape")
    page.wait_for_function("!new URL(location).searchParams.has('request')")
    assert page.locator(".drawer").count() == 0
    tab.close()


def test_sign_in_roles_sign_out_and_a_bad_key(browser: Browser, console: Console) -> None:
    tab = _open(browser, console)
    page = tab.page
    page.wait_for_selector("form.sign-in")
    _shot(page, console, "sign-in")

    # a bad key: the API's own message
    answer = httpx.post(
        f"{console.server.url}/graphql",
        json={"query": "{ me { role } }"},
        headers={"Authorization": "Bearer tq_bad_key"},
    )
    assert answer.status_code == 401
    message = answer.json()["errors"][0]["message"]
    page.fill("#key", "tq_bad_key")
    page.click("form.sign-in button[type=submit]")
    page.wait_for_function(
        "m => document.querySelector('#sign-in-status').textContent === m", arg=message
    )
    assert page.evaluate("sessionStorage.length") == 0
    # the browser itself logs the 401 answer; the page logs nothing of its own
    assert tab.errors == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    tab.errors.clear()

    # a viewer reads every view
    page.fill("#key", console.viewer)
    page.click("form.sign-in button[type=submit]")
    page.wait_for_selector("nav.views")
    assert page.inner_text("header .who .badge") == "viewer"
    # every view but Workspaces, which is for the operator's admins
    assert page.locator("nav.views a").all_inner_texts() == [
        "Overview",
        "Costs",
        "Usage",
        "Requests",
        "Sessions",
        "Tools & MCP",
        "Agents",
        "Gateways",
        "Security",
        "Errors",
        "Audit trail",
        "Live",
        "Budgets & alerts",
        "Ask",
    ]
    _wait_overview(page)

    # sign-out forgets the key: a reload asks for one again
    page.click("button.sign-out")
    page.wait_for_selector("form.sign-in")
    assert page.evaluate("sessionStorage.length") == 0
    page.reload(wait_until="load")
    page.wait_for_selector("form.sign-in")
    assert page.locator("nav.views").count() == 0

    # an ingest key is told it cannot read, and is shown no view
    page.fill("#key", console.ingest_key)
    page.click("form.sign-in button[type=submit]")
    page.wait_for_selector("text=This key cannot read analytics")
    assert page.locator("nav.views").count() == 0
    assert page.locator("[data-metric]").count() == 0
    _shot(page, console, "ingest-key")
    page.click("text=Sign out")
    page.wait_for_selector("form.sign-in")
    tab.close()


def test_live_shows_an_event_ingested_during_the_test(browser: Browser, console: Console) -> None:
    sockets: list[WebSocket] = []
    tab = _open(
        browser, console, "/?view=live#key=" + console.key, on_socket=lambda ws: sockets.append(ws)
    )
    page = tab.page
    page.wait_for_selector(".live-status.up")
    # the first cost update proves the subscription runs (it comes at its start)
    page.wait_for_selector("[data-metric='today.costUsd']")
    model = f"live-{uuid.uuid4().hex[:8]}"
    sent = time.monotonic()
    console.ingest([{"provider": "openai", "model": model, "input_tokens": 1000,
                     "output_tokens": 100, "latency_ms": 420}])  # fmt: skip
    page.wait_for_selector(f"table.live-feed tr:has-text('{model}')", timeout=2_000)
    assert time.monotonic() - sent <= 2.0
    row = page.locator(f"table.live-feed tr:has-text('{model}')")
    assert row.locator("[data-metric='totalTokens']").get_attribute("data-value") == "1100"
    assert row.locator("[data-metric='latencyMs']").get_attribute("data-value") == "420"
    _shot(page, console, "live-event")
    # one socket, to this server; signing out closes it (it carries the key)
    assert [urlsplit(ws.url).path for ws in sockets] == ["/graphql"]
    page.click("button.sign-out")
    page.wait_for_selector("form.sign-in")
    deadline = time.monotonic() + 5
    while not sockets[0].is_closed() and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert sockets[0].is_closed()
    tab.close()


SESSIONS = """query($range: TimeRangeInput!, $order: SessionOrder!) {
  sessionStats(range: $range) {
    sessions
    costUsd { p50 avg p95 } totalTokens { p50 avg p95 }
    durationMs { p50 avg p95 } requests { p50 avg p95 }
  }
  sessions(range: $range, orderBy: $order, first: 25) {
    totalCount nodes { id costUsd totalTokens requestCount }
  }
}"""


def _column(page: Page, table: str, metric: str) -> list[float]:
    values = page.locator(f"{table} [data-metric='{metric}']").evaluate_all(
        "els => els.map(e => e.dataset.value)"
    )
    return [float(v) for v in values]


def test_sessions_list_sort_and_session_page(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console, "?view=sessions")
    page = tab.page
    page.wait_for_selector("table.sessions tbody tr")
    range_ = {"preset": "LAST_7D", "timezone": TIME_ZONE}
    expected = console.graphql(SESSIONS, {"range": range_, "order": "COST"})
    stats = expected["sessionStats"]
    assert stats["sessions"] > 25
    assert _value(page, "sessionStats.sessions") == stats["sessions"]
    for measure in ("costUsd", "totalTokens", "durationMs", "requests"):
        for q in ("p50", "avg", "p95"):
            assert _value(page, f"sessionStats.{measure}.{q}") == stats[measure][q], measure
    costs = [n["costUsd"] for n in expected["sessions"]["nodes"]]
    assert _column(page, "table.sessions", "costUsd") == costs
    assert costs == sorted(costs, reverse=True)
    assert _value(page, "totalCount") == expected["sessions"]["totalCount"]

    # a header re-sorts, and the order goes into the URL
    page.click("table.sessions th button.sort >> text=Tokens")
    page.wait_for_function("new URL(location).searchParams.get('sort') === 'TOKENS'")
    by_tokens = console.graphql(SESSIONS, {"range": range_, "order": "TOKENS"})["sessions"]
    tokens = [float(n["totalTokens"]) for n in by_tokens["nodes"]]
    page.wait_for_function(
        "n => document.querySelector(\"table.sessions tbody [data-metric='totalTokens']\")"
        "?.dataset.value == n",
        arg=str(by_tokens["nodes"][0]["totalTokens"]),
    )
    assert _column(page, "table.sessions", "totalTokens") == tokens

    # a session's page
    first = by_tokens["nodes"][0]["id"]
    page.click(f"table.sessions a >> text={first}")
    page.wait_for_function("new URL(location).searchParams.has('session')")
    assert _params(page)["session"] == [first]
    page.wait_for_selector("section.kpis [data-metric='costUsd']")
    page.wait_for_selector("figure.chart canvas")
    session = console.graphql(
        "query($id: ID!, $range: TimeRangeInput) { session(id: $id, range: $range) {"
        " costUsd requestCount totalTokens durationMs"
        " models { costUsd } requests(first: 100) { nodes { costUsd } } } }",
        {"id": first, "range": range_},
    )["session"]
    for metric in ("costUsd", "requestCount", "totalTokens", "durationMs"):
        assert _value(page, metric, "section.kpis") == session[metric], metric
    assert sorted(_column(page, "section.tops table", "costUsd")) == sorted(
        m["costUsd"] for m in session["models"]
    )
    assert _column(page, "table.session-requests", "costUsd") == [
        r["costUsd"] for r in session["requests"]["nodes"]
    ]
    _shot(page, console, "session")
    page.reload(wait_until="load")
    page.wait_for_selector("section.kpis [data-metric='costUsd']")
    assert _value(page, "costUsd", "section.kpis") == session["costUsd"]
    tab.close()


COSTS = """query($range: TimeRangeInput!, $compare: [ModelRefInput!]!, $comparing: Boolean!) {
  costInsights(range: $range) {
    totalUsd trend { previousUsd } projectedMonth { dailyAverageUsd projectedUsd }
    topModels { key costUsd share requests } recommendations { estimatedSavingUsd }
  }
  modelComparison(models: $compare, range: $range) @include(if: $comparing) {
    model requests costUsd avgCostPerRequestUsd errorRate p95LatencyMs
    price { inputPerMtok outputPerMtok }
  }
}"""


def test_costs_figures_and_model_comparison(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console, "?view=costs")
    page = tab.page
    page.wait_for_selector("section.compare")
    range_ = {"preset": "LAST_7D", "timezone": TIME_ZONE}
    insights = console.graphql(COSTS, {"range": range_, "compare": [], "comparing": False})[
        "costInsights"
    ]
    assert insights["totalUsd"] > 0
    assert _value(page, "totalUsd") == insights["totalUsd"]
    assert _value(page, "trend.previousUsd") == insights["trend"]["previousUsd"]
    for field_name in ("dailyAverageUsd", "projectedUsd"):
        shown = _value(page, f"projectedMonth.{field_name}")
        assert shown == insights["projectedMonth"][field_name]
    models_table = "section.tops section.panel:first-child table"
    assert _column(page, models_table, "costUsd") == [m["costUsd"] for m in insights["topModels"]]
    assert _column(page, models_table, "share") == [m["share"] for m in insights["topModels"]]
    assert _column(page, "section.recommendations", "estimatedSavingUsd") == [
        r["estimatedSavingUsd"] for r in insights["recommendations"]
    ]

    # tick two models: they go into the URL and side by side
    chosen = [m["key"] for m in insights["topModels"][:2]]
    for model in chosen:
        page.check(f"section.compare input[value='{model}']")
        page.wait_for_selector(f"section.compare input[value='{model}']:checked")
    page.wait_for_function("new URL(location).searchParams.getAll('compare').length === 2")
    assert _params(page)["compare"] == chosen
    page.wait_for_selector("table.comparison")
    answer = console.graphql(
        COSTS, {"range": range_, "compare": [{"model": m} for m in chosen], "comparing": True}
    )["modelComparison"]
    assert [r["model"] for r in answer] == chosen
    for row in answer:
        for metric in ("requests", "costUsd", "avgCostPerRequestUsd", "errorRate", "p95LatencyMs"):
            shown = page.get_attribute(
                f"table.comparison [data-metric='{metric}'][data-model='{row['model']}']",
                "data-value",
            )
            assert shown is not None
            assert (None if shown == "" else float(shown)) == row[metric], metric
        price = page.get_attribute(
            f"table.comparison [data-metric='price.inputPerMtok'][data-model='{row['model']}']",
            "data-value",
        )
        assert float(price) == row["price"]["inputPerMtok"]
    _shot(page, console, "costs-compare")
    page.reload(wait_until="load")
    page.wait_for_selector("table.comparison")
    assert page.locator("section.compare input:checked").count() == 2
    tab.close()


PROVIDER = "{ providerConnection { lastSyncAt lastSyncStatus lastError lastResult } }"
SYNC_PANEL = "section.provider-sync"


def test_costs_shows_the_last_provider_sync_and_admins_sync_now(
    browser: Browser, console: Console
) -> None:
    connect = "mutation($k: String!) { connectProvider(apiKey: $k) { userErrors { field } } }"
    assert console.graphql(connect, {"k": "sk-or-v1-console-test"})["connectProvider"] == {
        "userErrors": []
    }
    try:
        # a viewer reads that it never synced, and has no button (syncing is for admins)
        tab = _signed_in(browser, console, "?view=costs", key=console.viewer)
        page = tab.page
        page.wait_for_selector(f"{SYNC_PANEL} [data-status='NEVER']")
        assert page.get_attribute(f"{SYNC_PANEL} time", "data-value") == ""
        assert page.locator(f"{SYNC_PANEL} button.sync-now").count() == 0
        tab.close()

        tab = _signed_in(browser, console, "?view=costs")
        page = tab.page
        page.click(f"{SYNC_PANEL} button.sync-now")
        page.wait_for_selector(f"{SYNC_PANEL} [data-status='SUCCEEDED']")
        answer = console.graphql(PROVIDER)["providerConnection"]
        assert answer["lastSyncStatus"] == "succeeded" and answer["lastError"] is None
        assert page.get_attribute(f"{SYNC_PANEL} time", "data-value") == answer["lastSyncAt"]
        shown = page.inner_text(f"{SYNC_PANEL} time")
        synced = datetime.fromisoformat(answer["lastSyncAt"]).astimezone(ZoneInfo(TIME_ZONE))
        assert f"{synced:%H:%M:%S}" in shown  # in the browser's zone
        for name, count in answer["lastResult"].items():
            if page.locator(f"{SYNC_PANEL} [data-metric='lastResult.{name}']").count():
                assert _value(page, f"lastResult.{name}", SYNC_PANEL) == count
        assert _value(page, "lastResult.importedRows", SYNC_PANEL) == 0
        assert any(p.startswith("/api/v1/activity") for p in console.openrouter_paths)
        _shot(page, console, "costs-provider-sync")
        page.reload(wait_until="load")
        page.wait_for_selector(f"{SYNC_PANEL} [data-status='SUCCEEDED']")
        assert page.get_attribute(f"{SYNC_PANEL} time", "data-value") == answer["lastSyncAt"]
        tab.close()
    finally:
        console.graphql("mutation { disconnectProvider { userErrors { field } } }")


def test_custom_range_in_the_chosen_zone_and_the_empty_state(
    browser: Browser, console: Console
) -> None:
    # yesterday 06:00 to 18:00 on Paris's wall clock: the console turns it into instants
    zone = ZoneInfo(TIME_ZONE)
    day = (datetime.now(zone) - timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, 6, tzinfo=zone)
    end = start + timedelta(hours=12)
    query = (
        f"?view=overview&range=CUSTOM&start={start:%Y-%m-%dT%H:%M}&end={end:%Y-%m-%dT%H:%M}"
        f"&tz={TIME_ZONE}"
    )
    tab = _signed_in(browser, console, query)
    page = tab.page
    _wait_overview(page)
    assert page.input_value("#start") == f"{start:%Y-%m-%dT%H:%M}"
    expected = console.graphql(
        OVERVIEW,
        {"range": {"start": start.isoformat(), "end": end.isoformat(), "timezone": TIME_ZONE}},
    )
    assert 0 < expected["overview"]["totalRequests"] < DEMO_EVENTS
    _assert_overview_matches(page, expected)

    # a range with no events says how to send a first one
    page.fill("#start", "2020-01-01T00:00")
    page.fill("#end", "2020-01-02T00:00")
    page.click("form.custom-range button[type=submit]")
    page.wait_for_selector("text=No events in this range yet")
    assert _params(page)["start"] == ["2020-01-01T00:00"]
    assert f"{console.server.url}/v1/events" in page.inner_text(".empty pre")
    assert page.locator("section.kpis").count() == 0
    _shot(page, console, "overview-empty")
    tab.close()


# --- the views of issue 18's second part: each loads offline with no error, and its figures
# equal the API's answers for the same range and time zone

RANGE = {"preset": "LAST_7D", "timezone": TIME_ZONE}
# the element whose presence means each view is drawn
DRAWN = {
    "usage": "table.usage tbody tr",
    "tools": "table.top-tools tbody tr",
    "agents": "table.agents tbody tr",
    "gateways": "table.gateways tbody tr",
    "security": "table.top-policies tbody tr",
    "errors": "table.errors-by-type tbody tr",
    "audit": "table.audit tbody tr",
    "budgets": "section.rules",
    "ask": "ul.suggestions",
    "workspaces": "table.workspaces tbody tr",
}


def _wait_value(page: Page, selector: str, value: object) -> None:
    page.wait_for_function(
        "([s, v]) => document.querySelector(s)?.dataset.value === v", arg=[selector, str(value)]
    )


def test_every_other_view_loads_offline_with_no_error(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console)
    page = tab.page
    _wait_overview(page)
    for view, drawn in DRAWN.items():
        page.click(f"nav.views a[href*='view={view}&']")
        page.wait_for_selector(drawn)
        assert _params(page)["view"] == [view]
        # the range and the filters stay in the URL from view to view
        assert _params(page)["range"] == ["LAST_7D"]
        _shot(page, console, view)
    page.emulate_media(color_scheme="dark")
    _shot(page, console, "workspaces-dark")
    tab.close()


USAGE = """query($dim: Dimension!, $metrics: [Metric!]!, $range: TimeRangeInput!,
    $order: Metric, $filter: EventFilter) {
  breakdown(dimension: $dim, metrics: $metrics, range: $range, orderBy: $order, first: 25,
            filter: $filter) { totalCount nodes { key values } }
}"""
USAGE_METRICS = [
    "REQUESTS",
    "ERRORS",
    "ERROR_RATE",
    "INPUT_TOKENS",
    "OUTPUT_TOKENS",
    "TOTAL_TOKENS",
    "COST_USD",
    "AVG_LATENCY_MS",
    "P95_LATENCY_MS",
]


def _usage(console: Console, dim: str, order: str) -> dict:
    answer = console.graphql(
        USAGE, {"dim": dim, "metrics": USAGE_METRICS, "range": RANGE, "order": order}
    )
    return answer["breakdown"]


def _assert_usage(page: Page, expected: dict) -> None:
    keys = page.locator("table.usage tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert keys == [n["key"] or "" for n in expected["nodes"]]
    for i, metric in enumerate(USAGE_METRICS):
        shown = page.locator(f"table.usage [data-metric='{metric}']").evaluate_all(
            "els => els.map(e => e.dataset.value === '' ? null : Number(e.dataset.value))"
        )
        assert shown == [n["values"][i] for n in expected["nodes"]], metric
    assert _value(page, "totalCount") == expected["totalCount"]


def test_usage_breakdowns_sort_and_csv(browser: Browser, console: Console, tmp_path: Path) -> None:
    tab = _signed_in(browser, console, "?view=usage")
    page = tab.page
    page.wait_for_selector("table.usage tbody tr")
    by_user = _usage(console, "USER", "COST_USD")
    assert by_user["totalCount"] > 25  # paged
    _assert_usage(page, by_user)

    # another dimension and another order: both in the URL, the figures follow
    page.click("nav.tabs button[data-dim='MODEL']")
    page.wait_for_function("new URL(location).searchParams.get('dim') === 'MODEL'")
    page.click("table.usage th button.sort[data-order='REQUESTS']")
    page.wait_for_function("new URL(location).searchParams.get('sort') === 'REQUESTS'")
    by_model = _usage(console, "MODEL", "REQUESTS")
    first = by_model["nodes"][0]["key"] or ""  # tool calls and runs have no model
    page.wait_for_selector(f"table.usage tbody tr[data-key='{first}']")
    _assert_usage(page, by_model)
    page.reload(wait_until="load")
    page.wait_for_selector(f"table.usage tbody tr[data-key='{first}']")
    _assert_usage(page, by_model)
    _shot(page, console, "usage-models")

    # the CSV comes from the export endpoint, with the same rows in the same order
    with page.expect_download() as info:
        page.click("button.csv")
    download = info.value
    assert download.suggested_filename.startswith("tallyql-acme-breakdown-")
    assert download.suggested_filename.endswith(".csv")
    path = tmp_path / "usage.csv"
    download.save_as(path)
    lines = path.read_text().strip().splitlines()
    assert lines[0].split(",")[:3] == ["model", "requests", "errors"]
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == by_model["totalCount"]
    assert [r[0] for r in rows[:25]] == [n["key"] or "" for n in by_model["nodes"]]
    assert [float(r[1]) for r in rows[:25]] == [n["values"][0] for n in by_model["nodes"]]
    page.wait_for_selector("text=Downloaded tallyql-acme-breakdown-")
    tab.close()


TOOLS = """query($range: TimeRangeInput!) {
  toolUsage(range: $range) {
    executions errors errorRate blocked avgLatencyMs uniqueTools activeAgentInstances
    activeUsers mcpServers
    topTools { nodes { tool calls errors errorRate avgLatencyMs } }
    topMcpServers { nodes { mcpServer tools calls } }
  }
  security(range: $range) {
    blockedCalls totalRequests blockedRate
    topPolicies { nodes { policyId blockedCalls } }
    topBlockedTools { nodes { calls } }
  }
  errors(range: $range) { totalErrors errorRate byType { type count } byModel { errors errorRate } }
}"""


def test_tools_security_and_errors_equal_the_api(browser: Browser, console: Console) -> None:
    expected = console.graphql(TOOLS, {"range": RANGE})
    tab = _signed_in(browser, console, "?view=tools")
    page = tab.page
    page.wait_for_selector(DRAWN["tools"])
    tools = expected["toolUsage"]
    assert tools["executions"] > 0
    for name in (
        "executions",
        "errors",
        "errorRate",
        "blocked",
        "avgLatencyMs",
        "uniqueTools",
        "activeAgentInstances",
        "activeUsers",
        "mcpServers",
    ):
        assert _value(page, name, "section.kpis") == tools[name], name
    top = tools["topTools"]["nodes"]
    for name in ("calls", "errors", "errorRate", "avgLatencyMs"):
        shown = page.locator(f"table.top-tools [data-metric='{name}']").evaluate_all(
            "els => els.map(e => e.dataset.value === '' ? null : Number(e.dataset.value))"
        )
        assert shown == [t[name] for t in top], name
    assert _column(page, "table.top-mcp", "tools") == [
        m["tools"] for m in tools["topMcpServers"]["nodes"]
    ]

    page.click("nav.views >> text=Security")
    page.wait_for_selector(DRAWN["security"])
    security = expected["security"]
    assert security["blockedCalls"] > 0
    for name in ("blockedCalls", "totalRequests", "blockedRate"):
        assert _value(page, name, "section.kpis") == security[name], name
    assert _column(page, "table.top-policies", "blockedCalls") == [
        p["blockedCalls"] for p in security["topPolicies"]["nodes"]
    ]
    assert _column(page, "table.blocked-tools", "calls") == [
        t["calls"] for t in security["topBlockedTools"]["nodes"]
    ]

    page.click("nav.views >> text=Errors")
    page.wait_for_selector(DRAWN["errors"])
    errors = expected["errors"]
    assert errors["totalErrors"] > 0
    assert _value(page, "totalErrors") == errors["totalErrors"]
    assert _value(page, "errorRate", "section.kpis") == errors["errorRate"]
    assert _column(page, "table.errors-by-type", "count") == [t["count"] for t in errors["byType"]]
    assert sum(_column(page, "table.errors-by-type", "share")) == pytest.approx(1.0)
    assert _column(page, "table.errors-by-model", "errors") == [
        m["errors"] for m in errors["byModel"]
    ]
    page.wait_for_selector("figure.chart canvas")
    assert page.locator("figure.chart").count() == 2
    tab.close()


AGENTS = """query($range: TimeRangeInput!, $order: AgentOrder!, $gorder: GatewayOrder!) {
  agents(range: $range, orderBy: $order, first: 25) {
    totalCount nodes { agentId runs successRate avgRunDurationMs requests costUsd
                       nodes { node requests costUsd } }
  }
  gateways(range: $range, orderBy: $gorder, first: 25) {
    totalCount nodes { gateway requests uniqueCallers bandwidthBytes errorRate costUsd }
  }
}"""


def test_agents_and_gateways_equal_the_api_and_sort(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console, "?view=agents")
    page = tab.page
    page.wait_for_selector(DRAWN["agents"])
    expected = console.graphql(AGENTS, {"range": RANGE, "order": "RUNS", "gorder": "REQUESTS"})
    agents = expected["agents"]["nodes"]
    assert agents
    order = page.locator("table.agents > tbody > tr").evaluate_all(
        "rows => rows.map(r => r.dataset.key)"
    )
    assert order == [a["agentId"] for a in agents]
    for name in ("runs", "successRate", "avgRunDurationMs", "requests", "costUsd"):
        shown = page.locator(f"table.agents [data-metric='{name}']").evaluate_all(
            "els => els.map(e => e.dataset.value === '' ? null : Number(e.dataset.value))"
        )
        assert shown == [a[name] for a in agents], name
    # an agent's nodes
    with_nodes = next(a for a in agents if a["nodes"])
    row = page.locator(f"table.agents tr[data-key='{with_nodes['agentId']}']")
    row.locator("summary").click()
    node_costs = row.locator("[data-metric='node.costUsd']").evaluate_all(
        "els => els.map(e => Number(e.dataset.value))"
    )
    assert node_costs == [n["costUsd"] for n in with_nodes["nodes"]]
    _shot(page, console, "agents-nodes")
    # sorted by cost, through the header
    page.click("table.agents th button.sort[data-order='COST']")
    page.wait_for_function("new URL(location).searchParams.get('sort') === 'COST'")
    by_cost = console.graphql(AGENTS, {"range": RANGE, "order": "COST", "gorder": "REQUESTS"})
    top = by_cost["agents"]["nodes"][0]
    page.wait_for_function(
        "k => document.querySelector('table.agents > tbody > tr')?.dataset.key === k",
        arg=top["agentId"],
    )
    assert _column(page, "table.agents", "costUsd") == [
        a["costUsd"] for a in by_cost["agents"]["nodes"]
    ]

    page.click("nav.views >> text=Gateways")
    page.wait_for_selector(DRAWN["gateways"])
    gateways = expected["gateways"]["nodes"]
    for name in ("requests", "uniqueCallers", "bandwidthBytes", "errorRate", "costUsd"):
        shown = page.locator(f"table.gateways [data-metric='{name}']").evaluate_all(
            "els => els.map(e => e.dataset.value === '' ? null : Number(e.dataset.value))"
        )
        assert shown == [g[name] for g in gateways], name
    assert _value(page, "totalCount") == expected["gateways"]["totalCount"]
    tab.close()


BUDGETS = """{ budgets(first: 100) { nodes { id name amountUsd period scope scopeValue thresholds
  currentSpendUsd status } }
  alertRules(first: 100) { nodes { id name metric operator threshold windowMinutes enabled
  filter } } }"""


def _budget(console: Console, name: str) -> dict | None:
    nodes = console.graphql(BUDGETS)["budgets"]["nodes"]
    return next((b for b in nodes if b["name"] == name), None)


def test_budget_created_edited_and_deleted_from_the_ui(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console, "?view=budgets")
    page = tab.page
    page.wait_for_selector("button.new-budget")
    name = f"ui budget {uuid.uuid4().hex[:6]}"
    page.click("button.new-budget")
    page.fill("#budget-name", name)
    page.fill("#budget-amountUsd", "250")
    page.select_option("#budget-period", "WEEK")
    page.select_option("#budget-scope", "MODEL")
    model = _expected(console, TIME_ZONE)["topModels"]["nodes"][0]["key"]
    page.fill("#budget-scopeValue", model)
    page.fill("#budget-thresholds", "60, 90")
    _shot(page, console, "budget-form")
    page.click("form.budget-form button[type=submit]")
    row = page.locator(f"table.budgets tbody tr:has-text('{name}')")
    row.wait_for()
    created = _budget(console, name)
    assert created is not None
    assert (created["amountUsd"], created["period"], created["scope"]) == (250.0, "WEEK", "MODEL")
    assert (created["scopeValue"], created["thresholds"]) == (model, [60, 90])
    assert row.get_attribute("data-id") == created["id"]
    assert (
        float(row.locator("[data-metric='currentSpendUsd']").get_attribute("data-value"))
        == (created["currentSpendUsd"])
    )
    assert row.locator("[data-status]").get_attribute("data-status") == created["status"]
    _shot(page, console, "budgets")

    # edit: the form comes filled in; the new limit is saved
    row.locator("button.edit").click()
    assert page.input_value("#budget-name") == name
    assert page.input_value("#budget-scopeValue") == model
    page.fill("#budget-amountUsd", "300.5")
    page.click("form.budget-form button[type=submit]")
    _wait_value(
        page, f"table.budgets tr[data-id='{created['id']}'] [data-metric='amountUsd']", 300.5
    )
    assert _budget(console, name)["amountUsd"] == 300.5

    # the API's own message at its field: a user scope needs its user
    page.click("button.new-budget")
    page.fill("#budget-name", f"{name} bad")
    page.fill("#budget-amountUsd", "10")
    page.select_option("#budget-scope", "USER")
    page.click("form.budget-form button[type=submit]")
    page.wait_for_selector("form.budget-form .error-inline:not(:empty)")
    assert _budget(console, f"{name} bad") is None
    page.click("form.budget-form button:has-text('Cancel')")

    # delete asks once more, in place
    row = page.locator(f"table.budgets tr[data-id='{created['id']}']")
    row.locator("button.danger").click()
    row.locator("button.confirm").click()
    page.wait_for_selector(f"table.budgets tr[data-id='{created['id']}']", state="detached")
    assert _budget(console, name) is None
    tab.close()


def test_alert_rules_for_members_and_no_edit_for_viewers(
    browser: Browser, console: Console
) -> None:
    # with a model chosen in the filter bar: the new rule may watch only its events
    model = _expected(console, TIME_ZONE)["topModels"]["nodes"][0]["key"]
    tab = _signed_in(browser, console, f"?view=budgets&models={model}", key=console.member)
    page = tab.page
    page.wait_for_selector("button.new-rule")
    assert page.locator("button.new-budget").count() == 0  # budgets are the admins'
    name = f"ui rule {uuid.uuid4().hex[:6]}"
    page.click("button.new-rule")
    assert page.is_checked("#rule-filter")
    page.fill("#rule-name", name)
    page.select_option("#rule-metric", "ERROR_RATE")
    page.select_option("#rule-operator", "GTE")
    page.fill("#rule-threshold", "0.25")
    page.fill("#rule-windowMinutes", "15")
    page.click("form.rule-form button[type=submit]")
    page.wait_for_selector(f"table.rules tbody tr:has-text('{name}')")
    rules = console.graphql(BUDGETS)["alertRules"]["nodes"]
    rule = next(r for r in rules if r["name"] == name)
    assert (rule["metric"], rule["operator"], rule["threshold"]) == ("ERROR_RATE", "GTE", 0.25)
    assert (rule["windowMinutes"], rule["enabled"]) == (15, True)
    assert rule["filter"] == {"models": [model]}
    tab.close()

    # a viewer reads both lists and is offered no change
    tab = _signed_in(browser, console, "?view=budgets", key=console.viewer)
    page = tab.page
    page.wait_for_selector(f"table.rules tbody tr:has-text('{name}')")
    for control in ("button.new-rule", "button.new-budget", "button.edit", "button.danger"):
        assert page.locator(control).count() == 0, control
    tab.close()

    # the member deletes it
    tab = _signed_in(browser, console, "?view=budgets", key=console.member)
    page = tab.page
    row = page.locator(f"table.rules tr[data-id='{rule['id']}']")
    row.locator("button.danger").click()
    row.locator("button.confirm").click()
    page.wait_for_selector(f"table.rules tr[data-id='{rule['id']}']", state="detached")
    assert all(r["id"] != rule["id"] for r in console.graphql(BUDGETS)["alertRules"]["nodes"])
    tab.close()


AUDIT = """query($range: TimeRangeInput, $filter: AuditFilter) {
  auditEvents(range: $range, filter: $filter, first: 50) { totalCount nodes { id action } }
}"""


def test_audit_trail_equals_the_api_and_filters(
    browser: Browser, console: Console, tmp_path: Path
) -> None:
    tab = _signed_in(browser, console, "?view=audit")
    page = tab.page
    page.wait_for_selector(DRAWN["audit"])
    expected = console.graphql(AUDIT, {"range": RANGE})["auditEvents"]
    ids = page.locator("table.audit tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids == [e["id"] for e in expected["nodes"]]
    assert _value(page, "totalCount") == expected["totalCount"]
    # the event filter bar does not apply here: the audit trail has its own filter
    assert page.locator("#filter-dimension").count() == 0
    page.select_option("#audit-field", "actions")
    page.select_option("#audit-choice", "BLOCK")
    page.click("form.add-filter button[type=submit]")
    page.wait_for_function("new URL(location).searchParams.get('actions') === 'BLOCK'")
    blocked = console.graphql(AUDIT, {"range": RANGE, "filter": {"actions": ["BLOCK"]}})
    blocked = blocked["auditEvents"]
    assert 0 < blocked["totalCount"] < expected["totalCount"]
    _wait_value(page, "main [data-metric='totalCount']", blocked["totalCount"])
    ids = page.locator("table.audit tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids == [e["id"] for e in blocked["nodes"]]
    _shot(page, console, "audit-filtered")
    # the CSV holds the same events, through the export endpoint with the same filter
    with page.expect_download() as info:
        page.click("button.csv")
    path = tmp_path / "audit.csv"
    info.value.save_as(path)
    assert info.value.suggested_filename.startswith("tallyql-acme-audit-events-")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == blocked["totalCount"]
    assert {r["action"].upper() for r in rows} == {"BLOCK"}
    page.reload(wait_until="load")
    page.wait_for_selector(".audit-filters .chip[data-value='BLOCK']")
    _wait_value(page, "main [data-metric='totalCount']", blocked["totalCount"])
    tab.close()


WORKSPACES = """query($range: TimeRangeInput!) {
  workspaces(range: $range) {
    nodes { name requests costUsd costShare }
    totals { workspaces requests costUsd }
    byokVsPlatform { byokCostUsd platformCostUsd }
  }
}"""


def test_workspaces_for_the_operator_admin(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console, "?view=workspaces")
    page = tab.page
    page.wait_for_selector(DRAWN["workspaces"])
    expected = console.graphql(WORKSPACES, {"range": RANGE})["workspaces"]
    for name in ("workspaces", "requests", "costUsd"):
        assert _value(page, f"totals.{name}") == expected["totals"][name], name
    for name in ("byokCostUsd", "platformCostUsd"):
        assert _value(page, f"byokVsPlatform.{name}") == expected["byokVsPlatform"][name]
    names = page.locator("table.workspaces tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.key)"
    )
    assert names == [n["name"] for n in expected["nodes"]]
    assert _column(page, "table.workspaces", "costUsd") == [n["costUsd"] for n in expected["nodes"]]
    tab.close()
    # a key that may not look across workspaces is not offered the view, even by its URL
    tab = _signed_in(browser, console, "?view=workspaces", key=console.viewer)
    page = tab.page
    _wait_overview(page)
    assert page.locator("nav.views a:has-text('Workspaces')").count() == 0
    assert _params(page)["view"] == ["overview"]
    tab.close()


def test_every_event_filter_field_and_metadata(browser: Browser, console: Console) -> None:
    tab = _signed_in(browser, console)
    page = tab.page
    _wait_overview(page)
    fields = page.locator("#filter-dimension option").evaluate_all("os => os.map(o => o.value)")
    assert set(fields) == EVENT_FILTER_FIELDS
    # an enum field offers the schema's values
    page.select_option("#filter-dimension", "statuses")
    page.select_option("#filter-choice", "ERROR")
    page.click("form.add-filter button[type=submit]")
    page.wait_for_function("new URL(location).searchParams.get('statuses') === 'ERROR'")
    errors = _expected(console, TIME_ZONE, {"statuses": ["ERROR"]})
    _wait_value(page, "[data-metric='totalRequests']", errors["overview"]["totalRequests"])
    _assert_overview_matches(page, errors)
    page.click(".chip[data-value='ERROR'] button")
    page.wait_for_function("!new URL(location).searchParams.has('statuses')")
    _wait_overview(page)

    # metadata: a key, then its values from the data
    page.select_option("#filter-dimension", "metadata")
    page.fill("#filter-key", "feature")
    page.dispatch_event("#filter-key", "change")
    page.wait_for_selector("#filter-values option", state="attached")
    value = page.get_attribute("#filter-values option", "value")
    page.fill("#filter-value", value)
    page.click("form.add-filter button[type=submit]")
    page.wait_for_function("new URL(location).searchParams.has('metadata')")
    assert _params(page)["metadata"] == [f"feature:{value}"]
    featured = _expected(console, TIME_ZONE, {"metadata": [{"key": "feature", "value": value}]})
    assert 0 < featured["overview"]["totalRequests"] < DEMO_EVENTS
    _wait_value(page, "[data-metric='totalRequests']", featured["overview"]["totalRequests"])
    _assert_overview_matches(page, featured)
    page.reload(wait_until="load")
    _wait_overview(page)
    _assert_overview_matches(page, featured)
    tab.close()


def test_live_reconnects_and_shows_a_lag(browser: Browser, console: Console) -> None:
    """The socket passes through a route that can cut it (as a restart or a network drop would)
    and speak as the server (a Lagged item, which a real server sends when a page falls
    behind its queue): the view says it is reconnecting, is live again, and tells how many
    items were dropped."""
    context = browser.new_context(timezone_id=TIME_ZONE)
    page = context.new_page()
    offline = Offline()
    context.route("**/*", offline.route)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    routes: list[WebSocketRoute] = []
    subscriptions: list[str] = []

    def on_route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        routes.append(ws)

        def from_page(message: str | bytes) -> None:
            body = json.loads(message)
            if body.get("type") == "subscribe":
                subscriptions.append(body["id"])
            server.send(message)

        ws.on_message(from_page)

    page.route_web_socket(lambda url: urlsplit(url).path == "/graphql", on_route)
    page.goto(f"{console.server.url}/?view=live#key={console.key}", wait_until="load")
    page.wait_for_selector(".live-status.up")
    page.wait_for_selector("[data-metric='today.costUsd']")
    assert len(routes) == 1 and len(subscriptions) == 1

    # the server lets the page know it dropped items, twice: the counts add up
    for count in (7, 5):
        routes[-1].send(json.dumps({
            "id": subscriptions[-1], "type": "next",
            "payload": {"data": {"events": {"__typename": "Lagged", "count": count}}},
        }))  # fmt: skip
    _wait_value(page, "[data-metric='Lagged.count']", 12)
    assert "dropped" in page.inner_text(".warning[role=alert]")
    _shot(page, console, "live-lagged")

    # the connection drops: the page says so, reconnects by itself and subscribes again
    routes[-1].close(code=1012, reason="service restart")
    page.wait_for_selector(".live-status.down")
    assert "reconnecting" in page.inner_text(".live-status")
    page.wait_for_selector(".live-status.up", timeout=15_000)
    assert "Connected again" in page.inner_text(".live-status")
    assert len(routes) == 2 and len(subscriptions) == 2
    # and it is live: an event ingested now shows
    model = f"again-{uuid.uuid4().hex[:8]}"
    console.ingest([{"provider": "openai", "model": model, "input_tokens": 10, "output_tokens": 5}])
    page.wait_for_selector(f"table.live-feed tr:has-text('{model}')", timeout=5_000)
    context.close()
    assert offline.blocked == [] and errors == []


ASK = """query($q: String!, $tz: String!) { ask(question: $q, timezone: $tz) {
  understood interpretation query result { metrics rows { keys values } } } }"""


def test_ask_answers_draws_and_opens_as_query(browser: Browser, console: Console) -> None:
    question = "cost by model last 7 days"
    tab = _signed_in(browser, console, "?view=ask&tz=UTC&q=" + question.replace(" ", "+"))
    page = tab.page
    page.wait_for_selector("table.ask-rows tbody tr")
    expected = console.graphql(ASK, {"q": question, "tz": "UTC"})["ask"]
    assert expected["understood"] is True
    assert page.inner_text(".ask-interpretation") == expected["interpretation"]
    shown = page.locator("table.ask-rows [data-metric='COST_USD']").evaluate_all(
        "els => els.map(e => e.dataset.value === '' ? null : Number(e.dataset.value))"
    )
    assert shown == [r["values"][0] for r in expected["result"]["rows"]]
    assert len(shown) > 1
    # the server drew the chart (a PNG the browser decoded)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.ask-chart'); "
        "return i && i.complete && i.naturalWidth > 100; }"
    )
    _shot(page, console, "ask")
    # "Open as query": GraphiQL with the metrics query and the interpretation as variables
    href = page.get_attribute("a:text('Open as query')", "href")
    assert href is not None and href.startswith("/graphql?")
    linked = parse_qs(urlsplit(href).query)
    assert json.loads(linked["variables"][0]) == {"query": expected["query"]}
    graphiql = page.context.new_page()
    graphiql.goto(console.server.url + href)
    graphiql.wait_for_selector("text=metrics(query: $query)")
    graphiql.close()

    # a question not understood: questions to try, each one click away
    page.fill("#ask-question", "zzkq wobble")
    page.click("form.ask-form button[type=submit]")
    page.wait_for_selector("ul.suggestions button")
    assert _params(page)["q"] == ["zzkq wobble"]
    suggestion = page.locator("ul.suggestions button").first
    text = suggestion.inner_text()
    suggestion.click()
    page.wait_for_function("t => new URL(location).searchParams.get('q') === t", arg=text)
    page.wait_for_selector(".ask-interpretation, .empty")
    tab.close()
