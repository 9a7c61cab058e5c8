"""Cost fields: costInsights, modelComparison and dailyCostByModel (all through the engine)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from tallyql.clock import clock
from tallyql.costs import insights
from tallyql.costs.prices import current_price
from tallyql.costs.recommendations import recommendations
from tallyql.engine import analytics as engine
from tallyql.engine.analytics import Asker
from tallyql.engine.buckets import Granularity
from tallyql.engine.registry import Dimension, DimensionRef, Metric
from tallyql.schema.analytics import WorkspaceArg
from tallyql.schema.common import EventFilter, TimeRangeInput
from tallyql.schema.context import TallyInfo
from tallyql.schema.errors import BadInput
from tallyql.schema.prices import ModelPrice

MAX_COMPARED = 4


@strawberry.enum(description="Change versus the previous period (FLAT within 1%).")
class TrendDirection(Enum):
    UP = "UP"
    DOWN = "DOWN"
    FLAT = "FLAT"


@strawberry.enum
class RecommendationKind(Enum):
    CHEAPER_MODEL = "CHEAPER_MODEL"
    PROMPT_CACHING = "PROMPT_CACHING"
    FAILED_CALLS = "FAILED_CALLS"


@strawberry.type(description="A group's cost and its share of the total (0 to 1).")
class CostShare:
    key: str | None
    provider: str | None = strawberry.field(description="For models: their provider.")
    cost_usd: float
    requests: float
    share: float | None

    @classmethod
    def of(cls, s: insights.Share) -> CostShare:
        return cls(
            key=s.key, provider=s.provider, cost_usd=s.cost_usd, requests=s.requests, share=s.share
        )


@strawberry.type
class CostTrend:
    current_usd: float
    previous_usd: float
    direction: TrendDirection
    percent: float | None = strawberry.field(description="null when the previous period is 0.")


@strawberry.type(description="Average cost per day with data, times 30.")
class MonthProjection:
    days_with_data: int
    daily_average_usd: float | None
    projected_usd: float | None
    previous_projected_usd: float | None
    change_percent: float | None


@strawberry.type(description="A number behind a recommendation.")
class Figure:
    name: str
    value: float | None
    unit: str = strawberry.field(description="USD, TOKENS, CALLS, RATIO or USD_PER_MTOK.")


@strawberry.type
class Recommendation:
    kind: RecommendationKind
    title: str
    estimated_saving_usd: float
    provider: str | None
    model: str | None
    suggested_model: str | None
    figures: list[Figure]


@strawberry.type(description="Where the money goes; each part is computed when selected.")
class CostInsights:
    _asker: strawberry.Private[Asker]
    _memo: strawberry.Private[dict[str, asyncio.Future[Any]]]

    def _once(self, name: str, make: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        """One computation per part, shared by every field that needs it."""
        if name not in self._memo:
            self._memo[name] = asyncio.ensure_future(make())
        return self._memo[name]

    async def _total(self) -> float:
        return await self._once("total", lambda: insights.total_cost(self._asker))

    @strawberry.field
    async def total_usd(self) -> float:
        return await self._total()

    @strawberry.field
    async def by_request_type(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).by_request_type]

    @strawberry.field(description="Top cost drivers: models, users and agents (5 each).")
    async def top_models(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).top_models]

    @strawberry.field
    async def top_users(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).top_users]

    @strawberry.field
    async def top_agents(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).top_agents]

    async def _overview(self) -> insights.CostOverview:
        return await self._once("overview", lambda: insights.overview(self._asker))

    @strawberry.field
    async def trend(self) -> CostTrend:
        t = await insights.trend(self._asker)
        return CostTrend(
            current_usd=t.current_usd,
            previous_usd=t.previous_usd,
            direction=TrendDirection(t.direction),
            percent=t.percent,
        )

    @strawberry.field
    async def projected_month(self) -> MonthProjection:
        p = await insights.projection(self._asker)
        return MonthProjection(
            days_with_data=p.days_with_data,
            daily_average_usd=p.daily_average_usd,
            projected_usd=p.projected_usd,
            previous_projected_usd=p.previous_projected_usd,
            change_percent=p.change_percent,
        )

    @strawberry.field(description="Ways to spend less, largest estimated saving first.")
    async def recommendations(self, info: TallyInfo) -> list[Recommendation]:
        services = info.context.services
        ids = self._asker.scope.workspace_ids
        found = await recommendations(
            self._asker,
            services.prices,
            services.ingest.pricer.builtin,
            ids[0] if ids and len(ids) == 1 else None,
            await self._total(),
            clock.now(),
        )
        return [
            Recommendation(
                kind=RecommendationKind(r.kind),
                title=r.title,
                estimated_saving_usd=r.estimated_saving_usd,
                provider=r.provider,
                model=r.model,
                suggested_model=r.suggested_model,
                figures=[Figure(name=f.name, value=f.value, unit=f.unit) for f in r.figures],
            )
            for r in found
        ]


@strawberry.input
class ModelRefInput:
    model: str
    provider: str | None = strawberry.field(default=None, description="null: any provider.")


@strawberry.type(description="One model's price and usage, for side-by-side comparison.")
class ModelComparison:
    provider: str | None
    model: str
    price: ModelPrice
    context_window: int | None
    requests: float
    error_rate: float | None
    input_tokens: float
    output_tokens: float
    cache_read_tokens: float
    cost_usd: float
    avg_cost_per_request_usd: float | None
    avg_input_tokens: float | None
    avg_output_tokens: float | None
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    avg_ttft_ms: float | None


COMPARISON_METRICS = (
    Metric.REQUESTS,
    Metric.ERROR_RATE,
    Metric.INPUT_TOKENS,
    Metric.OUTPUT_TOKENS,
    Metric.CACHE_READ_TOKENS,
    Metric.COST_USD,
    Metric.AVG_LATENCY_MS,
    Metric.P95_LATENCY_MS,
    Metric.AVG_TTFT_MS,
)


def _per(value: float | None, count: float | None) -> float | None:
    return value / count if value is not None and count else None


@strawberry.type(description="Cost per local day: one series per top model, plus the rest.")
class DailyCostByModel:
    buckets: list[datetime]
    series: list[ModelCostSeries]
    totals: list[float] = strawberry.field(description="All models, per bucket.")


@strawberry.type
class ModelCostSeries:
    model: str | None = strawberry.field(description="null for events without a model.")
    is_other: bool = strawberry.field(description="Every model beyond the top ones.")
    values: list[float]
    total_usd: float


@strawberry.type
class CostQuery:
    @strawberry.field(description="Cost by request type, trend, drivers, projection, advice.")
    async def cost_insights(
        self,
        info: TallyInfo,
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        workspace: WorkspaceArg = None,
    ) -> CostInsights:
        return CostInsights(_asker=info.context.asker(range, filter, workspace), _memo={})

    @strawberry.field(description=f"Up to {MAX_COMPARED} models side by side.")
    async def model_comparison(
        self,
        info: TallyInfo,
        models: list[ModelRefInput],
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        workspace: WorkspaceArg = None,
    ) -> list[ModelComparison]:
        if not 1 <= len(models) <= MAX_COMPARED:
            raise BadInput(f"compare 1 to {MAX_COMPARED} models")
        asker = info.context.asker(range, filter, workspace)
        services = info.context.services
        ids = asker.scope.workspace_ids
        workspace_id = ids[0] if ids and len(ids) == 1 else -1
        now = clock.now()
        out = []
        for ref in models:
            spec = replace(
                asker.filter,
                models=(ref.model,),
                providers=(ref.provider,) if ref.provider else asker.filter.providers,
            )
            result = await asker.run(COMPARISON_METRICS, extra_filter=spec)
            v = {m: result.value((0,), m) for m in COMPARISON_METRICS}
            price = current_price(
                services.prices,
                services.ingest.pricer.builtin,
                workspace_id,
                ref.provider,
                ref.model,
                now,
            )
            out.append(
                ModelComparison(
                    provider=ref.provider,
                    model=ref.model,
                    price=ModelPrice.of(price),
                    context_window=price.context_window,
                    requests=v[Metric.REQUESTS] or 0.0,
                    error_rate=v[Metric.ERROR_RATE],
                    input_tokens=v[Metric.INPUT_TOKENS] or 0.0,
                    output_tokens=v[Metric.OUTPUT_TOKENS] or 0.0,
                    cache_read_tokens=v[Metric.CACHE_READ_TOKENS] or 0.0,
                    cost_usd=v[Metric.COST_USD] or 0.0,
                    avg_cost_per_request_usd=_per(v[Metric.COST_USD], v[Metric.REQUESTS]),
                    avg_input_tokens=_per(v[Metric.INPUT_TOKENS], v[Metric.REQUESTS]),
                    avg_output_tokens=_per(v[Metric.OUTPUT_TOKENS], v[Metric.REQUESTS]),
                    avg_latency_ms=v[Metric.AVG_LATENCY_MS],
                    p95_latency_ms=v[Metric.P95_LATENCY_MS],
                    avg_ttft_ms=v[Metric.AVG_TTFT_MS],
                )
            )
        return out

    @strawberry.field(description="Cost per local day by model, for a stacked chart.")
    async def daily_cost_by_model(
        self,
        info: TallyInfo,
        range: TimeRangeInput,
        filter: EventFilter | None = None,
        top: int = 8,
        workspace: WorkspaceArg = None,
    ) -> DailyCostByModel:
        asker = info.context.asker(range, filter, workspace)
        result = await engine.timeseries(
            asker, (Metric.COST_USD,), Granularity.DAY, DimensionRef(Dimension.MODEL), top, False
        )
        series = [
            ModelCostSeries(
                model=None if s.group is None else str(s.group),
                is_other=s.is_other,
                values=[v or 0.0 for v in s.values],
                total_usd=sum(v or 0.0 for v in s.values),
            )
            for s in result.series
        ]
        totals = [sum(s.values[i] for s in series) for i, _ in enumerate(result.buckets)]
        return DailyCostByModel(buckets=result.buckets, series=series, totals=totals)
