"""The console bench's store (``ktrdr_api.testing_console``): 100 datasets written by the
data-store's writer and 1,000 finished jobs' events, as the gateway then lists them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from ktrdr_api.testing_console import seed_datasets, seed_jobs, seed_symbols
from ktrdr_shared.runtime import ServiceApp
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration


async def test_the_seeded_store_lists_100_datasets_and_1000_finished_jobs(
    data_dir: Path, data_store: ServiceApp, js: JetStreamContext, http: httpx.AsyncClient
) -> None:
    seed_datasets(data_dir, 100, bars=50)
    job_ids = await seed_jobs(js, 1_000)

    datasets = (await http.get("/api/v1/data")).json()["datasets"]
    listed = {(d["symbol"], d["timeframe"]) for d in datasets}
    assert listed == {(symbol, tf.value) for symbol, tf in seed_symbols(100)}
    assert {d["rows"] for d in datasets} == {50}

    jobs = (await http.get("/api/v1/jobs", params={"limit": 10_000})).json()["jobs"]
    assert {j["job_id"] for j in jobs} == set(job_ids)
    assert Counter((j["kind"], j["status"]) for j in jobs) == {
        ("data_load", "completed"): 900,
        ("training", "completed"): 100,
    }
    assert jobs[0]["job_id"] == job_ids[-1]  # newest first: the last one ended last


async def test_a_seeded_chart_dataset_has_hourly_bars(
    data_dir: Path, data_store: ServiceApp, http: httpx.AsyncClient
) -> None:
    seed_datasets(data_dir, 1, bars=30)
    symbol, timeframe = seed_symbols(1)[0]
    page = (await http.get(f"/api/v1/data/{symbol}/{timeframe.value}")).json()
    bars = page["bars"]
    assert len(bars) == 30 and timeframe.value == "1h"
    assert all(b["low"] <= min(b["open"], b["close"]) for b in bars)
    assert all(b["high"] >= max(b["open"], b["close"]) for b in bars)
