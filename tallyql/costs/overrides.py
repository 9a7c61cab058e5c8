"""A workspace's own model prices, and how they price an event.

An override names a provider (or any provider), a model (its exact name, or a regular
expression in RE2 syntax, matched in linear time, that must match the whole name), an
effective window [from, until), and USD per million tokens for input, output, cache reads,
cache writes and reasoning. Cache rates default
to the input rate and the reasoning rate to the output rate, so an override with only input
and output prices charges every token.

When several overrides match an event, the most specific wins: an exact model name before a
regex, a named provider before any provider, then the latest `effective_from`, then the most
recently updated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import re2

log = logging.getLogger(__name__)

MAX_REGEX_LENGTH = 512
MAX_REGEX_MEMORY = 1 << 20
"""Bytes RE2 may use for one compiled pattern: a pattern that needs more (a{1000}{1000}, say)
is refused when the override is created."""
_NANO_PER_MTOK_USD = Decimal(1000)


def decimal_rate(value: float | None) -> Decimal | None:
    """A stored float rate as the decimal it was written as (shortest repr round-trips)."""
    return None if value is None else Decimal(repr(float(value)))


@dataclass(frozen=True)
class PriceOverride:
    id: str
    workspace_id: int
    provider: str | None
    model: str
    model_match: str  # "exact" | "regex"
    effective_from: datetime | None
    effective_until: datetime | None
    input_mtok: float
    output_mtok: float
    cache_read_mtok: float | None
    cache_write_mtok: float | None
    reasoning_mtok: float | None
    description: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> PriceOverride:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def is_regex(self) -> bool:
        return self.model_match == "regex"

    def matches_model(self, provider: str | None, model: str) -> bool:
        if self.provider is not None and (provider or "").lower() != self.provider.lower():
            return False
        if self.is_regex:
            return compiled(self.model).fullmatch(model) is not None
        return model == self.model

    def active_at(self, at: datetime) -> bool:
        if self.effective_from is not None and at < self.effective_from:
            return False
        return not (self.effective_until is not None and at >= self.effective_until)

    def precedence(self) -> tuple[Any, ...]:
        """Sort key: smaller wins."""
        start = self.effective_from.timestamp() if self.effective_from else float("-inf")
        return (self.is_regex, self.provider is None, -start, -self.updated_at.timestamp())

    def cost_nano(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
    ) -> int:
        """Nano-USD for an event's tokens (inclusive accounting: input holds cached tokens,
        output holds reasoning tokens)."""
        r_in = decimal_rate(self.input_mtok) or Decimal(0)
        r_out = decimal_rate(self.output_mtok) or Decimal(0)
        r_cr = decimal_rate(self.cache_read_mtok)
        r_cw = decimal_rate(self.cache_write_mtok)
        r_re = decimal_rate(self.reasoning_mtok)
        usd_mtok = (
            r_in * (input_tokens - cache_read_tokens - cache_write_tokens)
            + (r_in if r_cr is None else r_cr) * cache_read_tokens
            + (r_in if r_cw is None else r_cw) * cache_write_tokens
            + r_out * (output_tokens - reasoning_tokens)
            + (r_out if r_re is None else r_re) * reasoning_tokens
        )
        nano = usd_mtok * _NANO_PER_MTOK_USD
        return int(nano.to_integral_value(rounding=ROUND_HALF_EVEN))


class NeverMatches:
    """The matcher of a stored pattern that RE2 refuses (one written before patterns were
    checked with RE2): it prices nothing rather than failing every event."""

    def fullmatch(self, text: str) -> None:
        return None


Matcher = Any
"""A compiled RE2 pattern (google-re2 ships no type hints) or NeverMatches."""

_COMPILED: dict[str, Matcher] = {}


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported to the caller, not to stderr
    options.max_mem = MAX_REGEX_MEMORY
    return options


_OPTIONS = _options()


def compiled(pattern: str) -> Matcher:
    """The pattern compiled by RE2, whose matching takes time linear in the model name's
    length whatever the pattern (Python's `re` backtracks: `(a+)+b` took seconds on a
    29-character name and every ingest call waited)."""
    found = _COMPILED.get(pattern)
    if found is None:
        if len(_COMPILED) > 10_000:
            _COMPILED.clear()
        try:
            found = re2.compile(pattern, _OPTIONS)
        except re2.error as exc:
            log.warning(
                "price override pattern %r is refused by RE2 (%s); it matches nothing",
                pattern,
                _reason(exc),
            )
            found = NeverMatches()
        _COMPILED[pattern] = found
    return found


def _reason(exc: Exception) -> str:
    message = exc.args[0] if exc.args else exc
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def check_regex(pattern: str) -> str | None:
    """Why a model pattern is unusable, or None."""
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"must be at most {MAX_REGEX_LENGTH} characters"
    if "\x00" in pattern:
        return "must not contain NUL characters (U+0000)"
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        return (
            f"is not a valid regular expression in RE2 syntax (no backreferences or "
            f"lookaround): {_reason(exc)}"
        )
    return None


class WorkspacePrices:
    """One workspace's overrides, with the candidates of each (provider, model) cached."""

    def __init__(self, overrides: list[PriceOverride]) -> None:
        self.overrides = sorted(overrides, key=PriceOverride.precedence)
        self._candidates: dict[tuple[str | None, str], list[PriceOverride]] = {}

    def candidates(self, provider: str | None, model: str) -> list[PriceOverride]:
        key = (provider, model)
        found = self._candidates.get(key)
        if found is None:
            found = [o for o in self.overrides if o.matches_model(provider, model)]
            if len(self._candidates) > 50_000:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def find(self, provider: str | None, model: str, at: datetime) -> PriceOverride | None:
        """The override that prices this model at this instant, if any."""
        for override in self.candidates(provider, model):
            if override.active_at(at):
                return override
        return None
