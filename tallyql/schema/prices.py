"""Prices: `priceOverrides`, `models` (every model seen, with its current price)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, TypeAlias

import strawberry

from tallyql.auth.principal import Permission
from tallyql.clock import clock
from tallyql.costs.overrides import PriceOverride as Override
from tallyql.costs.prices import ModelPriceInfo, current_price
from tallyql.costs.prices import PriceSource as EnginePriceSource
from tallyql.costs.store import list_overrides
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric
from tallyql.engine.query.timerange import Preset
from tallyql.schema.base.common import TimeRangeInput
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.described import describe_values
from tallyql.schema.base.scalars import Long, as_count

PriceSource: TypeAlias = EnginePriceSource  # strawberry.enum below marks the class in place
strawberry.enum(
    PriceSource,
    name="PriceSource",
    description="Where a model's price comes from: the workspace's override, genai-prices, "
    "or nowhere.",
)
describe_values(
    PriceSource,
    {
        "OVERRIDE": "The workspace's price override.",
        "BUILTIN": "genai-prices' bundled data.",
        "UNPRICED": "No price is known: events are stored with cost 0 and costSource UNPRICED.",
    },
)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@strawberry.type(description="A workspace's own price for a model; wins over genai-prices.")
class PriceOverride:
    id: strawberry.ID = strawberry.field(description="The override's id.")
    provider: str | None = strawberry.field(description="null: any provider.")
    model: str = strawberry.field(description="Exact model name, or a regex (modelIsRegex).")
    model_is_regex: bool = strawberry.field(
        description="`model` is a regular expression matched against the whole name."
    )
    effective_from: datetime | None = strawberry.field(description="Inclusive; null: always.")
    effective_until: datetime | None = strawberry.field(description="Exclusive; null: open.")
    input_per_mtok: float = strawberry.field(description="USD per million input tokens.")
    output_per_mtok: float = strawberry.field(description="USD per million output tokens.")
    cache_read_per_mtok: float | None = strawberry.field(
        description="USD per million input tokens read from cache; null: the input rate."
    )
    cache_write_per_mtok: float | None = strawberry.field(
        description="USD per million input tokens written to cache; null: the input rate."
    )
    reasoning_per_mtok: float | None = strawberry.field(
        description="USD per million reasoning tokens; null: the output rate."
    )
    description: str | None = strawberry.field(description="A note for people.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it was last changed.")

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
    source: PriceSource = strawberry.field(description="Where the price comes from.")
    input_per_mtok: float | None = strawberry.field(
        description="USD per million input tokens. Null when unknown."
    )
    output_per_mtok: float | None = strawberry.field(
        description="USD per million output tokens. Null when unknown."
    )
    cache_read_per_mtok: float | None = strawberry.field(
        description="USD per million input tokens read from cache. Null when unknown."
    )
    cache_write_per_mtok: float | None = strawberry.field(
        description="USD per million input tokens written to cache. Null when unknown."
    )
    reasoning_per_mtok: float | None = strawberry.field(
        description="USD per million reasoning tokens. Null when unknown."
    )
    tiered: bool = strawberry.field(
        description="The built-in price rises with prompt size; the rates shown are the base tier."
    )
    override_id: strawberry.ID | None = strawberry.field(
        description="The override that sets it, for OVERRIDE."
    )

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
    provider: str | None = strawberry.field(description="The model's provider.")
    model: str = strawberry.field(description="The model's name.")
    price: ModelPrice = strawberry.field(description="Its current price.")
    context_window: int | None = strawberry.field(description="Tokens, where genai-prices knows.")
    genai_prices_id: str | None = strawberry.field(
        description="The genai-prices model this name matched."
    )
    requests: Long = strawberry.field(description="Events with this model in the range (count).")
    input_tokens: Long = strawberry.field(description="Their input tokens.")
    output_tokens: Long = strawberry.field(description="Their output tokens.")
    cost_usd: float = strawberry.field(description="Their cost in USD.")


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
    async def models(
        self,
        info: TallyInfo,
        range: Annotated[
            TimeRangeInput | None,
            strawberry.argument(
                description="The window whose usage is shown; null: the last 90 days."
            ),
        ] = None,
    ) -> list[Model]:
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
                    requests=as_count(values[Metric.REQUESTS] or 0.0),
                    input_tokens=as_count(values[Metric.INPUT_TOKENS] or 0.0),
                    output_tokens=as_count(values[Metric.OUTPUT_TOKENS] or 0.0),
                    cost_usd=values[Metric.COST_USD] or 0.0,
                )
            )
        out.sort(key=lambda m: (-m.requests, m.provider or "", m.model))
        return out
