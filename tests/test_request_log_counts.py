"""The request log's totalCount from rollups where the filter allows it (explained, equal to a
recount), and filtered keyset pages that stay exact while events arrive, older and newer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import Api
from tests.support.helpers import iso, llm

COUNT = """query($r: TimeRangeInput, $f: EventFilter) {
  requests(range: $r, filter: $f, first: 3) { totalCount edges { node { id } } } }"""


def _dataset(start: datetime) -> list[dict[str, Any]]:
    rng = random.Random(17)
    out = []
    for i in range(240):
        event = llm(
            f"c{i:03d}",
            timestamp=iso(start + timedelta(seconds=rng.randrange(3 * 86400))),
            provider=rng.choice(["openai", "anthropic"]),
            model=rng.choice(["m1", "m2", "m3"]),
            status=rng.choice(["success", "success", "error", "blocked"]),
            gateway=rng.choice(["gw1", "gw2"]),
            status_code=rng.choice([200, 429, 503]),
            is_byok=rng.random() < 0.3,
            user_id=rng.choice(["u1", "u2", "u3"]),
            tags=rng.sample(["a", "b"], rng.randrange(3)),
            latency_ms=rng.uniform(1, 900),
        )
        if i % 4 == 0:
            event.update(kind="tool_call", tool=rng.choice(["t1", "t2"]), mcp_server="srv")
        out.append(event)
    return out


FILTERS: list[tuple[dict[str, Any] | None, str | None]] = [
    # (filter, None: counted from rollups)
    (None, None),
    ({"statuses": ["ERROR"]}, None),
    ({"statuses": ["ERROR"], "models": ["m2"]}, None),
    ({"gateways": ["gw1"], "statusCodes": [429]}, None),
    ({"isByok": True, "providers": ["openai"]}, None),
    ({"kinds": ["TOOL_CALL"], "tools": ["t1"]}, None),
    ({"users": ["u2"], "models": ["m1"]}, None),  # the users rollup
    ({"tags": ["a"], "statuses": ["ERROR"]}, None),  # the tags rollup
    # (filter, what explain names when no rollup keeps it)
    ({"users": ["u2"], "gateways": ["gw1"]}, "user_id is not low-cardinality"),
    ({"tags": ["a", "b"]}, "several tags"),
]


def _matches(event: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    flt = flt or {}
    checks = {
        "statuses": lambda e, v: e.get("status", "success").upper() in v,
        "models": lambda e, v: e.get("model") in v,
        "gateways": lambda e, v: e.get("gateway") in v,
        "statusCodes": lambda e, v: e.get("status_code") in v,
        "isByok": lambda e, v: e.get("is_byok", False) is v,
        "providers": lambda e, v: e.get("provider") in v,
        "kinds": lambda e, v: e.get("kind", "llm_call").upper() in v,
        "tools": lambda e, v: e.get("tool") in v,
        "users": lambda e, v: e.get("user_id") in v,
        "tags": lambda e, v: bool(set(e.get("tags", [])) & set(v)),
    }
    return all(checks[k](event, v) for k, v in flt.items())


async def test_total_count_from_rollups_equals_a_recount_and_is_explained(api: Api) -> None:
    key = await api.key()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
    events = _dataset(start)
    assert (await api.ingest(key, events))["accepted"] == len(events)
    headers = {"Authorization": f"Bearer {key}", "X-Tallyql-Explain": "1"}
    ranges: list[tuple[datetime, datetime] | None] = [
        None,
        (start + timedelta(hours=5, minutes=17), start + timedelta(days=2, minutes=41)),
        (start - timedelta(days=3), start + timedelta(days=9)),  # wider than the events
        (start + timedelta(hours=7, minutes=3), start + timedelta(hours=7, minutes=49)),
    ]
    for window in ranges:
        for flt, outside in FILTERS:
            variables: dict[str, Any] = {"f": flt, "r": None}
            if window is not None:
                variables["r"] = {"start": iso(window[0]), "end": iso(window[1])}
            response = await api.client.post(
                "/graphql", json={"query": COUNT, "variables": variables}, headers=headers
            )
            body = response.json()
            assert "errors" not in body, body
            want = sum(
                1
                for e in events
                if _matches(e, flt)
                and (
                    window is None
                    or window[0] <= datetime.fromisoformat(e["timestamp"]) < window[1]
                )
            )
            assert body["data"]["requests"]["totalCount"] == want, (window, flt)
            plans = [p for p in body["extensions"]["plans"] if p["group"] == "requests.totalCount"]
            assert plans, body["extensions"]
            for plan in plans:
                if outside is not None:
                    assert plan["source"] == "raw", plan
                    assert outside in plan["reason"], plan
                else:
                    assert plan["source"] != "raw", plan
                    middle = plan["pieces"][1:-1]
                    assert all(p["grain"] != "raw" for p in middle), plan


async def test_filtered_pages_stay_exact_while_events_arrive(api: Api) -> None:
    """Keyset pages over (ts, id) of a filtered log: events arriving between pages that sort
    after the cursor (older) are listed once, in order; those before it (newer) are not; no
    event repeats or goes missing."""
    key = await api.key()
    base = datetime.now(UTC) - timedelta(hours=3)
    original = [
        llm(
            f"o{i:02d}",
            timestamp=iso(base + timedelta(seconds=10 * (i // 2))),  # pairs share a timestamp
            status=("error", "success")[i % 3 == 0],
            model=("m1", "m2")[i % 2],
        )
        for i in range(45)
    ]
    assert (await api.ingest(key, original))["accepted"] == 45
    flt = {"statuses": ["ERROR"]}
    query = """query($first: Int!, $after: String, $f: EventFilter) {
      requests(first: $first, after: $after, filter: $f) {
        totalCount edges { cursor node { id timestamp status } }
        pageInfo { hasNextPage endCursor } } }"""
    seen: list[tuple[str, str]] = []
    older: list[dict[str, Any]] = []
    after = None
    for page_no in range(30):
        page = (await api.data(key, query, {"first": 4, "after": after, "f": flt}))["requests"]
        seen += [(e["node"]["timestamp"], e["node"]["id"]) for e in page["edges"]]
        assert all(e["node"]["status"] == "ERROR" for e in page["edges"])
        # arrivals: newer than everything (before the cursor: never on a later page), older
        # than everything (after it: on the last pages), matching the filter or not
        arrivals = [
            llm(f"new{page_no}", timestamp=iso(datetime.now(UTC)), status="error"),
            llm(
                f"old{page_no}",
                timestamp=iso(base - timedelta(minutes=page_no + 1)),
                status="error",
            ),
            llm(
                f"oldok{page_no}",
                timestamp=iso(base - timedelta(minutes=page_no + 1)),
                status="success",
            ),
        ]
        older.append(arrivals[1])
        assert (await api.ingest(key, arrivals))["accepted"] == 3
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    else:
        raise AssertionError("the walk did not end")
    listed = [i for _, i in seen]
    assert len(listed) == len(set(listed))
    # every error event older than the cursor when it arrived, original or not, in order
    last_ts = datetime.fromisoformat(seen[-1][0])
    want = sorted(
        (
            (datetime.fromisoformat(e["timestamp"]), e["id"])
            for e in [*original, *older]
            if e.get("status") == "error" and datetime.fromisoformat(e["timestamp"]) >= last_ts
        ),
        reverse=True,
    )
    assert listed == [i for _, i in want]
    assert not any(i.startswith("new") or i.startswith("oldok") for i in listed)
    assert {e["id"] for e in original if e["status"] == "error"} <= set(listed)
