"""pytest fixtures for the console in a real browser: Debian's Chromium through Playwright.

A test directory opts in from its conftest (``from ktrdr_api.testing_browser import *``) and
its modules carry ``BROWSER_MARKS`` (``browser``, ``e2e`` and pytest-asyncio's session loop:
Playwright's objects belong to the loop that made them, and one browser serves the session).

* ``browser`` - one headless ``/usr/bin/chromium`` per session (``apt-get install
  chromium``; Playwright never downloads a browser here); missing, every test using it fails
  saying so.
* ``page`` - a fresh context and page at 1280x800 in ``color_scheme`` (a fixture: "light";
  parametrize it to "dark"). Its ``page_record`` keeps every request URL, console message and
  uncaught error. At teardown it saves ``<artifacts>/<test>.png`` (and, when anything failed,
  ``<test>.console.txt``), then fails the test on an uncaught page error or a request that left
  the page's origin (that of its first top-level navigation, which must be loopback; ``data:``
  and ``blob:`` are allowed) or that the page's Content-Security-Policy blocked (Chromium
  sends no request for a blocked ``fetch``). Chromium resolves no host but loopback, so a
  request for a CDN fails at once instead of waiting on DNS.
* ``console_stack`` / ``console_stack_with_key`` - the whole system as processes
  (``testing_console.run_console_stack``), one per session (per xdist worker); put every
  browser test in the ``console`` ``xdist_group`` so ``just test`` starts each stack once.

``ktrdr_api.testing_firefox`` adds ``firefox_page``: Debian's firefox-esr over WebDriver BiDi.

Artifacts go to ``test-artifacts/console/`` under the rootdir (``KTRDR_BROWSER_ARTIFACTS``
moves them).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Request as PageRequest

from ktrdr_api.testing_console import CONSOLE_API_KEY, ConsoleStack, run_console_stack

__all__ = [
    "BROWSER_MARKS",
    "browser",
    "browser_artifacts",
    "color_scheme",
    "console_stack",
    "console_stack_with_key",
    "page",
    "page_record",
    "pytest_runtest_makereport",
]

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # No host resolves but loopback: a foreign request fails at once, offline or not (no
    # wait on DNS), and the origin check names it.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PAGE_TIMEOUT_MS = 15_000
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ALLOWED_SCHEMES = frozenset({"data", "blob", "about"})
ColorScheme = Literal["light", "dark"]
# Every Content-Security-Policy violation, reported to the test through an exposed function.
CSP_HOOK = "__ktrdrCspViolation"
CSP_SCRIPT = f"""document.addEventListener("securitypolicyviolation",
  (e) => window.{CSP_HOOK}(`${{e.effectiveDirective}} blocked ${{e.blockedURI}}`));"""

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="session"),
]

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def require_browser(path: str, package: str) -> None:
    """Fail the test, saying how to install it, when the browser at ``path`` is missing."""
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} not found: the browser tests drive Debian's {package}; install it with "
            f"`sudo apt-get install {package}` (.ci/run does)",
            pytrace=False,
        )


async def launch_chromium(playwright: Playwright) -> Browser:
    """Launch headless ``/usr/bin/chromium`` with the console's arguments."""
    return await playwright.chromium.launch(
        executable_path=CHROMIUM, args=list(LAUNCH_ARGS), headless=True
    )


