"""The console's files (issue 18): served by the gateway itself, open without the key, no
address outside the gateway anywhere in them, the vendored libraries as vendor.json lists."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ktrdr_api import console
from ktrdr_api.testing import api_settings, serve_api
from ktrdr_shared import streams
from nats.js import JetStreamContext

KEY = "k" * 40
OURS = [p for p in console.STATIC.rglob("*") if p.is_file() and "vendor" not in p.parts]
# an absolute address a browser would fetch (the SVG namespace is a name, not a fetch)
FOREIGN = re.compile(r"""(?:src|href|url\(|import|fetch\()\s*=?\s*["'(]?\s*(?:https?:)?//""")


@pytest.mark.unit
def test_every_vendored_file_is_present_and_listed() -> None:
    manifest = json.loads((console.STATIC.parent / "vendor.json").read_text())
    listed = {t for p in manifest["packages"] for t in p["files"].values()}
    on_disk = {
        str(p.relative_to(console.STATIC.parent))
        for p in (console.STATIC / "vendor").rglob("*")
        if p.is_file()
    }
    assert listed == on_disk


@pytest.mark.unit
@pytest.mark.parametrize("path", OURS, ids=lambda p: str(p.relative_to(console.STATIC)))
def test_our_files_name_no_other_host(path: Path) -> None:
    if path.suffix in (".html", ".js", ".css", ".svg"):
        assert not FOREIGN.search(path.read_text()), path


@pytest.mark.unit
def test_the_index_loads_only_files_that_exist() -> None:
    html = (console.STATIC / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html)
    assert refs
    for ref in refs:
        assert (console.STATIC / ref.removeprefix(f"{console.STATIC_PATH}/")).is_file(), ref


@pytest.mark.unit
def test_every_page_module_the_router_names_exists() -> None:
    main = (console.STATIC / "js/main.js").read_text()
    pages = re.findall(r'import\("\./(pages/[a-z]+\.js)"\)', main)
    assert len(pages) == 6
    for page in pages:
        assert (console.STATIC / "js" / page).is_file(), page


@pytest.fixture
async def keyed(nats_url: str, js: JetStreamContext) -> AsyncIterator[httpx.AsyncClient]:
    await streams.ensure_streams(js)
    async with (
        serve_api(api_settings(nats_url, KTRDR_API_KEY=KEY)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


async def test_the_page_and_its_files_are_open_and_the_api_is_not(
    keyed: httpx.AsyncClient,
) -> None:
    page = await keyed.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    for path in (
        "/console/static/js/main.js",
        "/console/static/css/console.css",
        "/console/static/vendor/lightweight-charts/lightweight-charts.standalone.production.js",
    ):
        reply = await keyed.get(path)
        assert reply.status_code == 200, path
    assert (
        (await keyed.get("/console/static/js/main.js"))
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert (await keyed.get("/api/v1/jobs")).status_code == 401
    assert (await keyed.get("/api/v1/jobs", headers={"X-API-Key": KEY})).status_code == 200
    assert (await keyed.get("/console/static/../../config.py")).status_code in (400, 404)
    assert (await keyed.get("/console/static/nothing.js")).status_code == 404


async def test_the_swagger_page_loads_its_assets_from_the_gateway(http: httpx.AsyncClient) -> None:
    page = await http.get("/schema/swagger")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert f"{console.SWAGGER}/swagger-ui-bundle.js" in assets
    assert all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        assert (await http.get(asset)).status_code == 200, asset
