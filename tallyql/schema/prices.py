"""Prices: `priceOverrides`, `models` (every model seen, with its current price)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from tallyql.auth.principal import Permission
from tallyql.clock import clock
from tallyql.costs.overrides import PriceOverride as Override
from tallyql.costs.prices import ModelPriceInfo, current_price
from tallyql.costs.prices import PriceSource as EnginePriceSource
from tallyql.engine.registry import Dimension, DimensionRef, Metric
from tallyql.engine.timerange import Preset
from tallyql.schema.common import TimeRangeInput
from tallyql.schema.context import TallyInfo
from tallyql.storage.price_overrides import list_overrides

PriceSource = strawberry.enum(
    EnginePriceSource,
    name="PriceSource",
    description="Where a model's price comes from: the workspace's override, genai-prices, "
    "or nowhere.",
)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@strawberry.type(description="A workspace's own price for a model; wins over genai-prices.")
class PriceOverride:
    id: strawberry.ID
    provider: str | None = strawberry.field(description="null: any provider.")
    model: str = strawberry.field(description="Exact model name, or a regex (modelIsRegex).")
    model_is_regex: bool
    effective_from: datetime | None = strawberry.field(description="Inclusive; null: always.")
    effective_until: datetime | None = strawberry.field(description="Exclusive; null: open.")
    input_per_mtok: float = strawberry.field(description="USD per million input tokens.")
    output_per_mtok: float
    cache_read_per_mtok: float | None = strawberry.field(
        description="null: cache reads cost the input rate."
    )
    cache_write_per_mtok: float | None = strawberry.field(
        description="null: cache writes cost the input rate."
    )
    reasoning_per_mtok: float | None = strawberry.field(
        description="null: reasoning tokens cost the output rate."
    )
    description: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, o: Override) -> PriceOverride:
        return cls(
            id=strawberry.ID(o.id),
            provider=o.provider,
            model=o.model,
            model_is_regex=o.is_regex,
            effective_from=o.effective_from,
            effective_until=o.effective_until,
            input_per_mtok=o.input_mtok,
            output_per_mtok=o.output_mtok,
            cache_read_per_mtok=o.cache_read_mtok,
            cache_write_per_mtok=o.cache_write_mtok,
            reasoning_per_mtok=o.reasoning_mtok,
            description=o.description,
            created_at=o.created_at,
            updated_at=o.updated_at,
        )


@strawberry.type(description="A model's price per million tokens (USD) as it applies now.")
class ModelPrice:
    source: PriceSource  # type: ignore[valid-type]
    input_per_mtok: float | None
    output_per_mtok: float | None
    cache_read_per_mtok: float | None
    cache_write_per_mtok: float | None
    reasoning_per_mtok: float | None
    tiered: bool = strawberry.field(
        description="The built-in price rises with prompt size; the rates shown are the base tier."
    )
    override_id: strawberry.ID | None

    @classmethod
    def of(cls, info: ModelPriceInfo) -> ModelPrice:
        return cls(
            source=info.source,
            input_per_mtok=_float(info.input_mtok),
            output_per_mtok=_float(info.output_mtok),
            cache_read_per_mtok=_float(info.cache_read_mtok),
            cache_write_per_mtok=_float(info.cache_write_mtok),
            reasoning_per_mtok=_float(info.reasoning_mtok),
            tiered=info.tiered,
            override_id=strawberry.ID(info.override_id) if info.override_id else None,
        )


@strawberry.type(description="A model seen in the workspace's events, with its current price.")
class Model:
    provider: str | None
    model: str
    price: ModelPrice
    context_window: int | None = strawberry.field(description="Tokens, where genai-prices knows.")
    genai_prices_id: str | None = strawberry.field(
        description="The genai-prices model this name matched."
    )
    requests: float
    input_tokens: float
    output_tokens: float
    cost_usd: float


_MODEL_METRICS = (Metric.REQUESTS, Metric.INPUT_TOKENS, Metric.OUTPUT_TOKENS, Metric.COST_USD)


@strawberry.type
class PriceQuery:
    @strawberry.field(description="The workspace's price overrides, oldest first.")
    async def price_overrides(self, info: TallyInfo) -> list[PriceOverride]:
        principal = info.context.require(Permission.READ)
        found = await list_overrides(info.context.services.db, principal.workspace_id)
        return [PriceOverride.of(o) for o in found]

    @strawberry.field(
        description="Every model seen in the range (default the last 90 days), most used "
        "first, with the price that applies now and its source."
    )
    async def models(self, info: TallyInfo, range: TimeRangeInput | None = None) -> list[Model]:
        principal = info.context.require(Permission.READ)
        asker = info.context.asker(range or TimeRangeInput(preset=Preset.LAST_90D), None)
        result = await asker.run(
            _MODEL_METRICS, (DimensionRef(Dimension.PROVIDER), DimensionRef(Dimension.MODEL))
        )
        services = info.context.services
        builtin = services.ingest.pricer.builtin
        now = clock.now()
        out = []
        for key in result.group_keys():
            provider, model = key[1], key[2]
            if model is None:
                continue
            values = result.values[key]
            price = current_price(
                services.prices, builtin, principal.workspace_id, provider, model, now
            )
            out.append(
                Model(
                    provider=provider,
                    model=model,
                    price=ModelPrice.of(price),
                    context_window=price.context_window,
                    genai_prices_id=price.builtin_model,
                    requests=values[Metric.REQUESTS] or 0.0,
                    input_tokens=values[Metric.INPUT_TOKENS] or 0.0,
                    output_tokens=values[Metric.OUTPUT_TOKENS] or 0.0,
                    cost_usd=values[Metric.COST_USD] or 0.0,
                )
            )
        out.sort(key=lambda m: (-m.requests, m.provider or "", m.model))
        return out
