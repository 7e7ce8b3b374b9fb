"""Console benchmark: each page's first view, in headless Chromium, on a full store.

The whole system runs as processes (``ktrdr_api.testing_console.run_console_stack``: nats-server,
the simulator, the ib-connector, the data-store, the trainer and the api gateway) on a store
seeded with 100 small datasets (written by the data-store's own writer) and 1,000 finished
jobs (their real event sequences in the event log: 900 data loads, 100 training runs). One
headless ``/usr/bin/chromium`` (Debian's, driven by Playwright as the browser tests drive it)
then opens each page in a fresh context and times it from the navigation to
``main[data-ready="true"]``, the attribute each console page sets once its first data is drawn.

Baseline, measured in the same browser in the same run: loading the gateway's ``/health``
JSON (a navigation, a NATS round trip to every service, a render). Each page is opened
``ROUNDS`` times (alternating pages, so drifts in the machine's load hit all of them) and its
best time kept, with its three slowest requests (where the time went). A page that drew an
error box, threw, or reached off its origin is reported under ``problems`` and does not
meet the target. Target: every page < 1000 ms.

Run alone: ``python bench/run.py --only console`` (or ``python bench/bench_console.py``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ktrdr_api.testing_browser import VIEWPORT, PageRecord, launch_chromium
from ktrdr_api.testing_console import ConsoleStack, run_console_stack, seed_symbols
from playwright.async_api import Browser, async_playwright
from playwright.async_api import Request as PageRequest

DATASETS = 100
JOBS = 1_000
TARGET_MS = 1_000.0
READY = 'main[data-ready="true"]'
TIMEOUT_MS = 30_000
SLOWEST = 3  # requests named per page, the slowest of its best round


def pages() -> dict[str, str]:
    """Return each page's hash route (the chart shows the first seeded 1-hour dataset)."""
    symbol, timeframe = seed_symbols(1)[0]
    return {
        "overview": "#/overview",
        "data": "#/data",
        "jobs": "#/jobs",
        "chart": f"#/chart?symbol={symbol}&timeframe={timeframe.value}",
        "training": "#/training",
    }


@dataclass
class View:
    """One first view: how long it took, what went wrong, and its slowest requests."""

    ms: float
    problems: list[str]
    slowest: list[tuple[str, float]]  # (path and query, ms from request to response end)


async def _first_view(browser: Browser, url: str, ready: str | None) -> View:
    """Open ``url`` in a fresh context; time it until ``ready`` matches (or the load event)."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    record = PageRecord()
    await record.watch(page)
    finished: list[PageRequest] = []
    page.on("requestfinished", lambda request: finished.append(request))
    try:
        started = time.perf_counter()
        await page.goto(url, timeout=TIMEOUT_MS)
        if ready is not None:
            await page.wait_for_selector(ready, state="attached", timeout=TIMEOUT_MS)
        elapsed_ms = (time.perf_counter() - started) * 1000
        boxes = await page.locator(".error-box").all_inner_texts()
    finally:
        await context.close()
    took = [(_path(r.url), round(r.timing["responseEnd"], 1)) for r in finished]
    slowest = sorted(took, key=lambda t: -t[1])[:SLOWEST]
    return View(elapsed_ms, [*record.problems(), *boxes], slowest)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _measure(stack: ConsoleStack, rounds: int) -> dict[str, list[View]]:
    """Return each target's views: a warm-up first, then ``rounds`` rounds across them all."""
    targets: dict[str, tuple[str, str | None]] = {"health": (f"{stack.api_url}/health", None)}
    targets |= {name: (f"{stack.api_url}/{route}", READY) for name, route in pages().items()}
    views: dict[str, list[View]] = {name: [] for name in targets}
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            for url, ready in targets.values():  # warm: the browser, the gateway, the caches
                await _first_view(browser, url, ready)
            for _ in range(rounds):
                for name, (url, ready) in targets.items():
                    views[name].append(await _first_view(browser, url, ready))
        finally:
            await browser.close()
    return views


def _results(views: dict[str, list[View]], rounds: int, quick: bool) -> list[dict[str, Any]]:
    baseline = min(v.ms for v in views["health"])
    results = []
    for name, route in pages().items():
        best = min(views[name], key=lambda v: v.ms)
        problems = sorted({p for v in views[name] for p in v.problems})
        results.append(
            {
                "name": f"console.first_view_ms.{name}",
                "value": best.ms,
                "baseline": baseline,
                "ratio": best.ms / baseline,
                "unit": "ms",
                "target": f"< {TARGET_MS:.0f} ms",
                "met": best.ms < TARGET_MS and not problems,
                "baseline_name": "GET /health JSON in the same browser, same run",
                "route": route,
                "times_ms": [round(v.ms, 1) for v in views[name]],
                "slowest_requests_ms": best.slowest,
                "problems": problems,
                "datasets": DATASETS,
                "jobs": JOBS,
                "rounds": rounds,
                "kept": "best round",
                "quick": quick,
            }
        )
    return results


async def _run(root: Path, quick: bool) -> list[dict[str, Any]]:
    rounds = 2 if quick else 5
    async with run_console_stack(root, datasets=DATASETS, jobs=JOBS) as stack:
        views = await _measure(stack, rounds)
    return _results(views, rounds, quick)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Seed the store, start the system, time each console page's first view."""
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        return asyncio.run(_run(Path(tmp), quick))


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
