"""The bus's fan-out: subscribers of one filter share each batch's view (the matcher runs once
per row and filter, not once per subscriber), queues take whole batches as runs within their
bound, and totals equal a plain recomputation from the rows. No database: the bus alone."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tallyql.engine.query.filters import EventFilterSpec
from tallyql.ingest.fields import TOKEN_FIELDS
from tallyql.live.bus import LiveBus
from tallyql.live.compact import LiveRow
from tallyql.live.matcher import compile_matcher
from tallyql.live.subscriber import ERROR, LAGGED, REQUEST, Subscriber, TodayCount
from tests.support.live_support import numbered_row

WORKSPACE = 7


def row(n: int, *, model: str = "gpt-4o", status: str = "ok", ts_us: int = 0) -> LiveRow:
    return numbered_row(n, model=model, status=status, ts_us=ts_us, workspace_id=WORKSPACE)


class CountingMatcher:
    def __init__(self, spec: EventFilterSpec) -> None:
        self._match = compile_matcher(spec)
        self.calls = 0

    def __call__(self, live_row: LiveRow) -> bool:
        self.calls += 1
        return self._match(live_row)


def drain(subscriber: Subscriber) -> list[tuple[str, Any]]:
    items = []
    while (item := subscriber.take()) is not None:
        items.append(item)
    return items


def expected_totals(rows: list[LiveRow]) -> dict[str, int]:
    out = {name: sum(getattr(r, name) for r in rows) for name in TOKEN_FIELDS}
    out["requests"] = len(rows)
    out["errors"] = sum(1 for r in rows if r.status == "error")
    out["cost_nanousd"] = sum(r.cost_nanousd for r in rows)
    return out


def totals_of(subscriber: Subscriber) -> dict[str, int]:
    return vars(subscriber.since_start)


def test_subscribers_of_one_filter_share_the_matching() -> None:
    bus = LiveBus()
    gpt = EventFilterSpec(models=("gpt-4o",))
    mini = EventFilterSpec(models=("gpt-4o-mini",))
    matchers = {gpt: CountingMatcher(gpt), mini: CountingMatcher(mini)}
    types = frozenset({REQUEST, ERROR})
    subscribers = [
        Subscriber(WORKSPACE, matchers[spec], types, 10_000, count_totals=True, filter_key=spec)
        for spec in [gpt] * 300 + [mini] * 5
    ]
    for subscriber in subscribers:
        bus.subscribe(subscriber)
    rows = [row(n, model=("gpt-4o", "gpt-4o-mini")[n % 4 == 0]) for n in range(200)]
    bus.deliver_rows(rows[:120])
    bus.deliver_rows(rows[120:])

    assert matchers[gpt].calls == 200  # once per row, not once per row and subscriber
    assert matchers[mini].calls == 200
    for spec, subscriber in zip([gpt] * 300 + [mini] * 5, subscribers, strict=True):
        wanted = [r for r in rows if r.model == spec.models[0]]
        assert [value.id for _, value in drain(subscriber)] == [r.id for r in wanted]
        assert totals_of(subscriber) == expected_totals(wanted)
    assert bus.stats.deliveries == 300 * 150 + 5 * 50


def test_types_choose_the_items() -> None:
    bus = LiveBus()
    everything = EventFilterSpec()
    only_errors = Subscriber(WORKSPACE, compile_matcher(everything), frozenset({ERROR}), 100)
    only_requests = Subscriber(WORKSPACE, compile_matcher(everything), frozenset({REQUEST}), 100)
    both = Subscriber(WORKSPACE, compile_matcher(everything), frozenset({REQUEST, ERROR}), 100)
    neither = Subscriber(
        WORKSPACE, compile_matcher(everything), frozenset({"cost_update"}), 100, count_totals=True
    )
    for subscriber in (only_errors, only_requests, both, neither):
        bus.subscribe(subscriber)
    rows = [row(n, status="error" if n % 3 == 0 else "ok") for n in range(9)]
    bus.deliver_rows(rows)

    assert [(k, v.id) for k, v in drain(only_errors)] == [
        (ERROR, r.id) for r in rows if r.status == "error"
    ]
    assert [(k, v.id) for k, v in drain(only_requests)] == [(REQUEST, r.id) for r in rows]
    assert [k for k, _ in drain(both)] == [ERROR if r.status == "error" else REQUEST for r in rows]
    assert drain(neither) == []
    assert totals_of(neither) == expected_totals(rows)


def test_a_full_queue_takes_what_fits_and_counts_the_rest() -> None:
    subscriber = Subscriber(WORKSPACE, lambda r: True, frozenset({REQUEST}), 50)
    subscriber.offer_events([row(n) for n in range(30)])
    subscriber.offer_events([row(n) for n in range(30, 60)])  # 20 fit, 10 dropped
    subscriber.offer_events([row(n) for n in range(60, 90)])  # none fit: 30 more
    subscriber.offer_notice("audit", {"id": "a1"})  # not subscribed to: ignored
    assert subscriber.queued == 50
    items = drain(subscriber)
    assert [v.id for k, v in items[:50]] == [f"e{n}" for n in range(50)]
    assert items[50:] == [(LAGGED, 40)]
    assert subscriber.dropped_total == 40 and subscriber.delivered_total == 50
    # drained: the next batch fits again, after the notice
    subscriber.offer_events([row(n) for n in range(90, 95)])
    assert [v.id for _, v in drain(subscriber)] == [f"e{n}" for n in range(90, 95)]


def test_notices_count_against_the_bound() -> None:
    subscriber = Subscriber(WORKSPACE, lambda r: True, frozenset({REQUEST, "audit"}), 3)
    subscriber.offer_events([row(n) for n in range(2)])
    subscriber.offer_notice("audit", {"id": "a1"})
    subscriber.offer_notice("audit", {"id": "a2"})  # the queue is full: dropped, counted
    kinds = [
        (k, v if k == LAGGED else v["id"] if k == "audit" else v.id) for k, v in drain(subscriber)
    ]
    assert kinds == [(REQUEST, "e0"), (REQUEST, "e1"), ("audit", "a1"), (LAGGED, 1)]


def test_today_counts_the_window_and_marks_the_unchecked() -> None:
    subscriber = Subscriber(
        WORKSPACE, lambda r: True, frozenset({"cost_update"}), 10, count_totals=True
    )
    start, end = 2_000_000, 3_000_000
    subscriber.today = TodayCount(start, end, check_until=time.time() + 60)
    inside = [row(n, ts_us=start + n) for n in range(5)]
    before = [row(n, ts_us=start - 1 - n) for n in range(5, 8)]
    after = [row(n, ts_us=end + n) for n in range(8, 10)]
    subscriber.offer_events(inside[:2] + before + inside[2:] + after)
    assert vars(subscriber.today.totals) == expected_totals(inside)
    assert [r.id for r in subscriber.today.unchecked] == [r.id for r in inside]
    assert totals_of(subscriber) == expected_totals(inside + before + after)

    subscriber.today.check_until = time.time() - 60  # base read long ago: nothing to check
    late = [row(n, ts_us=start + n) for n in range(10, 13)]
    subscriber.offer_events(late)
    assert vars(subscriber.today.totals) == expected_totals(inside + late)
    assert len(subscriber.today.unchecked) == len(inside)
    assert Counter(r.id for r in subscriber.today.unchecked) == Counter(r.id for r in inside)


def test_events_past_their_age_are_dropped_and_counted() -> None:
    subscriber = Subscriber(WORKSPACE, lambda r: True, frozenset({REQUEST, "audit"}), 100)
    subscriber.max_age = 5.0
    now = time.time()
    old = [row(n)._replace(committed_at=now - 60) for n in range(4)]
    older_too = [row(n)._replace(committed_at=now - 30) for n in range(4, 7)]
    fresh = [row(n)._replace(committed_at=now) for n in range(7, 9)]
    subscriber.offer_events(old)
    subscriber.offer_events(older_too[:1])
    subscriber.offer_notice("audit", {"id": "a1"})  # notices do not age
    subscriber.offer_events(older_too[1:] + fresh)
    kinds = [
        (k, v if k == LAGGED else v["id"] if k == "audit" else v.id) for k, v in drain(subscriber)
    ]
    assert kinds == [(LAGGED, 5), ("audit", "a1"), (LAGGED, 2), (REQUEST, "e7"), (REQUEST, "e8")]
    assert subscriber.dropped_total == 7 and subscriber.delivered_total == 3
    assert subscriber.queued == 0


def test_stale_events_merge_with_a_lag_notice_behind_them() -> None:
    subscriber = Subscriber(WORKSPACE, lambda r: True, frozenset({REQUEST}), 3)
    subscriber.max_age = 5.0
    stale = [row(n)._replace(committed_at=time.time() - 60) for n in range(5)]
    subscriber.offer_events(stale)  # 3 queued (then stale), 2 over the bound
    subscriber.offer_events([row(9)])  # over the bound: counted with the 2
    assert drain(subscriber) == [(LAGGED, 6)]
    assert subscriber.dropped_total == 6 and subscriber.queued == 0
