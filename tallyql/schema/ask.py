"""Questions in plain words and charts: `ask`, `chartPresets` and `chart`.

`ask` reads a question with the deterministic interpreter (tallyql/engine/interpret.py)
into a MetricsQueryInput, shown as JSON that `metrics(query:)` takes unchanged, then answers
it exactly as `metrics(query:)` does (`answer_metrics_query`), with a sentence and a chart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from tallyql.clock import clock
from tallyql.engine import analytics as engine
from tallyql.engine.analytics import Asker, QueryError
from tallyql.engine.charts import PRESETS, ChartPreset, Table, summary, vega_lite
from tallyql.engine.interpret import (
    Interpretation,
    TopOverTime,
    chart_kind,
    describe,
    example_questions,
    interpret,
    range_words,
)
from tallyql.engine.known_values import known_values
from tallyql.engine.query.buckets import BucketError
from tallyql.engine.query.buckets import Granularity as EngineGranularity
from tallyql.engine.query.registry import METRICS
from tallyql.engine.query.registry import Dimension as EngineDimension
from tallyql.engine.query.registry import Metric as EngineMetric
from tallyql.engine.query.timerange import Preset, TimeRangeError
from tallyql.engine.vocabulary import DIMENSION_WORDS, METRIC_WORDS
from tallyql.schema.analytics import (
    DimensionInput,
    MetricOrderInput,
    MetricsQueryInput,
    MetricsResult,
    answer_metrics_query,
)
from tallyql.schema.base.common import (
    CostSource,
    ErrorType,
    EventFilter,
    EventKind,
    EventStatus,
    MetadataFilterInput,
    TimeRangeInput,
)
from tallyql.schema.base.context import TallyInfo
from tallyql.schema.base.scalars import JSON


@strawberry.enum(description="How a chart draws its rows.")
class ChartKind(Enum):
    LINE = strawberry.enum_value("LINE", description="Lines over time, one per series.")
    STACKED_AREA = strawberry.enum_value(
        "STACKED_AREA", description="Areas over time, stacked: series that add up."
    )
    BAR = strawberry.enum_value("BAR", description="Horizontal bars, one per group.")
    TABLE = strawberry.enum_value("TABLE", description="The rows as lines of text.")


@strawberry.type(description="A chart of a custom query's rows.")
class Chart:
    kind: ChartKind = strawberry.field(description="How it draws the rows.")
    title: str = strawberry.field(description="What it shows, in words.")
    vega_lite: JSON = strawberry.field(
        description="A complete Vega-Lite v5 spec with the rows inlined under data.values "
        "(one record per row and metric: Time, one field per dimension, Metric, Value in the "
        "metric's unit); render it with any Vega-Lite v5 renderer."
    )


@strawberry.type(description="A chart the server knows by name.")
class ChartPresetInfo:
    id: strawberry.ID = strawberry.field(
        description="Its name: for chart(preset:) and GET /v1/charts/{id}.png or .svg."
    )
    title: str = strawberry.field(description="Its title.")
    description: str = strawberry.field(description="What it shows.")
    kind: ChartKind = strawberry.field(description="How it draws its rows.")
    query: JSON = strawberry.field(
        description="Its MetricsQueryInput, as JSON that metrics(query:) takes; its range "
        "(the last 30 days, UTC) is the default that chart(range:) replaces."
    )


@strawberry.type(description="The answer to a question in plain words.")
class Answer:
    understood: bool = strawberry.field(
        description="true when the question was read into a query; false for empty, "
        "nonsense or hostile input (then query, result and chart are null and suggestions "
        "say what can be asked)."
    )
    query: JSON | None = strawberry.field(
        description="The question as a MetricsQueryInput in its input shape (metrics, "
        "dimensions, range with timezone, filter, granularity, orderBy, limit): send it to "
        "metrics(query:) unchanged to get the same rows, or edit it first."
    )
    interpretation: str = strawberry.field(
        description='The query in words ("Cost in USD by model, this month, Europe/Paris"), '
        "with what was assumed or ignored; or why the question was not understood."
    )
    notes: list[str] = strawberry.field(
        description="What the interpreter assumed (a default window or measure), read "
        "loosely (a typo) or ignored; empty when it took every word as written."
    )
    result: MetricsResult | None = strawberry.field(
        description="Exactly what metrics(query:) returns for `query`; null when not understood."
    )
    summary: str = strawberry.field(
        description="One or two sentences with the headline figures: the largest row and "
        "its share of the total, the total, the change against the previous period."
    )
    chart: Chart | None = strawberry.field(
        description="The answer drawn; null when not understood."
    )
    suggestions: list[str] = strawberry.field(
        description="Questions it can answer, close to this one: when it was not understood, "
        "or something was assumed or ignored; empty otherwise."
    )


# ---- JSON <-> MetricsQueryInput ----------------------------------------------------------------

_ENUM_FILTERS: dict[str, type[Enum]] = {
    "kinds": EventKind,
    "statuses": EventStatus,
    "errorTypes": ErrorType,
    "costSources": CostSource,
}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def query_input(data: Mapping[str, Any]) -> MetricsQueryInput:
    """The MetricsQueryInput that GraphQL would build from `data` sent as a variable."""
    rng = data["range"]
    filt = data.get("filter")
    event_filter = None
    if filt:
        values: dict[str, Any] = {}
        for name, raw in filt.items():
            if name in _ENUM_FILTERS:
                values[_snake(name)] = [_ENUM_FILTERS[name][v] for v in raw]
            elif name == "metadata":
                values["metadata"] = [
                    MetadataFilterInput(key=m["key"], value=m["value"]) for m in raw
                ]
            else:
                values[_snake(name)] = raw
        event_filter = EventFilter(**values)
    return MetricsQueryInput(
        metrics=[EngineMetric[m] for m in data["metrics"]],
        range=TimeRangeInput(
            preset=Preset[rng["preset"]] if rng.get("preset") else None,
            start=_time(rng.get("start")),
            end=_time(rng.get("end")),
            timezone=rng.get("timezone", "UTC"),
        ),
        dimensions=[
            DimensionInput(
                dimension=EngineDimension[d["dimension"]], metadata_key=d.get("metadataKey")
            )
            for d in data["dimensions"]
        ]
        if data.get("dimensions")
        else None,
        filter=event_filter,
        granularity=EngineGranularity[data["granularity"]] if data.get("granularity") else None,
        order_by=[
            MetricOrderInput(metric=EngineMetric[o["metric"]], descending=o.get("descending", True))
            for o in data["orderBy"]
        ]
        if data.get("orderBy")
        else None,
        limit=data.get("limit"),
    )


def query_json(query: MetricsQueryInput) -> dict[str, Any]:
    """A MetricsQueryInput back in its input shape (JSON), nulls left out."""
    rng = query.range
    range_json: dict[str, Any] = {"timezone": rng.timezone}
    if rng.preset is not None:
        range_json["preset"] = rng.preset.name
    if rng.start is not None:
        range_json["start"] = rng.start.isoformat()
    if rng.end is not None:
        range_json["end"] = rng.end.isoformat()
    out: dict[str, Any] = {"metrics": [m.name for m in query.metrics], "range": range_json}
    if query.dimensions:
        out["dimensions"] = [
            {"dimension": d.dimension.name}
            | ({"metadataKey": d.metadata_key} if d.metadata_key else {})
            for d in query.dimensions
        ]
    if query.filter is not None:
        filt: dict[str, Any] = {}
        # unchecked below: strawberry sets __strawberry_definition__ at run time
        for field in EventFilter.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            value = getattr(query.filter, field.python_name)
            if value is None:
                continue
            name = _camel(field.python_name)
            if name in _ENUM_FILTERS:
                filt[name] = [v.name for v in value]
            elif name == "metadata":
                filt[name] = [{"key": m.key, "value": m.value} for m in value]
            else:
                filt[name] = value
        if filt:
            out["filter"] = filt
    if query.granularity is not None:
        out["granularity"] = query.granularity.name
    if query.order_by:
        out["orderBy"] = [
            {"metric": o.metric.name, "descending": o.descending} for o in query.order_by
        ]
    if query.limit is not None:
        out["limit"] = query.limit
    return out


# ---- answering ---------------------------------------------------------------------------------

AskerFor = Callable[[TimeRangeInput, EventFilter | None], Asker]
"""Makes the engine's view of a question for the caller (GraphQL: Context.asker)."""


