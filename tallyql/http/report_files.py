"""`GET /v1/reports/runs/{run_id}/file?format=csv|html|pdf`: a report run's file, for 30 days
after the run, to any reading key of the run's workspace (audited as an export)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tallyql.auth.principal import Permission, Principal
from tallyql.http.auth import audit_request, requires, services_of
from tallyql.http.errors import error_response
from tallyql.reports.model import ReportFormat
from tallyql.reports.store import file_content

router = APIRouter()


@router.get("/v1/reports/runs/{run_id}/file")
async def report_file(
    run_id: str, request: Request, principal: Principal = Depends(requires(Permission.READ))
) -> Response:
    unknown = set(request.query_params) - {"format"}
    if unknown:
        return error_response(400, "BAD_REQUEST", f"unknown parameters: {sorted(unknown)}")
    fmt = request.query_params.get("format", ReportFormat.PDF.value)
    if fmt not in {f.value for f in ReportFormat}:
        return error_response(400, "BAD_REQUEST", "format is csv, html or pdf")
    services = services_of(request)
    found = await file_content(services.db, principal.workspace_id, run_id, fmt)
    if found is None:
        return error_response(404, "NOT_FOUND", "no such file (wrong run or format, or expired)")
    filename, media_type, content = found
    details = {"format": fmt, "filename": filename}
    await audit_request(request, principal, "export", "report_file", run_id, details)
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
