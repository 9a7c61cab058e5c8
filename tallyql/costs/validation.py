"""Checks a price override's fields before it is stored; each problem names its field."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from tallyql.costs.overrides import check_regex

MAX_RATE = 1_000_000.0  # USD per million tokens
_RATE_FIELDS = (
    ("input_mtok", "inputPerMtok"),
    ("output_mtok", "outputPerMtok"),
    ("cache_read_mtok", "cacheReadPerMtok"),
    ("cache_write_mtok", "cacheWritePerMtok"),
    ("reasoning_mtok", "reasoningPerMtok"),
)


def check_override(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(GraphQL field, message) for each problem of a complete set of override values."""
    problems: list[tuple[str, str]] = []
    model = values.get("model") or ""
    if not model.strip() or len(model) > 512:
        problems.append(("model", "must be 1 to 512 characters"))
    elif values.get("model_match") == "regex":
        reason = check_regex(model)
        if reason:
            problems.append(("model", reason))
    provider = values.get("provider")
    if provider is not None and (not provider.strip() or len(provider) > 256):
        problems.append(("provider", "must be 1 to 256 characters, or null for any provider"))
    for column, name in _RATE_FIELDS:
        rate = values.get(column)
        if rate is None:
            if column in ("input_mtok", "output_mtok"):
                problems.append((name, "is required"))
            continue
        if not math.isfinite(rate) or rate < 0 or rate > MAX_RATE:
            problems.append((name, f"must be a number from 0 to {MAX_RATE:,.0f} (USD/MTok)"))
    start: datetime | None = values.get("effective_from")
    end: datetime | None = values.get("effective_until")
    for value, name in ((start, "effectiveFrom"), (end, "effectiveUntil")):
        if value is not None and value.tzinfo is None:
            problems.append((name, "must carry a UTC offset (Z or +hh:mm)"))
    if start and end and start.tzinfo and end.tzinfo and start >= end:
        problems.append(("effectiveUntil", "must be after effectiveFrom"))
    description = values.get("description")
    if description is not None and len(description) > 2000:
        problems.append(("description", "must be at most 2,000 characters"))
    return problems