def table_of(result: MetricsResult, timezone: str) -> Table:
    return Table(
        list(result.metrics),
        list(result.dimensions),
        [(r.bucket, r.keys, r.values) for r in result.rows],
        timezone,
    )


def chart_of(query: MetricsQueryInput, result: MetricsResult, title: str, kind: str) -> Chart:
    table = table_of(result, query.range.timezone)
    return Chart(kind=ChartKind[kind], title=title, vega_lite=vega_lite(table, kind, title))


async def _totals(asker: Asker, metric: EngineMetric) -> tuple[float | None, float | None]:
    """The first metric over the whole window and over the previous period."""
    empty = 0.0 if METRICS[metric].zero_when_empty else None  # no events: no cost, no rate
    now = await engine.custom_query(asker, (metric,), (), None, [], None)
    total = now.rows[0].values[0] if now.rows else empty
    try:
        before = await engine.custom_query(
            asker.for_window(asker.window.previous()), (metric,), (), None, [], None
        )
    except TimeRangeError:
        return total, None
    return total, before.rows[0].values[0] if before.rows else empty


def _not_understood(reading: Interpretation) -> Answer:
    return Answer(
        understood=False,
        query=None,
        interpretation=reading.interpretation,
        notes=reading.notes,
        result=None,
        summary=reading.interpretation,
        chart=None,
        suggestions=reading.suggestions,
    )


