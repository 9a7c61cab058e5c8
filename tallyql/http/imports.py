"""`POST /v1/import/openrouter`: OpenRouter activity (the JSON of its `/api/v1/activity`)
imported as events (tallyql/imports/openrouter.py says how, and how nothing is counted
twice). One bad item is rejected alone with its index, field and message."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request

from tallyql.auth.principal import Permission, Principal
from tallyql.http.auth import audit_request, requires, services_of
from tallyql.http.body import read_body
from tallyql.http.errors import error_response
from tallyql.http.responses import JSONBody
from tallyql.imports.openrouter import ImportRefused, import_activity
from tallyql.ingest.body import BodyError
from tallyql.storage.ingest.writer import WriterBusy, WriterFailed, WriterStopped

router = APIRouter()


@router.post("/v1/import/openrouter", response_model=None)
async def import_openrouter(
    request: Request, principal: Principal = Depends(requires(Permission.INGEST))
) -> JSONBody:
    services = services_of(request)
    settings = services.settings
    try:
        body = orjson.loads(await read_body(request, settings.max_body_bytes))
    except BodyError as exc:
        code = "PAYLOAD_TOO_LARGE" if exc.status == 413 else "BAD_REQUEST"
        return error_response(exc.status, code, str(exc))
    except orjson.JSONDecodeError:
        return error_response(400, "BAD_REQUEST", "the body is not JSON")
    try:
        answer = await import_activity(
            services.db, services.ingest, principal.workspace_id, body, settings.max_batch_events
        )
    except ImportRefused as exc:
        return error_response(400, "BAD_REQUEST", str(exc))
    except WriterBusy as exc:
        message = f"{exc}; retry (imports are idempotent)"
        return error_response(503, "BUSY", message, {"Retry-After": "1"})
    except WriterStopped:
        message = "server is shutting down; retry"
        return error_response(503, "UNAVAILABLE", message, {"Retry-After": "2"})
    except WriterFailed as exc:
        return error_response(500, "WRITE_FAILED", str(exc))
    counts = {k: v for k, v in answer.items() if k != "errors"}
    await audit_request(request, principal, "execute", "provider_import", "openrouter", counts)
    return JSONBody(answer)