@dataclass
class PageRecord:
    """What a page did: its requests, console messages and uncaught errors."""

    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # by the page's Content-Security-Policy
    # Set on each CSP violation recorded (a test that provokes one awaits it).
    blocked_seen: asyncio.Event = field(default_factory=asyncio.Event)
    origin: str | None = None  # the first top-level navigation's (set by ``watch``)

    async def watch(self, page: Page) -> None:
        """Record ``page``'s requests, console, errors and CSP violations from now on."""

        def on_request(request: PageRequest) -> None:
            top = request.is_navigation_request() and request.frame.parent_frame is None
            if self.origin is None and top:
                self.origin = origin_of(request.url)
            self.requests.append(request.url)

        def on_console(message: ConsoleMessage) -> None:
            where = message.location
            self.console.append(f"[{message.type}] {message.text} ({where['url']})")

        def on_error(error: PlaywrightError) -> None:
            self.errors.append(error.stack or error.message)

        page.on("request", on_request)
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("console", on_console)
        page.on("pageerror", on_error)

        def on_blocked(violation: str) -> None:
            self.blocked.append(violation)
            self.blocked_seen.set()

        await page.expose_function(CSP_HOOK, on_blocked)
        await page.add_init_script(CSP_SCRIPT)

    def foreign_requests(self) -> list[str]:
        """Return the requests that left the page's origin (every http one, before any
        navigation, and all of them when that origin is not loopback)."""
        allowed = self.origin if _is_local(self.origin) else None
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ALLOWED_SCHEMES and origin_of(url) != allowed
        ]

    def problems(self) -> list[str]:
        """Return what fails the test: uncaught errors, foreign requests, CSP violations."""
        found = []
        if self.errors:
            found.append("uncaught errors in the page:\n" + "\n".join(self.errors))
        if foreign := self.foreign_requests():
            found.append(f"requests off the page's origin {self.origin} (a CDN? vendor it):")
            found.append("\n".join(foreign))
        if self.blocked:
            found.append(
                "blocked by the page's Content-Security-Policy:\n" + "\n".join(self.blocked)
            )
        return found

    def log(self) -> str:
        """Return the record as text: errors, console, requests."""
        sections = [("page errors", self.errors), ("blocked by CSP", self.blocked)]
        sections.append(("console", self.console))
        sections.append((f"requests (origin {self.origin})", self.requests))
        return "\n".join(f"== {title}\n" + "\n".join(lines) for title, lines in sections) + "\n"


def origin_of(url: str) -> str:
    """Return ``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_local(origin: str | None) -> bool:
    return origin is not None and urlsplit(origin).hostname in LOCAL_HOSTS


def artifact_stem(node: pytest.Item) -> str:
    """Return a test's name as a file name (its parameters kept, path separators not)."""
    return re.sub(r"[^\w.\[\]=,+-]", "_", node.name)


# -- hooks and fixtures ---------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test, so a fixture's teardown knows how it went."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def failed(node: pytest.Item) -> bool:
    """Return whether any phase of the test has failed so far."""
    return any(r.failed for r in node.stash.get(_REPORTS, {}).values())


@pytest.fixture(scope="session")
def browser_artifacts(pytestconfig: pytest.Config) -> Path:
    """Return the folder of screenshots and console logs (made if missing)."""
    default = pytestconfig.rootpath / "test-artifacts" / "console"
    folder = Path(os.environ.get("KTRDR_BROWSER_ARTIFACTS", default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Yield one headless Chromium (Debian's) for the session."""
    require_browser(CHROMIUM, "chromium")
    async with async_playwright() as playwright:
        launched = await launch_chromium(playwright)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def color_scheme() -> ColorScheme:
    """Return the page's ``prefers-color-scheme`` (parametrize this name to change it)."""
    return "light"


@pytest.fixture
def page_record() -> PageRecord:
    """Return the record the ``page`` fixture fills."""
    return PageRecord()


@pytest_asyncio.fixture(loop_scope="session")
async def page(
    browser: Browser,
    color_scheme: ColorScheme,
    page_record: PageRecord,
    browser_artifacts: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Page]:
    """Yield a fresh 1280x800 page; screenshot it after, and check its errors and origins."""
    context = await browser.new_context(viewport=VIEWPORT, color_scheme=color_scheme)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    opened = await context.new_page()
    await page_record.watch(opened)
    try:
        yield opened
    finally:
        stem = browser_artifacts / artifact_stem(request.node)
        try:
            await opened.screenshot(path=stem.with_suffix(".png"))
        except PlaywrightError as e:  # a crashed page: say so in the log, keep the rest
            page_record.errors.append(f"screenshot failed: {e.message}")
        if failed(request.node) or page_record.problems():
            stem.with_suffix(".console.txt").write_text(page_record.log())
        await context.close()
    check_page(page_record)


def check_page(record: PageRecord) -> None:
    """Fail the test on an uncaught page error, a request off the page's origin, or a
    Content-Security-Policy violation."""
    if record.problems():
        pytest.fail("\n".join(record.problems()), pytrace=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def console_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleStack]:
    """Run the whole system (simulator, connector, data-store, trainer, api) once per session
    (per xdist worker): module scope restarted it whenever a worker interleaved another
    module's tests, five stacks a run, and their load made timing-sensitive tests flake."""
    async with run_console_stack(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def console_stack_with_key(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ConsoleStack]:
    """Run the whole system with the gateway's ``KTRDR_API_KEY`` set (``.api_key``)."""
    root = tmp_path_factory.mktemp("console-key")
    async with run_console_stack(root, api_key=CONSOLE_API_KEY) as running:
        yield running