async def _choose_top_groups(
    asker_for: AskerFor, reading: Interpretation, top: TopOverTime
) -> None:
    """ "top 3 models by cost over time": rank the groups by the first metric over the whole
    range, then narrow `reading.query` to the first N (a filter on them), so that the query
    shown is the one answered and `metrics(query:)` gives the same rows. The other groups
    are left out, not folded into an "other" series: the query says exactly what is drawn."""
    assert reading.query is not None
    data = dict(reading.query)
    metric = data["metrics"][0]
    ranking = {k: v for k, v in data.items() if k != "granularity"}
    ranking["orderBy"] = [{"metric": metric, "descending": top.descending}]
    ranking["limit"] = top.n + 1  # one more: a group without a key cannot be filtered on
    query = query_input(ranking)
    ranked = await answer_metrics_query(asker_for(query.range, query.filter), query)
    keys = [r.keys[0] for r in ranked.rows]
    chosen = [k for k in keys if k is not None][: top.n]
    if None in keys[: top.n]:
        reading.notes.append("events without a value of the grouping are left out")
    label = DIMENSION_WORDS[EngineDimension[data["dimensions"][0]["dimension"]]].label
    way = "top" if top.descending else "bottom"
    label_words = METRIC_WORDS[EngineMetric[metric]].label
    metric_label = label_words[:1].lower() + label_words[1:]  # "cost in USD"
    if chosen:
        data["filter"] = {**(data.get("filter") or {}), top.filter_field: chosen}
        reading.notes.append(
            f"the {way} {top.n} by {metric_label} over the whole range: {', '.join(chosen)}; "
            "the other groups are left out"
        )
    reading.query = data
    reading.interpretation = (
        f"{describe(data)}; the {way} {top.n} {label}s by {metric_label} over the whole range"
    )


