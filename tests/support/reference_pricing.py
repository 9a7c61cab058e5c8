"""The cost oracle: what genai-prices' public `calc_price` charges for a usage, in nano-USD.

Independent of tallyql's pricer (tallyql/ingest/pricing.py), which reads the price tables
directly for speed: here the usage is built from the token counts and handed to the library's
own top-level entry point, and the dollar amount is turned into nano-USD by the documented
rule (a billionth of a dollar, halves to even).
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from genai_prices import Usage, calc_price

from tallyql.ingest.pricing import TokenUsage


class Tokens(Protocol):
    """An event's token counts (tallyql's TokenUsage is one; it only carries them)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...


def nano_of(usd: Decimal) -> int:
    return int((usd * 1_000_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def reference_cost_nano(provider: str | None, model: str, tokens: Tokens, at: datetime) -> int:
    """genai-prices' own answer for these tokens of `model` at `at`."""
    usage = Usage(
        input_tokens=tokens.input_tokens or None,
        output_tokens=tokens.output_tokens or None,
        cache_read_tokens=tokens.cache_read_tokens or None,
        cache_write_tokens=tokens.cache_write_tokens or None,
        output_reasoning_tokens=tokens.reasoning_tokens or None,
    )
    result = calc_price(usage, model, provider_id=provider, genai_request_timestamp=at)
    return nano_of(result.total_price)


def reference_or_none(provider: str, model: str, usage: TokenUsage, at: datetime) -> int | None:
    """calc_price under the provider, else under any provider (as the pricer falls back)."""
    for provider_id in (provider, None):
        try:
            return reference_cost_nano(provider_id, model, usage, at)
        except LookupError:
            continue
    return None
