"""A load says which hours and which contract it wants, and a dataset never mixes two kinds.

Real connector, real simulator (unmodified ib_async over TCP), real data-store on a real
nats-server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_ib_connector.testing import NOW
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_ib_sim.series import expected_bars
from ktrdr_shared import subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import Coverage, CoverageRequest, JobCompleted, JobFailed
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration

StartStore = Callable[..., Awaitable[ServiceApp]]
UTC = dt.UTC
START, END = dt.datetime(2024, 6, 17, tzinfo=UTC), dt.datetime(2024, 6, 22, tzinfo=UTC)


async def finished(js: JetStreamContext, job_id: str) -> Any:
    return await wait_for_job_event(js, job_id, {"completed", "failed", "cancelled"}, timeout_s=90)


def rth_stamps(start: dt.datetime, end: dt.datetime) -> np.ndarray:
    """Return the stamps (ns) of the simulator's regular-hours AAPL hourly bars."""
    frame = expected_bars("AAPL", "STK", "1 hour", "TRADES", True, start, end, now_utc=NOW)
    stamps = pd.to_datetime(frame["date"], utc=True).dt.as_unit("ns").astype("int64")
    return np.asarray(stamps.to_numpy(), dtype=np.int64)


def historical(sim: IBGatewaySimulator) -> list[dict[str, Any]]:
    return [r for r in sim.ledger.records() if r["kind"] == "historical"]


async def test_a_regular_hours_load_stores_those_bars_and_a_dataset_never_mixes_hours(
    connector: ServiceApp,
    start_store: StartStore,
    nc: NATS,
    js: JetStreamContext,
    tmp_path: Path,
    sim: IBGatewaySimulator,
) -> None:
    await start_store()
    client = KtrdrClient(nc)
    job = await client.load_data("AAPL", "1h", mode="full", start=START, end=END, use_rth=True)
    done = await finished(js, job)
    assert isinstance(done, JobCompleted), done
    stored = ParquetBarStore(tmp_path / "data").read("AAPL", Timeframe.H1)
    got = stored.column("ts").cast("int64").to_numpy()
    np.testing.assert_array_equal(got, rth_stamps(START, END))
    local = pd.to_datetime(got, utc=True).tz_convert("America/New_York")
    assert ((local.hour * 60 + local.minute) >= 9 * 60 + 30).all()  # no pre-market bar
    assert (local.hour < 16).all()  # no after-hours bar
    asked = historical(sim)
    assert asked and all(r.get("use_rth") in (True, 1, "1") for r in asked), asked[:2]
    coverage = await client.request(
        subjects.STORE_COVERAGE, CoverageRequest(symbol="AAPL", timeframe=Timeframe.H1), Coverage
    )
    assert coverage.gaps == []  # the extended hours are no gaps of a regular-hours dataset

    requests_before = len(historical(sim))
    mixed = await client.load_data("AAPL", "1h", mode="full", start=START, end=END)
    failed = await finished(js, mixed)
    assert isinstance(failed, JobFailed), failed
    assert failed.code == "invalid_request"
    assert "regular trading hours only" in failed.message and "extended hours" in failed.message
    assert len(historical(sim)) == requests_before  # refused before anything reached IB
