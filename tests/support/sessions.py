"""The sessions queries and a plain-Python recomputation of each session from its events
(shared by test_sessions, test_session_detail and test_session_digests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.support.ops_data import (
    group,
    nano,
    tokens,
    ts_of,
)

STATS = """
query($range: TimeRangeInput!, $filter: EventFilter) {
  sessionStats(range: $range, filter: $filter) {
    sessions
    costUsd { p50 avg p95 } totalTokens { p50 avg p95 } durationMs { p50 avg p95 }
    requests { p50 avg p95 }
  }
}"""


@dataclass
class Expected:
    id: str
    events: list[dict[str, Any]]

    @property
    def first(self) -> datetime:
        return min(ts_of(e) for e in self.events)

    @property
    def last(self) -> datetime:
        return max(ts_of(e) for e in self.events)

    @property
    def cost(self) -> int:
        return sum(nano(e) for e in self.events)

    @property
    def tokens(self) -> int:
        return sum(tokens(e) for e in self.events)

    @property
    def duration_us(self) -> int:
        delta = self.last - self.first
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds

    @property
    def user(self) -> str | None:
        return self.events[0].get("user_id")

    @property
    def agent(self) -> str | None:
        return self.events[0].get("agent_id")

    def order_value(self, order: str) -> float:
        return {
            "COST": self.cost,
            "TOKENS": self.tokens,
            "REQUESTS": len(self.events),
            "RECENT": self.last.timestamp(),
            "DURATION": self.duration_us,
        }[order]


def expected_sessions(events: list[dict[str, Any]]) -> dict[str, Expected]:
    by = group((e for e in events if "session_id" in e), lambda e: e["session_id"])
    return {sid: Expected(sid, evs) for sid, evs in by.items()}
