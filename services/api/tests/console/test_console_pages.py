"""The web console in a real browser against the whole running system (issue 18).

One stack for the module (nats-server, the IB Gateway simulator, connector, data-store,
trainer, api as processes); Chromium at 1280x800 through Playwright, the page fixture failing
any test whose page asks a host other than the gateway or throws. A user's paths: load a
dataset from the form and watch it complete; see a gap planted in the store on the coverage
calendar and fill it with one click; chart exactly the candles the API returns; cancel a
running load from its page; train a model and read its curves and metrics; with a key
configured, nothing before the key. Firefox (firefox-esr over WebDriver BiDi) draws every page.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from ktrdr_api.testing_browser import BROWSER_MARKS, ColorScheme, PageRecord
from ktrdr_api.testing_console import ConsoleStack
from ktrdr_api.testing_firefox import OpenFirefox
from ktrdr_data_store.store import ParquetBarStore, table_from_arrays
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_shared.messages import JobAccepted, JobKind
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import Timeframe
from playwright.async_api import Page, Route, expect

pytestmark = [*BROWSER_MARKS, pytest.mark.xdist_group("console")]

JOB_URL = re.compile(r"#/jobs/[0-9a-f]{32}$")
PAGES = ["overview", "data", "jobs", "chart", "training", "docs"]


async def show(page: Page, stack: ConsoleStack, route: str) -> None:
    """Open ``#/route`` and wait until its page has drawn its first data."""
    name = route.split("/")[0].split("?")[0]
    await page.goto(f"{stack.api_url}/#/{route}")
    await page.locator(f'#view[data-page="{name}"][data-ready="true"]').wait_for()


def plant(stack: ConsoleStack, symbol: str, timeframe: Timeframe, stamps: np.ndarray) -> None:
    """Write bars at ``stamps`` straight into the store (no load, no ledger: what is missing
    between them is a gap that can be filled)."""
    n = len(stamps)
    close = 100.0 + np.sin(np.arange(n) / 9.0)
    ParquetBarStore(stack.data_dir).merge(
        symbol,
        timeframe,
        table_from_arrays(
            {
                "ts": stamps.astype(np.int64),
                "open": close - 0.1,
                "high": close + 0.3,
                "low": close - 0.3,
                "close": close,
                "volume": np.full(n, 1_000.0),
            }
        ),
    )


def ns(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) * 10**9


