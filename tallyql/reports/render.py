"""A report's figures, through the engine, as tables; and the tables as CSV (a zip of one
file per section), HTML and PDF (fpdf2, with a Vega-Lite bar chart of each breakdown, drawn by
vl-convert without a browser).

Every figure is the engine's answer for the run's window, the same as the GraphQL field of the
same name would give for that window and filter."""

from __future__ import annotations

import csv
import html
import io
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import vl_convert
from fpdf import FPDF

from tallyql.budgets.status import budget_status
from tallyql.budgets.store import all_budgets
from tallyql.costs import insights
from tallyql.engine import analytics
from tallyql.engine.analytics import Asker
from tallyql.engine.charts import VEGA_LITE_SCHEMA
from tallyql.engine.query.registry import Metric
from tallyql.engine.ranking import grouped, rank
from tallyql.engine.relative_change import relative_change
from tallyql.engine.sessions import session_stats
from tallyql.money import to_usd
from tallyql.reports.model import Report, ReportFormat, Section, SectionKind

OVERVIEW_ROWS = (
    ("Requests", "total_requests"),
    ("Error rate", "error_rate"),
    ("Cost (USD)", "cost_usd"),
    ("Input tokens", "input_tokens"),
    ("Output tokens", "output_tokens"),
    ("Total tokens", "total_tokens"),
    ("P95 latency, LLM calls (ms)", "p95_latency_ms"),
    ("Active users", "active_users"),
)
BREAKDOWN_METRICS = (Metric.COST_USD, Metric.REQUESTS, Metric.TOTAL_TOKENS, Metric.ERRORS)
MEDIA_TYPES = {
    ReportFormat.CSV: "application/zip",
    ReportFormat.HTML: "text/html; charset=utf-8",
    ReportFormat.PDF: "application/pdf",
}
EXTENSIONS = {ReportFormat.CSV: "zip", ReportFormat.HTML: "html", ReportFormat.PDF: "pdf"}


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    chart: tuple[int, int] | None = None
    """(label column, value column) drawn as bars in the PDF."""


@dataclass
class Rendered:
    report_name: str
    start: datetime
    end: datetime
    timezone: str
    tables: list[Table] = field(default_factory=list)


def _change(current: float | None, previous: float | None) -> float | None:
    return relative_change(current, previous, 0.0).percent


async def _overview(asker: Asker) -> Table:
    names = [name for _, name in OVERVIEW_ROWS]
    now = await analytics.overview(asker, names)
    before = await analytics.overview(asker.for_window(asker.window.previous()), names)
    rows = []
    for label, name in OVERVIEW_ROWS:
        current, previous = now.values[name], before.values[name]
        change = _change(current, previous)
        rows.append([label, current, previous, None if change is None else round(change, 2)])
    return Table("Overview", ["Figure", "This period", "Previous period", "Change (%)"], rows)


async def _breakdown(asker: Asker, section: Section) -> Table:
    assert section.dimension is not None
    groups = rank(await grouped(asker, (section.dimension,), BREAKDOWN_METRICS), Metric.COST_USD)
    rows = [
        [key[0], *(values.get(m) or 0 for m in BREAKDOWN_METRICS)]
        for key, values in groups[: section.top]
    ]
    name = section.dimension.value.lower().replace("_", " ")
    columns = [name.capitalize(), "Cost (USD)", "Requests", "Total tokens", "Errors"]
    return Table(f"Top {section.top} by {name}, by cost", columns, rows, chart=(0, 1))


async def _cost_insights(asker: Asker) -> Table:
    trend = await insights.trend(asker)
    projection = await insights.projection(asker)
    rows: list[list[Any]] = [
        ["Cost this period (USD)", trend.current_usd],
        ["Cost in the previous period (USD)", trend.previous_usd],
        ["Direction", trend.direction],
        ["Change (%)", None if trend.percent is None else round(trend.percent, 2)],
        ["Days with traffic", projection.days_with_data],
        ["Average per day with traffic (USD)", projection.daily_average_usd],
        ["Projected 30 days (USD)", projection.projected_usd],
    ]
    return Table("Cost insights", ["Figure", "Value"], rows)


async def _budgets(asker: Asker, workspace_id: int) -> Table:
    rows = []
    for budget in await all_budgets(asker.db, [workspace_id]):
        status = await budget_status(asker.db, budget, asker.window.end)
        rows.append(
            [
                budget.name,
                budget.period.name,
                to_usd(status.spend_nanousd),
                to_usd(budget.amount_nanousd),
                round(status.percent_used * 100, 2),
                status.state.name,
            ]
        )
    columns = ["Budget", "Period", "Spent (USD)", "Limit (USD)", "Used (%)", "State"]
    return Table("Budgets (at the end of the range)", columns, rows)


async def _session_stats(asker: Asker, workspace_id: int) -> Table:
    stats = await session_stats(asker.db, workspace_id, asker.window, asker.filter)
    rows = [[name, d.p50, d.avg, d.p95] for name, d in sorted(stats.measures.items())]
    title = f"Sessions ({stats.sessions}): exact P50, average and P95"
    return Table(title, ["Measure", "P50", "Average", "P95"], rows)


