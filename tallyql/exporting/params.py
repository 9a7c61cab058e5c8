"""Export query parameters, mirroring GraphQL: a time range (`preset`, or `start` and `end`,
with `timezone`), one parameter per EventFilter field (camelCase, repeated or comma-separated;
`metadata=key:value`, `isByok=true|false`, `statusCodes=429,500`), `format=csv|json|ndjson`,
and each dataset's own options. Unknown parameters are refused, so a typo never silently
exports everything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tallyql.engine.filters import LIST_FILTERS, EventFilterSpec, MetadataMatch
from tallyql.engine.timerange import Preset, TimeWindow, resolve_window
from tallyql.storage.types import parse_timestamp

FORMATS = ("csv", "json", "ndjson")
_LIST_FIELDS = (*LIST_FILTERS, "groups", "tags")


class ExportParamError(ValueError):
    """A parameter the caller got wrong (HTTP 400)."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


FILTER_PARAMS: dict[str, str] = {
    camel(n): n for n in (*_LIST_FIELDS, "metadata", "is_byok", "status_codes")
}
COMMON_PARAMS = frozenset({"preset", "start", "end", "timezone", "format"})


@dataclass
class ExportParams:
    window: TimeWindow
    spec: EventFilterSpec
    format: str
    options: dict[str, list[str]] = field(default_factory=dict)

    def option(self, name: str, default: str | None = None) -> str | None:
        values = self.options.get(name)
        return values[-1] if values else default

    def option_list(self, name: str) -> list[str]:
        return [v for raw in self.options.get(name, []) for v in _split(raw)]


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _one(items: dict[str, list[str]], name: str) -> str | None:
    values = items.get(name)
    return values[-1] if values else None


def parse(
    pairs: Sequence[tuple[str, str]],
    dataset_options: frozenset[str],
    now: datetime | None = None,
) -> ExportParams:
    """The parameters; relative ranges are resolved at `now` (default: the clock's now)."""
    items: dict[str, list[str]] = {}
    for key, value in pairs:
        items.setdefault(key, []).append(value)
    allowed = COMMON_PARAMS | FILTER_PARAMS.keys() | dataset_options
    unknown = sorted(set(items) - allowed)
    if unknown:
        raise ExportParamError(f"unknown parameter(s): {', '.join(unknown)}")
    fmt = (_one(items, "format") or "csv").lower()
    if fmt not in FORMATS:
        raise ExportParamError("format must be csv, json or ndjson")
    preset_name = _one(items, "preset")
    preset = None
    if preset_name is not None:
        try:
            preset = Preset(preset_name.upper())
        except ValueError:
            names = ", ".join(p.value for p in Preset)
            raise ExportParamError(f"preset must be one of {names}") from None
    try:
        start = _timestamp(items, "start")
        end = _timestamp(items, "end")
        window = resolve_window(preset, start, end, _one(items, "timezone"), now)
    except ValueError as exc:
        raise ExportParamError(str(exc)) from None
    options = {k: v for k, v in items.items() if k in dataset_options}
    return ExportParams(window, _spec(items), fmt, options)


def _timestamp(items: dict[str, list[str]], name: str) -> Any:
    raw = _one(items, name)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except ValueError as exc:
        raise ExportParamError(f"{name} {exc}") from None


def _spec(items: dict[str, list[str]]) -> EventFilterSpec:
    values: dict[str, Any] = {}
    for param, name in FILTER_PARAMS.items():
        raw = items.get(param)
        if not raw:
            continue
        if name == "is_byok":
            text = raw[-1].lower()
            if text not in ("true", "false"):
                raise ExportParamError("isByok must be true or false")
            values[name] = text == "true"
        elif name == "metadata":
            matches = []
            for item in raw:
                key, sep, value = item.partition(":")
                if not sep or not key:
                    raise ExportParamError("metadata must be key:value")
                matches.append(MetadataMatch(key, value))
            values[name] = tuple(matches)
        elif name == "status_codes":
            parts = [p for r in raw for p in _split(r)]
            if not all(p.isdigit() for p in parts):
                raise ExportParamError("statusCodes must be integers such as 429,500")
            values[name] = tuple(int(p) for p in parts)
        else:
            parts = [p for r in raw for p in _split(r)]
            if name in ("kinds", "statuses", "error_types", "cost_sources"):
                parts = [p.lower() for p in parts]
            values[name] = tuple(parts)
    return EventFilterSpec(**values)
