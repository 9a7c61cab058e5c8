"""Cost fields: costInsights, modelComparison and dailyCostByModel (all through the engine)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from tallyql.clock import clock
from tallyql.costs import insights
from tallyql.costs.prices import current_price
from tallyql.costs.recommendations import recommendations
from tallyql.engine import analytics as engine
from tallyql.engine.analytics import Asker
from tallyql.engine.query.buckets import Granularity
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.engine.unpriced import unpriced as unpriced_events
from tallyql.schema.analytics import WorkspaceArg
from tallyql.schema.base.change_note import ChangeNote, note_of
from tallyql.schema.base.common import FilterArg, RangeArg
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.errors import BadInput
from tallyql.schema.base.scalars import Long, as_count
from tallyql.schema.costs_types import UnpricedSummary
from tallyql.schema.prices import ModelPrice

MAX_COMPARED = 4


@strawberry.enum(description="Change versus the previous period (FLAT within 1%).")
class TrendDirection(Enum):
    UP = strawberry.enum_value("UP", description="Cost rose by 1 % or more (or from 0).")
    DOWN = strawberry.enum_value("DOWN", description="Cost fell by 1 % or more.")
    FLAT = strawberry.enum_value("FLAT", description="Within 1 % either way.")


@strawberry.enum(description="What a recommendation suggests.")
class RecommendationKind(Enum):
    CHEAPER_MODEL = strawberry.enum_value(
        "CHEAPER_MODEL", description="Move calls to a cheaper model of similar use."
    )
    PROMPT_CACHING = strawberry.enum_value(
        "PROMPT_CACHING", description="Use prompt caching for repeated input."
    )
    FAILED_CALLS = strawberry.enum_value(
        "FAILED_CALLS", description="Stop paying for calls that fail."
    )


@strawberry.type(description="A group's cost and its share of the total (0 to 1).")
class CostShare:
    key: str | None = strawberry.field(description="The group's key; null when absent.")
    provider: str | None = strawberry.field(description="For models: their provider.")
    cost_usd: float = strawberry.field(description="The group's cost in USD.")
    requests: Long = strawberry.field(description="The group's events (count).")
    share: float | None = strawberry.field(
        description="The group's share of the total cost, 0 to 1; null when the total is 0."
    )

    @classmethod
    def of(cls, s: insights.Share) -> CostShare:
        return cls(
            key=s.key,
            provider=s.provider,
            cost_usd=s.cost_usd,
            requests=as_count(s.requests),
            share=s.share,
        )


@strawberry.type(description="The range's cost against the previous period of the same length.")
class CostTrend:
    current_usd: float = strawberry.field(description="Cost in the range, in USD.")
    previous_usd: float = strawberry.field(description="Cost in the previous period, in USD.")
    direction: TrendDirection = strawberry.field(
        description="By percent (FLAT within 1 %); without one, by the sign of the difference."
    )
    percent: float | None = strawberry.field(
        description=(
            "(current - previous) / previous * 100; null when the previous period's cost is "
            "zero or negligible (see percentNote), so never above +9,900 %."
        )
    )
    percent_note: ChangeNote | None = strawberry.field(
        description="Why percent is null; null when it is not."
    )


@strawberry.type(description="Average cost per day with data, times 30.")
class MonthProjection:
    days_with_data: int = strawberry.field(description="Local days of the range with cost (count).")
    daily_average_usd: float | None = strawberry.field(
        description="Mean cost per day with data, in USD."
    )
    projected_usd: float | None = strawberry.field(description="dailyAverageUsd times 30, in USD.")
    previous_projected_usd: float | None = strawberry.field(
        description="The same projection for the previous period, in USD."
    )
    change_percent: float | None = strawberry.field(
        description=(
            "projectedUsd against previousProjectedUsd, in percent; null when either is "
            "missing or the previous one is negligible (see changeNote)."
        )
    )
    change_note: ChangeNote | None = strawberry.field(
        description="Why changePercent is null; null when it is not."
    )


@strawberry.type(description="A number behind a recommendation.")
class Figure:
    name: str = strawberry.field(description="What the number is.")
    value: float | None = strawberry.field(description="The number, in `unit`.")
    unit: str = strawberry.field(description="USD, TOKENS, CALLS, RATIO or USD_PER_MTOK.")


@strawberry.type(description="A way to spend less, with its estimated saving.")
class Recommendation:
    kind: RecommendationKind = strawberry.field(description="What it suggests.")
    title: str = strawberry.field(description="One sentence for people.")
    estimated_saving_usd: float = strawberry.field(
        description="Estimated saving over the range, in USD."
    )
    provider: str | None = strawberry.field(description="The provider concerned.")
    model: str | None = strawberry.field(description="The model concerned.")
    suggested_model: str | None = strawberry.field(
        description="For CHEAPER_MODEL: the model to use instead."
    )
    figures: list[Figure] = strawberry.field(description="The numbers behind it.")


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

    @strawberry.field(description="Cost in the range, in USD.")
    async def total_usd(self) -> float:
        return await self._total()

    @strawberry.field(description="Cost per request type (chat, embedding...).")
    async def by_request_type(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).by_request_type]

    @strawberry.field(description="Top cost drivers: models, users and agents (5 each).")
    async def top_models(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).top_models]

    @strawberry.field(description="The 5 costliest end users.")
    async def top_users(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).top_users]

    @strawberry.field(description="The 5 costliest agents.")
    async def top_agents(self) -> list[CostShare]:
        return [CostShare.of(s) for s in (await self._overview()).top_agents]

    async def _overview(self) -> insights.CostOverview:
        return await self._once("overview", lambda: insights.overview(self._asker))

    @strawberry.field(
        description="Events in the range stored without a price, and their models: what "
        "totalUsd leaves out."
    )
    async def unpriced(self) -> UnpricedSummary:
        return UnpricedSummary.of(
            await self._once("unpriced", lambda: unpriced_events(self._asker))
        )

    @strawberry.field(description="Against the previous period.")
    async def trend(self) -> CostTrend:
        t = await insights.trend(self._asker)
        return CostTrend(
            current_usd=t.current_usd,
            previous_usd=t.previous_usd,
            direction=TrendDirection(t.direction),
            percent=t.percent,
            percent_note=note_of(t.percent_note),
        )

    @strawberry.field(description="Projected cost of 30 days at the range's daily average.")
    async def projected_month(self) -> MonthProjection:
        p = await insights.projection(self._asker)
        return MonthProjection(
            days_with_data=p.days_with_data,
            daily_average_usd=p.daily_average_usd,
            projected_usd=p.projected_usd,
            previous_projected_usd=p.previous_projected_usd,
            change_percent=p.change_percent,
            change_note=note_of(p.change_note),
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


@strawberry.input(description="A model to compare, by name (and provider).")
class ModelRefInput:
    model: str = strawberry.field(description="The model's name.")
    provider: str | None = strawberry.field(default=None, description="null: any provider.")


@strawberry.type(description="One model's price and usage, for side-by-side comparison.")
class ModelComparison:
    provider: str | None = strawberry.field(description="The model's provider.")
    model: str = strawberry.field(description="The model's name.")
    price: ModelPrice = strawberry.field(description="Its current price.")
    context_window: int | None = strawberry.field(
        description="Context window in tokens, where genai-prices knows."
    )
    requests: Long = strawberry.field(description="Events with this model (count).")
    error_rate: float | None = strawberry.field(description="Errors / events, 0 to 1.")
    input_tokens: Long = strawberry.field(description="Input tokens, cached ones included.")
    output_tokens: Long = strawberry.field(description="Output tokens, reasoning included.")
    cache_read_tokens: Long = strawberry.field(description="Input tokens read from cache.")
    cost_usd: float = strawberry.field(description="Cost in USD.")
    avg_cost_per_request_usd: float | None = strawberry.field(
        description="costUsd / requests, in USD."
    )
    avg_input_tokens: float | None = strawberry.field(
        description="Mean input tokens per event (a mean, so fractional)."
    )
    avg_output_tokens: float | None = strawberry.field(
        description="Mean output tokens per event (a mean, so fractional)."
    )
    avg_latency_ms: float | None = strawberry.field(
        description="Mean latency in ms of its events that report one."
    )
    p95_latency_ms: float | None = strawberry.field(
        description="95th percentile latency in ms (within 1 %)."
    )
    avg_ttft_ms: float | None = strawberry.field(
        description="Mean time to first token in ms of its events that report one."
    )


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
    buckets: list[datetime] = strawberry.field(
        description="Local day starts; every list below has one value per bucket."
    )
    series: list[ModelCostSeries] = strawberry.field(description="The top models, then the rest.")
    totals: list[float] = strawberry.field(description="Cost in USD of all models, per bucket.")


@strawberry.type(description="One model's cost per day.")
class ModelCostSeries:
    model: str | None = strawberry.field(description="null for events without a model.")
    is_other: bool = strawberry.field(description="Every model beyond the top ones.")
    values: list[float] = strawberry.field(
        description="Cost in USD per bucket, in the order of DailyCostByModel.buckets."
    )
    total_usd: float = strawberry.field(description="Cost in USD over the range.")


@strawberry.type
class CostQuery:
    @strawberry.field(description="Cost by request type, trend, drivers, projection, advice.")
    async def cost_insights(
        self,
        info: TallyInfo,
        range: RangeArg,
        filter: FilterArg = None,
        workspace: WorkspaceArg = None,
    ) -> CostInsights:
        return CostInsights(_asker=info.context.asker(range, filter, workspace), _memo={})

    @strawberry.field(description=f"Up to {MAX_COMPARED} models side by side.")
    async def model_comparison(
        self,
        info: TallyInfo,
        models: Annotated[
            list[ModelRefInput],
            strawberry.argument(description="The models to compare (1 to 4)."),
        ],
        range: RangeArg,
        filter: FilterArg = None,
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
                    requests=as_count(v[Metric.REQUESTS] or 0.0),
                    error_rate=v[Metric.ERROR_RATE],
                    input_tokens=as_count(v[Metric.INPUT_TOKENS] or 0.0),
                    output_tokens=as_count(v[Metric.OUTPUT_TOKENS] or 0.0),
                    cache_read_tokens=as_count(v[Metric.CACHE_READ_TOKENS] or 0.0),
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
        range: RangeArg,
        filter: FilterArg = None,
        top: Annotated[
            int,
            strawberry.argument(
                description="How many costliest models get their own series; the rest are summed."
            ),
        ] = 8,
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
