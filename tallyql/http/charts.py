"""Chart images: `GET /v1/charts/{preset}.png` and `.svg`, and `GET /v1/ask.png?q=...`.

Drawn on the server from the same Vega-Lite specs that GraphQL's `chart` and `ask` return,
by vl-convert (Vega and resvg compiled into the package: no browser, no network) in a worker
process (chart_render.py: vl-convert holds the GIL while it draws). Read keys
(viewer and above) only, like every read. Parameters are the export endpoint's (a range:
`preset`, or `start` and `end`, with `timezone`; one parameter per EventFilter field), plus
`scale` for PNG pixel density.

Images are kept in memory (per process), keyed by what decides every pixel: the workspace
(every read role sees all of it), its data version (storage/data_versions.py: a sum that
moves in the same transaction as every committed event, repricing, rebuild, group
membership change, bulk load and retention purge, read from the database so that every
serving process sees every other's commits), the preset or question, the parameters, the
format and scale, and the window as resolved. A repeated request with no new data is
answered from memory after one small read (the version): no query, no drawing.

Relative ranges (LAST_7D, TODAY, "the last 3 hours") are resolved at the start of the current
minute, so that one image serves a minute; the window drawn is stated in the response
(X-Tallyql-Window). Events stamped within the current minute appear at the next minute.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tallyql.auth.principal import Permission, Principal
from tallyql.clock import clock
from tallyql.engine.analytics import Asker, QueryError
from tallyql.engine.charts import PRESETS
from tallyql.engine.query.buckets import BucketError
from tallyql.engine.query.filters import EventFilterSpec
from tallyql.engine.query.scope import Scope
from tallyql.engine.query.timerange import TimeRangeError, TimeWindow
from tallyql.exporting.params import ExportParamError, parse
from tallyql.http import chart_render
from tallyql.http.auth import requires, services_of
from tallyql.http.errors import error_response
from tallyql.schema.analytics import answer_metrics_query
from tallyql.schema.ask import answer_question, chart_of, query_input
from tallyql.schema.base.common import EventFilter, TimeRangeInput, filter_spec
from tallyql.storage.data_versions import read_version
from tallyql.storage.database import Database

log = logging.getLogger(__name__)

router = APIRouter()

MEDIA = {"png": "image/png", "svg": "image/svg+xml"}
CACHE_ENTRIES = 256
"""Images kept; a PNG of a preset is 20 to 60 kB, so at most about 15 MB."""
MAX_SCALE = 4.0
_IMAGES: OrderedDict[str, tuple[bytes, dict[str, str]]] = OrderedDict()
"""key -> the image and its headers (what was understood, the window drawn)."""


@dataclass
class ImageStats:
    """What the image routes did since start (tests count them; /metrics may show them)."""

    hits: int = 0
    misses: int = 0
    renders: int = 0
    render_seconds: float = 0.0


STATS = ImageStats()


def cache_key(workspace_id: int, version: int, fmt: str, scale: float, *what: object) -> str:
    """The key of an image: the workspace, its data version, format and scale, and `what`
    (the preset or question, the parameters, the window as resolved)."""
    digest = hashlib.sha256(orjson.dumps([str(w) for w in what]))
    return f"{workspace_id}:{version}:{fmt}:{scale}:{digest.hexdigest()}"


def forget_images() -> None:
    """Empty the image cache and its counts (tests that count hits and misses start from
    nothing)."""
    _IMAGES.clear()
    STATS.hits = STATS.misses = STATS.renders = 0
    STATS.render_seconds = 0.0


def cached(key: str) -> tuple[bytes, dict[str, str]] | None:
    found = _IMAGES.get(key)
    if found is not None:
        _IMAGES.move_to_end(key)
        STATS.hits += 1
    return found


async def render(
    key: str, fmt: str, spec: dict[str, Any], scale: float, headers: dict[str, str]
) -> bytes:
    """Draw `spec` and keep it under `key`, with the headers that describe it."""
    STATS.misses += 1
    started = time.perf_counter()
    # vl-convert holds the GIL while it draws: in the worker process, not a thread
    image = await chart_render.render(fmt, spec, scale)
    STATS.renders += 1
    STATS.render_seconds += time.perf_counter() - started
    _IMAGES[key] = (image, headers)
    while len(_IMAGES) > CACHE_ENTRIES:
        _IMAGES.popitem(last=False)
    return image


async def warm_in_background() -> None:
    """Start-up task: start the drawing worker, which warms up as it starts (chart_render);
    a failure is logged, not fatal (the first image then pays the warm-up itself)."""
    try:
        seconds = await chart_render.start()
    except Exception:
        log.exception("chart renderer warm-up failed")
        return
    log.info("chart renderer ready in %.2f s", seconds)


def image_clock() -> datetime:
    """The instant relative ranges of images are resolved at: the current minute's start."""
    return clock.now().replace(second=0, microsecond=0)


async def data_version(db: Database, workspace_id: int) -> int:
    async with db.read() as conn:
        return await read_version(conn, workspace_id)


def _scale(raw: str | None) -> float:
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ExportParamError("scale must be a number from 0.5 to 4") from None
    if not 0.5 <= value <= MAX_SCALE:
        raise ExportParamError("scale must be a number from 0.5 to 4")
    return value


def _merge(preset: EventFilterSpec, asked: EventFilterSpec) -> EventFilterSpec:
    """The caller's filter, and the preset's own (LLM calls for latency) where the caller
    set nothing for that field."""
    empty = EventFilterSpec()
    changes = {
        f.name: getattr(preset, f.name)
        for f in fields(EventFilterSpec)
        if getattr(asked, f.name) == getattr(empty, f.name)
        and getattr(preset, f.name) != getattr(empty, f.name)
    }
    return replace(asked, **changes)


