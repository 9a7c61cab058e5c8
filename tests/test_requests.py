"""The request log: tenant isolation, every filter, time ranges and keyset pagination."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import select

from tallyql.storage.directory import set_group_members
from tallyql.storage.tables import sessions
from tests.conftest import Api
from tests.support.helpers import REQUEST_IDS, all_ids, iso, llm, workspace_id_of

# --- tenant isolation ---------------------------------------------------------------------

DETAIL = """query($id: ID!) { request(id: $id) { id model userId payload { request response } } }"""


async def test_workspaces_never_see_each_other(api: Api) -> None:
    acme = await api.key("acme")
    globex = await api.key("globex")
    acme_events = [
        llm("shared", model="gpt-4o", user_id="ua", request={"who": "acme"}, session_id="s"),
        *(llm(f"a{i}", provider="openai", user_id="ua", tags=["red"]) for i in range(5)),
    ]
    globex_events = [
        llm("shared", model="gpt-4o-mini", user_id="ug", request={"who": "globex"}, session_id="s"),
        *(
            llm(
                f"g{i}",
                provider="anthropic",
                model="claude-3-5-haiku-latest",
                user_id="ug",
                tags=["blue"],
                response={"secret": i},
            )
            for i in range(4)
        ),
    ]
    # the same id in two workspaces is two events, not a duplicate
    assert (await api.ingest(acme, acme_events))["accepted"] == 6
    assert (await api.ingest(globex, globex_events))["accepted"] == 5

    assert sorted(await all_ids(api, acme)) == ["a0", "a1", "a2", "a3", "a4", "shared"]
    assert sorted(await all_ids(api, globex)) == ["g0", "g1", "g2", "g3", "shared"]
    for key, absent in ((acme, "g1"), (globex, "a1")):
        assert (await api.data(key, DETAIL, {"id": absent}))["request"] is None
    mine = (await api.data(acme, DETAIL, {"id": "shared"}))["request"]
    assert mine == {
        "id": "shared",
        "model": "gpt-4o",
        "userId": "ua",
        "payload": {"request": {"who": "acme"}, "response": None},
    }
    theirs = (await api.data(globex, DETAIL, {"id": "shared"}))["request"]
    assert theirs["model"] == "gpt-4o-mini"
    assert theirs["payload"]["request"] == {"who": "globex"}

    # filters on the other workspace's values find nothing
    for flt in (
        {"providers": ["anthropic"]},
        {"users": ["ug"]},
        {"tags": ["blue"]},
        {"models": ["claude-3-5-haiku-latest"]},
    ):
        assert await all_ids(api, acme, filter=flt) == []
    assert len(await all_ids(api, globex, filter={"tags": ["blue"]})) == 4
    # payloads in a list come from the caller's workspace only
    data = await api.data(acme, "{ requests(first: 100) { nodes { id payload { response } } } }")
    assert all(
        n["payload"] is None or n["payload"]["response"] is None for n in data["requests"]["nodes"]
    )
    # a cursor handed out in one workspace pages only the caller's own events elsewhere
    page = await api.data(globex, REQUEST_IDS, {"first": 1})
    cursor = page["requests"]["pageInfo"]["endCursor"]
    other = await api.data(acme, REQUEST_IDS, {"first": 100, "after": cursor})
    assert {e["node"]["id"] for e in other["requests"]["edges"]} <= {
        "shared",
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
    }
    # sessions with the same id stay apart
    async with api.services.db.read() as conn:
        rows = (await conn.execute(select(sessions.c.workspace_id, sessions.c.user_id))).all()
    acme_ws = await workspace_id_of(api.services, acme)
    globex_ws = await workspace_id_of(api.services, globex)
    assert sorted(rows) == sorted([(acme_ws, "ua"), (globex_ws, "ug")])


# --- filters ------------------------------------------------------------------------------

POOLS: dict[str, list[Any]] = {
    "user_id": ["u1", "u2", "u3", "u4", "u5", None],
    "api_key_id": ["k1", "k2", None],
    "caller_ip": ["10.0.0.1", "10.0.0.2", None],
    "agent_id": ["planner", "coder", None],
    "agent_instance_id": ["inst-1", "inst-2", "inst-3", None],
    "session_id": ["s1", "s2", "s3", None],
    "trace_id": ["t1", "t2", None],
    "run_id": ["r1", "r2", None],
    "node": ["plan", "act", "review", None],
    "gateway": ["gw-eu", "gw-us", None],
    "protocol": ["openai", "anthropic", "mcp", None],
    "request_type": ["chat", "embedding", "tool", None],
    "billing_mode": ["platform", "byok", "free", None],
}
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-flash"),
    ("acme", "house-model"),
]
TAGS = ["prod", "beta", "eu", "us"]

# GraphQL filter field -> (event key, GraphQL enum values or None)
LIST_FILTERS: dict[str, str] = {
    "providers": "provider",
    "models": "model",
    "kinds": "kind",
    "statuses": "status",
    "errorTypes": "error_type",
    "users": "user_id",
    "apiKeys": "api_key_id",
    "callers": "caller",
    "callerIps": "caller_ip",
    "agents": "agent_id",
    "agentInstances": "agent_instance_id",
    "sessions": "session_id",
    "traces": "trace_id",
    "runs": "run_id",
    "nodes": "node",
    "tools": "tool",
    "mcpServers": "mcp_server",
    "gateways": "gateway",
    "protocols": "protocol",
    "requestTypes": "request_type",
    "billingModes": "billing_mode",
    "policies": "policy_id",
    "costSources": "cost_source",
}
ENUM_FILTERS = {"kinds", "statuses", "errorTypes", "costSources"}


def _dataset(rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for i in range(90):
        kind = rng.choice(["llm_call"] * 3 + ["tool_call", "agent_run", "http_request"])
        e: dict[str, Any] = {
            "id": f"f{i:03d}",
            "timestamp": iso(datetime.now(UTC) - timedelta(minutes=i * 7 + 1)),
            "kind": kind,
        }
        for field, pool in POOLS.items():
            value = rng.choice(pool)
            if value is not None:
                e[field] = value
        status = rng.choice(["success"] * 5 + ["error", "error", "blocked"])
        e["status"] = status
        if status == "error":
            e["error_type"] = rng.choice(["rate_limit", "timeout", "model_error"])
        elif status == "blocked":
            e["error_type"] = "policy_blocked"
            e["policy_id"] = rng.choice(["pii", "jailbreak"])
        if kind == "tool_call":
            e["tool"] = rng.choice(["search", "fetch", "shell"])
            e["mcp_server"] = rng.choice(["web", "files"])
        else:
            provider, model = rng.choice(MODELS)
            e.update(provider=provider, model=model, input_tokens=rng.randint(1, 900))
            e["output_tokens"] = rng.randint(0, 90)
            if rng.random() < 0.2:
                e["cost_usd"] = 0.01
        e["is_byok"] = rng.random() < 0.3
        e["tags"] = rng.sample(TAGS, rng.randint(0, 3))
        metadata: dict[str, Any] = {}
        if rng.random() < 0.8:
            metadata["tier"] = rng.choice(["gold", "silver"])
        if rng.random() < 0.8:
            metadata["n"] = rng.choice([1, 2, 3])
        if rng.random() < 0.8:
            metadata["flag"] = rng.choice([True, False])
        if rng.random() < 0.5:
            metadata["ratio"] = rng.choice([0.5, 1.5])
        e["metadata"] = metadata
        events.append(e)
    return events


def _derived(e: dict[str, Any]) -> dict[str, Any]:
    """The stored form of the fields the filters read (recomputed here, not read back)."""
    out = dict(e)
    out["caller"] = e.get("api_key_id") or (f"ip:{e['caller_ip']}" if e.get("caller_ip") else None)
    if "cost_usd" in e:
        out["cost_source"] = "provided"
    elif e.get("model") == "house-model":
        out["cost_source"] = "unpriced"
    else:
        out["cost_source"] = "computed"
    return out


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def test_every_filter_matches_a_recomputation(api: Api) -> None:
    key = await api.key("acme")
    other = await api.key("globex")
    rng = random.Random(5)
    sent = _dataset(rng)
    assert (await api.ingest(key, sent))["accepted"] == len(sent)
    await api.ingest(other, [llm("x1", user_id="u5"), llm("x2", user_id="u1")])
    events = [_derived(e) for e in sent]
    ws = await workspace_id_of(api.services, key)
    async with api.services.db.write() as conn:
        await set_group_members(conn, ws, "eng", ["u1", "u2"])
        await set_group_members(conn, ws, "ops", ["u3"])
        await set_group_members(conn, ws, "nobody", [])
        globex_ws = await workspace_id_of(api.services, other)
        await set_group_members(conn, globex_ws, "eng", ["u5"])  # the other's "eng"

    async def check(flt: dict[str, Any], match: Callable[[dict[str, Any]], bool]) -> None:
        want = sorted(e["id"] for e in events if match(e))
        got = sorted(await all_ids(api, key, filter=flt))
        assert got == want, flt

    checked = 0
    for name, column in LIST_FILTERS.items():
        values = sorted({e.get(column) for e in events} - {None})
        assert len(values) >= 2, name
        for chosen in ([values[0]], values[:2], [*values[-1:], "no-such-value"]):
            gql = (
                [v.upper() for v in chosen if v != "no-such-value"]
                if name in ENUM_FILTERS
                else chosen
            )
            await check({name: gql}, lambda e, c=column, vs=chosen: e.get(c) in vs)
            checked += 1
    assert checked == 3 * len(LIST_FILTERS)

    await check({"isByok": True}, lambda e: e["is_byok"])
    await check({"isByok": False}, lambda e: not e["is_byok"])
    await check({"groups": ["eng"]}, lambda e: e.get("user_id") in {"u1", "u2"})
    await check({"groups": ["eng", "ops"]}, lambda e: e.get("user_id") in {"u1", "u2", "u3"})
    await check({"groups": ["nobody"]}, lambda e: False)
    await check({"groups": ["eng"], "users": ["u2", "u3"]}, lambda e: e.get("user_id") == "u2")
    await check({"tags": ["prod"]}, lambda e: "prod" in e["tags"])
    await check({"tags": ["beta", "eu"]}, lambda e: bool({"beta", "eu"} & set(e["tags"])))
    for mkey, mvalue in (
        ("tier", "gold"),
        ("n", "2"),
        ("flag", "true"),
        ("flag", "false"),
        ("ratio", "1.5"),
        ("missing", "x"),
    ):
        await check(
            {"metadata": [{"key": mkey, "value": mvalue}]},
            lambda e, k=mkey, v=mvalue: k in e["metadata"] and _json_text(e["metadata"][k]) == v,
        )
    await check(
        {"metadata": [{"key": "tier", "value": "silver"}, {"key": "n", "value": "3"}]},
        lambda e: e["metadata"].get("tier") == "silver" and e["metadata"].get("n") == 3,
    )
    await check(
        {"providers": ["openai"], "statuses": ["SUCCESS"], "tags": ["us", "eu"], "isByok": False},
        lambda e: (
            e.get("provider") == "openai"
            and e["status"] == "success"
            and bool({"us", "eu"} & set(e["tags"]))
            and not e["is_byok"]
        ),
    )
    await check({}, lambda e: True)


# --- time ranges --------------------------------------------------------------------------

OFFSETS = [
    timedelta(minutes=10),
    timedelta(hours=3),
    timedelta(hours=20),
    timedelta(hours=30),
    timedelta(days=3),
    timedelta(days=6, hours=1),
    timedelta(days=8),
    timedelta(days=20),
    timedelta(days=29),
    timedelta(days=31),
    timedelta(days=60),
    timedelta(days=89),
    timedelta(days=91),
    timedelta(days=200),
    timedelta(days=400),
]
ROLLING = {
    "LAST_1H": timedelta(hours=1),
    "LAST_24H": timedelta(hours=24),
    "LAST_7D": timedelta(days=7),
    "LAST_30D": timedelta(days=30),
    "LAST_90D": timedelta(days=90),
}


def _period_start(preset: str, now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day)
    if preset == "TODAY":
        start = midnight
    elif preset == "THIS_WEEK":
        start = midnight - timedelta(days=midnight.weekday())
    elif preset == "THIS_MONTH":
        start = midnight.replace(day=1)
    elif preset == "THIS_QUARTER":
        start = midnight.replace(month=(midnight.month - 1) // 3 * 3 + 1, day=1)
    else:
        start = midnight.replace(month=1, day=1)
    return start.replace(tzinfo=tz)


async def test_time_range_presets_and_zones(api: Api) -> None:
    key = await api.key()
    now = datetime.now(UTC)
    stamps = {f"o{i}": now - off for i, off in enumerate(OFFSETS)}
    result = await api.ingest(key, [llm(i, timestamp=iso(ts)) for i, ts in stamps.items()])
    assert result["accepted"] == len(OFFSETS)

    def expected(start_at: Callable[[datetime], datetime]) -> list[list[str]]:
        # the window moves while the test runs: accept the answer for either end of the call
        return [
            sorted(i for i, ts in stamps.items() if start_at(t) <= ts < t)
            for t in (datetime.now(UTC), datetime.now(UTC) + timedelta(seconds=5))
        ]

    for preset, delta in ROLLING.items():
        got = sorted(await all_ids(api, key, range={"preset": preset}))
        assert got in expected(lambda t, d=delta: t - d), preset
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Auckland"):
        tz = ZoneInfo(zone)
        for preset in ("TODAY", "THIS_WEEK", "THIS_MONTH", "THIS_QUARTER", "THIS_YEAR"):
            got = sorted(await all_ids(api, key, range={"preset": preset, "timezone": zone}))
            assert got in expected(lambda t, p=preset, z=tz: _period_start(p, t, z)), (
                preset,
                zone,
            )


async def test_custom_range_is_half_open_in_any_offset(api: Api) -> None:
    key = await api.key()
    await api.ingest(
        key,
        [
            llm("before", timestamp="2026-11-09T23:59:59.999999Z"),
            llm("at-start", timestamp="2026-11-10T00:00:00Z"),
            llm("inside", timestamp="2026-11-10T09:30:00+09:00"),
            llm("last", timestamp="2026-11-10T14:59:59.999999Z"),
            llm("at-end", timestamp="2026-11-10T15:00:00Z"),
        ],
    )
    rng = {
        "start": "2026-11-10T09:00:00+09:00",
        "end": "2026-11-10T07:00:00-08:00",
        "timezone": "Asia/Tokyo",
    }
    assert sorted(await all_ids(api, key, range=rng)) == ["at-start", "inside", "last"]
    rng = {"start": "2026-11-10T00:00:00.000001Z", "end": "2026-11-10T15:00:00.000001Z"}
    assert sorted(await all_ids(api, key, range=rng)) == ["at-end", "inside", "last"]


@pytest.mark.parametrize(
    "range_input",
    [
        {"preset": "LAST_24H", "timezone": "Mars/Olympus_Mons"},
        {"start": "2026-11-10T00:00:00Z", "end": "2026-11-10T00:00:00Z"},
        {"start": "2026-11-11T00:00:00Z", "end": "2026-11-10T00:00:00Z"},
        {"start": "2026-11-10T00:00:00Z"},
        {"preset": "LAST_7D", "start": "2026-11-10T00:00:00Z", "end": "2026-11-11T00:00:00Z"},
        {"start": "2026-11-10T00:00:00", "end": "2026-11-11T00:00:00"},
        {},
    ],
)
async def test_bad_ranges_are_bad_user_input(api: Api, range_input: dict[str, Any]) -> None:
    key = await api.key()
    body = await api.graphql(key, REQUEST_IDS, {"range": range_input, "first": 10})
    assert body.get("data") is None or body["data"].get("requests") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body


# --- pagination ---------------------------------------------------------------------------


async def test_pages_have_no_gaps_or_repeats_while_events_arrive(api: Api) -> None:
    key = await api.key()
    base = datetime.now(UTC) - timedelta(hours=2)
    original = [
        # groups of three share a timestamp: the id breaks the tie
        llm(f"p{i:02d}-{rng_id}", timestamp=iso(base + timedelta(seconds=i // 3)))
        for i, rng_id in enumerate(random.Random(3).sample(range(1000), 40))
    ]
    await api.ingest(key, original)
    seen: list[str] = []
    stamps: list[tuple[str, str]] = []
    after = None
    arrivals = 0
    pages = 0
    query = """query($first: Int!, $after: String) { requests(first: $first, after: $after) {
      edges { cursor node { id timestamp } } pageInfo { hasNextPage endCursor } } }"""
    while True:
        data = await api.data(key, query, {"first": 7, "after": after})
        page = data["requests"]
        pages += 1
        assert len(page["edges"]) <= 7
        seen += [e["node"]["id"] for e in page["edges"]]
        stamps += [(e["node"]["timestamp"], e["node"]["id"]) for e in page["edges"]]
        # newer events arrive between pages
        new = [llm(f"new{arrivals + j}", timestamp=iso(datetime.now(UTC))) for j in range(3)]
        arrivals += 3
        assert (await api.ingest(key, new))["accepted"] == 3
        if not page["pageInfo"]["hasNextPage"] or pages > 10:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    assert pages == 6
    assert len(seen) == len(set(seen)) == 40
    assert set(seen) == {e["id"] for e in original}
    expected_order = sorted(
        ((datetime.fromisoformat(e["timestamp"]), e["id"]) for e in original), reverse=True
    )
    assert seen == [i for _, i in expected_order]
    assert [datetime.fromisoformat(t) for t, _ in stamps] == [t for t, _ in expected_order]
    # the newcomers are at the head of a fresh first page
    head = await api.data(key, query, {"first": arrivals, "after": None})
    assert {e["node"]["id"] for e in head["requests"]["edges"]} == {
        f"new{i}" for i in range(arrivals)
    }


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("first", "after"),
    [
        (101, None),
        (0, None),
        (-5, None),
        (10, "not a cursor!"),
        (10, "e30"),  # {} in base64
        (10, _cursor(["other", 1, "a"])),
        (10, _cursor(["req", 1])),
        (10, _cursor(["req", "yesterday", "a"])),
        (10, base64.urlsafe_b64encode(b'["req",' + b"9" * 30 + b',"a"]').decode()),
        (10, _cursor(["req", 1, {"x": 1}])),
    ],
)
async def test_bad_page_arguments(api: Api, first: int, after: str | None) -> None:
    key = await api.key()
    await api.ingest(key, [llm("one")])
    body = await api.graphql(key, REQUEST_IDS, {"first": first, "after": after})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["message"] != "Internal server error"


async def test_page_size_limits_accept_one_and_hundred(api: Api) -> None:
    key = await api.key()
    await api.ingest(key, [llm(f"e{i:03d}") for i in range(120)])
    for first, size, more in ((1, 1, True), (100, 100, True)):
        data = await api.data(key, REQUEST_IDS, {"first": first})
        assert len(data["requests"]["edges"]) == size
        assert data["requests"]["pageInfo"]["hasNextPage"] is more
        assert data["requests"]["totalCount"] == 120
    default = await api.data(key, "{ requests { edges { node { id } } } }")
    assert len(default["requests"]["edges"]) == 50