async def _errors(asker: Asker) -> Table:
    summary = await analytics.errors(asker)
    rows: list[list[Any]] = [["All", None, summary.total_errors, summary.error_rate]]
    rows += [[model, provider, errors, rate] for model, provider, errors, rate in summary.by_model]
    return Table("Errors by model", ["Model", "Provider", "Errors", "Error rate"], rows)


async def render_tables(report: Report, asker: Asker) -> list[Table]:
    tables = []
    for section in report.sections:
        if section.kind is SectionKind.OVERVIEW:
            tables.append(await _overview(asker))
        elif section.kind is SectionKind.BREAKDOWN:
            tables.append(await _breakdown(asker, section))
        elif section.kind is SectionKind.COST_INSIGHTS:
            tables.append(await _cost_insights(asker))
        elif section.kind is SectionKind.BUDGETS:
            tables.append(await _budgets(asker, report.workspace_id))
        elif section.kind is SectionKind.SESSION_STATS:
            tables.append(await _session_stats(asker, report.workspace_id))
        else:
            tables.append(await _errors(asker))
    return tables


# ---------------------------------------------------------------- encoders


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _shown(value: Any) -> str:
    """A figure as people read it (the CSV keeps full precision)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")[:60]


def to_csv_zip(doc: Rendered) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, table in enumerate(doc.tables, start=1):
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(table.columns)
            writer.writerows([_cell(v) for v in row] for row in table.rows)
            archive.writestr(f"{i:02d}-{_slug(table.title)}.csv", text.getvalue())
    return out.getvalue()


def _heading(doc: Rendered) -> str:
    return f"{doc.start.isoformat()} to {doc.end.isoformat()} (UTC), days in {doc.timezone}"


def to_html(doc: Rendered) -> bytes:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(doc.report_name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:0 0 2em}"
        "th,td{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}</style></head><body>",
        f"<h1>{e(doc.report_name)}</h1><p>{e(_heading(doc))}</p>",
    ]
    for table in doc.tables:
        parts.append(f"<h2>{e(table.title)}</h2><table><tr>")
        parts += [f"<th>{e(c)}</th>" for c in table.columns]
        parts.append("</tr>")
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{e(_shown(v))}</td>" for v in row) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts).encode()


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def bar_spec(table: Table) -> dict[str, Any] | None:
    """A Vega-Lite v5 bar chart of a table's chart columns, data inlined; None when there is
    nothing above zero to draw."""
    assert table.chart is not None
    label_at, value_at = table.chart
    values: list[dict[str, Any]] = [
        {
            "label": str(r[label_at] if r[label_at] is not None else "(none)"),
            "value": r[value_at] or 0,
        }
        for r in table.rows
    ]
    if not any(v["value"] > 0 for v in values):
        return None
    return {
        "$schema": VEGA_LITE_SCHEMA,
        "width": 460,
        "height": max(60, 18 * len(values)),
        "data": {"values": values},
        "mark": {"type": "bar", "color": "#3c6eb4"},
        "encoding": {
            "y": {"field": "label", "type": "nominal", "sort": None, "title": None},
            "x": {"field": "value", "type": "quantitative", "title": table.columns[value_at]},
        },
        "config": {"font": "DejaVu Sans", "view": {"stroke": None}},
    }


def _bars(pdf: FPDF, table: Table) -> None:
    """The table's chart, drawn by Vega-Lite (vl-convert, no browser) and placed as a PNG."""
    spec = bar_spec(table)
    if spec is None:
        return
    png = vl_convert.vegalite_to_png(spec, scale=2)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.image(io.BytesIO(bytes(png)), w=width * 0.8)
    pdf.ln(2)


def to_pdf(doc: Rendered) -> bytes:
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(_latin1(doc.report_name))
    pdf.set_creator("tallyql")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 9, _latin1(doc.report_name), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.cell(0, 6, _latin1(_heading(doc)), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for table in doc.tables:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 8, _latin1(table.title), new_x="LMARGIN", new_y="NEXT")
        if table.chart is not None:
            _bars(pdf, table)
        first = width * 0.34
        rest = (width - first) / max(1, len(table.columns) - 1)
        pdf.set_font("Helvetica", "B", 8)
        for i, column in enumerate(table.columns):
            pdf.cell(
                first if i == 0 else rest,
                6,
                _latin1(column),
                border="B",
                align="L" if i == 0 else "R",
            )
        pdf.ln()
        pdf.set_font("Helvetica", size=8)
        for row in table.rows:
            for i, value in enumerate(row):
                text = _latin1(_shown(value))[:40]
                pdf.cell(first if i == 0 else rest, 5, text, align="L" if i == 0 else "R")
            pdf.ln()
        pdf.ln(4)
    return bytes(pdf.output())


def encode(doc: Rendered, fmt: ReportFormat) -> bytes:
    if fmt is ReportFormat.CSV:
        return to_csv_zip(doc)
    if fmt is ReportFormat.HTML:
        return to_html(doc)
    return to_pdf(doc)


def file_name(report: Report, start: datetime, fmt: ReportFormat) -> str:
    safe = _slug(report.name) or "report"
    return f"tallyql-{safe}-{start.strftime('%Y%m%dT%H%MZ')}.{EXTENSIONS[fmt]}"