async def api_rows(stack: ConsoleStack, path: str, **params: str) -> list[dict[str, Any]]:
    """Return every bar the API answers for ``path`` (following its cursors)."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=stack.api_url, headers=stack.headers) as http:
        while True:
            query = {**params, "limit": "10000", **({"cursor": cursor} if cursor else {})}
            page = (await http.get(path, params=query)).json()
            rows += page["bars"]
            cursor = page["next_cursor"]
            if not cursor:
                return rows


async def post(stack: ConsoleStack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=stack.headers, timeout=180) as h:
        reply = await h.post(path, json=body)
        assert reply.status_code in (200, 202), reply.text
        answer: dict[str, Any] = reply.json()
        return answer


@pytest.mark.parametrize("color_scheme", ["dark", "light"])
async def test_the_overview_shows_ib_its_pacing_and_the_services_live(
    console_stack: ConsoleStack, page: Page, color_scheme: ColorScheme
) -> None:
    await show(page, console_stack, "overview")
    await expect(page.locator('.badge[data-state="connected"]')).to_be_visible()
    await expect(page.locator('tr[data-farm="ushmds"]')).to_contain_text("ago")  # since when
    await expect(page.locator("#pacing-meter")).to_have_attribute("data-max", "60")
    for service in ("api", "data-store", "ib-connector", "trainer"):
        await expect(page.locator(f'tr[data-service="{service}"]')).to_be_visible()
    first = await page.locator("#overview-ts").text_content()
    # snapshots keep coming over the server-sent events (every 2 s without IB changes)
    await expect(page.locator("#overview-ts")).not_to_have_text(first or "", timeout=10_000)
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    dark = sum(int(c) for c in re.findall(r"\d+", background)[:3]) < 3 * 128
    assert dark == (color_scheme == "dark"), background


async def test_a_load_from_the_form_runs_to_completion(
    console_stack: ConsoleStack, page: Page
) -> None:
    await show(page, console_stack, "data")
    await page.fill("#f-symbol", "aapl")
    await expect(page.locator("#symbol-status")).to_have_attribute("data-valid", "true")
    await expect(page.locator("#symbol-status")).to_contain_text("AAPL: STK")
    await page.select_option("select[name=timeframe]", "1d")
    await page.fill("input[name=start]", "2024-01-02")
    await page.click("#load-submit")
    await page.wait_for_url(JOB_URL)
    status = page.locator("#job-status")
    await expect(status).to_have_attribute("data-status", "completed", timeout=90_000)
    cells = await page.locator("#chunk-map .chunk").evaluate_all(
        "cs => cs.map(c => c.dataset.state)"
    )
    assert cells and set(cells) == {"stored"}, cells
    await expect(page.locator('#job-events li[data-type="completed"]')).to_have_count(1)
    await show(page, console_stack, "data")
    await expect(page.locator('tr[data-dataset="AAPL/1d"]')).to_be_visible()


async def test_an_unknown_symbol_is_refused_as_it_is_typed(
    console_stack: ConsoleStack, page: Page
) -> None:
    await show(page, console_stack, "data")
    await page.fill("#f-symbol", "NOSUCHSYM")
    await expect(page.locator("#symbol-status")).to_have_attribute("data-valid", "false")
    await expect(page.locator("#symbol-status")).to_contain_text("NOSUCHSYM")


async def test_the_calendar_shows_a_planted_gap_and_fills_it_with_one_click(
    console_stack: ConsoleStack, page: Page
) -> None:
    served = expected_stamps(
        "EURUSD", "CASH", "1 hour", datetime(2024, 6, 3, tzinfo=UTC),
        datetime(2024, 6, 22, tzinfo=UTC), what="MIDPOINT",
    )  # fmt: skip
    # forex sessions run 17:00 to 17:00 New York (21:00Z in June): take out the whole
    # sessions of 11 and 12 June
    hole = (served >= ns("2024-06-10T21:00")) & (served < ns("2024-06-12T21:00"))
    plant(console_stack, "EURUSD", Timeframe.H1, served[~hole])
    await show(page, console_stack, "data/EURUSD/1h")
    gaps = page.locator('#coverage-calendar .day[data-state="gap"]')
    assert await gaps.evaluate_all("ds => ds.map(d => d.dataset.date)") == [
        "2024-06-11",
        "2024-06-12",
    ]
    await expect(page.locator('.day[data-date="2024-06-15"]')).to_have_attribute(
        "data-state", "closed"
    )  # a Saturday: the market is closed, no gap
    await page.click("#fill-gaps")
    await expect(gaps).to_have_count(0, timeout=90_000)
    for day in ("2024-06-11", "2024-06-12"):
        await expect(page.locator(f'.day[data-date="{day}"]')).to_have_attribute(
            "data-state", "stored"
        )
    await expect(page.locator("#fill-status")).to_contain_text("completed")
    rows = await api_rows(console_stack, "/api/v1/data/EURUSD/1h")
    assert [r["ts"] for r in rows] == [
        datetime.fromtimestamp(t / 1e9, UTC).isoformat().replace("+00:00", "Z") for t in served
    ]


async def test_the_chart_draws_every_candle_the_api_returns_and_marks_gaps(
    console_stack: ConsoleStack, page: Page
) -> None:
    stamps = expected_stamps(
        "MSFT", "STK", "1 hour", datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)
    )
    hole = (stamps >= ns("2024-05-15")) & (stamps < ns("2024-05-16"))
    plant(console_stack, "MSFT", Timeframe.H1, stamps[~hole])
    await show(
        page, console_stack, "chart?symbol=MSFT&timeframe=1h&start=2024-04-01&end=2024-06-01"
    )
    box = page.locator("#chart-box")
    await expect(box).to_have_attribute("data-complete", "true")
    rows = await api_rows(
        console_stack,
        "/api/v1/data/MSFT/1h",
        start="2024-04-01T00:00:00Z",
        end="2024-06-01T00:00:00Z",
    )
    assert len(rows) == int((~hole).sum())
    assert await box.get_attribute("data-candles") == str(len(rows))
    assert await page.locator("#chart-box canvas").count() > 0
    await expect(page.locator("#chart-marks")).to_have_attribute("data-gaps", "1")
    await expect(page.locator('#chart-marks li[data-mark="gap"]')).to_contain_text("2024-05-15")


async def test_a_job_page_opened_before_its_service_accepts_the_job_waits_for_it(
    console_stack: ConsoleStack, page: Page
) -> None:
    # the console opens a job's page right after the POST: the job is in the event log only
    # once its service accepted it, and until then the gateway answers 404
    job_id = uuid.uuid4().hex
    await page.goto(f"{console_stack.api_url}/#/jobs/{job_id}")
    await expect(page.locator("#job-waiting")).to_be_visible()
    accepted = JobAccepted(job_id=job_id, kind=JobKind.DATA_LOAD, params={"symbol": "IBM"})
    await publish_event(console_stack.js, accepted, kind=JobKind.DATA_LOAD)
    await expect(page.locator("#job-status")).to_have_attribute("data-status", "accepted")
    await expect(page.locator("#job-waiting")).to_have_count(0)
    await expect(page.locator(".error-box")).to_have_count(0)


async def test_a_read_the_gateway_answers_504_is_asked_again(
    console_stack: ConsoleStack, page: Page
) -> None:
    # a busy service past the gateway's timeout answers 504 "try again": the page does
    asked: list[str] = []

    async def busy_once(route: Route) -> None:
        asked.append(route.request.url)
        if len(asked) > 1:
            await route.continue_()
            return
        problem = '{"title": "Gateway Timeout", "detail": "busy", "code": "service_timeout"}'
        await route.fulfill(
            status=504,
            body=problem,
            headers={"Retry-After": "1"},
            content_type="application/problem+json",
        )

    await page.route(re.compile(r"/api/v1/data$"), busy_once)
    await show(page, console_stack, "data")
    assert len(asked) == 2
    await expect(page.locator(".error-box")).to_have_count(0)


async def test_a_running_load_is_cancelled_from_its_page(
    console_stack: ConsoleStack, page: Page
) -> None:
    # four weeks of 5-second bars: hundreds of IB requests, paced for a while
    job = await post(
        console_stack,
        "/api/v1/data/load",
        {"symbol": "EURUSD", "timeframe": "5s", "start": "2024-05-27T00:00:00Z"},
    )
    await page.goto(f"{console_stack.api_url}/#/jobs/{job['job_id']}")
    status = page.locator("#job-status")
    await expect(status).to_have_attribute("data-status", "running", timeout=30_000)
    # cancel once IB is answering: a chunk of the plan is in (a job cancelled before its
    # plan has no chunk map to show)
    await page.locator('#chunk-map .chunk[data-state="stored"]').first.wait_for(timeout=30_000)
    await page.click("#job-cancel")
    await expect(status).to_have_attribute("data-status", "cancelled", timeout=60_000)
    await expect(page.locator('#job-events li[data-type="cancelled"]')).to_have_count(1)
    states = await page.locator("#chunk-map .chunk").evaluate_all(
        "cs => cs.map(c => c.dataset.state)"
    )
    assert "cancelled" in states and "in_flight" not in states, states
    await expect(page.locator("#job-cancel")).to_be_hidden()


async def test_a_training_run_shows_its_curves_metrics_and_model(
    console_stack: ConsoleStack, page: Page
) -> None:
    await post(
        console_stack,
        "/api/v1/data/load?wait=true",
        {"symbol": "AAPL", "timeframe": "1h", "start": "2024-01-02T00:00:00Z"},
    )
    await show(page, console_stack, "training")
    await page.fill("input[name=symbols]", "AAPL")
    await page.select_option("#train-form select[name=timeframe]", "1h")
    await page.fill("input[name=epochs]", "3")
    await page.click("#train-submit")
    await page.wait_for_url(re.compile(r"#/training/[0-9a-f]{32}$"))
    status = page.locator("#run-status")
    await expect(status).to_have_attribute("data-status", "completed", timeout=120_000)
    await expect(page.locator("#loss-curve")).to_have_attribute("data-points", "6")
    await expect(page.locator("#accuracy-curve")).to_have_attribute("data-points", "3")
    await expect(page.locator("#confusion-matrix tbody tr")).to_have_count(3)
    await expect(page.locator("#metrics")).to_contain_text("accuracy (vs always")
    await expect(page.locator("#metrics")).to_contain_text("buy and hold")
    points = await page.locator("#equity-curve").get_attribute("data-points")
    assert points is not None and int(points) > 2
    await show(page, console_stack, "training")
    await expect(page.locator("#models [data-download]")).not_to_have_count(0)
    async with page.expect_download() as download:
        await page.locator("#models [data-download]").first.click()
    assert (await download.value).suggested_filename.endswith(".zip")


async def test_with_a_key_nothing_works_before_it_is_entered(
    console_stack_with_key: ConsoleStack, page: Page, page_record: PageRecord
) -> None:
    stack = console_stack_with_key
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.url, r.status)))
    await page.goto(f"{stack.api_url}/#/jobs")
    dialog = page.locator("#key-dialog")
    await expect(dialog).to_be_visible()
    api = [status for url, status in answers if "/api/" in url]
    assert api and set(api) == {401}, answers
    assert await page.locator("#view").get_attribute("data-ready") is None
    await page.fill("#key-input", "not-the-key")
    await page.click("#key-submit")
    await expect(page.locator("#key-error")).to_contain_text("refused")
    assert stack.api_key is not None
    await page.fill("#key-input", stack.api_key)
    await page.click("#key-submit")
    await page.locator('#view[data-page="jobs"][data-ready="true"]').wait_for()
    await expect(dialog).to_be_hidden()
    await show(page, stack, "overview")  # the live stream sends the key too
    await expect(page.locator('.badge[data-state="connected"]')).to_be_visible()
    assert not any(stack.api_key in url for url in page_record.requests)
    assert await page.evaluate("sessionStorage.getItem('ktrdr.apiKey')") == stack.api_key
    stored = await page.evaluate("Object.values(localStorage)")
    assert stack.api_key not in stored


async def test_every_page_draws_in_firefox(
    console_stack: ConsoleStack, firefox_page: OpenFirefox
) -> None:
    tab = await firefox_page(f"{console_stack.api_url}/#/overview")
    for name in PAGES:
        await tab.goto(f"{console_stack.api_url}/#/{name}")
        await tab.wait_for(
            f'document.querySelector(\'#view[data-page="{name}"][data-ready="true"]\')',
            timeout_s=30,
        )
        assert not await tab.evaluate("document.querySelector('.error-box') !== null"), name
