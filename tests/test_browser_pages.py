"""GraphiQL (/graphql) and the REST docs (/docs) in a real browser (Debian's chromium, driven by
Playwright) against a real server: every request to another host is blocked and recorded, and
none may happen. In GraphiQL the key is entered once, the README's first query runs from the
default tab, the docs pane fills in once the key is set, and subscriptions (anonymous and
named) receive events ingested during the test over graphql-transport-ws. In the REST docs a
newcomer authorizes with the key and tries POST /v1/events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Browser, Page, WebSocket

from tallyql.first_query import FIRST_QUERY
from tests.conftest import DATABASES
from tests.support.browser import Offline, Served, module_database
from tests.support.server import create_key, start_server


@pytest.fixture(scope="module", params=DATABASES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    url, data_dir = module_database(request, tmp_path_factory, "graphiql")
    key = create_key(url, data_dir, role="admin")
    server = start_server(url, data_dir, "graphiql")
    try:
        yield Served(server, key)
    finally:
        server.stop()


def _open(browser: Browser, served: Served, path: str = "/graphql") -> tuple[Page, Offline]:
    offline = Offline()
    context = browser.new_context()  # fresh localStorage
    context.route("**/*", offline.route)
    page = context.new_page()
    page.goto(f"{served.server.url}{path}", wait_until="load")
    if path == "/graphql":
        page.wait_for_selector(".graphiql-execute-button")
    return page, offline


def _editor(page: Page, selector: str) -> str:
    return page.evaluate(f"document.querySelector({selector!r}).CodeMirror.getValue()")


def _set_query(page: Page, query: str) -> None:
    page.evaluate(
        "q => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q)",
        query,
    )


def _result(page: Page) -> str:
    return _editor(page, ".result-window .CodeMirror")


def _wait_for_result(page: Page, predicate: Callable[[str], bool], timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _result(page)
        if predicate(text):
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"the result pane never matched; it shows:\n{text}")


def _enter_key(page: Page, key: str) -> None:
    page.fill("#tallyql-key-input", key)
    page.click("#tallyql-key-save")


def test_page_offline_key_once_first_query_and_docs(browser: Browser, served: Served) -> None:
    now = datetime.now(UTC)
    marker = f"model-{uuid.uuid4().hex[:8]}"
    events = [
        {
            "timestamp": (now - timedelta(minutes=10 + i)).isoformat(),
            "provider": "openai",
            "model": marker,
            "input_tokens": 100 + i,
            "output_tokens": 10,
            "latency_ms": 200,
        }
        for i in range(3)
    ]
    assert served.ingest(events)["accepted"] == 3
    expected_total = httpx.post(  # the server's own answer over plain HTTP, for comparison
        f"{served.server.url}/graphql",
        json={"query": "{ overview(range: {preset: LAST_7D}) { totalRequests } }"},
        headers={"Authorization": f"Bearer {served.key}"},
    ).json()["data"]["overview"]["totalRequests"]
    assert expected_total >= 3

    page, offline = _open(browser, served)
    # the default tab holds the README's first query
    assert _editor(page, ".graphiql-query-editor .CodeMirror") == FIRST_QUERY
    assert "Enter an API key" in page.inner_text("#tallyql-key-status")

    # without a key the schema cannot be fetched: the docs pane has nothing to show
    page.click("button[aria-label='Show Documentation Explorer']")
    page.wait_for_selector(".graphiql-doc-explorer")
    assert "Subscription" not in page.inner_text(".graphiql-doc-explorer")

    _enter_key(page, served.key)
    # setting the key fetches the schema again: the docs pane fills in without a reload
    page.wait_for_selector(".graphiql-doc-explorer :text('Subscription')", timeout=15_000)
    docs = page.inner_text(".graphiql-doc-explorer")
    assert "Query" in docs and "Mutation" in docs and "Subscription" in docs

    page.click(".graphiql-execute-button")
    text = _wait_for_result(page, lambda t: '"overview"' in t)
    data = json.loads(text)["data"]
    assert data["me"] == {"workspace": "acme", "role": "admin"}
    assert data["overview"]["totalRequests"] == expected_total
    assert [n["model"] for n in data["requests"]["nodes"]].count(marker) == 3

    # the key is kept: a reload asks for nothing and queries work at once
    page.reload(wait_until="load")
    page.wait_for_selector(".graphiql-execute-button")
    assert page.input_value("#tallyql-key-input") == served.key
    assert "Key kept" in page.inner_text("#tallyql-key-status")
    _set_query(page, "{ me { workspace role } }")
    page.click(".graphiql-execute-button")
    text = _wait_for_result(page, lambda t: '"me"' in t)
    assert json.loads(text)["data"]["me"] == {"workspace": "acme", "role": "admin"}

    page.context.close()
    assert offline.blocked == [], f"the page asked other hosts: {offline.blocked}"


@pytest.mark.parametrize(
    "operation",
    [
        "subscription { events(types: [REQUEST]) { __typename ... on RequestEvent { model } } }",
        "subscription Live { events(types: [REQUEST]) { ... on RequestEvent { model } } }",
    ],
    ids=["anonymous", "named"],
)
def test_subscription_receives_an_event_ingested_during_the_test(
    browser: Browser, served: Served, operation: str
) -> None:
    page, offline = _open(browser, served)
    _enter_key(page, served.key)
    frames: list[dict[str, object]] = []
    protocols: list[str] = []

    def on_socket(ws: WebSocket) -> None:
        protocols.append(ws.url)
        ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", on_socket)
    _set_query(page, operation)
    page.click(".graphiql-execute-button")

    # a subscription receives what is committed after it starts; keep ingesting fresh models
    # until one arrives, then check it is one of those ingested here
    sent: list[str] = []
    received: list[str] = []
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        model = f"live-{uuid.uuid4().hex[:8]}"
        sent.append(model)
        served.ingest([{"provider": "openai", "model": model, "input_tokens": 1}])
        page.wait_for_timeout(500)
        received = [
            f["payload"]["data"]["events"]["model"]  # type: ignore[index]
            for f in frames
            if f.get("type") == "next"
        ]
    assert received, f"no event arrived over the WebSocket; frames: {frames}"
    assert set(received) <= set(sent)
    assert protocols == [f"{served.server.url.replace('http', 'ws')}/graphql"]
    # graphql-transport-ws: connection_ack then next (the legacy protocol says "data")
    assert frames[0]["type"] == "connection_ack"
    shown = _wait_for_result(page, lambda t: received[0] in t)
    assert json.loads(shown)["data"]["events"]["model"] in sent

    page.click(".graphiql-execute-button")  # stop
    page.context.close()
    assert offline.blocked == [], f"the page asked other hosts: {offline.blocked}"


def _count_of_model(served: Served, model: str) -> int:
    response = httpx.post(
        f"{served.server.url}/graphql",
        json={
            "query": "query($m: [String!]) { requests(filter: {models: $m}) { totalCount } }",
            "variables": {"m": [model]},
        },
        headers={"Authorization": f"Bearer {served.key}"},
    )
    return response.json()["data"]["requests"]["totalCount"]


def test_rest_docs_try_post_v1_events(browser: Browser, served: Served) -> None:
    example = httpx.get(f"{served.server.url}/openapi.json").json()["components"]["schemas"][
        "Event"
    ]["example"]
    before = _count_of_model(served, example["model"])
    page, offline = _open(browser, served, "/docs")
    page.click("button.authorize")
    page.fill(".modal-ux input", served.key)
    page.click(".modal-ux button.authorize")
    page.click(".modal-ux button.btn-done")
    operation = page.locator("#operations-Ingest-ingest_events_v1_events_post")
    operation.locator(".opblock-summary").click()
    operation.locator("button.execute").click()  # the documented example body
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    body = operation.locator(".live-responses-table tbody .response-col_description").first
    shown = body.locator("pre.microlight").first.inner_text()
    assert json.loads(shown) == {"accepted": 1, "duplicates": 0, "rejected": 0, "errors": []}
    assert _count_of_model(served, example["model"]) == before + 1
    page.context.close()
    assert offline.blocked == [], f"the page asked other hosts: {offline.blocked}"


def test_ask_box_shows_the_answer_and_opens_it_as_a_query(browser: Browser, served: Served) -> None:
    """The Ask box above GraphiQL: the interpretation, the summary, the server's chart and
    the rows; Open as query puts the metrics(query:) document and its variables into the
    editor, and running it gives the rows shown."""
    now = datetime.now(UTC)
    marker = f"askmodel-{uuid.uuid4().hex[:6]}"
    served.ingest(
        [
            {
                "timestamp": (now - timedelta(minutes=20 + i)).isoformat(),
                "provider": "openai",
                "model": marker,
                "input_tokens": 1000,
                "output_tokens": 100,
            }
            for i in range(4)
        ]
    )
    page, offline = _open(browser, served)
    _enter_key(page, served.key)
    page.fill("#tallyql-ask-input", "requests by model in the last 7 days")
    page.click("#tallyql-ask-submit")
    page.wait_for_selector("#tallyql-ask-interpretation", timeout=15_000)
    assert page.inner_text("#tallyql-ask-interpretation").startswith(
        "Requests by model, the last 7 days"
    )
    assert page.inner_text("#tallyql-ask-summary")
    rows = page.locator("#tallyql-ask-rows tbody tr")
    shown = {
        rows.nth(i).locator("td").nth(0).inner_text(): rows.nth(i).locator("td").nth(1).inner_text()
        for i in range(rows.count())
    }
    assert shown[marker] == "4"
    # the server's chart, a real picture
    page.wait_for_function(
        "() => { const i = document.querySelector('#tallyql-ask-chart');"
        " return i && i.complete && i.naturalWidth > 300; }",
        timeout=15_000,
    )
    page.click("#tallyql-ask-open")
    page.wait_for_function(
        "() => document.querySelector('.graphiql-query-editor .CodeMirror')"
        ".CodeMirror.getValue().includes('metrics(query: $query)')"
    )
    # the variables pane opens by itself: it holds the query
    page.wait_for_function(
        "() => [...document.querySelectorAll('.graphiql-editor-tool .CodeMirror')]"
        ".some(e => e.offsetParent !== null && e.CodeMirror.getValue().includes('metrics'))"
    )
    variables = page.evaluate(
        "() => [...document.querySelectorAll('.graphiql-editor-tool .CodeMirror')]"
        ".map(e => e.CodeMirror.getValue()).find(v => v.includes('metrics')) || ''"
    )
    query = json.loads(variables)["query"]
    assert query["dimensions"] == [{"dimension": "MODEL"}]
    assert query["range"]["preset"] == "LAST_7D"
    page.click(".graphiql-execute-button")
    text = _wait_for_result(page, lambda t: '"metrics"' in t and "rows" in t)
    got = {r["keys"][0]: r["values"][0] for r in json.loads(text)["data"]["metrics"]["rows"]}
    assert got[marker] == 4
    # a question not understood: suggestions, one click each
    page.fill("#tallyql-ask-input", "blorp flurb")
    page.click("#tallyql-ask-submit")
    page.wait_for_selector("#tallyql-ask-answer :text('Not understood')")
    page.locator("#tallyql-ask-answer li button").first.click()
    page.wait_for_selector("#tallyql-ask-summary", timeout=15_000)
    page.context.close()
    assert offline.blocked == [], f"the page asked other hosts: {offline.blocked}"
