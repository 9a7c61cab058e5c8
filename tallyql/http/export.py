"""`GET /v1/export/{dataset}`: requests, sessions, audit-events, breakdown or timeseries as
CSV, JSON or NDJSON, streamed, with a file name that says what it holds; every export is
recorded in the audit trail (action export) before the first byte is sent. Exports with costs
say in headers how many of the range's events are unpriced, and of which models."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from tallyql.auth.principal import Permission, Principal
from tallyql.engine.analytics import QueryError
from tallyql.engine.buckets import BucketError
from tallyql.engine.filter_codec import spec_to_json
from tallyql.exporting.datasets import (
    COST_DATASETS,
    DATASETS,
    ExportJob,
    Rows,
    unpriced_headers,
)
from tallyql.exporting.encoders import MEDIA_TYPES, encode
from tallyql.exporting.params import ExportParamError, parse
from tallyql.http.auth import client_ip, requires, services_of
from tallyql.http.errors import error_response
from tallyql.storage.audit import AuditRecord, record_audit

router = APIRouter()


def _stamp(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%MZ")


def file_name(workspace: str, dataset: str, start: datetime, end: datetime, fmt: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", workspace).strip("-") or "workspace"
    return f"tallyql-{safe}-{dataset}-{_stamp(start)}-{_stamp(end)}.{fmt}"


async def _chained(first: list[Sequence[Any]] | None, rest: Rows) -> Rows:
    if first is not None:
        yield first
    async for batch in rest:
        yield batch


@router.get("/v1/export/{dataset}")
async def export(
    dataset: str, request: Request, principal: Principal = Depends(requires(Permission.READ))
) -> Response:
    services = services_of(request)
    if dataset not in DATASETS:
        names = ", ".join(DATASETS)
        return error_response(404, "NOT_FOUND", f"no dataset {dataset!r}; use one of {names}")
    options, build = DATASETS[dataset]
    try:
        params = parse(request.query_params.multi_items(), options)
        job = ExportJob(services.db, principal.workspace_id, params)
        columns, rows = build(job)
        first = await anext(rows, None)  # engine questions fail here, before any byte is sent
        extra = await unpriced_headers(job) if dataset in COST_DATASETS else {}
    except (ExportParamError, QueryError, BucketError) as exc:
        return error_response(400, "BAD_REQUEST", str(exc))
    window = params.window
    try:
        await _audit(services, principal, request, dataset, params)
    except BaseException:
        await rows.aclose()
        raise
    name = file_name(principal.workspace_name, dataset, window.start, window.end, params.format)
    body: AsyncIterator[bytes] = encode(params.format, columns, _chained(first, rows))
    return StreamingResponse(
        body,
        media_type=MEDIA_TYPES[params.format],
        headers={"Content-Disposition": f'attachment; filename="{name}"', **extra},
    )


async def _audit(
    services: Any, principal: Principal, request: Request, dataset: str, params: Any
) -> None:
    window = params.window
    async with services.db.write() as conn:
        await record_audit(
            conn,
            AuditRecord(
                workspace_id=principal.workspace_id,
                action="export",
                resource_type="export",
                resource_id=dataset,
                actor_id=principal.key_id,
                actor_type="api_key",
                source_ip=client_ip(request),
                details={
                    "format": params.format,
                    "start": window.start.isoformat(),
                    "end": window.end.isoformat(),
                    "timezone": window.tz.key,
                    "filter": spec_to_json(params.spec),
                    "options": params.options,
                },
            ),
        )
