"""`GET /v1/export/{dataset}`: requests, sessions, audit-events, breakdown or timeseries as
CSV, JSON or NDJSON, streamed, with a file name that says what it holds; every export is
recorded in the audit trail (action export) before the first byte is sent. Exports with costs
say in headers how many of the range's events are unpriced, and of which models.

Exports are priced by the cost model of GraphQL (engine/query/cost.py) before any statement runs and
paid from the same budgets (the request's, the key's per minute): a point as a root field,
engine answers (breakdown, timeseries, the unpriced count) their plans, streamed stored rows
(requests, sessions, audit events) the rows their window is assumed to hold. Over the
request's budget: 400 COST_LIMIT; over the key's: 429 RATE_LIMITED with Retry-After. A read
cancelled by the statement timeout before the first byte is 503 QUERY_TIMEOUT (was a 500)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from tallyql.auth.principal import Permission, Principal
from tallyql.engine.analytics import QueryError
from tallyql.engine.query.buckets import BucketError
from tallyql.engine.query.cost import FIELD_POINTS
from tallyql.engine.query.cost_meter import CostLimitExceeded, CostMeter, RateLimited
from tallyql.engine.query.filter_codec import spec_to_json
from tallyql.exporting.datasets import (
    COST_DATASETS,
    DATASETS,
    ExportJob,
    Rows,
    unpriced_headers,
)
from tallyql.exporting.encoders import MEDIA_TYPES, encode
from tallyql.exporting.params import ExportParamError, parse
from tallyql.http.auth import audit_request, requires, services_of
from tallyql.http.errors import error_response
from tallyql.storage.outage import RETRY_AFTER_SECONDS
from tallyql.storage.read_limits import StatementTimeout

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


def cost_headers(meter: CostMeter) -> dict[str, str]:
    """What the export cost and what its key has left (GraphQL's `extensions.cost`)."""
    summary = meter.summary()
    headers = {"X-Tallyql-Cost": str(summary["spent"])}
    if "keyRemaining" in summary:
        headers["X-Tallyql-Cost-Key-Remaining"] = str(summary["keyRemaining"])
    return headers


@router.get("/v1/export/{dataset}")
async def export(
    dataset: str, request: Request, principal: Principal = Depends(requires(Permission.READ))
) -> Response:
    services = services_of(request)
    if dataset not in DATASETS:
        names = ", ".join(DATASETS)
        return error_response(404, "NOT_FOUND", f"no dataset {dataset!r}; use one of {names}")
    options, build = DATASETS[dataset]
    meter = CostMeter(
        services.settings.cost_request_limit,
        getattr(request.app.state, "key_buckets", None),
        principal.key_id,
    )
    try:
        meter.charge(FIELD_POINTS, "the export")  # as a root field: a spent key stops here
        params = parse(request.query_params.multi_items(), options)
        job = ExportJob(services.db, principal.workspace_id, params, meter)
        columns, rows = build(job)  # stored rows are paid for here, before any statement
        first = await anext(rows, None)  # engine questions pay and fail here, before any byte
        extra = await unpriced_headers(job) if dataset in COST_DATASETS else {}
    except (ExportParamError, QueryError, BucketError) as exc:
        return error_response(400, "BAD_REQUEST", str(exc))
    except CostLimitExceeded as exc:
        return error_response(400, exc.code, str(exc), cost=meter.summary())
    except RateLimited as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        return error_response(429, exc.code, str(exc), headers, cost=meter.summary())
    except StatementTimeout as exc:  # the database cancelled a read: this export's failure
        message = f"{exc}; export a shorter window, or retry when the server is less busy"
        return error_response(503, exc.code, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    extra |= cost_headers(meter)
    window = params.window
    try:
        await _audit(principal, request, dataset, params)
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


async def _audit(principal: Principal, request: Request, dataset: str, params: Any) -> None:
    window = params.window
    details = {
        "format": params.format,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "timezone": window.tz.key,
        "filter": spec_to_json(params.spec),
        "options": params.options,
    }
    await audit_request(request, principal, "export", "export", dataset, details)
