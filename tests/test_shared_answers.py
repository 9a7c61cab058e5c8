"""Identical questions asked together are computed once, and an answer never misses an event
committed before its request started (tallyql/http/shared_answers.py), in one app on both
databases; across replicas: test_shared_answers_replicas.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from tallyql.auth.principal import Role
from tallyql.config import Settings
from tallyql.http.graphql_fast import _is_shareable_query
from tallyql.http.shared_answers import SingleFlight, shared_key
from tallyql.schema import build_schema
from tests.conftest import Api
from tests.support.shared_answers import (
    DAY,
    OVERVIEW,
    direct_route,
    event,
    held_after_reading,
    overview_total,
)

# -- the single flight alone --------------------------------------------------------------


async def test_a_request_never_joins_a_computation_that_started_before_it() -> None:
    flights: SingleFlight[int] = SingleFlight()
    version = [0]  # stands for the database: what a computation reads when it starts
    gate = asyncio.Event()

    def computation() -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            seen = version[0]
            await gate.wait()
            return seen

        return run

    first = asyncio.create_task(flights.do("q", computation()))
    await asyncio.sleep(0)  # the first computation starts and reads version 0
    await asyncio.sleep(0)
    version[0] = 1  # an event commits
    later = [asyncio.create_task(flights.do("q", computation())) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == (0, False)
    answers = await asyncio.gather(*later)
    assert {answer for answer, _ in answers} == {1}  # all computed after they arrived
    assert sorted(shared for _, shared in answers) == [False] + [True] * 9
    assert flights.computations == 2 and flights.shared == 9


async def test_a_failed_computation_fails_its_requests_and_the_next_one_runs() -> None:
    flights: SingleFlight[int] = SingleFlight()

    async def fail() -> int:
        raise RuntimeError("boom")

    async def ok() -> int:
        return 7

    with pytest.raises(RuntimeError):
        await flights.do("q", fail)
    assert await flights.do("q", ok) == (7, False)


def test_the_key_names_workspace_role_document_variables_and_operation() -> None:
    data = {"query": "{ a }", "variables": {"x": 1, "y": [1, {"z": True}]}}
    same = {"query": "{ a }", "variables": {"y": [1, {"z": True}], "x": 1}}
    assert shared_key(1, "viewer", data, False, False) == shared_key(
        1, "viewer", same, False, False
    )
    assert shared_key(1, "viewer", data, False, False) != shared_key(
        2, "viewer", data, False, False
    )
    assert shared_key(1, "viewer", data, False, False) != shared_key(1, "admin", data, False, False)
    one = {"query": "{ a }", "variables": {"x": 1}}
    for other in ({"x": True}, {"x": 1.0}, {"x": "1"}, {"x": 2}):
        assert shared_key(1, "v", one, False, False) != shared_key(
            1, "v", {"query": "{ a }", "variables": other}, False, False
        )
    named = {"query": "{ a }", "operationName": "A"}
    assert shared_key(1, "v", named, False, False) != shared_key(
        1, "v", {"query": "{ a }"}, False, False
    )
    assert shared_key(1, "viewer", data, True, False) is None  # explained
    assert shared_key(1, "viewer", data, False, True) is None  # forced raw


def test_only_queries_that_do_not_name_the_key_are_shared() -> None:
    documents = build_schema(Settings()).documents
    assert _is_shareable_query(documents, {"query": OVERVIEW})
    assert not _is_shareable_query(documents, {"query": "{ me { keyId } }"})
    assert not _is_shareable_query(
        documents, {"query": "query { ...F } fragment F on Query { me { keyId } }"}
    )
    assert not _is_shareable_query(
        documents, {"query": 'mutation { deleteWebhook(id: "1") { userErrors { message } } }'}
    )
    assert not _is_shareable_query(documents, {"query": "{ broken"})
    two = (
        "query A { me { keyId } } query B { overview(range: {preset: LAST_24H}) { totalRequests } }"
    )
    assert _is_shareable_query(documents, {"query": two, "operationName": "B"})
    assert not _is_shareable_query(documents, {"query": two, "operationName": "A"})
    assert not _is_shareable_query(documents, {"query": two})  # which one is ambiguous


# -- through the server, on both databases ----------------------------------------------------


async def test_identical_concurrent_questions_cost_two_computations_at_most(api: Api) -> None:
    key = await api.key(role=Role.VIEWER)
    other_key = await api.key(role=Role.VIEWER)  # another person of the same role
    admin = await api.key(role=Role.ADMIN)
    await api.ingest(admin, [event(n, tokens=n + 1) for n in range(30)])
    route = direct_route(api.app)
    gate, read = asyncio.Event(), asyncio.Event()
    held_after_reading(route, gate, read)  # the first computation stays open meanwhile
    asked = [
        asyncio.create_task(api.graphql(key if n % 2 else other_key, OVERVIEW, DAY))
        for n in range(20)
    ]
    await asyncio.wait_for(read.wait(), 30)
    for _ in range(3000):  # until the other 19 have arrived (each reads its key first)
        if route.flights.shared == 18:
            break
        await asyncio.sleep(0.01)
    gate.set()
    bodies = await asyncio.gather(*asked)
    # the first, and one for the 19 that arrived while it ran
    assert (route.flights.computations, route.flights.shared) == (2, 18)
    for body in bodies:
        assert body["data"]["overview"]["totalRequests"] == 30
        assert body["data"]["overview"]["totalTokens"] == sum(n + 2 for n in range(30))
        # every request paid for itself, from its own key
        assert body["extensions"]["cost"]["spent"] == bodies[0]["extensions"]["cost"]["spent"] > 0
    # an admin asks with another role: its own computation
    await api.graphql(admin, OVERVIEW, DAY)
    assert route.flights.computations == 3


async def test_an_event_committed_while_a_computation_runs_is_in_the_next_answer(
    api: Api,
) -> None:
    key = await api.key(role=Role.VIEWER)
    admin = await api.key()
    await api.ingest(admin, [event(n) for n in range(5)])
    route = direct_route(api.app)
    gate, read = asyncio.Event(), asyncio.Event()
    held_after_reading(route, gate, read)
    first = asyncio.create_task(overview_total(api, key))
    await asyncio.wait_for(read.wait(), 30)  # it has read five events and is held open
    await api.ingest(admin, [event(5)])  # committed before the next request starts
    second = asyncio.create_task(overview_total(api, key))
    await asyncio.sleep(0.05)  # the second request joins the waiting computation
    gate.set()
    assert await first == 5  # started before the commit
    assert await second == 6  # started after it: the event is in its answer
    assert await overview_total(api, key) == 6  # and in every later one


async def test_a_shared_answer_is_charged_to_each_key(settings: Settings, db_kind: str) -> None:
    from tests.conftest import running_api

    limited = replace(settings, cost_key_limit_per_minute=100_000)
    async with running_api(limited, db_kind) as api:
        first, second = await api.key(role=Role.VIEWER), await api.key(role=Role.VIEWER)
        bodies = await asyncio.gather(
            api.graphql(first, OVERVIEW, DAY), api.graphql(second, OVERVIEW, DAY)
        )
        spent = bodies[0]["extensions"]["cost"]["spent"]
        assert spent > 0
        for body in bodies:
            cost = body["extensions"]["cost"]
            assert cost["spent"] == spent
            # each key's own bucket: about full minus this request (it refills as time passes)
            assert 100_000 - spent <= cost["keyRemaining"] <= 100_000


# -- the direct POST route and strawberry's route answer alike --------------------------------


async def test_the_direct_route_answers_as_strawberrys_route(api: Api) -> None:
    key = await api.key(role=Role.VIEWER)
    admin = await api.key()
    await api.ingest(admin, [event(n) for n in range(4)])
    headers = {"Authorization": f"Bearer {key}"}
    query = "query($r: TimeRangeInput!) { overview(range: $r) { totalRequests } me { role } }"
    direct = await api.client.post(
        "/graphql", json={"query": query, "variables": DAY}, headers=headers
    )
    by_get = await api.client.get(  # GET goes to strawberry's route
        "/graphql", params={"query": query, "variables": json.dumps(DAY)}, headers=headers
    )
    assert direct.status_code == by_get.status_code == 200
    assert direct.headers["content-type"] == "application/json"
    assert direct.json()["data"] == by_get.json()["data"]
    assert direct.json()["data"]["overview"]["totalRequests"] == 4
    assert (
        direct.json()["extensions"]["cost"]["spent"] == by_get.json()["extensions"]["cost"]["spent"]
    )
    # what the direct route does not take is strawberry's to answer, body and all
    batch = await api.client.post("/graphql", json=[{"query": "{ me { role } }"}], headers=headers)
    assert batch.status_code == 400
    assert batch.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    wrong_type = await api.client.post(
        "/graphql", json={"query": "{ me { role } }", "variables": [1]}, headers=headers
    )
    assert wrong_type.status_code == 400
    assert "variables" in wrong_type.json()["errors"][0]["message"]
    plain_text = await api.client.post(
        "/graphql", content=b"{ me { role } }", headers={**headers, "Content-Type": "text/plain"}
    )
    assert plain_text.status_code == 400
    assert plain_text.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    # no key: 401 in the GraphQL shape, before anything is read
    anonymous = await api.client.post("/graphql", json={"query": "{ me { role } }"})
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
