"""Prices events at ingest with genai-prices' bundled data (never the network).

genai-prices' `calc_price` costs about 90 us a call, too slow for the ingest path, so the
common price shape (input, output, cache read and cache write per million tokens, flat or
tiered on input tokens) is evaluated here from the model's price table; any other shape goes
through `calc_price` itself. Tests check both paths agree with `calc_price` on every model.

Costs are integer nano-USD (1e-9 USD), rounded half-even once per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

if TYPE_CHECKING:
    from tallyql.costs.book import PriceBook

NANO_PER_USD = 1_000_000_000
_NANO_PER_MTOK_USD = Decimal(1000)  # usd/MTok * count * 1000 = nano-USD
_TOKEN_PRICE_KEYS = frozenset({"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"})
# Price keys for usage kinds that events never report, so they cost nothing here.
_UNREPORTED_PRICE_KEYS = frozenset(
    {
        "web_searches_kcount",
        "storage_searches_kcount",
        "audio_hours",
        "input_audio_hours",
        "input_document_kpages",
        "input_annotated_document_kpages",
        "input_mchars",
        "input_text_messages_kcount",
        "input_audio_mtok",
        "output_audio_mtok",
        "input_image_mtok",
        "output_image_mtok",
        "input_video_mtok",
        "output_video_mtok",
        "cache_audio_read_mtok",
        "cache_image_read_mtok",
        "cache_write_1h_mtok",
    }
)

Rate = Decimal | TieredPrices | None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """How a model is priced: the per-million-token rates (USD) where they are flat."""

    provider_id: str
    model_id: str
    model_name: str | None
    context_window: int | None
    input_mtok: Rate
    output_mtok: Rate
    cache_read_mtok: Rate
    cache_write_mtok: Rate
    simple: bool


def _rate_at(rate: Rate, input_tokens: int) -> Decimal | None:
    if rate is None or isinstance(rate, Decimal):
        return rate
    applicable = rate.base
    for tier in reversed(rate.tiers):
        if input_tokens > tier.start:
            applicable = tier.price
            break
    return applicable


def to_nano(usd: Decimal | float) -> int:
    value = usd if isinstance(usd, Decimal) else Decimal(repr(float(usd)))
    return int((value * NANO_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


class BuiltinPrices:
    """Lookups into genai-prices' bundled snapshot, cached per provider and model."""

    def __init__(self) -> None:
        self._snapshot = data_snapshot.get_snapshot()
        self._models: dict[tuple[str | None, str], tuple[Provider, ModelInfo] | None] = {}

    def find(self, provider: str | None, model: str) -> tuple[Provider, ModelInfo] | None:
        key = (provider.lower() if provider else None, model)
        if key in self._models:
            return self._models[key]
        found: tuple[Provider, ModelInfo] | None = None
        for provider_id in (key[0], None) if key[0] else (None,):
            try:
                found = self._snapshot.find_provider_model(model, None, provider_id, None)
                break
            except LookupError:
                continue
        if len(self._models) < 100_000:
            self._models[key] = found
        return found

    def quote(self, provider: str | None, model: str, at: datetime) -> PriceQuote | None:
        found = self.find(provider, model)
        if found is None:
            return None
        prov, info = found
        price = info.get_prices(at)
        keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
        simple = keys <= (_TOKEN_PRICE_KEYS | _UNREPORTED_PRICE_KEYS)
        return PriceQuote(
            provider_id=prov.id,
            model_id=info.id,
            model_name=info.name,
            context_window=info.context_window,
            input_mtok=price.input_mtok,
            output_mtok=price.output_mtok,
            cache_read_mtok=price.cache_read_mtok,
            cache_write_mtok=price.cache_write_mtok,
            simple=simple,
        )

    def cost_nano(
        self, provider: str | None, model: str, usage: TokenUsage, at: datetime
    ) -> int | None:
        """Cost in nano-USD, or None when genai-prices does not know the model."""
        found = self.find(provider, model)
        if found is None:
            return None
        prov, info = found
        price = info.get_prices(at)
        cached = _fast_rates(price)
        if cached is not None:
            return _linear_cost(cached, usage)
        result = info.calc_price(_usage(usage), prov, genai_request_timestamp=at)
        return to_nano(result.total_price)


