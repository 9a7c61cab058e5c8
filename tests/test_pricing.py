"""Costs at ingest equal genai-prices' own `calc_price`; provided costs win; unknown models
are unpriced, never a silent zero."""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import ModelPrice

from tallyql.ingest.pricing import BuiltinPrices, TokenUsage, _int_cost, _int_rates
from tallyql.money import NANO_PER_USD
from tests.conftest import Api
from tests.support.helpers import event_rows, llm, workspace_id_of
from tests.support.reference_pricing import reference_cost_nano, reference_or_none

TOKEN_RATES = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"}


def _unreported_units_only(price: ModelPrice) -> bool:
    """A price with rates, none of them per token."""
    rates = {k for k, v in vars(price).items() if v is not None and not k.startswith("_")}
    return bool(rates) and not rates & TOKEN_RATES


def test_builtin_prices_match_calc_price_for_every_model() -> None:
    builtin = BuiltinPrices()
    rng = random.Random(2026)
    snapshot = data_snapshot.get_snapshot()
    compared = unknown = unreported = 0
    at_choices = [datetime(2025, 3, 1, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for provider in snapshot.providers:
            for model in provider.models:
                for _ in range(3):
                    inp = rng.choice([0, 1, 999, 12_345, 150_000, 250_000, 2_000_000])
                    cr = rng.randint(0, inp // 2)
                    cw = rng.randint(0, (inp - cr) // 2)
                    out = rng.choice([0, 7, 1_500, 40_000])
                    usage = TokenUsage(inp, out, cr, cw, rng.randint(0, out))
                    at = rng.choice(at_choices)
                    want = reference_or_none(provider.id, model.id, usage, at)
                    if want is not None and _unreported_units_only(model.get_prices(at)):
                        want = None  # per image, audio hour or character: unpriced, not 0
                        unreported += 1
                    got = builtin.cost_nano(provider.id, model.id, usage, at)
                    assert got == want, (provider.id, model.id, usage, at, got, want)
                    if want is None:
                        unknown += 1
                    else:
                        compared += 1
    # nearly every model is found by its own id; the comparison is not vacuous
    assert compared > 1000
    assert unknown < compared // 10
    assert unreported > 10  # whisper-1, tts-1 and the like are in the data


# provider, model, input, output, cache read, cache write, reasoning
PRICED: list[tuple[str, str, int, int, int, int, int]] = [
    ("openai", "gpt-4o", 1_000, 100, 0, 0, 0),
    ("openai", "gpt-4o", 12_000, 800, 8_000, 0, 0),
    ("openai", "gpt-4o-mini", 5_000, 2_000, 4_096, 0, 0),
    ("openai", "o3", 3_000, 9_000, 1_024, 0, 7_500),
    ("anthropic", "claude-sonnet-4-5", 20_000, 1_200, 15_000, 3_000, 400),
    ("anthropic", "claude-sonnet-4-5", 250_000, 1_000, 100_000, 20_000, 0),  # long-context tier
    ("anthropic", "claude-3-5-haiku-latest", 4_000, 300, 2_000, 1_000, 0),
    ("google", "gemini-2.5-pro", 300_000, 5_000, 120_000, 0, 3_000),  # tiered
    ("google", "gemini-2.5-flash", 8_000, 600, 0, 0, 250),
    ("deepseek", "deepseek-reasoner", 2_000, 6_000, 1_000, 0, 5_000),
    ("mistral", "mistral-large-latest", 3_333, 777, 0, 0, 0),
]


async def test_ingested_costs_equal_calc_price(api: Api) -> None:
    key = await api.key()
    events = []
    for n, (provider, model, inp, out, cr, cw, rs) in enumerate(PRICED):
        events.append(
            llm(
                f"p{n}",
                provider=provider,
                model=model,
                input_tokens=inp,
                output_tokens=out,
                cache_read_tokens=cr,
                cache_write_tokens=cw,
                reasoning_tokens=rs,
            )
        )
    result = await api.ingest(key, events)
    assert result["accepted"] == len(PRICED), result
    ws = await workspace_id_of(api.services, key)
    rows = {r["id"]: r for r in await event_rows(api.services, ws)}
    query = "query($id: ID!) { request(id: $id) { costUsd costSource } }"
    for n, (provider, model, inp, out, cr, cw, rs) in enumerate(PRICED):
        row = rows[f"p{n}"]
        want = reference_cost_nano(provider, model, TokenUsage(inp, out, cr, cw, rs), row["ts"])
        assert want > 0
        assert row["cost_nanousd"] == want, (provider, model, row["cost_nanousd"], want)
        assert row["cost_source"] == "computed"
        node = (await api.data(key, query, {"id": f"p{n}"}))["request"]
        assert node == {"costUsd": want / NANO_PER_USD, "costSource": "COMPUTED"}


async def test_exclusive_tokens_are_priced_after_conversion(api: Api) -> None:
    key = await api.key()
    await api.ingest(
        key,
        [
            llm(
                "x",
                provider="anthropic",
                model="claude-sonnet-4-5",
                token_accounting="exclusive",
                input_tokens=500,
                cache_read_tokens=40_000,
                cache_write_tokens=2_000,
                output_tokens=700,
                reasoning_tokens=300,
            )
        ],
    )
    row = (await event_rows(api.services))[0]
    usage = TokenUsage(42_500, 1_000, 40_000, 2_000, 300)
    assert row["cost_nanousd"] == reference_cost_nano(
        "anthropic", "claude-sonnet-4-5", usage, row["ts"]
    )


async def test_provided_unpriced_and_free_costs(api: Api) -> None:
    key = await api.key()
    result = await api.ingest(
        key,
        [
            llm("given", cost_usd=0.0123456789, input_tokens=10**6),
            llm("given-zero", cost_usd=0, model="gpt-4o"),
            llm("given-unknown", cost_usd=1.5, model="house-model-7"),
            llm("unknown", provider="acme", model="house-model-7", input_tokens=5_000),
            llm(
                "unknown-zero",
                provider="acme",
                model="house-model-7",
                input_tokens=0,
                output_tokens=0,
            ),
            {"id": "tool", "kind": "tool_call", "tool": "search", "mcp_server": "web"},
            {"id": "tokens-no-model", "input_tokens": 50, "output_tokens": 5},
        ],
    )
    assert result["accepted"] == 7, result
    rows = {r["id"]: r for r in await event_rows(api.services)}

    def cost(event_id: str) -> tuple[Any, Any]:
        return rows[event_id]["cost_nanousd"], rows[event_id]["cost_source"]

    assert cost("given") == (12_345_679, "provided")  # rounded half-even to nano-USD
    assert cost("given-zero") == (0, "provided")
    assert cost("given-unknown") == (1_500_000_000, "provided")
    assert cost("unknown") == (0, "unpriced")
    assert cost("unknown-zero") == (0, "unpriced")  # an unknown model is never "computed"
    assert cost("tool") == (0, "computed")  # no model, no tokens: free
    assert cost("tokens-no-model") == (0, "unpriced")
    data = await api.data(
        key, "{ requests(filter: {costSources: [UNPRICED]}) { totalCount nodes { id } } }"
    )
    assert sorted(n["id"] for n in data["requests"]["nodes"]) == [
        "tokens-no-model",
        "unknown",
        "unknown-zero",
    ]


def test_free_rates_stay_on_the_integer_path() -> None:
    """A rate of zero is a price like any other (not a rate too fine for integers)."""
    free_input = ModelPrice(input_mtok=Decimal(0), output_mtok=Decimal("1.5"))
    rates = _int_rates(free_input)
    assert rates is not None
    assert _int_cost(rates, 1_000, 2_000, 0, 0) == 3_000_000  # 2,000 tokens at $1.50/M
