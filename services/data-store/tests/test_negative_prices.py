"""Negative prices end to end: the expired May 2020 crude future (CLK0) settled at -37.63.

LoadData CL 1d (FUT) -> the connector finds no live CL, retries with includeExpired, gets
CLK0 and fetches its bars with includeExpired set -> the store keeps exactly the simulator's
bars, the negative close of 2020-04-20 included. The store has no NYMEX calendar, so planning
falls back to the FUT default (CME Globex hours), which is also how the simulator trades CL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_ib_connector.testing import NOW, expected_stamps
from ktrdr_ib_sim import IBGatewaySimulator, expected_bars
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import JobCompleted
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration

UTC = dt.UTC
START, END = dt.datetime(2020, 4, 1, tzinfo=UTC), dt.datetime(2020, 4, 22, tzinfo=UTC)


async def test_cl_may_2020_loads_with_its_negative_close(
    connector: ServiceApp,
    start_store: Callable[..., Awaitable[ServiceApp]],
    nc: NATS,
    js: JetStreamContext,
    tmp_path: Path,
    sim: IBGatewaySimulator,
) -> None:
    await start_store()
    job_id = await KtrdrClient(nc).load_data(
        "CL", "1d", instrument_type="FUT", start=START, end=END
    )
    done = await wait_for_job_event(js, job_id, {"completed", "failed", "cancelled"}, timeout_s=90)
    assert isinstance(done, JobCompleted), done

    table = ParquetBarStore(tmp_path / "data").read("CL", Timeframe.D1)
    got = table.to_pandas()
    stamps = table.column("ts").cast("int64").to_numpy()
    np.testing.assert_array_equal(stamps, expected_stamps("CL", "FUT", "1 day", START, END))

    want = expected_bars(
        "CL", "FUT", "1 day", "TRADES", False, START - dt.timedelta(days=3), END, now_utc=NOW
    )
    want_ns = pd.to_datetime(want["date"], utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    want = want[(want_ns >= pd.Timestamp(START).value) & (want_ns < pd.Timestamp(END).value)]
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(
            got[column].astype(float).to_numpy(), want[column].astype(float).to_numpy(), column
        )
    crash = got[stamps == pd.Timestamp("2020-04-20", tz="UTC").value]
    assert float(crash["close"].iloc[0]) == -37.63
    assert float(crash["low"].iloc[0]) < -40.0
    assert float(got["close"].iloc[-1]) == 10.01  # 2020-04-21, the last trading day

    contracts = {r["con_id"] for r in sim.ledger.records() if r["kind"] == "historical"}
    assert contracts == {212921504}  # every history request named CLK0, with includeExpired
