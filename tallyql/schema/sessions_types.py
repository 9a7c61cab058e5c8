"""The parts of a session's view: per-model rows, token mix, timeline, the exact statistics of
a filter set, and the comparison with its median session."""

from __future__ import annotations

import asyncio
import bisect
from datetime import datetime
from enum import Enum
from typing import Any
from weakref import WeakKeyDictionary

import strawberry

from tallyql.engine import sessions as engine
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.timerange import TimeWindow
from tallyql.money import to_usd
from tallyql.schema.base import loaders
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.scalars import Long
from tallyql.schema.base.usage import TokenKinds, token_kinds_of
from tallyql.storage.database import Database
from tallyql.storage.types import from_micros


@strawberry.type(description="A session's use of one model.")
class SessionModel(TokenKinds):
    provider: str | None = strawberry.field(description="The provider; null for events without.")
    model: str | None = strawberry.field(
        description="The model; null for events without one (tool calls, agent runs...)."
    )
    requests: Long = strawberry.field(description="Events with this model (count).")
    errors: Long = strawberry.field(description="Those with status error (count).")
    _span: strawberry.Private[engine.SessionSpan]

    @strawberry.field(
        description="Mean latency in ms of these calls that report one; agent runs (whose "
        "latency is a run's duration) are left out."
    )
    async def avg_latency_ms(self, info: TallyInfo) -> float | None:
        rows = await loaders.session_latencies(info.context).load(self._span)
        kept = [
            r
            for r in rows
            if r["kind"] != "agent_run"
            and (r["provider"] or None, r["model"] or None) == (self.provider, self.model)
        ]
        count = sum(r["latency_count"] for r in kept)
        return sum(r["latency_ms_sum"] for r in kept) / count if count else None

    @classmethod
    def from_row(cls, row: dict[str, Any], span: engine.SessionSpan) -> SessionModel:
        """`span`: the session's id, first and last timestamps (to read its latencies)."""
        return cls(
            provider=row["provider"] or None,
            model=row["model"] or None,
            requests=row["requests"],
            errors=row["errors"],
            **token_kinds_of(row),
            _span=span,
        )


@strawberry.enum(description="Token kinds that add up to a total without overlap.")
class TokenType(Enum):
    UNCACHED_INPUT = strawberry.enum_value(
        "UNCACHED_INPUT", description="Input tokens neither read from nor written to cache."
    )
    CACHE_READ = strawberry.enum_value("CACHE_READ", description="Input tokens read from cache.")
    CACHE_WRITE = strawberry.enum_value("CACHE_WRITE", description="Input tokens written to cache.")
    OUTPUT = strawberry.enum_value("OUTPUT", description="Output tokens other than reasoning.")
    REASONING = strawberry.enum_value("REASONING", description="Output tokens spent reasoning.")


@strawberry.type(description="One kind of token and its share (0 to 1) of all tokens.")
class TokenShare:
    type: TokenType = strawberry.field(description="The kind of token.")
    tokens: Long = strawberry.field(description="Tokens of this kind (count).")
    share: float | None = strawberry.field(
        description="tokens / all tokens, 0 to 1; null when there are none."
    )


def token_mix(row: dict[str, Any]) -> list[TokenShare]:
    cached = row["cache_read_tokens"] + row["cache_write_tokens"]
    parts = {
        TokenType.UNCACHED_INPUT: max(row["input_tokens"] - cached, 0),
        TokenType.CACHE_READ: row["cache_read_tokens"],
        TokenType.CACHE_WRITE: row["cache_write_tokens"],
        TokenType.OUTPUT: max(row["output_tokens"] - row["reasoning_tokens"], 0),
        TokenType.REASONING: row["reasoning_tokens"],
    }
    total = sum(parts.values())
    return [
        TokenShare(type=t, tokens=n, share=n / total if total else None) for t, n in parts.items()
    ]


