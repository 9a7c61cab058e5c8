"""Events stored without a price (cost source `unpriced`): how many in a window, and of which
models, so that cost views say what their totals leave out.

An event is unpriced when it carries no `cost_usd` and neither the workspace's price overrides
nor genai-prices' bundled data price its model by tokens: an unknown model, a model priced
only per image, audio hour or character (units events do not report), or tokens without a
model. Its cost counts as 0 in every total.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tallyql.engine.analytics import Asker
from tallyql.engine.query.registry import Dimension, DimensionRef, Metric

UNPRICED = "unpriced"
MAX_MODELS = 50
"""(provider, model) pairs listed (the most frequent first); `model_count` counts them all."""


@dataclass(frozen=True)
class UnpricedModel:
    provider: str | None
    model: str | None
    events: int


@dataclass(frozen=True)
class Unpriced:
    events: int = 0
    model_count: int = 0
    models: list[UnpricedModel] = field(default_factory=list)


async def unpriced(asker: Asker) -> Unpriced:
    """The unpriced events among those the asker's filter selects, by provider and model."""
    sources = asker.filter.cost_sources
    if sources and UNPRICED not in sources:
        return Unpriced()
    spec = replace(asker.filter, cost_sources=(UNPRICED,))
    dims = (DimensionRef(Dimension.PROVIDER), DimensionRef(Dimension.MODEL))
    result = await asker.run((Metric.REQUESTS,), dims, extra_filter=spec, note="unpriced events")
    models = [
        UnpricedModel(key[1], key[2], int(result.value(key, Metric.REQUESTS) or 0))
        for key in result.group_keys()
    ]
    models = [m for m in models if m.events]
    models.sort(key=lambda m: (-m.events, m.model or "", m.provider or ""))
    return Unpriced(
        events=sum(m.events for m in models),
        model_count=len(models),
        models=models[:MAX_MODELS],
    )
