"""`overview`: the headline figures of a window and of the previous period, computing only
the figures the query reads."""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from tallyql.engine import analytics as engine
from tallyql.engine.relative_change import floor_of, relative_change
from tallyql.schema.change_note import ChangeNote, note_of
from tallyql.schema.context import TallyInfo


@strawberry.type(description="Headline figures of a window; rates are 0 to 1, costs in USD.")
class Overview:
    total_requests: float
    success_rate: float | None
    error_rate: float | None
    blocked_requests: float
    avg_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    avg_ttft_ms: float | None
    input_tokens: float
    output_tokens: float
    cache_read_tokens: float
    cache_write_tokens: float
    reasoning_tokens: float
    total_tokens: float
    cost_usd: float
    unique_callers: float
    active_users: float
    active_agents: float
    active_tools: float
    active_gateways: float
    models_used: float
    start: datetime
    end: datetime
    previous: Overview | None = strawberry.field(
        default=None, description="The same figures for the previous period."
    )

    @strawberry.field(description="Each figure next to the previous period's, with the change.")
    def changes(self) -> list[OverviewChange]:
        if self.previous is None:
            return []
        out = []
        for name in engine.OVERVIEW_FIELDS:
            now, before = getattr(self, name), getattr(self.previous, name)
            floor = floor_of(engine.OVERVIEW_FIELDS[name])
            out.append(OverviewChange.of(_camel(name), now, before, floor))
        return out


@strawberry.type
class OverviewChange:
    field: str
    current: float | None
    previous: float | None
    absolute: float | None = strawberry.field(description="current - previous")
    relative: float | None = strawberry.field(
        description=(
            "(current - previous) / previous (0.25 = +25 %); null when either is missing or "
            "the previous figure is zero or negligible (see relativeNote), so never above 99."
        )
    )
    relative_note: ChangeNote | None = strawberry.field(
        description="Why relative is null; null when it is not."
    )

    @classmethod
    def of(
        cls, name: str, current: float | None, previous: float | None, floor: float
    ) -> OverviewChange:
        """`floor`: the absolute floor of the figure's unit (`relative_change.floor_of`)."""
        absolute = None if current is None or previous is None else current - previous
        change = relative_change(current, previous, floor)
        return cls(
            field=name,
            current=current,
            previous=previous,
            absolute=absolute,
            relative=change.relative,
            relative_note=note_of(change.note),
        )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


_OVERVIEW_NAMES = {_camel(name): name for name in engine.OVERVIEW_FIELDS}


def _selected_names(selections: list[Selection]) -> set[str]:
    """Field names asked for, through fragments."""
    names: set[str] = set()
    for selection in selections:
        if isinstance(selection, SelectedField):
            names.add(selection.name)
            if selection.name == "previous":
                names |= _selected_names(selection.selections)
        else:
            names |= _selected_names(selection.selections)
    return names


def _overview_selection(info: TallyInfo) -> tuple[set[str] | None, bool]:
    """Which overview figures the query reads (None: all) and whether `previous` is read; the
    other figures are not computed."""
    asked = _selected_names(info.selected_fields[0].selections)
    if "changes" in asked:
        return None, True
    return {_OVERVIEW_NAMES[n] for n in asked if n in _OVERVIEW_NAMES}, "previous" in asked


def _overview(values: dict[str, float | None], start: datetime, end: datetime) -> Overview:
    return Overview(**values, start=start, end=end)  # type: ignore[arg-type]


async def resolve_overview(info: TallyInfo, asker: engine.Asker) -> Overview:
    """The current window's figures and, when read, the previous period's (concurrently)."""
    names, with_previous = _overview_selection(info)
    previous_window = asker.window.previous()
    if with_previous:
        current, before = await asyncio.gather(
            engine.overview(asker, names),
            engine.overview(asker.for_window(previous_window), names),
        )
    else:
        current, before = await engine.overview(asker, names), None
    result = _overview(current, asker.window.start, asker.window.end)
    if before is not None:
        result.previous = _overview(before, previous_window.start, previous_window.end)
    return result