def _window_header(window: TimeWindow) -> str:
    return f"{window.start.isoformat()}/{window.end.isoformat()}"


def _image_response(image: bytes, fmt: str, key: str, hit: bool, **headers: str) -> Response:
    return Response(
        image,
        media_type=MEDIA[fmt],
        headers={
            "Cache-Control": "private, max-age=60",
            "ETag": f'"{hashlib.sha256(key.encode()).hexdigest()[:32]}"',
            "X-Tallyql-Cache": "hit" if hit else "miss",
            **headers,
        },
    )


async def _preset_image(preset: str, fmt: str, request: Request, principal: Principal) -> Response:
    services = services_of(request)
    found_preset = PRESETS.get(preset)
    if found_preset is None:
        names = ", ".join(PRESETS)
        return error_response(404, "NOT_FOUND", f"no chart preset {preset!r}; use one of {names}")
    pairs = request.query_params.multi_items()
    try:
        if any(k == "format" for k, _ in pairs):
            raise ExportParamError("the format is the path's: .png or .svg")
        if not any(k in ("preset", "start", "end") for k, _ in pairs):
            pairs = [*pairs, ("preset", found_preset.query["range"]["preset"])]
        now = image_clock()
        params = parse(pairs, frozenset({"scale"}), now)
        scale = _scale(params.option("scale"))
    except (ExportParamError, TimeRangeError) as exc:
        return error_response(400, "BAD_REQUEST", str(exc))
    # the version first: whatever is read after it holds at least what it stands for
    version = await data_version(services.db, principal.workspace_id)
    asked = sorted((k, v) for k, v in pairs if k != "scale")
    window = _window_header(params.window)
    key = cache_key(principal.workspace_id, version, fmt, scale, "preset", preset, asked, window)
    headers = {"X-Tallyql-Window": window}
    found = cached(key)
    if found is not None:
        return _image_response(found[0], fmt, key, True, **found[1])
    try:
        query = query_input(found_preset.query)
        spec = _merge(filter_spec(query.filter), params.spec)
        asker = Asker(services.db, Scope.of(principal.workspace_id), params.window, spec)
        result = await answer_metrics_query(asker, query)
    except (QueryError, BucketError, TimeRangeError) as exc:
        return error_response(400, "BAD_REQUEST", str(exc))
    chart = chart_of(query, result, found_preset.title, found_preset.kind)
    assert isinstance(chart.vega_lite, dict)  # a JSON field to the schema; chart_of builds a dict
    image = await render(key, fmt, chart.vega_lite, scale, headers)
    return _image_response(image, fmt, key, False, **headers)


@router.get("/v1/charts/{preset}.png")
async def chart_png(
    preset: str, request: Request, principal: Principal = Depends(requires(Permission.READ))
) -> Response:
    return await _preset_image(preset, "png", request, principal)


@router.get("/v1/charts/{preset}.svg")
async def chart_svg(
    preset: str, request: Request, principal: Principal = Depends(requires(Permission.READ))
) -> Response:
    return await _preset_image(preset, "svg", request, principal)


def _not_understood_spec(text: str, suggestions: list[str]) -> dict[str, Any]:
    lines = [text, "Try:", *(f"  {s}" for s in suggestions)]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Not understood",
        "height": 18 * len(lines),
        "data": {"values": [{"Line": line, "Row": i} for i, line in enumerate(lines)]},
        "mark": {"type": "text", "align": "left", "fontSize": 13},
        "encoding": {
            "y": {"field": "Row", "type": "ordinal", "axis": None},
            "text": {"field": "Line", "type": "nominal"},
        },
        "config": {"font": "DejaVu Sans", "view": {"stroke": None}},
    }


def _header_text(text: str) -> str:
    """Header values are Latin-1: anything else is replaced, and the length is bounded."""
    return text.encode("ascii", "replace").decode()[:500]


@router.get("/v1/ask.png")
async def ask_png(
    request: Request, principal: Principal = Depends(requires(Permission.READ))
) -> Response:
    services = services_of(request)
    items = request.query_params
    unknown = sorted(set(items) - {"q", "timezone", "scale"})
    if unknown:
        return error_response(400, "BAD_REQUEST", f"unknown parameter(s): {', '.join(unknown)}")
    question = items.get("q")
    if question is None:
        return error_response(400, "BAD_REQUEST", "give the question as q")
    try:
        scale = _scale(items.get("scale"))
    except ExportParamError as exc:
        return error_response(400, "BAD_REQUEST", str(exc))

    timezone = items.get("timezone") or "UTC"
    now = image_clock()
    version = await data_version(services.db, principal.workspace_id)
    # the question, zone and minute decide the query; the version, the values it may name
    key = cache_key(principal.workspace_id, version, "png", scale, "ask", question, timezone, now)
    found = cached(key)
    if found is not None:
        return _image_response(found[0], "png", key, True, **found[1])

    def asker_for(rng: TimeRangeInput, filt: EventFilter | None) -> Asker:
        return Asker(
            services.db, Scope.of(principal.workspace_id), rng.resolve(now), filter_spec(filt)
        )

    answer = await answer_question(asker_for, question, timezone, now, version)
    if answer.chart is None:
        spec = _not_understood_spec(answer.interpretation, answer.suggestions)
    else:
        assert isinstance(answer.chart.vega_lite, dict)  # a JSON field; built as a dict
        spec = answer.chart.vega_lite
    headers = {
        "X-Tallyql-Understood": "true" if answer.understood else "false",
        "X-Tallyql-Interpretation": _header_text(answer.interpretation),
    }
    image = await render(key, "png", spec, scale, headers)
    return _image_response(image, "png", key, False, **headers)