_RATES_CACHE: dict[int, tuple[ModelPrice, tuple[Rate, Rate, Rate, Rate]] | None] = {}


def _fast_rates(price: ModelPrice) -> tuple[Rate, Rate, Rate, Rate] | None:
    """The four token rates of a price, or None when the price needs `calc_price`."""
    hit = _RATES_CACHE.get(id(price), False)
    if hit is not False and hit is not None and hit[0] is price:
        return hit[1]
    if hit is None:
        return None
    keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    if not keys <= (_TOKEN_PRICE_KEYS | _UNREPORTED_PRICE_KEYS):
        _RATES_CACHE[id(price)] = None
        return None
    rates = (price.input_mtok, price.output_mtok, price.cache_read_mtok, price.cache_write_mtok)
    _RATES_CACHE[id(price)] = (price, rates)
    return rates


def _linear_cost(rates: tuple[Rate, Rate, Rate, Rate], usage: TokenUsage) -> int:
    total_in = usage.input_tokens
    r_in = _rate_at(rates[0], total_in) or Decimal(0)
    r_out = _rate_at(rates[1], total_in) or Decimal(0)
    r_cr = _rate_at(rates[2], total_in)
    r_cw = _rate_at(rates[3], total_in)
    cr, cw = usage.cache_read_tokens, usage.cache_write_tokens
    uncached = total_in - (cr if r_cr is not None else 0) - (cw if r_cw is not None else 0)
    usd_mtok = r_in * uncached + r_out * usage.output_tokens
    if r_cr is not None:
        usd_mtok += r_cr * cr
    if r_cw is not None:
        usd_mtok += r_cw * cw
    nano = usd_mtok * _NANO_PER_MTOK_USD
    return int(nano.to_integral_value(rounding=ROUND_HALF_EVEN))


def _usage(usage: TokenUsage) -> Usage:
    values = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
    }
    return Usage(**{k: v for k, v in values.items() if v})


def reference_cost_nano(provider: str | None, model: str, usage: TokenUsage, at: datetime) -> int:
    """genai-prices' own answer, for tests: `calc_price` with the same usage."""
    result = calc_price(_usage(usage), model, provider_id=provider, genai_request_timestamp=at)
    return to_nano(result.total_price)


class Pricer:
    """Sets an event's cost: the caller's own cost wins, else the model's price, else unpriced.

    `overrides` (a workspace's own prices, `tallyql.costs.book.PriceBook`) are consulted
    before genai-prices when present."""

    def __init__(
        self, builtin: BuiltinPrices | None = None, overrides: PriceBook | None = None
    ) -> None:
        self.builtin = builtin or BuiltinPrices()
        self.overrides = overrides

    def cost(self, workspace_id: int, row: dict[str, Any]) -> int | None:
        """Nano-USD for an event's tokens, or None when its model has no known price."""
        if self.overrides is not None:
            override = self.overrides.find(workspace_id, row["provider"], row["model"], row["ts"])
            if override is not None:
                return override.cost_nano(
                    row["input_tokens"],
                    row["output_tokens"],
                    row["cache_read_tokens"],
                    row["cache_write_tokens"],
                    row["reasoning_tokens"],
                )
        usage = TokenUsage(
            row["input_tokens"],
            row["output_tokens"],
            row["cache_read_tokens"],
            row["cache_write_tokens"],
            row["reasoning_tokens"],
        )
        return self.builtin.cost_nano(row["provider"], row["model"], usage, row["ts"])

    def apply(self, workspace_id: int, row: dict[str, Any], cost_usd: float | None) -> None:
        if cost_usd is not None:
            row["cost_nanousd"] = to_nano(cost_usd)
            row["cost_source"] = "provided"
            return
        if row["model"] is None:
            has_tokens = row["input_tokens"] or row["output_tokens"]
            row["cost_nanousd"] = 0
            row["cost_source"] = "unpriced" if has_tokens else "computed"
            return
        nano = self.cost(workspace_id, row)
        row["cost_nanousd"] = nano or 0
        row["cost_source"] = "unpriced" if nano is None else "computed"