async def answer_question(
    asker_for: AskerFor,
    question: str,
    timezone: str,
    now: datetime | None = None,
    version: int | None = None,
) -> Answer:
    """The answer to `question`, asked in `timezone` at `now` (default: the clock's), by the
    caller `asker_for` stands for; `version`, the workspace's data version when known, keeps
    the interpreter's dictionary of known values while it holds."""
    base = asker_for(TimeRangeInput(preset=Preset.LAST_24H), None)  # checks the caller's role
    known = await known_values(base, version)
    reading = interpret(question, timezone, now or clock.now(), known)
    if not reading.understood or reading.query is None:
        return _not_understood(reading)
    try:
        if reading.top_over_time is not None:
            await _choose_top_groups(asker_for, reading, reading.top_over_time)
        query = query_input(reading.query)
        asker = asker_for(query.range, query.filter)
        result = await answer_metrics_query(asker, query)
        total, previous = await _totals(asker, query.metrics[0])
    except (QueryError, BucketError, TimeRangeError) as exc:
        reading.notes.append(str(exc))
        return Answer(
            understood=False,
            query=reading.query,
            interpretation=f"{reading.interpretation}; the engine cannot answer it: {exc}.",
            notes=reading.notes,
            result=None,
            summary=f"The engine cannot answer this: {exc}.",
            chart=None,
            suggestions=reading.suggestions or example_questions(known),
        )
    when = range_words(reading.query["range"])
    return Answer(
        understood=True,
        query=reading.query,
        interpretation=reading.interpretation,
        notes=reading.notes,
        result=result,
        summary=summary(table_of(result, query.range.timezone), total, previous, when),
        chart=chart_of(query, result, reading.interpretation, reading.chart_kind),
        suggestions=reading.suggestions,
    )


def preset_or_query(
    preset: str | None, query: MetricsQueryInput | None, range: TimeRangeInput | None
) -> tuple[MetricsQueryInput, str, str]:
    """The query, title and kind of chart(preset, query, range); QueryError when wrong."""
    if (preset is None) == (query is None):
        raise QueryError("give a preset or a query (one of them)")
    if preset is not None:
        found: ChartPreset | None = PRESETS.get(preset)
        if found is None:
            raise QueryError(f"no chart preset {preset!r}; use one of {', '.join(PRESETS)}")
        query = query_input(found.query)
        title, kind = found.title, found.kind
    else:
        assert query is not None
        title = describe(query_json(query))
        kind = chart_kind(
            list(query.metrics), [d.dimension for d in query.dimensions or ()], query.granularity
        )
    if range is not None:
        query.range = range
    return query, title, kind


async def chart_for(
    asker_for: AskerFor,
    preset: str | None,
    query: MetricsQueryInput | None,
    range: TimeRangeInput | None,
) -> Chart:
    chosen, title, kind = preset_or_query(preset, query, range)
    result = await answer_metrics_query(asker_for(chosen.range, chosen.filter), chosen)
    return chart_of(chosen, result, title, kind)


def _preset_info(p: ChartPreset) -> ChartPresetInfo:
    return ChartPresetInfo(
        id=strawberry.ID(p.id),
        title=p.title,
        description=p.description,
        kind=ChartKind[p.kind],
        query=p.query,
    )


@strawberry.type
class AskQuery:
    @strawberry.field(
        description="Answers a question in plain words (cost by model this month, top 5 users "
        "by tokens last week, failed tool calls by tool yesterday...) from the semantic layer: "
        "deterministic, no LLM. Readable by viewer keys and above; metered like metrics()."
    )
    async def ask(
        self,
        info: TallyInfo,
        question: Annotated[
            str,
            strawberry.argument(
                description="The question, in English, at most 300 characters; may name an "
                "IANA time zone (in Europe/Paris)."
            ),
        ],
        timezone: Annotated[
            str,
            strawberry.argument(
                description="IANA zone for day boundaries and buckets, unless the question "
                "names one."
            ),
        ] = "UTC",
    ) -> Answer:
        return await answer_question(lambda r, f: info.context.asker(r, f), question, timezone)

    @strawberry.field(description="The charts the server knows by name, with their queries.")
    def chart_presets(self, info: TallyInfo) -> list[ChartPresetInfo]:
        from tallyql.auth.principal import Permission

        info.context.require(Permission.READ)
        return [_preset_info(p) for p in PRESETS.values()]

    @strawberry.field(
        description="A preset or a custom query drawn as a chart with its data (give one of "
        "preset and query)."
    )
    async def chart(
        self,
        info: TallyInfo,
        preset: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="A chart preset's id (see chartPresets)."),
        ] = None,
        query: Annotated[
            MetricsQueryInput | None,
            strawberry.argument(description="A custom query to draw instead of a preset."),
        ] = None,
        range: Annotated[
            TimeRangeInput | None,
            strawberry.argument(
                description="Replaces the window of the preset or query; null: keep it."
            ),
        ] = None,
    ) -> Chart:
        return await chart_for(lambda r, f: info.context.asker(r, f), preset, query, range)
