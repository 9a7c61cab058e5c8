"""Charts of custom queries: the six presets, Vega-Lite v5 specs with their data inlined, and
the headline sentence of an answer. Pure: rows in, JSON out; rendering to PNG or SVG is the
HTTP layer's (tallyql/http/charts.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tallyql.engine.query.registry import METRICS, OVERLAPPING_DIMENSIONS, Dimension, Metric
from tallyql.engine.vocabulary import DIMENSION_WORDS, METRIC_WORDS

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
CHART_KINDS = ("LINE", "STACKED_AREA", "BAR", "TABLE")
WIDTH, HEIGHT = 640, 320
"""Plot size in pixels (the image adds axes, legend and title around it)."""


@dataclass(frozen=True)
class ChartPreset:
    id: str
    title: str
    description: str
    kind: str
    query: dict[str, Any]
    """A MetricsQueryInput in its GraphQL input shape; its range is the default."""


def _preset_query(metrics: list[str], **rest: Any) -> dict[str, Any]:
    return {"metrics": metrics, "range": {"preset": "LAST_30D", "timezone": "UTC"}, **rest}


PRESETS: dict[str, ChartPreset] = {
    p.id: p
    for p in (
        ChartPreset(
            "cost-by-model",
            "Cost by model",
            "Cost in USD per model, largest first (top 15).",
            "BAR",
            _preset_query(
                ["COST_USD"],
                dimensions=[{"dimension": "MODEL"}],
                orderBy=[{"metric": "COST_USD", "descending": True}],
                limit=15,
            ),
        ),
        ChartPreset(
            "tokens-over-time",
            "Tokens over time",
            "Input and output tokens per day, stacked.",
            "STACKED_AREA",
            _preset_query(["INPUT_TOKENS", "OUTPUT_TOKENS"], granularity="DAY"),
        ),
        ChartPreset(
            "daily-cost-trend",
            "Daily cost trend",
            "Cost in USD per day.",
            "LINE",
            _preset_query(["COST_USD"], granularity="DAY"),
        ),
        ChartPreset(
            "requests-by-provider",
            "Requests by provider",
            "Events per model provider, largest first.",
            "BAR",
            _preset_query(
                ["REQUESTS"],
                dimensions=[{"dimension": "PROVIDER"}],
                orderBy=[{"metric": "REQUESTS", "descending": True}],
            ),
        ),
        ChartPreset(
            "latency-by-model",
            "Latency by model",
            "P95 latency in ms of LLM calls per model, slowest first (top 15).",
            "BAR",
            _preset_query(
                ["P95_LATENCY_MS"],
                dimensions=[{"dimension": "MODEL"}],
                filter={"kinds": ["LLM_CALL"]},
                orderBy=[{"metric": "P95_LATENCY_MS", "descending": True}],
                limit=15,
            ),
        ),
        ChartPreset(
            "cost-by-request-type",
            "Cost by request type",
            "Cost in USD per request type (chat, completion, embedding...).",
            "BAR",
            _preset_query(
                ["COST_USD"],
                dimensions=[{"dimension": "REQUEST_TYPE"}],
                orderBy=[{"metric": "COST_USD", "descending": True}],
            ),
        ),
    )
}


@dataclass(frozen=True)
class Table:
    """A custom query's answer as the chart reads it."""

    metrics: Sequence[Metric]
    dimensions: Sequence[Dimension]
    rows: Sequence[tuple[datetime | None, Sequence[str | None], Sequence[float | None]]]
    """(bucket, keys as text, values) per row."""
    timezone: str = "UTC"
    """The range's zone: buckets are drawn at their wall-clock time there."""


def metric_label(metric: Metric) -> str:
    return METRIC_WORDS[metric].label


def dimension_label(dimension: Dimension) -> str:
    label = DIMENSION_WORDS[dimension].label
    return label[0].upper() + label[1:]


def _records(table: Table) -> list[dict[str, Any]]:
    """Long form: one record per row and metric, so that several metrics share an axis."""
    dims = [dimension_label(d) for d in table.dimensions]
    zone = ZoneInfo(table.timezone)
    out: list[dict[str, Any]] = []
    for bucket, keys, values in table.rows:
        base: dict[str, Any] = {}
        if bucket is not None:
            # the wall-clock time in the range's zone, written as UTC and drawn on a UTC
            # scale: every renderer, whatever its own zone, labels days as the query cut them
            wall = bucket.astimezone(zone).replace(tzinfo=None)
            base["Time"] = wall.isoformat() + "Z"
        for name, key in zip(dims, keys, strict=True):
            base[name] = "(none)" if key is None else key
        for metric, value in zip(table.metrics, values, strict=True):
            out.append({**base, "Metric": metric_label(metric), "Value": value})
    return out


