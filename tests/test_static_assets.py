"""The browser assets shipped in the package: pinned with their licenses in vendor.json, packaged,
served under /static with digest URLs and long caching, and the only things the GraphiQL page
and the console load."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path

from tallyql.first_query import FIRST_QUERY
from tests.conftest import Api

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tallyql"
STATIC = PACKAGE / "http" / "static"


def test_every_vendored_file_is_pinned_with_its_license() -> None:
    manifest = json.loads((STATIC / "vendor.json").read_text())
    listed: set[Path] = set()
    for package in manifest["packages"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]), package  # exact, no range
        assert package["integrity"].startswith("sha512-")
        assert package["license"]
        assert package["licenses"], f"{package['name']} ships no license file"
        for name in (*package["files"].values(), *package["licenses"].values()):
            path = STATIC / package["dir"] / name
            assert path.is_file() and path.stat().st_size > 0, path
            listed.add(path)
    vendored = {p for d in ("graphiql", "swagger-ui", "uplot") for p in (STATIC / d).iterdir()}
    assert vendored == listed  # nothing vendored that the manifest does not pin


def test_the_assets_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["tallyql"]
    shipped = {p for pattern in patterns for p in PACKAGE.glob(pattern) if p.is_file()}
    assert {p for p in STATIC.rglob("*") if p.is_file()} <= shipped


async def test_the_graphiql_page_loads_only_its_own_assets(api: Api) -> None:
    page = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    urls = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page.text)
    assets = [u for u in urls if not u.startswith("data:")]
    assert len(assets) == 7, urls
    for url in assets:
        path, _, digest = url.partition("?v=")
        assert path.startswith("/static/"), url
        content = (STATIC / path.removeprefix("/static/")).read_bytes()
        assert digest == hashlib.sha256(content).hexdigest()[:16]
        served = await api.client.get(url)
        assert served.status_code == 200
        assert served.content == content
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "cdn" not in page.text.lower() and "unpkg" not in page.text.lower()
    config = re.search(
        r'<script id="tallyql-config" type="application/json">(.*?)</script>', page.text
    )
    assert config is not None
    assert json.loads(config.group(1)) == {"endpoint": "/graphql", "defaultQuery": FIRST_QUERY}
    # /metrics counts the assets under one route, apart from unmatched paths
    assert (await api.client.get("/static/graphiql/missing.js")).status_code == 404
    metrics = (await api.client.get("/metrics")).text
    assert 'route="/static",status="200"} 7.0' in metrics
    assert 'route="/static",status="404"} 1.0' in metrics


async def test_the_console_page_loads_only_its_own_assets_by_digest(api: Api) -> None:
    page = await api.client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    urls = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page.text)
    assets = [u for u in urls if not u.startswith("data:")]
    import_map = re.search(r'<script type="importmap">(.*?)</script>', page.text)
    assert import_map is not None
    imports: dict[str, str] = json.loads(import_map.group(1))["imports"]
    # every module of the console is mapped from its plain path to its digest URL, so a
    # relative import (./api.js) is cached for a year and still changes with a release
    modules = sorted((STATIC / "console").rglob("*.js"))
    assert sorted(imports) == [f"/static/{m.relative_to(STATIC).as_posix()}" for m in modules]
    assert len(modules) >= 10
    assert "/static/console/main.js" in {u.partition("?")[0] for u in assets}
    for url in [*assets, *imports.values()]:
        path, _, digest = url.partition("?v=")
        assert path.startswith("/static/"), url
        content = (STATIC / path.removeprefix("/static/")).read_bytes()
        assert digest == hashlib.sha256(content).hexdigest()[:16]
        served = await api.client.get(url)
        assert served.status_code == 200
        assert served.content == content
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    # the modules import nothing from another host
    for module in modules:
        targets = re.findall(r'^import [^;]*? from "([^"]+)";', module.read_text(), re.M)
        assert targets or module.name in ("api.js", "dom.js", "format.js", "state.js"), module
        for target in targets:
            assert target.startswith("./") or target.startswith("../"), (module, target)
    assert "http://" not in page.text and "https://" not in page.text
