"""What a model costs now for a workspace: its override, else genai-prices, else unpriced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

from genai_prices.types import TieredPrices

from tallyql.costs.book import PriceBook
from tallyql.costs.overrides import decimal_rate
from tallyql.ingest.pricing import BuiltinPrices, Rate


class PriceSource(Enum):
    OVERRIDE = "override"
    BUILTIN = "builtin"
    UNPRICED = "unpriced"


@dataclass(frozen=True)
class ModelPriceInfo:
    """Per-million-token USD rates; tiered built-in rates show their base tier."""

    source: PriceSource
    input_mtok: Decimal | None = None
    output_mtok: Decimal | None = None
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    reasoning_mtok: Decimal | None = None
    tiered: bool = False
    override_id: str | None = None
    builtin_provider: str | None = None
    builtin_model: str | None = None
    context_window: int | None = None


def base_rate(rate: Rate) -> Decimal | None:
    if isinstance(rate, TieredPrices):
        return rate.base
    return rate


def _or(value: Decimal | None, fallback: Decimal | None) -> Decimal | None:
    return fallback if value is None else value


def _is_tiered(*rates: Rate) -> bool:
    return any(isinstance(r, TieredPrices) for r in rates)


def current_price(
    book: PriceBook,
    builtin: BuiltinPrices,
    workspace_id: int,
    provider: str | None,
    model: str,
    at: datetime,
) -> ModelPriceInfo:
    found = builtin.find(provider, model)
    context_window = found[1].context_window if found else None
    builtin_ids = (found[0].id, found[1].id) if found else (None, None)
    override = book.find(workspace_id, provider, model, at)
    if override is not None:
        r_in = decimal_rate(override.input_mtok)
        r_out = decimal_rate(override.output_mtok)
        return ModelPriceInfo(
            source=PriceSource.OVERRIDE,
            input_mtok=r_in,
            output_mtok=r_out,
            cache_read_mtok=_or(decimal_rate(override.cache_read_mtok), r_in),
            cache_write_mtok=_or(decimal_rate(override.cache_write_mtok), r_in),
            reasoning_mtok=_or(decimal_rate(override.reasoning_mtok), r_out),
            override_id=override.id,
            builtin_provider=builtin_ids[0],
            builtin_model=builtin_ids[1],
            context_window=context_window,
        )
    quote = builtin.quote(provider, model, at)
    if quote is None:
        return ModelPriceInfo(source=PriceSource.UNPRICED)
    return ModelPriceInfo(
        source=PriceSource.BUILTIN,
        input_mtok=base_rate(quote.input_mtok),
        output_mtok=base_rate(quote.output_mtok),
        cache_read_mtok=base_rate(quote.cache_read_mtok),
        cache_write_mtok=base_rate(quote.cache_write_mtok),
        reasoning_mtok=base_rate(quote.output_mtok),
        tiered=_is_tiered(
            quote.input_mtok, quote.output_mtok, quote.cache_read_mtok, quote.cache_write_mtok
        ),
        builtin_provider=quote.provider_id,
        builtin_model=quote.model_id,
        context_window=quote.context_window,
    )
