"""`GET /health` and `GET /metrics` (Prometheus text format). Neither needs an API key;
`/metrics` needs the metrics token when TALLYQL_METRICS_TOKEN is set."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tallyql import __version__
from tallyql.http.auth import bearer_key, services_of, unauthenticated
from tallyql.http.responses import JSONBody
from tallyql.storage.outage import RETRY_AFTER_SECONDS

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONBody:
    services = services_of(request)
    database_ok = await services.db.ping()
    writer = services.writer
    standbys = services.db.standbys
    tasks = {"writer": writer.alive, **services.background_status()}
    jobs = services.job_reports()
    reasons = services.degraded_reasons()
    if not database_ok:
        reasons.insert(0, "database unreachable")
    healthy = not reasons
    body = {
        "status": "ok" if healthy else "degraded",
        "reasons": reasons,
        "version": __version__,
        "database": {"dialect": services.db.dialect, "reachable": database_ok},
        "writer": {
            "alive": writer.alive,
            "queue_depth": writer.queue_depth,
            "batches": writer.stats.batches,
            "events_committed": writer.stats.events_committed,
            "last_batch_size": writer.stats.last_batch_size,
            "last_commit_ms": round(writer.stats.last_commit_seconds * 1000, 3),
        },
        "background_tasks": tasks,
        **({"read_replicas": standbys.report()} if standbys is not None else {}),
        "jobs": jobs,
        "uptime_seconds": round((datetime.now(UTC) - services.started_at).total_seconds(), 1),
    }
    # Retry-After: load balancers and clients wait before asking again (as on every 503)
    headers = None if healthy else {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONBody(body, status_code=200 if healthy else 503, headers=headers)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    services = services_of(request)
    token = services.settings.metrics_token
    if token:
        given = bearer_key(request) or ""
        # constant time: the comparison tells nothing about how much of a guess was right
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise unauthenticated("GET /metrics requires Authorization: Bearer <metrics token>")
    services.metrics.queue_depth.set(services.writer.queue_depth)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
