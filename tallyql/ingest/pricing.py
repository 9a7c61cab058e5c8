"""Prices events at ingest with genai-prices' bundled data (never the network).

genai-prices' `calc_price` costs about 90 us a call, too slow for the ingest path, so the
common price shape (input, output, cache read and cache write per million tokens, flat or
tiered on input tokens) is evaluated here from the model's price table; any other shape goes
through `calc_price` itself. Tests check both paths agree with `calc_price` on every model.

Costs are integer nano-USD (1e-9 USD), rounded half-even once per event.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from genai_prices import Usage, data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

from tallyql.ingest.fields import TOKEN_FIELDS
from tallyql.money import to_nano
from tallyql.storage.ingest.record import (
    CACHE_READ,
    CACHE_WRITE,
    COST,
    COST_SOURCE,
    INPUT,
    MODEL,
    OUTPUT,
    PROVIDER,
    REASONING,
    TS,
)

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


Tokens = tuple[int, int, int, int, int]
"""Input (cached included), output (reasoning included), cache read, cache write, reasoning."""


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
        return self.cost_of(provider, model, astuple(usage), at)

    def cost_of(self, provider: str | None, model: str, tokens: Tokens, at: datetime) -> int | None:
        """`cost_nano` with the token counts as a tuple (the ingest path)."""
        found = self.find(provider, model)
        if found is None:
            return None
        prov, info = found
        price = info.get_prices(at)
        if _priced_only_in_unreported_units(price):
            return None
        rates = _int_rates(price)
        if rates is not None:
            return _int_cost(rates, *tokens[:4])
        usage = TokenUsage(*tokens)
        result = info.calc_price(_usage(usage), prov, genai_request_timestamp=at)
        return to_nano(result.total_price)


def _priced_only_in_unreported_units(price: ModelPrice) -> bool:
    """A model priced per image, audio hour, character or message but not per token (e.g.
    whisper-1, tts-1): events report none of those units, so its events are unpriced rather
    than a silent 0 (a price with no rate at all is a free model, 0 indeed)."""
    keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    return bool(keys) and not keys & _TOKEN_PRICE_KEYS


_SCALE = 10**9
"""Integer rates are USD per million tokens times this: nano-USD per token times 10**6."""
IntRate = int | tuple[int, tuple[tuple[int, int], ...]] | None
"""A flat scaled rate, a scaled base with (start, scaled rate) tiers on input tokens, or none."""
_RATES_CACHE: dict[int, tuple[ModelPrice, tuple[IntRate, IntRate, IntRate, IntRate]] | None] = {}


def _scaled(rate: Decimal) -> int | None:
    scaled = rate * _SCALE
    return int(scaled) if scaled == scaled.to_integral_value() else None


def _int_rate(rate: Rate) -> IntRate | Literal[False]:
    """A rate in scaled integers; False when one of its prices has more decimals than that."""
    if rate is None:
        return None
    if isinstance(rate, Decimal):
        flat = _scaled(rate)
        return False if flat is None else flat
    base = _scaled(rate.base)
    tiers: list[tuple[int, int]] = []
    for tier in rate.tiers:
        scaled = _scaled(tier.price)
        if scaled is None:
            return False
        tiers.append((tier.start, scaled))
    if base is None:
        return False
    return base, tuple(tiers)


def _int_rates(price: ModelPrice) -> tuple[IntRate, IntRate, IntRate, IntRate] | None:
    """The four token rates of a price in scaled integers, or None when the price needs
    `calc_price` (other usage kinds, or rates finer than a billionth of a dollar)."""
    hit = _RATES_CACHE.get(id(price), False)
    if isinstance(hit, tuple) and hit[0] is price:
        return hit[1]
    if hit is None:
        return None
    keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    scaled: list[IntRate] = []
    for rate in (
        price.input_mtok,
        price.output_mtok,
        price.cache_read_mtok,
        price.cache_write_mtok,
    ):
        found = _int_rate(rate)
        if found is False:  # `is`, not ==: a free rate is 0 == False
            break
        scaled.append(found)
    if not keys <= (_TOKEN_PRICE_KEYS | _UNREPORTED_PRICE_KEYS) or len(scaled) < 4:
        _RATES_CACHE[id(price)] = None
        return None
    rates = (scaled[0], scaled[1], scaled[2], scaled[3])
    _RATES_CACHE[id(price)] = (price, rates)
    return rates


def _int_rate_at(rate: IntRate, input_tokens: int) -> int | None:
    """The rate that applies to a call with `input_tokens` (tiers start above their start)."""
    if rate is None or isinstance(rate, int):
        return rate
    base, tiers = rate
    for start, price in reversed(tiers):
        if input_tokens > start:
            return price
    return base


def _int_cost(
    rates: tuple[IntRate, IntRate, IntRate, IntRate],
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
    cache_write: int,
) -> int:
    """Nano-USD, rounded half-even once: cached tokens at their own rate when the model has
    one (else as plain input), reasoning tokens as output."""
    r_in = _int_rate_at(rates[0], input_tokens) or 0
    r_out = _int_rate_at(rates[1], input_tokens) or 0
    r_cr = _int_rate_at(rates[2], input_tokens)
    r_cw = _int_rate_at(rates[3], input_tokens)
    uncached = input_tokens
    scaled = r_out * output_tokens
    if r_cr is not None:
        uncached -= cache_read
        scaled += r_cr * cache_read
    if r_cw is not None:
        uncached -= cache_write
        scaled += r_cw * cache_write
    scaled += r_in * uncached
    nano, rest = divmod(scaled, _SCALE // 1000)
    twice = 2 * rest
    if twice > _SCALE // 1000 or (twice == _SCALE // 1000 and nano % 2):
        nano += 1
    return nano


def _usage(usage: TokenUsage) -> Usage:
    values = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
    }
    return Usage(**{k: v for k, v in values.items() if v})


class OwnPrices(Protocol):
    """Workspaces' own prices (`tallyql.costs.book.PriceBook`; costs sit above ingest, so
    ingest names only what it calls)."""

    def cost_of(
        self, workspace_id: int, provider: str | None, model: str, tokens: Tokens, at: datetime
    ) -> int | None:
        """Nano-USD under the workspace's matching price, or None when none matches."""
        ...


