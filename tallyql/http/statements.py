"""`GET /v1/statements/{period}/{of}.{format}`: a chargeback statement as CSV or PDF (every
department, or one with `department`), recorded in the audit trail like every export."""

from __future__ import annotations

import re
from datetime import date
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tallyql.auth.principal import Permission, Principal
from tallyql.costs.statements import StatementPeriod, period_bounds, statements
from tallyql.engine.analytics import Asker
from tallyql.engine.query.cost import FIELD_POINTS
from tallyql.engine.query.cost_meter import CostLimitExceeded, CostMeter, RateLimited
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.timerange import TimeRangeError, TimeWindow, zone
from tallyql.exporting.statement_files import statement_csv, statement_pdf
from tallyql.http.auth import audit_request, requires, services_of
from tallyql.http.errors import error_response
from tallyql.http.export import cost_headers

router = APIRouter()
FORMATS = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
PARAMS = frozenset({"timezone", "department"})


@router.get("/v1/statements/{period}/{of}.{fmt}")
async def statement_file(
    period: str,
    of: str,
    fmt: str,
    request: Request,
    principal: Principal = Depends(requires(Permission.READ)),
) -> Response:
    services = services_of(request)
    unknown = set(request.query_params) - PARAMS
    if unknown:
        return error_response(400, "BAD_REQUEST", f"unknown parameters: {sorted(unknown)}")
    if fmt not in FORMATS:
        return error_response(404, "NOT_FOUND", "use .csv or .pdf")
    try:
        kind = StatementPeriod(period)
    except ValueError:
        return error_response(404, "NOT_FOUND", "the period is month or quarter")
    timezone = request.query_params.get("timezone", "UTC")
    try:
        day = date.fromisoformat(of)
        tz: ZoneInfo = zone(timezone)
        _, start, end = period_bounds(kind, day, tz)
    except TimeRangeError as exc:
        return error_response(400, "BAD_REQUEST", str(exc))
    except (ValueError, OverflowError):
        return error_response(400, "BAD_REQUEST", "`of` is a date (YYYY-MM-DD) of years 1-9998")
    everyone = "department" not in request.query_params
    department = request.query_params.get("department") or None
    # priced like GraphQL's `statements`: a root field's point, then each question's plan
    meter = CostMeter(
        services.settings.cost_request_limit,
        getattr(request.app.state, "key_buckets", None),
        principal.key_id,
    )
    window = TimeWindow(start, end, tz)
    asker = Asker(services.db, Scope.of(principal.workspace_id), window, meter=meter)
    try:
        meter.charge(FIELD_POINTS, "the statement")
        found = await statements(services.db, asker, principal.workspace_id, kind, day, timezone)
    except CostLimitExceeded as exc:
        return error_response(400, exc.code, str(exc), cost=meter.summary())
    except RateLimited as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        return error_response(429, exc.code, str(exc), headers, cost=meter.summary())
    details = {
        "format": fmt,
        "timezone": timezone,
        "department": "*" if everyone else department,
        "version": found.version,
    }
    period_id = f"{kind.value}:{found.first_day.isoformat()}"
    await audit_request(request, principal, "export", "statement", period_id, details)
    if fmt == "csv":
        body = statement_csv(found, department, everyone)
    else:
        body = statement_pdf(found, principal.workspace_name, department, everyone)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", principal.workspace_name).strip("-") or "workspace"
    who = "all" if everyone else re.sub(r"[^A-Za-z0-9_-]+", "-", department or "none")
    name = f"tallyql-{safe}-statement-{kind.value}-{found.first_day.isoformat()}-{who}.{fmt}"
    return Response(
        body,
        media_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"', **cost_headers(meter)},
    )
