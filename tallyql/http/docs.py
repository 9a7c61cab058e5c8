"""GET /docs: Swagger UI on /openapi.json, from the assets shipped in the package.

FastAPI's own /docs loads Swagger UI from a CDN (and its favicon from fastapi.tiangolo.com);
this one loads nothing from another host, never asks the online validator, and keeps the key
entered under Authorize in the browser (persistAuthorization), so "Try it out" on
POST /v1/events works at once.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse

from tallyql.http.static_files import asset_url

router = APIRouter()

DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"


@router.get(DOCS_PATH, include_in_schema=False)
async def docs() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="tallyql REST API",
        swagger_js_url=asset_url("swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=asset_url("swagger-ui/swagger-ui.css"),
        swagger_favicon_url=asset_url("swagger-ui/favicon-32x32.png"),
        swagger_ui_parameters={
            "validatorUrl": None,  # the default asks validator.swagger.io
            "persistAuthorization": True,
            "tryItOutEnabled": True,
            "displayRequestDuration": True,
        },
    )
    page.headers["Cache-Control"] = "no-cache"
    return page