@strawberry.type(description="A session's lifespan in equal buckets, columnar.")
class SessionTimeline:
    buckets: list[datetime] = strawberry.field(description="Bucket starts.")
    bucket_seconds: float = strawberry.field(description="Each bucket's width in seconds.")
    requests: list[Long] = strawberry.field(description="Events per bucket (count).")
    input_tokens: list[Long] = strawberry.field(description="Input tokens per bucket.")
    output_tokens: list[Long] = strawberry.field(description="Output tokens per bucket.")
    total_tokens: list[Long] = strawberry.field(description="Input plus output tokens per bucket.")
    cost_usd: list[float] = strawberry.field(description="Cost in USD per bucket.")
    cumulative_cost_usd: list[float] = strawberry.field(
        description="Cost in USD from the session's start to the end of each bucket."
    )

    @classmethod
    def of(cls, timeline: engine.Timeline) -> SessionTimeline:
        rows = timeline.rows
        costs = [r["cost_nanousd"] for r in rows]
        running, cumulative = 0, []
        for cost in costs:
            running += cost
            cumulative.append(to_usd(running))
        return cls(
            buckets=[from_micros(s) for s in timeline.starts],
            bucket_seconds=timeline.width_micros / 1e6,
            requests=[r["requests"] for r in rows],
            input_tokens=[r["input_tokens"] for r in rows],
            output_tokens=[r["output_tokens"] for r in rows],
            total_tokens=[r["input_tokens"] + r["output_tokens"] for r in rows],
            cost_usd=[to_usd(c) for c in costs],
            cumulative_cost_usd=cumulative,
        )


@strawberry.type(
    description=(
        "Exact P50, average and P95 over the sessions of a filter set. A percentile q of n "
        "values is linear interpolation between the closest ranks: with the values ascending "
        "v[0..n-1] and h = q (n - 1), v[floor h] + (h - floor h) (v[ceil h] - v[floor h]) "
        "(PostgreSQL's percentile_cont, NumPy's default), so it may fall between two sessions."
    )
)
class Distribution:
    p50: float | None = strawberry.field(
        description="Median over the sessions, in the measure's unit; null without sessions."
    )
    avg: float | None = strawberry.field(
        description="Mean over the sessions, in the measure's unit; null without sessions."
    )
    p95: float | None = strawberry.field(
        description="95th percentile over the sessions, in the measure's unit; null without "
        "sessions."
    )


@strawberry.type(description="Sessions overlapping the range and matching the filter.")
class SessionStats:
    sessions: int = strawberry.field(description="Sessions in the set (count).")
    cost_usd: Distribution = strawberry.field(description="Cost per session in USD.")
    total_tokens: Distribution = strawberry.field(description="Tokens per session.")
    duration_ms: Distribution = strawberry.field(
        description="Session duration in ms (first to last event)."
    )
    requests: Distribution = strawberry.field(description="Events per session.")

    @classmethod
    def of(cls, result: engine.SessionStatsResult) -> SessionStats:
        def dist(name: str) -> Distribution:
            d = result.measures[name]
            return Distribution(p50=d.p50, avg=d.avg, p95=d.p95)

        return cls(
            sessions=result.sessions,
            cost_usd=dist("cost"),
            total_tokens=dist("tokens"),
            duration_ms=dist("duration"),
            requests=dist("requests"),
        )


TOP_SHARE_MIN_SESSIONS = 20
"""Below this many sessions, one session is more than 5 % of the set: no "top 5 %" chip."""


@strawberry.type(description="A session's value next to the median session of the set.")
class ComparisonValue:
    value: float = strawberry.field(
        description="The session's value, in the measure's unit (USD, tokens, ms, calls)."
    )
    median: float | None = strawberry.field(
        description="The set's exact median (P50, interpolated between the closest ranks), same "
        "unit."
    )
    ratio: float | None = strawberry.field(
        description="value / median (2.1 = 2.1x the median); null when the median is 0."
    )
    rank: int | None = strawberry.field(
        description=(
            "The value's position in the set, largest first: 1 + the set's sessions with a "
            "strictly larger value (ties share the better position), out of baselineSessions. "
            f"Null when the set holds more than {engine.RANKED_SET_LIMIT:,} sessions."
        )
    )
    top5_percent: bool = strawberry.field(
        description=(
            "The value is among the largest 5 % of the set: the set holds at least "
            f"{TOP_SHARE_MIN_SESSIONS} sessions (never on fewer, where one session is already "
            "more than 5 %) and rank <= 5 % of baselineSessions; on sets too large to rank, "
            "the value exceeds the set's exact P95."
        )
    )


