"""`POST /v1/events`: JSON array, {"events": [...]}, or NDJSON; gzip accepted."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tallyql.auth.principal import Permission, Principal
from tallyql.http.auth import requires, services_of
from tallyql.http.body import read_body
from tallyql.http.errors import error_response
from tallyql.http.responses import JSONBody
from tallyql.ingest.body import BodyError
from tallyql.storage.ingest.writer import WriterBusy, WriterFailed, WriterStopped

router = APIRouter()


@router.post("/v1/events")
async def ingest_events(
    request: Request, principal: Principal = Depends(requires(Permission.INGEST))
) -> JSONBody:
    services = services_of(request)
    settings = services.settings
    try:
        body = await read_body(request, settings.max_body_bytes)
        result = await services.ingest.ingest_body(
            principal.workspace_id,
            body,
            request.headers.get("content-type"),
            settings.max_batch_events,
        )
    except BodyError as exc:
        code = "PAYLOAD_TOO_LARGE" if exc.status == 413 else "BAD_REQUEST"
        return error_response(exc.status, code, str(exc))
    except WriterBusy as exc:
        return error_response(
            503, "BUSY", f"{exc}; nothing was stored, retry", {"Retry-After": "1"}
        )
    except WriterStopped:
        return error_response(
            503, "UNAVAILABLE", "server is shutting down; retry", {"Retry-After": "2"}
        )
    except WriterFailed as exc:
        return error_response(500, "WRITE_FAILED", str(exc))
    return JSONBody(result.as_dict())