def vega_lite(table: Table, kind: str, title: str) -> dict[str, Any]:
    """A complete Vega-Lite v5 spec of `table` drawn as `kind`, data inlined."""
    records = _records(table)
    dims = [dimension_label(d) for d in table.dimensions]
    several = len(table.metrics) > 1
    value_title = metric_label(table.metrics[0]) if not several else "Value"
    spec: dict[str, Any] = {
        "$schema": VEGA_LITE_SCHEMA,
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "data": {"values": records},
        "config": {"font": "DejaVu Sans", "view": {"stroke": None}},
    }
    series = dims[0] if dims else ("Metric" if several else None)
    tooltip = [{"field": f} for f in (["Time"] if any("Time" in r for r in records) else [])]
    tooltip += [{"field": d} for d in dims] + [{"field": "Metric"}, {"field": "Value"}]
    if kind in ("LINE", "STACKED_AREA") and any("Time" in r for r in records):
        encoding: dict[str, Any] = {
            "x": {
                "field": "Time",
                "type": "temporal",
                "scale": {"type": "utc"},
                "title": f"Local time ({table.timezone})",
            },
            "y": {
                "field": "Value",
                "type": "quantitative",
                "title": value_title,
                "aggregate": "sum",
                **({"stack": "zero"} if kind == "STACKED_AREA" else {"stack": None}),
            },
            "tooltip": tooltip,
        }
        if series is not None:
            encoding["color"] = {"field": series, "type": "nominal", "title": series}
        if dims and several:
            encoding["strokeDash"] = {"field": "Metric", "type": "nominal"}
        spec["mark"] = (
            {"type": "area", "line": True, "opacity": 0.7}
            if kind == "STACKED_AREA"
            else {"type": "line", "point": True}
        )
        spec["encoding"] = encoding
        return spec
    if kind == "BAR" and dims:
        order = [r[dims[0]] for r in records if r["Metric"] == metric_label(table.metrics[0])]
        encoding = {
            "y": {"field": dims[0], "type": "nominal", "sort": order, "title": dims[0]},
            "x": {"field": "Value", "type": "quantitative", "title": value_title},
            "tooltip": tooltip,
        }
        if several:
            encoding["color"] = {"field": "Metric", "type": "nominal"}
            encoding["yOffset"] = {"field": "Metric"}
        elif len(dims) > 1:
            encoding["color"] = {"field": dims[1], "type": "nominal"}
        spec["mark"] = {"type": "bar", "tooltip": True}
        spec["encoding"] = encoding
        return spec
    # a table: the rows as text, one line each
    lines: list[dict[str, object]] = []
    for record in records:
        parts = [str(record[k]) for k in ("Time", *dims) if k in record]
        parts.append(
            f"{record['Metric']}: {format_value(_metric_of(table, record), record['Value'])}"
        )
        lines.append({"Line": " | ".join(parts), "Row": len(lines)})
    spec.pop("width")
    spec["height"] = max(20, 18 * len(lines))
    spec["data"] = {"values": lines}
    spec["mark"] = {"type": "text", "align": "left", "baseline": "middle", "fontSize": 13}
    spec["encoding"] = {
        "y": {"field": "Row", "type": "ordinal", "axis": None},
        "text": {"field": "Line", "type": "nominal"},
    }
    return spec


def _metric_of(table: Table, record: dict[str, Any]) -> Metric:
    return next(m for m in table.metrics if metric_label(m) == record["Metric"])


def format_value(metric: Metric, value: float | None) -> str:
    if value is None:
        return "no value"
    if metric is Metric.COST_USD:
        return f"${value:,.2f}"
    if metric in (Metric.ERROR_RATE, Metric.SUCCESS_RATE):
        return f"{value * 100:.1f}%"
    if metric.value.endswith("_MS"):
        return f"{value:,.0f} ms"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def summary(
    table: Table,
    total: float | None,
    previous_total: float | None,
    period_words: str,
) -> str:
    """One or two sentences with the headline figures: the largest row and its share of the
    total, the total, and the change against the previous period when there is one."""
    metric = table.metrics[0]
    label = metric_label(metric)
    lower = label[0].lower() + label[1:]  # "cost in USD"
    additive = METRICS[metric].additive
    if not table.rows or all(v[0] is None for _, _, v in table.rows):
        return f"No events for {lower} {period_words}."
    sentences: list[str] = []
    if table.dimensions:
        best = max((r for r in table.rows if r[2][0] is not None), key=lambda r: r[2][0] or 0.0)
        name = " / ".join("(none)" if k is None else k for k in best[1])
        if best[0] is not None:
            name += f" on {best[0].date().isoformat()}"
        head = f"{name} has the largest {lower}: {format_value(metric, best[2][0])}"
        overlap = any(d in OVERLAPPING_DIMENSIONS for d in table.dimensions)
        if additive and total and not overlap and best[0] is None:
            head += f" ({(best[2][0] or 0) / total:.0%} of the total)"
        sentences.append(head + ".")
    elif len(table.rows) > 1:
        best = max(table.rows, key=lambda r: r[2][0] or 0.0)
        when = best[0].isoformat(timespec="minutes") if best[0] else ""
        sentences.append(f"The peak is {format_value(metric, best[2][0])} at {when}.")
    if total is not None:
        text = f"{'Total' if additive else label} {period_words}: {format_value(metric, total)}"
        if previous_total:
            change = (total - previous_total) / previous_total
            text += f", {change:+.0%} against the previous period"
            text += f" ({format_value(metric, previous_total)})"
        elif previous_total == 0 and total:
            text += ", none in the previous period"
        sentences.append(text + ".")
    return " ".join(sentences)
