"""`Subscription.events` end to end, with real clients on a real server (uvicorn in the test's
loop), on SQLite and PostgreSQL: REQUEST and ERROR items carry the ingested values, COST_UPDATE
totals equal plain-Python sums of the ingested events matching the filter, AUDIT items carry
the recorded audit events, and `types` and `filter` select what arrives. Every transport:
graphql-transport-ws, the legacy graphql-ws, and GraphQL over SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tallyql.config import Settings
from tests.support.helpers import iso
from tests.support.live_client import TRANSPORT_WS, LiveServer, live_server
from tests.support.live_support import (
    SSE,
    TRANSPORTS,
    LiveClient,
    check_request_item,
    expected_totals,
    ingest,
    make_key,
    mixed_events,
    on_or_after,
    open_live,
    parse_ts,
    post,
    wait_subscribers,
)

Event = dict[str, Any]


@pytest.fixture
async def server(settings: Settings, db_kind: str, midday: datetime) -> AsyncIterator[LiveServer]:
    # noon: the events stamped 30 s and more back are today's at any hour the suite runs
    async with live_server(settings, db_kind) as running:
        yield running


def audit_event(event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "timestamp": iso(datetime.now(UTC) - timedelta(seconds=5)),
        "actor_id": "alice@example.com",
        "actor_type": "user",
        "action": "update",
        "resource_type": "budget",
        "resource_id": "b-17",
        "source_ip": "10.1.2.3",
        "outcome": "denied",
        "details": {"reason": "over limit", "attempt": 3},
        **fields,
    }


def check_audit_item(item: dict[str, Any], audit: dict[str, Any]) -> None:
    assert item["__typename"] == "AuditEvent"
    assert item["id"] == audit["id"]
    assert parse_ts(item["timestamp"]) == parse_ts(audit["timestamp"])
    assert {
        "actorId": item["actorId"],
        "actorType": item["actorType"],
        "action": item["action"],
        "resourceType": item["resourceType"],
        "resourceId": item["resourceId"],
        "sourceIp": item["sourceIp"],
        "outcome": item["outcome"],
        "details": item["details"],
    } == {
        "actorId": audit["actor_id"],
        "actorType": audit["actor_type"].upper(),
        "action": audit["action"].upper(),
        "resourceType": audit["resource_type"],
        "resourceId": audit["resource_id"],
        "sourceIp": audit["source_ip"],
        "outcome": audit["outcome"].upper(),
        "details": audit["details"],
    }


async def request_items(live: LiveClient, count: int) -> list[dict[str, Any]]:
    """The next `count` REQUEST/ERROR items, skipping cost updates (and nothing else)."""
    items: list[dict[str, Any]] = []
    while len(items) < count:
        item = await live.next()
        if item["__typename"] == "CostUpdate":
            continue
        assert item["__typename"] in ("RequestEvent", "ErrorEvent"), item
        items.append(item)
    return items


async def audit_item(
    live: LiveClient, audit_id: str, blocks: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The next item but cost updates, which must be the AUDIT item of this id: audit events
    committed before the subscription (such as the key's creation) never arrive. `blocks`:
    the BLOCK audit events of blocked events ingested before it, which arrive first."""
    seen: set[str] = set()
    while True:
        item = await live.next()
        if item["__typename"] == "CostUpdate":
            continue
        if item["__typename"] == "AuditEvent" and item["id"] in blocks - seen:
            assert item["action"] == "BLOCK", item
            seen.add(item["id"])
            continue
        assert (item["__typename"], item["id"]) == ("AuditEvent", audit_id), item
        assert seen == blocks
        return item


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_items_carry_ingested_values_and_totals(server: LiveServer, transport: str) -> None:
    key = await make_key(server)
    before = mixed_events("pre", 7)  # today's base, read from the engine at the start
    await ingest(server.url, key, before)

    async with open_live(server, transport, key, {"interval": 1}) as live:
        first = await live.next()
        assert first["__typename"] == "CostUpdate"
        assert first["timezone"] == "UTC"
        assert first["sinceStart"] == expected_totals([])
        assert first["today"] == expected_totals(on_or_after(before, first["todayStart"]))
        assert first["today"]["requests"] >= 6  # one of the seven is two days old
        midnight = parse_ts(first["at"]).replace(hour=0, minute=0, second=0, microsecond=0)
        assert parse_ts(first["todayStart"]) == midnight

        events = mixed_events("ev", 14)
        await ingest(server.url, key, events[:5])
        await ingest(server.url, key, events[5:])
        items = await request_items(live, len(events))
        assert [i["id"] for i in items] == [e["id"] for e in events]  # commit order
        for item, event in zip(items, events, strict=True):
            check_request_item(item, event)
            expected_type = "ErrorEvent" if event.get("status") == "error" else "RequestEvent"
            assert item["__typename"] == expected_type

        # every streamed event was counted before it was queued, so the next update has all
        update = await live.until("CostUpdate", wait=5)
        assert update["since"] == first["since"]
        assert update["sinceStart"] == expected_totals(events)
        assert update["sinceStart"]["errors"] == 4
        assert update["today"] == expected_totals(
            on_or_after(before + events, update["todayStart"])
        )

        # a retried batch is not committed again, so it is not streamed nor counted again
        retry = await post(server.url, "/v1/events", key, events[:3])
        assert (retry["accepted"], retry["duplicates"]) == (0, 3)
        audit = audit_event("aud-1")
        await post(server.url, "/v1/audit-events", key, [audit])
        check_audit_item(await audit_item(live, "aud-1"), audit)
        update = await live.until("CostUpdate", wait=5)
        assert update["sinceStart"] == expected_totals(events)


