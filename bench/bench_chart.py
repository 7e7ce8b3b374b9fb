"""Chart benchmark: the console's candlestick chart with one year of 1-minute bars.

The whole system runs as processes (``ktrdr_api.testing_console.run_console_stack``); the
store gets EURUSD 1-minute bars at the simulator's own stamps for a year (about 372,000
bars) and for its last month (as a second symbol). Headless Chromium (Debian's, through
Playwright) opens the chart page for each with the range given, so the page fetches every
bar through the API (JSON pages of 50,000) and draws them all, then a scripted user pans
(a mouse drag of 480 px) and zooms (40 wheel steps in and out) while every animation frame's
time is recorded.

Figures, each against the same figure for the one-month dataset measured in the same run:
the time from navigation to every bar drawn, and the median and 95th-percentile frame
interval while panning and zooming. Target: p95 frame interval under 33 ms (30 fps) with the
year loaded; 16.7 ms is the display's own refresh (60 Hz) and the floor.

Run alone: ``python bench/run.py --only chart`` (or ``python bench/bench_chart.py``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from ktrdr_api.testing_browser import VIEWPORT, launch_chromium
from ktrdr_api.testing_console import run_console_stack
from ktrdr_data_store.store import ParquetBarStore, table_from_arrays
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_shared.types import Timeframe
from playwright.async_api import Browser, async_playwright

END = datetime(2024, 6, 28, tzinfo=UTC)
SETS = {  # symbol in the store -> first day of its range (each ends at END)
    "EURUSD": datetime(2023, 6, 28, tzinfo=UTC),  # a year: the figure
    "EURMONTH": datetime(2024, 5, 28, tzinfo=UTC),  # a month: the baseline
}
TARGET_P95_MS = 33.0
FRAMES = """window.__frames = []; (function tick(t) { window.__frames.push(t);
  if (window.__frames.length < 100000) requestAnimationFrame(tick); })(performance.now());"""


def plant(data_dir: Path, symbol: str, start: datetime) -> int:
    """Write 1-minute bars at the simulator's EURUSD stamps from ``start`` to ``END``."""
    stamps = expected_stamps("EURUSD", "CASH", "1 min", start, END, what="MIDPOINT")
    n = len(stamps)
    rng = np.random.default_rng(18)
    close = 1.08 * np.exp(np.cumsum(rng.normal(0.0, 0.0002, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    spread = np.abs(rng.normal(0.0, 0.0001, n)) * close
    ParquetBarStore(data_dir).merge(
        symbol,
        Timeframe.M1,
        table_from_arrays(
            {
                "ts": stamps,
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.integers(1, 500, n).astype(np.float64),
            }
        ),
    )
    return n


async def _measure(browser: Browser, url: str) -> dict[str, float]:
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    try:
        began = time.perf_counter()
        await page.goto(url)
        await page.wait_for_selector('#chart-box[data-complete="true"]', timeout=300_000)
        loaded_ms = (time.perf_counter() - began) * 1000
        candles = int(await page.locator("#chart-box").get_attribute("data-candles") or 0)
        await page.wait_for_timeout(300)
        await page.evaluate(FRAMES)
        box = await page.locator("#chart-box").bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        await page.mouse.move(x, y)
        await page.mouse.down()
        for step in range(60):
            await page.mouse.move(x - step * 8, y)
        await page.mouse.up()
        for delta in [-120] * 20 + [240] * 20:
            await page.mouse.wheel(0, delta)
        await page.wait_for_timeout(300)
        frames = np.diff(np.array(await page.evaluate("window.__frames")))
        return {
            "loaded_ms": loaded_ms,
            "candles": candles,
            "frames": len(frames),
            "frame_median_ms": float(np.median(frames)),
            "frame_p95_ms": float(np.percentile(frames, 95)),
            "frame_max_ms": float(frames.max()),
        }
    finally:
        await context.close()


async def _run(root: Path, quick: bool) -> list[dict[str, Any]]:
    async with run_console_stack(root) as stack:
        bars = {symbol: plant(stack.data_dir, symbol, start) for symbol, start in SETS.items()}
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                seen: dict[str, dict[str, float]] = {}
                for symbol, start in SETS.items():
                    url = (
                        f"{stack.api_url}/#/chart?symbol={symbol}&timeframe=1m"
                        f"&start={start.date()}&end={END.date()}"
                    )
                    seen[symbol] = await _measure(browser, url)
            finally:
                await browser.close()
    year, month = seen["EURUSD"], seen["EURMONTH"]
    common = {
        "bars": bars["EURUSD"],
        "baseline_bars": bars["EURMONTH"],
        "candles_drawn": year["candles"],
        "frames_recorded": year["frames"],
        "baseline_name": "the same figure for one month of 1-minute bars, same run",
        "quick": quick,
    }
    results = []
    for figure in ("loaded_ms", "frame_median_ms", "frame_p95_ms", "frame_max_ms"):
        row: dict[str, Any] = {
            "name": f"console.chart_year_1m.{figure}",
            "value": round(year[figure], 1),
            "baseline": round(month[figure], 1),
            "ratio": year[figure] / month[figure],
            "unit": "ms",
            **common,
        }
        if figure == "frame_p95_ms":
            row["target"] = f"< {TARGET_P95_MS:.0f} ms"
            row["met"] = year[figure] < TARGET_P95_MS and year["candles"] == bars["EURUSD"]
        results.append(row)
    return results


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Plant a year of 1-minute bars, chart them, time the load and the frames."""
    with tempfile.TemporaryDirectory(prefix="bench-chart-") as tmp:
        return asyncio.run(_run(Path(tmp), quick))


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
