"""`POST /v1/audit-events`: JSON array, {"events": [...]}, or NDJSON; gzip accepted."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tallyql.auth.principal import Permission, Principal
from tallyql.http.auth import requires, services_of
from tallyql.http.body import read_body
from tallyql.http.errors import error_response
from tallyql.http.responses import JSONBody
from tallyql.ingest.audit import ingest_audit_events
from tallyql.ingest.body import BodyError, parse_events

router = APIRouter()


@router.post("/v1/audit-events")
async def record_audit_events(
    request: Request, principal: Principal = Depends(requires(Permission.INGEST))
) -> JSONBody:
    """Store audit events; answers after commit with accepted, duplicates and per-item
    errors (index, field, message). Retries are idempotent by id."""
    services = services_of(request)
    settings = services.settings
    try:
        body = await read_body(request, settings.max_body_bytes)
        parsed = parse_events(body, request.headers.get("content-type"), settings.max_batch_events)
    except BodyError as exc:
        code = "PAYLOAD_TOO_LARGE" if exc.status == 413 else "BAD_REQUEST"
        return error_response(exc.status, code, str(exc))
    result = await ingest_audit_events(
        services.db, principal.workspace_id, parsed.events, parsed.errors
    )
    return JSONBody(result.as_dict())