@strawberry.type(description="A session against the sessions of the same filter set.")
class SessionComparison:
    baseline_sessions: int = strawberry.field(description="Sessions in the set.")
    cost_usd: ComparisonValue = strawberry.field(description="Cost in USD.")
    total_tokens: ComparisonValue = strawberry.field(description="Input plus output tokens.")
    duration_ms: ComparisonValue = strawberry.field(description="Duration in ms.")
    requests: ComparisonValue = strawberry.field(description="Events (count).")


class Baseline:
    """The exact statistics of one filter set, computed once however many sessions of a
    page compare themselves with it."""

    def __init__(
        self,
        db: Database,
        workspace_id: int,
        window: TimeWindow | None,
        spec: EventFilterSpec,
        members: frozenset[str] | None = None,
    ) -> None:
        self.db, self.workspace_id, self.window, self.spec = db, workspace_id, window, spec
        self.members = members
        """Sessions known to be in the set (a listed page); others are checked."""
        self._stats: engine.SessionStatsResult | None = None
        self._ranked: dict[str, list[float]] | None = None
        """Each measure's values over the set, ascending, in the API's unit; None when the
        set is too large to read whole (`engine.RANKED_SET_LIMIT`)."""
        self._lock = asyncio.Lock()

    async def stats(self) -> engine.SessionStatsResult:
        """One statement: a set small enough is read whole (its statistics computed from the
        values, as the database paths compute them, and its values kept for ranks); only a
        larger one is summarised by `engine.session_stats`."""
        async with self._lock:
            if self._stats is None:
                values = await engine.set_values(self.db, self.workspace_id, self.window, self.spec)
                if values is None:
                    self._stats = await engine.session_stats(
                        self.db, self.workspace_id, self.window, self.spec
                    )
                else:
                    self._stats = engine.stats_of_values(values)
                    self._ranked = {
                        m.name: [v * m.scale for v in values[m.name]] for m in engine.STAT_MEASURES
                    }
            return self._stats

    async def compare(self, row: dict[str, Any]) -> SessionComparison | None:
        stats = await self.stats()
        member = row["id"] in self.members if self.members is not None else None
        if member is None and self.window is None and self.spec.is_empty():
            member = True  # every session of the workspace
        if member is None:
            member = await engine.in_filter_set(
                self.db, self.workspace_id, self.window, self.spec, row["id"]
            )
        if stats.sessions - int(member) < 2:
            return None
        ranked, n = self._ranked, stats.sessions

        def value(name: str) -> ComparisonValue:
            mine = engine.measure_of(name, row)
            median, p95 = stats.p(name, 0.5), stats.p(name, 0.95)
            rank = None
            if ranked is not None:
                rank = 1 + len(ranked[name]) - bisect.bisect_right(ranked[name], mine)
                top = n >= TOP_SHARE_MIN_SESSIONS and rank * 20 <= n
            else:
                top = p95 is not None and mine > p95
            return ComparisonValue(
                value=mine,
                median=median,
                ratio=mine / median if median else None,
                rank=rank,
                top5_percent=top,
            )

        return SessionComparison(
            baseline_sessions=stats.sessions,
            cost_usd=value("cost"),
            total_tokens=value("tokens"),
            duration_ms=value("duration"),
            requests=value("requests"),
        )


_DEFAULT_BASELINES: WeakKeyDictionary[Any, Baseline] = WeakKeyDictionary()


def default_baseline(context: Any, db: Database, workspace_id: int) -> Baseline:
    """Every session of the workspace: the baseline of sessions reached without a range and
    filter (through a request or a breakdown row), shared by all of them in one request."""
    found = _DEFAULT_BASELINES.get(context)
    if found is None:
        found = _DEFAULT_BASELINES[context] = Baseline(db, workspace_id, None, EventFilterSpec())
    return found
