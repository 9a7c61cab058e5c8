"""Chargeback statements as files: CSV (one row per line item, every figure exact as the API
gives it) and PDF (a printable statement per department, rendered in pure Python by fpdf2).

The PDF uses the core Helvetica font, which holds Latin-1: a character outside it (a CJK user
id, say) prints as "?"; the CSV keeps every name exactly."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace

from fpdf import FPDF

from tallyql.costs.statements import DepartmentStatement, Line, Statements

CSV_COLUMNS = (
    "department",
    "line",
    "key",
    "provider",
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_events",
)
"""`line`: total, member, model or unpriced_model (requests = its unpriced events)."""


def _selected(
    s: Statements, department: str | None, all_departments: bool
) -> list[DepartmentStatement]:
    if all_departments:
        return s.departments
    found = s.department(department)
    return [found or DepartmentStatement(department, Line(department))]


def _rows(d: DepartmentStatement) -> Iterator[tuple[str, Line]]:
    yield "total", d.totals
    for line in d.members:
        yield "member", line
    for line in d.models:
        yield "model", line
    for line in d.unpriced_models:
        yield "unpriced_model", line


def statement_csv(s: Statements, department: str | None, all_departments: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in _selected(s, department, all_departments):
        for kind, line in _rows(d):
            writer.writerow(
                (
                    d.department or "",
                    kind,
                    line.key or "",
                    line.provider or "",
                    line.requests,
                    line.input_tokens,
                    line.output_tokens,
                    line.total_tokens,
                    repr(line.cost_usd),
                    line.unpriced_events,
                )
            )
    return out.getvalue().encode()


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def usd(value: float) -> str:
    return f"${value:,.2f}"


class _Document(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.title_text = title
        self.set_auto_page_break(auto=True, margin=15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.cell(0, 5, _latin1(f"{self.title_text} - page {self.page_no()}"), align="C")


TABLE_WIDTHS = (62, 22, 26, 26, 26, 28)


def _table(
    pdf: FPDF, heading: str, lines: list[Line], models: bool, first_title: str | None = None
) -> None:
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 7, _latin1(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 8)
    first = first_title or ("Model" if models else "Member")
    titles = (first, "Requests", "Input tok.", "Output tok.")
    for width, title in zip(TABLE_WIDTHS, (*titles, "Total tok.", "Cost (USD)"), strict=True):
        pdf.cell(width, 6, title, border="B", align="L" if title in titles[:1] else "R")
    pdf.ln()
    pdf.set_font("Helvetica", size=8)
    for line in lines:
        name = line.key or "(none)"
        if models and line.provider:
            name = f"{line.provider} / {name}"
        cells = (
            _latin1(name)[:48],
            f"{line.requests:,}",
            f"{line.input_tokens:,}",
            f"{line.output_tokens:,}",
            f"{line.total_tokens:,}",
            usd(line.cost_usd),
        )
        for i, (width, text) in enumerate(zip(TABLE_WIDTHS, cells, strict=True)):
            pdf.cell(width, 5, text, align="L" if i == 0 else "R")
        pdf.ln()
    pdf.ln(3)


def statement_pdf(
    s: Statements, workspace: str, department: str | None, all_departments: bool
) -> bytes:
    period = f"{s.period.value} from {s.first_day.isoformat()} ({s.timezone})"
    pdf = _Document(_latin1(f"tallyql statement - {workspace} - {period}"))
    pdf.set_title(pdf.title_text)
    pdf.set_creator("tallyql")
    status = (
        f"Issued {s.issued_at.isoformat()} (version {s.version})"
        if s.closed and s.issued_at is not None
        else "Period still open: figures may change"
    )
    if all_departments:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 14)
        pdf.cell(0, 9, _latin1(f"Statements: {workspace}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        pdf.multi_cell(0, 5, _latin1(f"Period: {period}. {status}."), new_x="LMARGIN", new_y="NEXT")
        if s.restated_reason:
            pdf.multi_cell(
                0, 5, _latin1(f"Restated: {s.restated_reason}"), new_x="LMARGIN", new_y="NEXT"
            )
        pdf.ln(2)
        t = s.totals
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(
            0,
            7,
            f"Total: {usd(t.cost_usd)} - {t.requests:,} requests - {t.total_tokens:,} tokens",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.ln(2)
        summary = [replace(d.totals, key=d.department or "(no department)") for d in s.departments]
        _table(pdf, "By department", summary, models=False, first_title="Department")
    for d in _selected(s, department, all_departments):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 14)
        name = d.department or "(no department)"
        pdf.cell(0, 9, _latin1(f"Statement: {name}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        for text in (
            f"Workspace: {workspace}",
            f"Period: {period}, {s.start.isoformat()} to {s.end.isoformat()} (UTC)",
            status,
            *([f"Restated: {s.restated_reason}"] if s.restated_reason else []),
        ):
            pdf.multi_cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 11)
        t = d.totals
        pdf.cell(
            0,
            7,
            f"Total: {usd(t.cost_usd)} - {t.requests:,} requests - {t.total_tokens:,} tokens",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        if t.unpriced_events:
            pdf.set_font("Helvetica", size=9)
            pdf.cell(
                0,
                5,
                f"{t.unpriced_events:,} events had no price and count $0 (listed below).",
                new_x="LMARGIN",
                new_y="NEXT",
            )
        pdf.ln(2)
        _table(pdf, "By member", d.members, models=False)
        _table(pdf, "By model", d.models, models=True)
        if d.unpriced_models:
            pdf.set_font("Helvetica", "B", 10)
            pdf.cell(0, 7, "Unpriced events by model", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=8)
            for line in d.unpriced_models:
                label = f"{line.provider or '-'} / {line.key or '(no model)'}: {line.requests:,}"
                pdf.cell(0, 5, _latin1(label), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
