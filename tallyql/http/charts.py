"""Chart images: `GET /v1/charts/{preset}.png` and `.svg`, and `GET /v1/ask.png?q=...`.

Drawn on the server from the same Vega-Lite specs that GraphQL's `chart` and `ask` return,
by vl-convert (Vega and resvg compiled into the package: no browser, no network). Read keys
(viewer and above) only, like every read. Parameters are the export endpoint's (a range:
`preset`, or `start` and `end`, with `timezone`; one parameter per EventFilter field), plus
`scale` for PNG pixel density.

Rendering costs tens of milliseconds, the query a few: images are kept in memory, keyed by
the workspace, the format and scale, and the spec itself, which holds the parameters and the
rows drawn. The rows are the workspace's data version as far as the picture goes: new events
that change the picture change the key, and an unchanged picture is served without drawing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import fields, replace
from typing import Any

import orjson
import vl_convert
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tallyql.auth.principal import Permission, Principal
from tallyql.engine.analytics import Asker, QueryError
from tallyql.engine.buckets import BucketError
from tallyql.engine.charts import PRESETS
from tallyql.engine.compiler import Scope
from tallyql.engine.filters import EventFilterSpec
from tallyql.engine.timerange import TimeRangeError
from tallyql.exporting.params import ExportParamError, parse
from tallyql.http.auth import requires, services_of
from tallyql.http.errors import error_response
from tallyql.schema.analytics import answer_metrics_query
from tallyql.schema.ask import answer_question, chart_of, query_input
from tallyql.schema.common import EventFilter, TimeRangeInput, filter_spec

router = APIRouter()

MEDIA = {"png": "image/png", "svg": "image/svg+xml"}
CACHE_ENTRIES = 256
"""Images kept; a PNG of a preset is 20 to 60 kB, so at most about 15 MB."""
MAX_SCALE = 4.0
_IMAGES: OrderedDict[str, bytes] = OrderedDict()


def cache_key(workspace_id: int, fmt: str, scale: float, spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS))
    return f"{workspace_id}:{fmt}:{scale}:{digest.hexdigest()}"


def forget_images() -> None:
    """Empty the image cache (tests that count hits and misses start from nothing)."""
    _IMAGES.clear()


def _render(fmt: str, spec: dict[str, Any], scale: float) -> bytes:
    if fmt == "png":
        return bytes(vl_convert.vegalite_to_png(spec, scale=scale))
    return vl_convert.vegalite_to_svg(spec).encode()


async def render(
    workspace_id: int, fmt: str, spec: dict[str, Any], scale: float
) -> tuple[bytes, str, bool]:
    """The image of `spec`, its cache key, and whether it came from the cache."""
    key = cache_key(workspace_id, fmt, scale, spec)
    found = _IMAGES.get(key)
    if found is not None:
        _IMAGES.move_to_end(key)
        return found, key, True
    # drawing blocks for tens of milliseconds: off the event loop
    image = await asyncio.to_thread(_render, fmt, spec, scale)
    _IMAGES[key] = image
    while len(_IMAGES) > CACHE_ENTRIES:
        _IMAGES.popitem(last=False)
    return image, key, False


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
    found = PRESETS.get(preset)
    if found is None:
        names = ", ".join(PRESETS)
        return error_response(404, "NOT_FOUND", f"no chart preset {preset!r}; use one of {names}")
    pairs = request.query_params.multi_items()
    try:
        if any(k == "format" for k, _ in pairs):
            raise ExportParamError("the format is the path's: .png or .svg")
        if not any(k in ("preset", "start", "end") for k, _ in pairs):
            pairs = [*pairs, ("preset", found.query["range"]["preset"])]
        params = parse(pairs, frozenset({"scale"}))
        scale = _scale(params.option("scale"))
        query = query_input(found.query)
        spec = _merge(filter_spec(query.filter), params.spec)
        asker = Asker(services.db, Scope.of(principal.workspace_id), params.window, spec)
        result = await answer_metrics_query(asker, query)
    except (ExportParamError, QueryError, BucketError, TimeRangeError) as exc:
        return error_response(400, "BAD_REQUEST", str(exc))
    chart = chart_of(query, result, found.title, found.kind)
    assert isinstance(chart.vega_lite, dict)  # a JSON field to the schema; chart_of builds a dict
    image, key, hit = await render(principal.workspace_id, fmt, chart.vega_lite, scale)
    return _image_response(image, fmt, key, hit)


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

    def asker_for(rng: TimeRangeInput, filt: EventFilter | None) -> Asker:
        return Asker(
            services.db, Scope.of(principal.workspace_id), rng.resolve(), filter_spec(filt)
        )

    answer = await answer_question(asker_for, question, items.get("timezone") or "UTC")
    if answer.chart is None:
        spec = _not_understood_spec(answer.interpretation, answer.suggestions)
    else:
        assert isinstance(answer.chart.vega_lite, dict)  # a JSON field; built as a dict
        spec = answer.chart.vega_lite
    image, key, hit = await render(principal.workspace_id, "png", spec, scale)
    return _image_response(
        image,
        "png",
        key,
        hit,
        **{
            "X-Tallyql-Understood": "true" if answer.understood else "false",
            "X-Tallyql-Interpretation": _header_text(answer.interpretation),
        },
    )
