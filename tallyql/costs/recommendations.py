"""Recommendations computed from a window's figures, each with the numbers behind it.

- CHEAPER_MODEL: a model called at least MIN_CALLS times with short outputs on average (at
  most SHORT_OUTPUT_TOKENS) when a model of the same provider would have cost at most half
  (`alternatives.py`); the saving is the cost paid minus the alternative's estimate.
- PROMPT_CACHING: a model called at least MIN_CALLS times with long prompts (at least
  LONG_PROMPT_TOKENS on average) of which under LOW_CACHE_SHARE were cache reads, when its
  price has a cheaper cache-read rate; the saving assumes TARGET_CACHE_SHARE of input tokens
  read from cache at that rate.
- FAILED_CALLS: money spent on calls that failed; the saving is that money.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from tallyql.costs.alternatives import average_usage, candidates, suggest
from tallyql.costs.book import PriceBook
from tallyql.costs.prices import PriceSource, current_price
from tallyql.engine.analytics import Asker
from tallyql.engine.registry import Dimension, DimensionRef, Metric
from tallyql.ingest.pricing import BuiltinPrices, TokenUsage
from tallyql.money import round_to_nano, to_usd

MIN_CALLS = 20
SHORT_OUTPUT_TOKENS = 300
LONG_PROMPT_TOKENS = 1024
LOW_CACHE_SHARE = 0.1
TARGET_CACHE_SHARE = 0.5

MODEL_METRICS = (
    Metric.REQUESTS,
    Metric.INPUT_TOKENS,
    Metric.OUTPUT_TOKENS,
    Metric.CACHE_READ_TOKENS,
    Metric.CACHE_WRITE_TOKENS,
    Metric.REASONING_TOKENS,
    Metric.COST_USD,
)


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str  # USD | TOKENS | CALLS | RATIO | USD_PER_MTOK


@dataclass
class Recommendation:
    kind: str
    title: str
    estimated_saving_usd: float
    provider: str | None = None
    model: str | None = None
    suggested_model: str | None = None
    figures: list[Figure] = field(default_factory=list)


@dataclass
class ModelUsage:
    provider: str | None
    model: str
    calls: int
    tokens: TokenUsage
    cost_usd: float


async def model_usage(asker: Asker) -> list[ModelUsage]:
    dims = (DimensionRef(Dimension.PROVIDER), DimensionRef(Dimension.MODEL))
    result = await asker.run(MODEL_METRICS, dims)
    out = []
    for key in result.group_keys():
        if key[2] is None:
            continue
        v = {m: int(result.values[key][m] or 0) for m in MODEL_METRICS if m is not Metric.COST_USD}
        out.append(
            ModelUsage(
                provider=key[1],
                model=key[2],
                calls=v[Metric.REQUESTS],
                tokens=TokenUsage(
                    v[Metric.INPUT_TOKENS],
                    v[Metric.OUTPUT_TOKENS],
                    v[Metric.CACHE_READ_TOKENS],
                    v[Metric.CACHE_WRITE_TOKENS],
                    v[Metric.REASONING_TOKENS],
                ),
                cost_usd=result.values[key][Metric.COST_USD] or 0.0,
            )
        )
    out.sort(key=lambda u: (-u.cost_usd, u.provider or "", u.model))
    return out


def cheaper_model(
    usage: ModelUsage, everything: list[ModelUsage], builtin: BuiltinPrices, at: datetime
) -> Recommendation | None:
    if usage.calls < MIN_CALLS or usage.cost_usd <= 0:
        return None
    avg = average_usage(usage.tokens, usage.calls)
    if avg.output_tokens > SHORT_OUTPUT_TOKENS:
        return None
    found = builtin.find(usage.provider, usage.model)
    if found is None:
        return None
    provider_id, model_id = found[0].id, found[1].id
    used = set()
    for other in everything:
        match = builtin.find(other.provider, other.model)
        if match is not None and match[0].id == provider_id:
            used.add(match[1].id)
    paid = round_to_nano(usage.cost_usd)
    options = candidates(builtin, provider_id, model_id, avg, usage.calls, at, used)
    choice = suggest(options, paid)
    if choice is None:
        return None
    estimate = to_usd(choice.estimated_nano)
    return Recommendation(
        kind="CHEAPER_MODEL",
        title=f"{usage.model} mostly writes short answers; {choice.model_id} would cost "
        f"{estimate / usage.cost_usd:.0%} as much",
        estimated_saving_usd=usage.cost_usd - estimate,
        provider=usage.provider,
        model=usage.model,
        suggested_model=choice.model_id,
        figures=[
            Figure("calls", usage.calls, "CALLS"),
            Figure("avgInputTokens", usage.tokens.input_tokens / usage.calls, "TOKENS"),
            Figure("avgOutputTokens", usage.tokens.output_tokens / usage.calls, "TOKENS"),
            Figure("costUsd", usage.cost_usd, "USD"),
            Figure("estimatedCostUsd", estimate, "USD"),
            Figure("alreadyUsed", 1.0 if choice.already_used else 0.0, "RATIO"),
        ],
    )


def prompt_caching(
    usage: ModelUsage,
    book: PriceBook,
    builtin: BuiltinPrices,
    workspace_id: int | None,
    at: datetime,
) -> Recommendation | None:
    t = usage.tokens
    if usage.calls < MIN_CALLS or t.input_tokens < LONG_PROMPT_TOKENS * usage.calls:
        return None
    share = t.cache_read_tokens / t.input_tokens
    if share >= LOW_CACHE_SHARE:
        return None
    price = current_price(book, builtin, workspace_id or -1, usage.provider, usage.model, at)
    if price.source is PriceSource.UNPRICED or price.input_mtok is None:
        return None
    if price.cache_read_mtok is None or price.cache_read_mtok >= price.input_mtok:
        return None
    extra = Decimal(TARGET_CACHE_SHARE * t.input_tokens - t.cache_read_tokens)
    saving = float(extra * (price.input_mtok - price.cache_read_mtok) / Decimal(1_000_000))
    return Recommendation(
        kind="PROMPT_CACHING",
        title=f"{usage.model} sends long prompts but reads {share:.0%} of them from cache",
        estimated_saving_usd=saving,
        provider=usage.provider,
        model=usage.model,
        figures=[
            Figure("calls", usage.calls, "CALLS"),
            Figure("avgInputTokens", t.input_tokens / usage.calls, "TOKENS"),
            Figure("cacheReadShare", share, "RATIO"),
            Figure("targetCacheReadShare", TARGET_CACHE_SHARE, "RATIO"),
            Figure("inputPerMtok", float(price.input_mtok), "USD_PER_MTOK"),
            Figure("cacheReadPerMtok", float(price.cache_read_mtok), "USD_PER_MTOK"),
        ],
    )


async def failed_calls(asker: Asker, total_usd: float) -> Recommendation | None:
    if asker.filter.statuses and "error" not in asker.filter.statuses:
        return None
    only_errors = replace(asker.filter, statuses=("error",))
    result = await asker.run(
        (Metric.COST_USD, Metric.REQUESTS),
        (DimensionRef(Dimension.ERROR_TYPE),),
        extra_filter=only_errors,
    )
    rows = [
        (k[1], result.values[k][Metric.COST_USD] or 0.0, result.values[k][Metric.REQUESTS] or 0.0)
        for k in result.group_keys()
    ]
    cost = sum(r[1] for r in rows)
    if cost <= 0:
        return None
    calls = sum(r[2] for r in rows)
    top = max(rows, key=lambda r: (r[1], r[0] or ""))
    return Recommendation(
        kind="FAILED_CALLS",
        title=f"${cost:,.2f} went to {calls:,.0f} calls that failed, most of it on {top[0]}",
        estimated_saving_usd=cost,
        figures=[
            Figure("failedCalls", calls, "CALLS"),
            Figure("failedCostUsd", cost, "USD"),
            Figure("shareOfCost", cost / total_usd if total_usd else None, "RATIO"),
            Figure("topErrorTypeCostUsd", top[1], "USD"),
        ],
    )


async def recommendations(
    asker: Asker,
    book: PriceBook,
    builtin: BuiltinPrices,
    workspace_id: int | None,
    total_usd: float,
    at: datetime,
) -> list[Recommendation]:
    usages = await model_usage(asker)
    out: list[Recommendation] = []
    for usage in usages:
        for found in (
            cheaper_model(usage, usages, builtin, at),
            prompt_caching(usage, book, builtin, workspace_id, at),
        ):
            if found is not None and found.estimated_saving_usd > 0:
                out.append(found)
    failed = await failed_calls(asker, total_usd)
    if failed is not None:
        out.append(failed)
    out.sort(key=lambda r: (-r.estimated_saving_usd, r.kind, r.model or ""))
    return out
