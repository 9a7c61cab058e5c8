"""A slice of traffic (tool calls, blocked calls) seen from every side: totals, over time,
by hour of day, and its top tools, agent instances, users, MCP servers and policies.

Every figure is an engine query over the caller's filter narrowed to the slice, so the
planner answers from rollups: tools and policies from `tools`, agent instances from
`agents`, users from `users`. Top lists leave out events without the value (tool calls of no
agent instance are in the totals, not among the top instances).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from tallyql.engine import analytics
from tallyql.engine.analytics import Asker, TimeSeriesResult
from tallyql.engine.query.buckets import Granularity
from tallyql.engine.query.registry import Dimension, Metric
from tallyql.engine.ranking import Keys, RankedPage, Values, grouped, narrow, page, rank, top_by

TOP_METRICS = (Metric.REQUESTS, Metric.ERRORS, Metric.ERROR_RATE, Metric.AVG_LATENCY_MS)


@dataclass
class Slice:
    asker: Asker
    """The caller's asker with its filter narrowed to the slice."""
    name: str
    _ranked: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def tool_calls(cls, asker: Asker) -> Slice:
        spec = replace(asker.filter, kinds=narrow(asker.filter.kinds, ("tool_call",)))
        return cls(replace(asker, filter=spec), "tools")

    @classmethod
    def blocked(cls, asker: Asker) -> Slice:
        spec = replace(asker.filter, statuses=narrow(asker.filter.statuses, ("blocked",)))
        return cls(replace(asker, filter=spec), "blocked")

    async def totals(self, metrics: tuple[Metric, ...]) -> Values:
        result = await self.asker.run(metrics)
        return {m: result.value((0,), m) for m in metrics}

    async def over_time(self, granularity: Granularity) -> TimeSeriesResult:
        return await analytics.timeseries(
            self.asker, (Metric.REQUESTS,), granularity, None, 10, False
        )

    async def hourly(self) -> list[float | None]:
        return await analytics.hourly_distribution(self.asker, Metric.REQUESTS)

    async def _top(
        self, dims: tuple[Dimension, ...], metrics: tuple[Metric, ...]
    ) -> list[tuple[tuple[Any, ...], Values]]:
        """Ranked groups, computed once per slice and dimensions (pages reuse them)."""
        name = ",".join(d.value for d in dims)
        if name not in self._ranked:
            groups = await grouped(self.asker, dims, metrics)
            kept = [g for g in groups if g[0][0] is not None]
            self._ranked[name] = rank(kept, Metric.REQUESTS)
        return self._ranked[name]

    async def _page(
        self,
        dims: tuple[Dimension, ...],
        metrics: tuple[Metric, ...],
        first: int,
        after: str | None,
    ) -> RankedPage:
        ranked = await self._top(dims, metrics)
        kind = f"{self.name}:" + ",".join(d.value for d in dims)
        return page(ranked, Metric.REQUESTS, True, first, after, kind)

    async def tools(self, first: int, after: str | None) -> RankedPage:
        """Keys (tool, MCP server)."""
        return await self._page((Dimension.TOOL, Dimension.MCP_SERVER), TOP_METRICS, first, after)

    async def mcp_servers(self, first: int, after: str | None) -> RankedPage:
        """Keys (MCP server,); values include UNIQUE_TOOLS."""
        metrics = (*TOP_METRICS, Metric.UNIQUE_TOOLS)
        return await self._page((Dimension.MCP_SERVER,), metrics, first, after)

    async def users(self, first: int, after: str | None) -> RankedPage:
        return await self._page((Dimension.USER,), TOP_METRICS, first, after)

    async def policies(self, first: int, after: str | None) -> RankedPage:
        """Keys (policy id, policy name as recorded)."""
        dims = (Dimension.POLICY, Dimension.POLICY_NAME)
        return await self._page(dims, TOP_METRICS, first, after)

    async def agent_instances(
        self, first: int, after: str | None
    ) -> tuple[RankedPage, dict[Any, tuple[Any, int]]]:
        """Keys (agent instance, agent), with REQUESTS, ERRORS and ERROR_RATE; and per
        instance its top user (most calls in the slice) and its number of distinct users.
        One engine query by (instance, agent, user), folded here."""
        name = "instances"
        if name not in self._ranked:
            dims = (Dimension.AGENT_INSTANCE, Dimension.AGENT, Dimension.USER)
            rows = await grouped(self.asker, dims, (Metric.REQUESTS, Metric.ERRORS))
            folded: dict[tuple[Any, ...], dict[Any, float | None]] = {}
            for (instance, agent, _user), values in rows:
                if instance is None:
                    continue
                sums = folded.setdefault(
                    (instance, agent), {Metric.REQUESTS: 0.0, Metric.ERRORS: 0.0}
                )
                for metric in (Metric.REQUESTS, Metric.ERRORS):
                    sums[metric] = (sums[metric] or 0.0) + (values.get(metric) or 0.0)
            for sums in folded.values():
                requests = sums[Metric.REQUESTS] or 0.0
                sums[Metric.ERROR_RATE] = (
                    (sums[Metric.ERRORS] or 0.0) / requests if requests else None
                )
            by_user: dict[tuple[Any, Any], float] = defaultdict(float)
            for (instance, _agent, user), values in rows:
                by_user[(instance, user)] += values.get(Metric.REQUESTS) or 0.0
            pairs: list[tuple[Keys, Values]] = [
                (k, {Metric.REQUESTS: n}) for k, n in by_user.items()
            ]
            users = top_by(pairs, Metric.REQUESTS)
            self._ranked[name] = (rank(list(folded.items()), Metric.REQUESTS), users)
        ranked, users = self._ranked[name]
        kind = f"{self.name}:instances"
        return page(ranked, Metric.REQUESTS, True, first, after, kind), users
