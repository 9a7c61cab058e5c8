"""The token and cost fields that every usage figure shares, declared once: a type that
reports tokens and their cost inherits them (GraphQL sees plain fields; these two bases are
never returned themselves, so they are not in the schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry

from tallyql.money import to_usd
from tallyql.schema.base.scalars import Long


@strawberry.type(description="Input and output tokens and their cost in USD.")
class TokenUsage:
    input_tokens: Long = strawberry.field(description="Input tokens, cached ones included.")
    output_tokens: Long = strawberry.field(description="Output tokens, reasoning included.")
    total_tokens: Long = strawberry.field(description="Input plus output tokens.")
    cost_usd: float = strawberry.field(description="Cost in USD.")


@strawberry.type(description="Tokens by kind (cache reads and writes, reasoning) and their cost.")
class TokenKinds(TokenUsage):
    cache_read_tokens: Long = strawberry.field(description="Input tokens read from cache.")
    cache_write_tokens: Long = strawberry.field(description="Input tokens written to cache.")
    reasoning_tokens: Long = strawberry.field(description="Output tokens spent reasoning.")


def token_kinds(
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    reasoning_tokens: int,
    cost_nanousd: int,
) -> dict[str, Any]:
    """`TokenKinds`' fields from token counts and a cost in nano-USD."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read_tokens,
        "cache_write_tokens": cache_write_tokens,
        "reasoning_tokens": reasoning_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost_usd": to_usd(cost_nanousd),
    }


def token_kinds_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """`TokenKinds`' fields from a stored row's token columns and `cost_nanousd`."""
    return token_kinds(
        row["input_tokens"],
        row["output_tokens"],
        row["cache_read_tokens"],
        row["cache_write_tokens"],
        row["reasoning_tokens"],
        row["cost_nanousd"],
    )
