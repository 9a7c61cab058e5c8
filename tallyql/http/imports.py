"""`POST /v1/import/openrouter`: OpenRouter activity (the JSON of its `/api/v1/activity`)
imported as events (tallyql/imports/openrouter.py says how, and how nothing is counted
twice). One bad item is rejected alone with its index, field and message."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request

from tallyql.auth.principal import Permission, Principal
from tallyql.http.auth import client_ip, requires, services_of
from tallyql.http.body import read_body
from tallyql.http.errors import error_response
from tallyql.http.responses import JSONBody
from tallyql.imports.openrouter import MAX_EVENTS, expand, gateway_traffic, parse
from tallyql.ingest.body import BodyError
from tallyql.ingest.validate import FieldError
from tallyql.storage.audit import AuditRecord, record_audit
from tallyql.storage.writer import WriterBusy, WriterFailed, WriterStopped

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
    rows, errors = parse(body)
    if errors and errors[0].index == -1:
        return error_response(400, "BAD_REQUEST", errors[0].message)
    items = len(rows) + len(errors)  # each parse error is one item
    workspace = principal.workspace_id
    accepted = duplicates = skipped = planned = imported_rows = 0
    try:
        for index, row in rows:
            seen = await gateway_traffic(services.db, workspace, row)
            made = expand(row, seen)
            skipped += min(seen.requests, row.requests)
            if planned + len(made) > MAX_EVENTS:
                message = f"more than {MAX_EVENTS} events in one call; import fewer days at once"
                errors.append(FieldError(index, "requests", message))
                continue
            planned += len(made)
            for start in range(0, len(made), settings.max_batch_events):
                result = await services.ingest.ingest(
                    workspace, made[start : start + settings.max_batch_events]
                )
                accepted += result.accepted
                duplicates += result.duplicates
                errors += [FieldError(index, e.field, e.message) for e in result.errors]
            imported_rows += 1
    except WriterBusy as exc:
        return error_response(
            503, "BUSY", f"{exc}; retry (imports are idempotent)", {"Retry-After": "1"}
        )
    except WriterStopped:
        return error_response(
            503, "UNAVAILABLE", "server is shutting down; retry", {"Retry-After": "2"}
        )
    except WriterFailed as exc:
        return error_response(500, "WRITE_FAILED", str(exc))
    errors.sort(key=lambda e: e.index)
    answer = {
        "rows": items,
        "importedRows": imported_rows,
        "accepted": accepted,
        "duplicates": duplicates,
        "skippedGatewayRequests": skipped,
        "rejected": len({e.index for e in errors}),
        "errors": [e.as_dict() for e in errors],
    }
    async with services.db.write() as conn:
        await record_audit(
            conn,
            AuditRecord(
                workspace_id=workspace,
                action="execute",
                resource_type="provider_import",
                resource_id="openrouter",
                actor_id=principal.key_id,
                actor_type="api_key",
                source_ip=client_ip(request),
                details={k: v for k, v in answer.items() if k != "errors"},
            ),
        )
    return JSONBody(answer)