class Pricer:
    """Sets an event's cost: the caller's own cost wins, else the model's price, else unpriced.

    `overrides` (a workspace's own prices) are consulted before genai-prices when present."""

    def __init__(
        self, builtin: BuiltinPrices | None = None, overrides: OwnPrices | None = None
    ) -> None:
        self.builtin = builtin or BuiltinPrices()
        self.overrides = overrides

    def cost(self, workspace_id: int, row: dict[str, Any]) -> int | None:
        """Nano-USD for an event's tokens, or None when its model has no known price."""
        tokens: Tokens = tuple(row[c] for c in TOKEN_FIELDS)
        return self.cost_of(workspace_id, row["provider"], row["model"], tokens, row["ts"])

    def cost_of(
        self, workspace_id: int, provider: str | None, model: str, tokens: Tokens, at: datetime
    ) -> int | None:
        """`cost` with the event's values given apart."""
        if self.overrides is not None:
            own = self.overrides.cost_of(workspace_id, provider, model, tokens, at)
            if own is not None:
                return own
        return self.builtin.cost_of(provider, model, tokens, at)

    def apply(self, workspace_id: int, record: list[Any], cost_usd: float | None) -> None:
        """Set an event record's cost and its source."""
        if cost_usd is not None:
            record[COST] = to_nano(cost_usd)
            record[COST_SOURCE] = "provided"
            return
        model = record[MODEL]
        if model is None:
            has_tokens = record[INPUT] or record[OUTPUT]
            record[COST] = 0
            record[COST_SOURCE] = "unpriced" if has_tokens else "computed"
            return
        tokens = (
            record[INPUT],
            record[OUTPUT],
            record[CACHE_READ],
            record[CACHE_WRITE],
            record[REASONING],
        )
        nano = self.cost_of(workspace_id, record[PROVIDER], model, tokens, record[TS])
        record[COST] = nano or 0
        record[COST_SOURCE] = "unpriced" if nano is None else "computed"
