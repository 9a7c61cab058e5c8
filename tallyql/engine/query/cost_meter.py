"""Spending cost points (engine/query/cost.py): each request has a budget of its own, and each API
key a budget per minute shared by all its requests.

A key's budget is a bucket of `per_minute` points that refills continuously (per_minute / 60
points a second) up to full; a charge takes points out, or fails without taking any. A
charge is made before the work it pays for starts, so refused work never runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any


class CostLimitExceeded(Exception):
    """The request would spend more than its own budget (no waiting makes it fit)."""

    code = "COST_LIMIT"


class RateLimited(Exception):
    """The key has spent its budget of the last minute; `retry_after` seconds refill enough."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def monotonic() -> float:
    """The buckets' clock (a module function, so that tests may stand in for it)."""
    return time.monotonic()


class KeyBuckets:
    """Every key's bucket of points; buckets that have refilled are forgotten."""

    MAX_KEPT = 10_000
    """Buckets kept before the full ones are dropped (a full bucket is the default)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] | None = None) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (points, at)

    def clock(self) -> float:
        return (self._clock or monotonic)()

    def level(self, key: str) -> float:
        """The points the key may spend now."""
        found = self._buckets.get(key)
        if found is None:
            return float(self.per_minute)
        points, at = found
        return min(float(self.per_minute), points + (self.clock() - at) * self.rate)

    def take(self, key: str, points: int) -> float:
        """Take `points` from the key's bucket and return what is left, or raise RateLimited
        (taking nothing) with the seconds after which they will be there."""
        level = self.level(key)
        if points > level:
            retry = max(1, math.ceil((points - level) / self.rate))
            raise RateLimited(
                f"this key has spent its {self.per_minute} cost points of the last minute: "
                f"{points} points are needed, {math.floor(level)} are left; retry in {retry} s",
                retry,
            )
        left = level - points
        if len(self._buckets) >= self.MAX_KEPT and key not in self._buckets:
            self._forget_full()
        self._buckets[key] = (left, self.clock())
        return left

    def take_up_to(self, key: str, points: int) -> None:
        """Take `points` from the key's bucket, or all it has when that is less."""
        self.take(key, max(0, min(points, math.floor(self.level(key)))))

    def _forget_full(self) -> None:
        for key in [k for k in self._buckets if self.level(k) >= self.per_minute]:
            del self._buckets[key]


class CostMeter:
    """One request's spending: its own budget, and its key's bucket (None: not limited by
    key, e.g. a request without one)."""

    def __init__(self, request_limit: int, buckets: KeyBuckets | None, key: str | None) -> None:
        self.request_limit = request_limit
        self.buckets = buckets
        self.key = key
        self.spent = 0
        self.retry_after: int | None = None
        """Set when the key's budget refused something: the longest wait it named (the
        HTTP answer is then 429 with Retry-After)."""

    def charge(self, points: int, what: str) -> None:
        """Pay `points` for `what` before doing it; raises when over budget. A question over
        the request's budget is refused, and the request is then spent: what it had left is
        taken from the key too (as far as the key has it), so that a key sending oversized
        requests runs out of its minute's budget as one asking for that much work would (it
        is then refused with 429 before its requests are even parsed)."""
        try:
            if self.spent + points > self.request_limit:
                refusal = CostLimitExceeded(
                    f"{what} would cost {points} cost points; this request has spent "
                    f"{self.spent} of its {self.request_limit}. Ask for a shorter window, a "
                    "coarser granularity, fewer dimensions or fewer fields at once"
                )
                if self.buckets is not None and self.key is not None:
                    self.buckets.take_up_to(self.key, self.request_limit - self.spent)
                self.spent = self.request_limit
                raise refusal
            if self.buckets is not None and self.key is not None:
                if points > self.buckets.per_minute:
                    raise CostLimitExceeded(
                        f"{what} would cost {points} cost points, more than this key's "
                        f"{self.buckets.per_minute} per minute"
                    )
                self.buckets.take(self.key, points)
        except RateLimited as refusal:
            self.retry_after = max(self.retry_after or 0, refusal.retry_after)
            raise
        self.spent += points

    def summary(self) -> dict[str, Any]:
        """`extensions.cost`: what this request spent and what is left."""
        out: dict[str, Any] = {
            "spent": self.spent,
            "requestLimit": self.request_limit,
            "requestRemaining": self.request_limit - self.spent,
        }
        if self.buckets is not None and self.key is not None:
            out["keyLimitPerMinute"] = self.buckets.per_minute
            out["keyRemaining"] = math.floor(self.buckets.level(self.key))
        return out