FILTERED: dict[str, tuple[dict[str, Any], Callable[[Event], bool]]] = {
    # name: (subscription variables, which ingested events it must receive)
    "errors only": ({"types": ["ERROR"]}, lambda e: e.get("status") == "error"),
    "requests only": ({"types": ["REQUEST"]}, lambda e: True),
    "audit only": ({"types": ["AUDIT"]}, lambda e: False),
    "model": (
        {"types": ["REQUEST", "ERROR", "COST_UPDATE"], "filter": {"models": ["gpt-4o"]}},
        lambda e: e["model"] == "gpt-4o",
    ),
    "users, success, tag, metadata": (
        {
            "types": ["REQUEST", "ERROR", "COST_UPDATE"],
            "filter": {
                "users": ["user-1", "user-2"],
                "statuses": ["SUCCESS"],
                "tags": ["team-1", "team-2"],
                "metadata": [{"key": "tier", "value": "gold"}],
            },
        },
        lambda e: (
            e["user_id"] in ("user-1", "user-2")
            and e.get("status", "success") == "success"
            and bool({"team-1", "team-2"} & set(e["tags"]))
            and e["metadata"]["tier"] == "gold"
        ),
    ),
    "group": (  # the group's members, as set before subscribing
        {"types": ["REQUEST", "ERROR", "COST_UPDATE"], "filter": {"groups": ["ops"]}},
        lambda e: e["user_id"] in ("user-0", "user-3"),
    ),
    "errors of a provider": (
        {
            "types": ["ERROR", "COST_UPDATE"],
            "filter": {"providers": ["openai"], "errorTypes": ["RATE_LIMIT", "TIMEOUT"]},
        },
        lambda e: e["provider"] == "openai" and e.get("error_type") in ("rate_limit", "timeout"),
    ),
}


