"""Cheaper models of the same provider, priced with genai-prices for a given usage profile.

A candidate is a current (not deprecated) model of the same genai-prices provider with
flat or prompt-tiered token prices (input and output both above zero), a known context window
of at least twice the average prompt, and a name that does not mark another modality (audio,
image, embeddings, realtime, search, fine-tunes, ...). Its estimated cost is what the same
calls would have cost on it: genai-prices' price of the average call, times the number of calls.

Suggested: among the candidates that would cost at most half as much, a model the workspace
already uses if there is one, else any; of those the most expensive (the smallest step down).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from genai_prices import data_snapshot
from genai_prices.types import ModelInfo

from tallyql.ingest.pricing import BuiltinPrices, TokenUsage

MAX_COST_RATIO = 0.5
OTHER_MODALITIES = (
    "audio",
    "realtime",
    "transcribe",
    "tts",
    "image",
    "embed",
    "search",
    "moderation",
    "ft:",
    "computer-use",
    "deep-research",
    "whisper",
    "dall-e",
)


@dataclass(frozen=True)
class Alternative:
    provider_id: str
    model_id: str
    estimated_nano: int
    already_used: bool


def average_usage(totals: TokenUsage, calls: int) -> TokenUsage:
    def avg(value: int) -> int:
        return round(value / calls)

    return TokenUsage(
        avg(totals.input_tokens),
        avg(totals.output_tokens),
        avg(totals.cache_read_tokens),
        avg(totals.cache_write_tokens),
        avg(totals.reasoning_tokens),
    )


def _eligible(info: ModelInfo, at: datetime, min_context: int) -> bool:
    if info.deprecated or info.context_window is None or info.context_window < min_context:
        return False
    if any(marker in info.id.lower() for marker in OTHER_MODALITIES):
        return False
    price = info.get_prices(at)
    return bool(price.input_mtok) and bool(price.output_mtok)


def candidates(
    builtin: BuiltinPrices,
    provider_id: str,
    current_model_id: str,
    usage: TokenUsage,
    calls: int,
    at: datetime,
    used: set[str],
) -> list[Alternative]:
    """Every eligible model of the provider with its estimated cost for `calls` average calls."""
    provider = next(
        (p for p in data_snapshot.get_snapshot().providers if p.id == provider_id), None
    )
    if provider is None:
        return []
    out = []
    for info in provider.models:
        if info.id == current_model_id or not _eligible(info, at, 2 * usage.input_tokens):
            continue
        per_call = builtin.cost_nano(provider_id, info.id, usage, at)
        if per_call is None:
            continue
        out.append(Alternative(provider_id, info.id, per_call * calls, info.id in used))
    return out


def suggest(options: list[Alternative], current_nano: int) -> Alternative | None:
    cheap = [o for o in options if o.estimated_nano <= MAX_COST_RATIO * current_nano]
    if not cheap:
        return None
    pool = [o for o in cheap if o.already_used] or cheap
    return max(pool, key=lambda o: (o.estimated_nano, o.model_id))
