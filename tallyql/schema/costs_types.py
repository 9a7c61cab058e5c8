"""GraphQL types of the unpriced events of a window (`engine/unpriced.py`)."""

from __future__ import annotations

import strawberry

from tallyql.engine import unpriced as engine
from tallyql.schema.base.scalars import Long


@strawberry.type(description="A model whose events in the window carry no price.")
class UnpricedModel:
    provider: str | None = strawberry.field(description="The events' provider; null if absent.")
    model: str | None = strawberry.field(
        description="The model; null for events with tokens but no model."
    )
    events: Long = strawberry.field(description="Unpriced events of this model (count).")

    @classmethod
    def of(cls, row: engine.UnpricedModel) -> UnpricedModel:
        return cls(provider=row.provider, model=row.model, events=row.events)


@strawberry.type(
    description="Events of the window stored without a price (cost source UNPRICED): no "
    "cost_usd, and neither a price override nor genai-prices' bundled data prices their model "
    "by tokens (an unknown model, or one priced only per image, audio hour or character). "
    "They count as 0 USD in every cost total."
)
class UnpricedSummary:
    events: Long = strawberry.field(description="Unpriced events (count).")
    model_count: int = strawberry.field(
        description="Distinct (provider, model) pairs among them (count)."
    )
    models: list[UnpricedModel] = strawberry.field(
        description=f"The {engine.MAX_MODELS} most frequent (provider, model) pairs, most "
        "events first."
    )

    @classmethod
    def of(cls, summary: engine.Unpriced) -> UnpricedSummary:
        return cls(
            events=summary.events,
            model_count=summary.model_count,
            models=[UnpricedModel.of(m) for m in summary.models],
        )
