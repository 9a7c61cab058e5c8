"""`overview`: the headline figures of a window and of the previous period, computing only
the figures the query reads."""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from tallyql.engine import analytics as engine
from tallyql.engine.relative_change import floor_of, relative_change
from tallyql.engine.unpriced import MAX_MODELS, Unpriced, unpriced
from tallyql.schema.base.change_note import ChangeNote, note_of
from tallyql.schema.base.common import EventKind
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.scalars import Long
from tallyql.schema.base.usage import TokenKinds
from tallyql.schema.costs_types import UnpricedModel

LATENCY_SCOPE = (
    " Covers LLM calls (kind llm_call) unless the filter names kinds, then the kinds it names; "
    "latencyByKind gives each kind's."
)


@strawberry.type(
    description="Headline figures of a window over the events the filter selects: counts of "
    "events and tokens, rates as fractions from 0 to 1, latencies in milliseconds, costs in USD."
)
class Overview(TokenKinds):
    total_requests: Long = strawberry.field(
        description="Events the filter selects, of every kind unless it names kinds (count)."
    )
    success_rate: float | None = strawberry.field(
        description="Share of events with status success, 0 to 1; null without events."
    )
    error_rate: float | None = strawberry.field(
        description="Share of events with status error, 0 to 1; null without events."
    )
    blocked_requests: Long = strawberry.field(
        description="Events blocked by a policy (status blocked; count)."
    )
    avg_latency_ms: float | None = strawberry.field(
        description="Mean latency in ms of the covered events that report one; null when none "
        "does." + LATENCY_SCOPE
    )
    p50_latency_ms: float | None = strawberry.field(
        description="Median latency in ms (within 1 % relative error)." + LATENCY_SCOPE
    )
    p95_latency_ms: float | None = strawberry.field(
        description="95th percentile latency in ms (within 1 % relative error)." + LATENCY_SCOPE
    )
    p99_latency_ms: float | None = strawberry.field(
        description="99th percentile latency in ms (within 1 % relative error)." + LATENCY_SCOPE
    )
    avg_ttft_ms: float | None = strawberry.field(
        description="Mean time to first token in ms of the covered events that report one."
        + LATENCY_SCOPE
    )
    unique_callers: int = strawberry.field(
        description="Distinct callers (API key, else client IP; count)."
    )
    active_users: int = strawberry.field(description="Distinct end users (count).")
    active_agents: int = strawberry.field(description="Distinct agents (count).")
    active_tools: int = strawberry.field(description="Distinct tools called (count).")
    active_gateways: int = strawberry.field(description="Distinct gateways (count).")
    models_used: int = strawberry.field(description="Distinct models (count).")
    start: datetime = strawberry.field(description="The window's start (inclusive).")
    end: datetime = strawberry.field(description="The window's end (exclusive).")
    previous: Overview | None = strawberry.field(
        default=None,
        description="The same figures for the previous period of the same length (latency "
        "covering the same kinds).",
    )
    latency_by_kind: list[KindLatency] = strawberry.field(
        default_factory=list,
        description="Events and latency of each kind with events in the window, in the order "
        "llm_call, tool_call, agent_run, http_request. For agent_run the figures are run "
        "durations.",
    )

    _asker: strawberry.Private[engine.Asker | None] = None
    _unpriced: strawberry.Private[asyncio.Future[Unpriced] | None] = None

    async def _unpriced_summary(self) -> Unpriced:
        """Computed once, and only when read."""
        if self._asker is None:
            return Unpriced()
        if self._unpriced is None:
            self._unpriced = asyncio.ensure_future(unpriced(self._asker))
        return await self._unpriced

    @strawberry.field(
        description="Events stored without a price (cost source UNPRICED), counted as 0 USD "
        "in costUsd (count)."
    )
    async def unpriced_events(self) -> Long:
        return (await self._unpriced_summary()).events

    @strawberry.field(
        description="The models of the unpriced events, most events first (up to "
        f"{MAX_MODELS} (provider, model) pairs)."
    )
    async def unpriced_models(self) -> list[UnpricedModel]:
        return [UnpricedModel.of(m) for m in (await self._unpriced_summary()).models]

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


@strawberry.type(
    description="One kind of event's count and latency in the window (from the same rollups as "
    "the overview)."
)
class KindLatency:
    kind: EventKind = strawberry.field(description="The kind of event.")
    requests: Long = strawberry.field(description="Events of this kind (count).")
    avg_latency_ms: float | None = strawberry.field(
        description="Mean latency in ms of its events that report one (agent runs: duration)."
    )
    p50_latency_ms: float | None = strawberry.field(
        description="Median latency in ms (within 1 % relative error)."
    )
    p95_latency_ms: float | None = strawberry.field(
        description="95th percentile latency in ms (within 1 % relative error)."
    )
    p99_latency_ms: float | None = strawberry.field(
        description="99th percentile latency in ms (within 1 % relative error)."
    )

    @classmethod
    def of(cls, row: engine.KindLatency) -> KindLatency:
        return cls(
            kind=EventKind(row.kind),
            requests=Long(row.requests),
            avg_latency_ms=row.avg_latency_ms,
            p50_latency_ms=row.p50_latency_ms,
            p95_latency_ms=row.p95_latency_ms,
            p99_latency_ms=row.p99_latency_ms,
        )


@strawberry.type(description="One overview figure now and in the previous period.")
class OverviewChange:
    field: str = strawberry.field(description="The Overview field's name, e.g. costUsd.")
    current: float | None = strawberry.field(
        description="The figure in the window, in the field's unit (counts are whole numbers)."
    )
    previous: float | None = strawberry.field(
        description="The figure in the previous period of the same length, in the field's unit."
    )
    absolute: float | None = strawberry.field(
        description="current - previous, in the field's unit; null when either is null."
    )
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


def _overview_selection(info: TallyInfo) -> tuple[set[str] | None, bool, bool]:
    """Which overview figures the query reads (None: all), whether `previous` is read and
    whether `latencyByKind` is (here or in `previous`); the other figures are not computed."""
    asked = _selected_names(info.selected_fields[0].selections)
    by_kind = "latencyByKind" in asked
    if "changes" in asked:
        return None, True, by_kind
    names = {_OVERVIEW_NAMES[n] for n in asked if n in _OVERVIEW_NAMES}
    return names, "previous" in asked, by_kind


def _overview(figures: engine.OverviewFigures, asker: engine.Asker) -> Overview:
    rows = [KindLatency.of(r) for r in figures.latency_by_kind or ()]
    return Overview(
        **figures.values,  # type: ignore[arg-type]  # the figures by field name, float | None each
        start=asker.window.start,
        end=asker.window.end,
        latency_by_kind=rows,
        _asker=asker,
    )


async def resolve_overview(info: TallyInfo, asker: engine.Asker) -> Overview:
    """The current window's figures and, when read, the previous period's (concurrently)."""
    names, with_previous, by_kind = _overview_selection(info)
    previous_asker = asker.for_window(asker.window.previous())
    if with_previous:
        current, before = await asyncio.gather(
            engine.overview(asker, names, by_kind),
            engine.overview(previous_asker, names, by_kind),
        )
    else:
        current, before = await engine.overview(asker, names, by_kind), None
    result = _overview(current, asker)
    if before is not None:
        result.previous = _overview(before, previous_asker)
    return result
