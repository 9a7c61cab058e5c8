"""The FastAPI application: GraphQL, ingest, health and metrics, around shared services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.routing import Route

from tallyql import __version__
from tallyql.config import Settings, load_settings
from tallyql.http import (
    audit,
    charts,
    console,
    docs,
    events,
    export,
    health,
    imports,
    otlp,
    report_files,
    statements,
)
from tallyql.http.auth import authenticate, client_ip, services_of
from tallyql.http.cors import install_cors
from tallyql.http.errors import GRAPHQL_PATH, install_error_handlers
from tallyql.http.graphql_fast import FastGraphQLPost
from tallyql.http.graphql_router import PROTOCOLS as SUBSCRIPTION_PROTOCOLS
from tallyql.http.graphql_router import TallyGraphQLRouter
from tallyql.http.idle_gc import IdleCollector
from tallyql.http.in_flight import KeyInFlight
from tallyql.http.live_sockets import CaptureSocket
from tallyql.http.observe import RequestMetrics
from tallyql.http.openapi import install_openapi
from tallyql.http.outage import DatabaseOutage
from tallyql.http.standby_reads import StandbyReads
from tallyql.http.static_files import STATIC_PATH, static_app
from tallyql.observability import Metrics
from tallyql.schema import build_schema
from tallyql.schema.base.context import EXPLAIN_HEADER, PLAN_HEADER, Context
from tallyql.services import start_services

log = logging.getLogger(__name__)


def _is_graphiql_page(conn: HTTPConnection) -> bool:
    return (
        conn.scope["type"] == "http"
        and conn.scope.get("method") == "GET"
        and "text/html" in conn.headers.get("accept", "")
        and "query" not in conn.query_params
    )


async def graphql_context(conn: HTTPConnection) -> Context:
    """Every GraphQL call needs a key, except loading the GraphiQL page itself. WebSocket
    connections authenticate at connection_init (tallyql/http/graphql_router.py)."""
    services = services_of(conn)
    if conn.scope["type"] == "websocket" or _is_graphiql_page(conn):
        return Context(services, None, client_ip(conn))
    principal = await authenticate(conn)
    return Context(
        services,
        principal,
        client_ip(conn),
        explain=conn.headers.get(EXPLAIN_HEADER, "").lower() in ("1", "true", "yes"),
        force_raw=conn.headers.get(PLAN_HEADER, "").lower() == "raw",
    )


def install_fast_graphql(
    app: FastAPI, graphql: TallyGraphQLRouter, settings: Settings, metrics: Metrics
) -> None:
    """POST /graphql with a JSON body takes the direct route (tallyql/http/graphql_fast.py),
    placed first; it hands everything else on to strawberry's POST route."""
    strawberry_post = next(
        route
        for route in graphql.routes
        if isinstance(route, APIRoute)
        and route.path == GRAPHQL_PATH
        and "POST" in (route.methods or ())
    )
    direct = FastGraphQLPost(
        graphql.schema,
        graphql_context,
        strawberry_post,
        share=settings.share_identical_queries,
        request_limit=settings.cost_request_limit,
        metrics=metrics,
    )
    app.router.routes.insert(0, Route(GRAPHQL_PATH, direct, methods=["POST"]))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await start_services(settings, metrics=metrics)
        app.state.services = services
        log.info("tallyql %s on %s", __version__, services.db.dialect)
        # the chart renderer's first drawing takes about a second: paid now, in a thread
        warm = asyncio.create_task(charts.warm_in_background())
        try:
            yield
        finally:
            warm.cancel()  # the thread finishes on its own; the server does not wait for it
            await services.stop()

    app = FastAPI(
        title="tallyql",
        version=__version__,
        description="GraphQL analytics for LLM, tool and agent traffic.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: http/docs.py serves an offline one
        redoc_url=None,
        openapi_url=docs.OPENAPI_PATH,
    )
    # the path on the routes themselves (not a prefix), so that /metrics sees the template
    schema = build_schema(settings)
    app.state.key_buckets = schema.key_buckets  # exports pay from the same budgets per key
    graphql = TallyGraphQLRouter(
        schema,
        path="/graphql",
        context_getter=graphql_context,
        subscription_protocols=SUBSCRIPTION_PROTOCOLS,
        allowed_origins=settings.cors_origin_list,  # WebSocket handshakes from these pages
    )
    app.include_router(graphql)
    install_fast_graphql(app, graphql, settings, metrics)
    app.include_router(events.router)
    app.include_router(audit.router)
    app.include_router(otlp.router)
    app.include_router(export.router)
    app.include_router(statements.router)
    app.include_router(report_files.router)
    app.include_router(imports.router)
    app.include_router(charts.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(console.router)
    app.mount(STATIC_PATH, static_app(), name="static")
    install_openapi(app)
    own_shapes = {
        path: otlp.status_response for path in (otlp.TRACES_PATH, otlp.LOGS_PATH, otlp.METRICS_PATH)
    }
    install_error_handlers(app, own_shapes)
    app.add_middleware(StandbyReads)  # innermost: around the read routes only
    # inside RequestMetrics: its 503s are counted
    app.add_middleware(DatabaseOutage, own_shapes=own_shapes)
    # outside the outage handler (a refused request never reaches the database), inside
    # RequestMetrics (its 429s are counted) and CORS (they carry its headers)
    app.add_middleware(KeyInFlight, limit=settings.key_max_in_flight, own_shapes=own_shapes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    install_cors(app, settings.cors_origin_list)  # outside the routes: their errors too
    app.add_middleware(IdleCollector)  # outermost: counts a request until it is answered
    # outermost of all: sees the server protocol's own `send` (http/live_sockets.py)
    app.add_middleware(CaptureSocket)
    return app