async def only_cost_updates_within(live: LiveClient, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            item = await live.next(left)
        except TimeoutError:
            return
        assert item["__typename"] == "CostUpdate", item


SET_MEMBERS = """
mutation Members($users: [String!]!) {
  setGroupMembers(group: "ops", userIds: $users) { userErrors { message } }
}
"""


def with_metadata(events: list[Event]) -> list[Event]:
    for i, event in enumerate(events):
        event["metadata"] = {"tier": "gold" if i % 4 < 2 else "free", "n": i}
    return events


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_types_and_filter_select_items(server: LiveServer, transport: str) -> None:
    key = await make_key(server)
    before = with_metadata(mixed_events("pre", 9))
    await ingest(server.url, key, before)
    members = {"query": SET_MEMBERS, "variables": {"users": ["user-0", "user-3"]}}
    assert (await post(server.url, "/graphql", key, members))["data"] == {
        "setGroupMembers": {"userErrors": []}
    }
    async with AsyncExitStack() as stack:
        subs: dict[str, LiveClient] = {}
        for name, (variables, _) in FILTERED.items():
            subs[name] = await stack.enter_async_context(
                open_live(server, transport, key, {**variables, "interval": 1})
            )
        await wait_subscribers(server, len(FILTERED))
        for name, (variables, wanted) in FILTERED.items():
            if "COST_UPDATE" in variables["types"]:
                first = await subs[name].next()
                assert first["__typename"] == "CostUpdate"
                chosen = [e for e in on_or_after(before, first["todayStart"]) if wanted(e)]
                assert first["today"] == expected_totals(chosen), name

        events = with_metadata(mixed_events("ev", 24))
        await ingest(server.url, key, events[:10])
        await ingest(server.url, key, events[10:])
        audit = audit_event("aud-f")
        await post(server.url, "/v1/audit-events", key, [audit])

        async def check(name: str) -> None:
            variables, wanted = FILTERED[name]
            live, types = subs[name], variables["types"]
            chosen = [e for e in events if wanted(e)]
            if "AUDIT" in types:
                blocks = frozenset(
                    f"block:{e['id']}" for e in events if e.get("status") == "blocked"
                )
                assert blocks  # the data has blocked calls, each audited
                check_audit_item(await audit_item(live, "aud-f", blocks), audit)
                await live.nothing_within(1.2)  # and no event
                return
            if "filter" in variables:  # the data must exercise the filter
                assert 0 < len(chosen) < len(events), name
            items = await request_items(live, len(chosen))
            assert [i["id"] for i in items] == [e["id"] for e in chosen], name
            for item, event in zip(items, chosen, strict=True):
                check_request_item(item, event)
                is_error = "ERROR" in types and event.get("status") == "error"
                assert item["__typename"] == ("ErrorEvent" if is_error else "RequestEvent")
            if "COST_UPDATE" in types:
                update = await live.until("CostUpdate", wait=5)
                assert update["sinceStart"] == expected_totals(chosen), name
                today = on_or_after(before + events, update["todayStart"])
                assert update["today"] == expected_totals(e for e in today if wanted(e)), name
                await only_cost_updates_within(live, 1.2)
            else:  # nothing else: no audit item, no cost update
                await live.nothing_within(1.2)

        await asyncio.gather(*(check(name) for name in FILTERED))


async def first_request(live: LiveClient) -> dict[str, Any]:
    """The next item, which must be a REQUEST/ERROR item (the audit events of the keys'
    creation, committed just before subscribing, must not arrive)."""
    item = await live.next()
    assert item["__typename"] in ("RequestEvent", "ErrorEvent"), item
    return item


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscriber_sees_only_its_workspace(server: LiveServer, transport: str) -> None:
    acme, other = await make_key(server, "acme"), await make_key(server, "other")
    types = {"types": ["REQUEST", "ERROR", "AUDIT"]}
    # the API key in the header (the only way for SSE) rather than connection_init
    async with (
        open_live(server, transport, None, types, header_key=acme) as mine,
        open_live(server, transport, other, types) as theirs,
    ):
        await wait_subscribers(server, 2)
        elsewhere = mixed_events("other", 6)
        await ingest(server.url, other, elsewhere)
        await post(server.url, "/v1/audit-events", other, [audit_event("aud-other")])
        # the other workspace's subscriber receives them (so they were on the bus) ...
        got = [(await first_request(theirs))["id"] for _ in elsewhere]
        assert got == [e["id"] for e in elsewhere]
        await audit_item(theirs, "aud-other")
        # ... and ours, committed later, receives only its own
        marker = mixed_events("acme", 1)[0]
        await ingest(server.url, acme, [marker])
        check_request_item(await first_request(mine), marker)
        audit = audit_event("aud-acme")
        await post(server.url, "/v1/audit-events", acme, [audit])
        check_audit_item(await audit_item(mine, "aud-acme"), audit)
        await mine.nothing_within(0.6)


async def test_a_subscription_gets_the_audit_events_committed_after_it(
    settings: Settings, db_kind: str
) -> None:
    """Audit events committed before a subscription starts are history, not live items; those
    committed after it arrive. On SQLite the feed polls (here only every minute): a starting
    subscription reads what is committed first, delivering it to the subscribers before it."""
    slow_poll = replace(settings, live_audit_poll_seconds=60.0)
    async with live_server(slow_poll, db_kind) as server:
        key = await make_key(server)  # its creation is an audit event, committed before ...
        audit_only = {"types": ["AUDIT"]}
        async with open_live(server, TRANSPORT_WS, key, audit_only) as first:  # ... this
            await wait_subscribers(server, 1)
            audit = audit_event("aud-after")
            await post(server.url, "/v1/audit-events", key, [audit])
            async with open_live(server, SSE, key, audit_only) as second:
                await wait_subscribers(server, 2)
                check_audit_item(await first.next(wait=5), audit)
                await first.nothing_within(0.5)
                await second.nothing_within(0.5)


async def test_today_follows_the_timezone(server: LiveServer) -> None:
    """COST_UPDATE's `today` starts at midnight in the subscription's time zone: the engine's
    figure at the start plus the streamed events of that day."""
    key = await make_key(server)
    # an event every hour for 30 hours: the three zones' midnights are at least two hours
    # apart at any time of day, so each zone's today holds a different number of them
    spacing = timedelta(hours=1)
    before = mixed_events("pre", 31, spacing=spacing)
    await ingest(server.url, key, before)
    zones = ("UTC", "America/Los_Angeles", "Pacific/Kiritimati")
    async with AsyncExitStack() as stack:
        subs = {
            tz: await stack.enter_async_context(
                open_live(server, TRANSPORT_WS, key, {"timezone": tz, "interval": 1})
            )
            for tz in zones
        }
        starts: dict[str, str] = {}
        for tz, live in subs.items():
            first = await live.next()
            assert (first["__typename"], first["timezone"]) == ("CostUpdate", tz)
            local = parse_ts(first["at"]).astimezone(ZoneInfo(tz))
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            assert parse_ts(first["todayStart"]) == midnight, tz
            assert first["today"] == expected_totals(on_or_after(before, first["todayStart"]))
            starts[tz] = first["todayStart"]
        counts = {len(on_or_after(before, start)) for start in starts.values()}
        assert len(counts) == len(zones), "the data must tell the zones apart"

        events = mixed_events("ev", 11, spacing=spacing)
        await ingest(server.url, key, events)
        for tz, live in subs.items():
            await request_items(live, len(events))
            update = await live.until("CostUpdate", wait=5)
            assert update["sinceStart"] == expected_totals(events), tz
            today = on_or_after(before + events, update["todayStart"])  # (a new day may begin)
            assert update["today"] == expected_totals(today), tz
