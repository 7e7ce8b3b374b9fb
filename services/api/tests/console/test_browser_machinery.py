"""The browser machinery (issue 18): the API docs render offline in Chromium and in Firefox,
the keyed stack asks for its key, and the page fixture fails a test whose page reaches off its
origin or throws (proved by running such tests in a pytest of their own)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from ktrdr_api.testing_browser import BROWSER_MARKS, ColorScheme
from ktrdr_api.testing_console import ConsoleStack
from ktrdr_api.testing_firefox import OpenFirefox
from playwright.async_api import Page

pytestmark = [*BROWSER_MARKS, pytest.mark.xdist_group("console")]

METHODS = {"get", "post", "put", "patch", "delete"}
# Each operation Swagger UI drew, as (method, path).
DRAWN = """[...document.querySelectorAll('.swagger-ui .opblock')].map((block) => [
  block.querySelector('.opblock-summary-method').textContent.toLowerCase(),
  block.querySelector('.opblock-summary-path').dataset.path])"""


async def documented(stack: ConsoleStack) -> set[tuple[str, str]]:
    """Return every (method, path) of the gateway's OpenAPI document."""
    async with httpx.AsyncClient(base_url=stack.api_url, headers=stack.headers) as http:
        document: dict[str, Any] = (await http.get("/schema/openapi.json")).json()
    return {(m, path) for path, item in document["paths"].items() for m in item if m in METHODS}


async def test_swagger_docs_offline(console_stack: ConsoleStack, page: Page) -> None:
    await page.goto(f"{console_stack.api_url}/schema/swagger")
    await page.locator(".swagger-ui .opblock").first.wait_for()
    drawn = {(method, path) for method, path in await page.evaluate(DRAWN)}
    assert drawn == await documented(console_stack)
    # the page fixture then checks that every file came from the gateway itself


async def test_swagger_docs_offline_in_firefox(
    console_stack: ConsoleStack, firefox_page: OpenFirefox
) -> None:
    tab = await firefox_page(f"{console_stack.api_url}/schema/swagger")
    await tab.wait_for("document.querySelector('.swagger-ui .opblock')")
    drawn = {(method, path) for method, path in await tab.evaluate(DRAWN)}
    assert drawn == await documented(console_stack)


@pytest.mark.parametrize("color_scheme", ["dark", "light"])
async def test_the_page_prefers_the_color_scheme_asked_for(
    page: Page, color_scheme: ColorScheme
) -> None:
    await page.set_content("<p>theme</p>")
    assert await page.evaluate(f"matchMedia('(prefers-color-scheme: {color_scheme})').matches")


async def test_the_keyed_stack_wants_its_key(console_stack_with_key: ConsoleStack) -> None:
    stack = console_stack_with_key
    async with httpx.AsyncClient(base_url=stack.api_url) as http:
        assert (await http.get("/api/v1/jobs")).status_code == 401
        assert (await http.get("/api/v1/jobs", headers=stack.headers)).status_code == 200


# -- the machinery fails when it must ---------------------------------------------------------

INNER_CONFTEST = "from ktrdr_api.testing_browser import *  # noqa: F403\n"
INNER_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
markers =
    browser: a browser test
    e2e: an end-to-end test
"""
INNER_TESTS = """\
import asyncio

from ktrdr_api.testing_browser import BROWSER_MARKS

pytestmark = BROWSER_MARKS


async def test_reaches_a_cdn(page):
    async with page.expect_event("requestfailed"):
        await page.set_content("<script>fetch('https://cdn.example/x').catch(() => {})</script>")


async def test_is_blocked_by_its_csp(page, page_record):
    async def serve(route):
        script = "<script>fetch('https://cdn.example/x').catch(() => {})</script>"
        csp = {"Content-Security-Policy": "connect-src 'self'"}
        await route.fulfill(body=script, content_type="text/html", headers=csp)

    await page.route("http://127.0.0.1:9/", serve)
    await page.goto("http://127.0.0.1:9/")
    await asyncio.wait_for(page_record.blocked_seen.wait(), 10)


async def test_throws(page):
    async with page.expect_event("pageerror"):
        await page.set_content("<script>setTimeout(() => { throw new Error('boom') })</script>")


async def test_fails_on_its_own(page):
    await page.set_content("<p>drawn</p>")
    await page.evaluate("console.log('said before failing')")
    assert False, "the test's own failure"


async def test_passes(page):
    await page.set_content("<p>fine</p>")
"""


async def test_the_page_fixture_fails_foreign_requests_and_page_errors(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "pytest.ini").write_text(INNER_INI)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    artifacts = tmp_path / "artifacts"
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        str(tmp_path / "test_inner.py"),
        cwd=tmp_path,
        env={**os.environ, "KTRDR_BROWSER_ARTIFACTS": str(artifacts)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(run.communicate(), 120))[0].decode()
    assert "1 failed, 4 passed, 3 errors" in out, out
    assert "ERROR at teardown of test_reaches_a_cdn" in out and "https://cdn.example/x" in out, out
    assert "ERROR at teardown of test_throws" in out and "Error: boom" in out, out
    assert "ERROR at teardown of test_is_blocked_by_its_csp" in out, out
    assert "connect-src blocked https://cdn.example/x" in out, out
    shots = {p.name for p in artifacts.iterdir()}
    failing = ["test_reaches_a_cdn", "test_is_blocked_by_its_csp", "test_throws"]
    names = [*failing, "test_fails_on_its_own", "test_passes"]
    assert {f"{name}.png" for name in names} <= shots
    logs = {name for name in names if f"{name}.console.txt" in shots}
    assert logs == set(names[:-1])  # beside every failure, not beside the pass
    said = (artifacts / "test_fails_on_its_own.console.txt").read_text()
    assert "said before failing" in said
    assert said.startswith("== page errors")
