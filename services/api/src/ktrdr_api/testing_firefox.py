"""Debian's firefox-esr, driven headless over WebDriver BiDi, for the console's smoke test.

Playwright's Firefox is a patched build that only a download provides; the distribution's
Firefox ships its own Remote Agent instead. ``firefox --headless --remote-debugging-port=0
--profile DIR`` serves WebDriver BiDi on a free port (written to ``DIR/WebDriverBiDiServer.json``),
and a BiDi session on ``ws://host:port/session`` navigates, evaluates, records requests and
console entries, and takes screenshots: all this smoke test needs, with no download.

``firefox_page`` (a fixture) opens a URL in a 1280x800 tab and yields a ``FirefoxPage``; at
teardown it saves ``<artifacts>/<test>.png`` and applies the Chromium page's checks (no
uncaught error, no request off the page's origin). Foreign hosts go to a closed proxy port, so
they fail at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets
from websockets.asyncio.client import ClientConnection

from ktrdr_api.testing_browser import (
    VIEWPORT,
    ColorScheme,
    PageRecord,
    artifact_stem,
    check_page,
    failed,
    origin_of,
    require_browser,
)

__all__ = ["firefox_page"]

FIREFOX = "/usr/bin/firefox-esr"
START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0
DEAD_PROXY = ("127.0.0.1", 9)  # the discard port: nothing listens, a connect fails at once
PREFS = {
    "browser.startup.page": 0,  # a blank first tab
    "browser.shell.checkDefaultBrowser": False,
    "network.proxy.type": 1,  # manual: every host but loopback goes to DEAD_PROXY
    "network.proxy.http": DEAD_PROXY[0],
    "network.proxy.http_port": DEAD_PROXY[1],
    "network.proxy.ssl": DEAD_PROXY[0],
    "network.proxy.ssl_port": DEAD_PROXY[1],
    "network.proxy.no_proxies_on": "localhost, 127.0.0.1, [::1]",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
}
WAIT_FOR_JS = """new Promise((resolve, reject) => {
  const until = performance.now() + %(timeout_ms)d;
  const poll = () => {
    let value;
    try { value = (%(expression)s); } catch (e) { value = undefined; }
    if (value) resolve(true);
    else if (performance.now() > until) reject(new Error("still falsy after %(timeout_ms)d ms"));
    else setTimeout(poll, 50);
  };
  poll();
})"""
COLOR_OVERRIDE = {"dark": 0, "light": 1}  # layout.css.prefers-color-scheme.content-override


class BidiError(Exception):
    """A BiDi command answered an error (``error`` is its code, the message says which)."""

    def __init__(self, method: str, reply: dict[str, Any]) -> None:
        self.error = str(reply.get("error"))
        super().__init__(f"{method}: {self.error}: {reply.get('message')}")


class BidiSession:
    """One WebDriver BiDi session: commands by id, events into a ``PageRecord``."""

    def __init__(self, ws: ClientConnection, record: PageRecord) -> None:
        self.ws, self.record = ws, record
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self.reader = asyncio.create_task(self._read())

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command; return its ``result``.

        Raises:
            BidiError: the browser answered an error.
        """
        self.next_id += 1
        reply = self.pending[self.next_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        answer = await asyncio.wait_for(reply, COMMAND_TIMEOUT_S)
        if answer.get("type") == "error":
            raise BidiError(method, answer)
        result: dict[str, Any] = answer["result"]
        return result

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            waiting = self.pending.pop(message.get("id", -1), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
            elif message.get("type") == "event":
                self._on_event(message["method"], message["params"])

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "network.beforeRequestSent":
            url = params["request"]["url"]
            if self.record.origin is None and params.get("navigation"):
                self.record.origin = origin_of(url)
            self.record.requests.append(url)
        elif method == "log.entryAdded" and params.get("type") == "javascript":
            self.record.errors.append(str(params.get("text")))
        elif method == "log.entryAdded":
            self.record.console.append(f"[{params.get('level')}] {params.get('text')}")

    async def close(self) -> None:
        """End the session and the connection."""
        with contextlib.suppress(BidiError, TimeoutError, websockets.ConnectionClosed):
            await self.command("session.end")
        await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await self.reader


class FirefoxPage:
    """The one tab of a BiDi session."""

    def __init__(self, session: BidiSession, context: str) -> None:
        self.session, self.context = session, context

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        await self.session.command(
            "browsingContext.navigate", context=self.context, url=url, wait="complete"
        )

    async def evaluate(self, expression: str) -> Any:
        """Return the JSON value of ``expression`` in the page (a promise is awaited)."""
        result = await self.session.command(
            "script.evaluate",
            expression=f"(async () => JSON.stringify(await ({expression})))()",
            target={"context": self.context},
            awaitPromise=True,
        )
        if result["type"] == "exception":
            raise AssertionError(f"{expression}: {result['exceptionDetails']['text']}")
        value = result["result"]
        return json.loads(value["value"]) if value["type"] == "string" else None

    async def wait_for(self, expression: str, timeout_s: float = 15.0) -> None:
        """Wait until ``expression`` is truthy in the page (tried every 50 ms).

        Raises:
            AssertionError: it stayed falsy for ``timeout_s``.
        """
        poll = WAIT_FOR_JS % {"expression": expression, "timeout_ms": int(timeout_s * 1000)}
        await self.evaluate(poll)

    async def screenshot(self) -> bytes:
        """Return the viewport as a PNG."""
        shot = await self.session.command("browsingContext.captureScreenshot", context=self.context)
        return base64.b64decode(shot["data"])


@contextlib.asynccontextmanager
async def launch_firefox(
    record: PageRecord, color_scheme: ColorScheme = "light"
) -> AsyncIterator[FirefoxPage]:
    """Start headless firefox-esr on a fresh profile; yield its first tab at 1280x800."""
    with tempfile.TemporaryDirectory(prefix="ktrdr-firefox-") as tmp:
        profile = Path(tmp) / "profile"
        profile.mkdir()
        prefs = {
            **PREFS,
            "layout.css.prefers-color-scheme.content-override": COLOR_OVERRIDE[color_scheme],
        }
        lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
        (profile / "user.js").write_text("\n".join(lines) + "\n")
        argv = [FIREFOX, "--headless", "--no-remote", "--remote-debugging-port=0"]
        with (Path(tmp) / "firefox.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *argv, "--profile", str(profile), stdout=log, stderr=log
            )
            try:
                async with _session(profile, process, record) as session:
                    yield await _first_tab(session)
            finally:
                await _stop(process)


@contextlib.asynccontextmanager
async def _session(
    profile: Path, process: asyncio.subprocess.Process, record: PageRecord
) -> AsyncIterator[BidiSession]:
    port = await _bidi_port(profile, process)
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/session", max_size=None)
    session = BidiSession(ws, record)
    try:
        await session.command("session.new", capabilities={})
        await session.command(
            "session.subscribe", events=["network.beforeRequestSent", "log.entryAdded"]
        )
        yield session
    finally:
        await session.close()


async def _bidi_port(profile: Path, process: asyncio.subprocess.Process) -> int:
    """Return the port Firefox's Remote Agent wrote to the profile, once it has."""
    announced = profile / "WebDriverBiDiServer.json"
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"{FIREFOX} exited with {process.returncode} at start")
            with contextlib.suppress(OSError, ValueError, KeyError):
                return int(json.loads(announced.read_text())["ws_port"])
            await asyncio.sleep(0.05)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _first_tab(session: BidiSession) -> FirefoxPage:
    tree = await session.command("browsingContext.getTree")
    context = tree["contexts"][0]["context"]
    await session.command("browsingContext.setViewport", context=context, viewport=dict(VIEWPORT))
    return FirefoxPage(session, context)


OpenFirefox = Callable[[str], Awaitable[FirefoxPage]]


@pytest_asyncio.fixture(loop_scope="session")
async def firefox_page(
    browser_artifacts: Path, color_scheme: ColorScheme, request: pytest.FixtureRequest
) -> AsyncIterator[OpenFirefox]:
    """Yield ``open(url) -> FirefoxPage``: headless firefox-esr at ``url`` (once per test)."""
    require_browser(FIREFOX, "firefox-esr")
    record = PageRecord()
    async with contextlib.AsyncExitStack() as stack:
        opened: list[FirefoxPage] = []

        async def open_page(url: str) -> FirefoxPage:
            tab = await stack.enter_async_context(launch_firefox(record, color_scheme))
            opened.append(tab)
            await tab.goto(url)
            return tab

        yield open_page
        stem = browser_artifacts / artifact_stem(request.node)
        for tab in opened:
            with contextlib.suppress(BidiError, TimeoutError):
                stem.with_suffix(".png").write_bytes(await tab.screenshot())
        if failed(request.node) or record.problems():
            stem.with_suffix(".console.txt").write_text(record.log())
    check_page(record)
