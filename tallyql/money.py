"""Money: every cost is stored as an integer count of nano-USD (1e-9 USD), so sums are exact;
the API speaks USD as floats. These are the only conversions between the two."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANO_PER_USD = 1_000_000_000


def to_usd(nano: int | float) -> float:
    """nano-USD as USD."""
    return nano / NANO_PER_USD


def to_nano(usd: Decimal | float) -> int:
    """A price or a reported cost, as the decimal it was written in (a float's shortest repr),
    in whole nano-USD rounded half-even: 0.1 USD is exactly 100_000_000."""
    value = usd if isinstance(usd, Decimal) else Decimal(repr(float(usd)))
    return int((value * NANO_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def round_to_nano(usd: float) -> int:
    """A computed USD float (a sum of costs, an amount entered in USD) to the nearest nano-USD."""
    return round(usd * NANO_PER_USD)
