"""A real gateway's operating life, end to end: the connector and the store come through it.

The TWS-protocol simulator (latency model on, as by default), the real ib-connector (unmodified
ib_async over TCP) and the real data-store on a real nats-server. Each test plays one thing a
real gateway does to a load, and asserts what is stored (exactly the simulator's bars) and
what reached "IB" (the simulator's own request log).

1. IB's daily reset (1100 then 1101, data lost) and a network blip (1100 then 1102) in the
   middle of a year of 1-minute bars: every bar stored once, no pacing violation.
2. An answer that never comes in time is cancelled at IB and asked again.
3. A load over an ES roll: each side of the expiry from the contract that was the front month.
4. Forex TRADES (IB's real 162 text) fails fast, saying to use MIDPOINT.
5. A historical-data farm inactive at connect (2107) wakes on demand; the load completes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_ib_connector.testing import NOW, SIM_DEFAULTS, expected_stamps
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_ib_sim.series import expected_bars
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import JobCompleted, JobFailed, LoadResult
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UTC = dt.UTC
DONE = {"completed", "failed", "cancelled"}


@pytest.fixture
def sim_defaults() -> dict[str, Any]:
    """The simulator every test here talks to (``@pytest.mark.sim_options(...)`` adds to it):
    ES lists every live quarter and the expired ones, as a real gateway does."""
    return {**SIM_DEFAULTS, "futures_listing": "live"}


@pytest.fixture
async def store(nats_url: str, tmp_path: Path) -> AsyncIterator[Path]:
    """Run the data-store on a temporary data dir; return the dir."""
    data_dir = tmp_path / "data"
    app = build_app(
        DataStoreSettings.from_env(
            {
                "KTRDR_NATS_URL": nats_url,
                "KTRDR_DATA_DIR": str(data_dir),
                "KTRDR_GAP_FILL_INTERVAL_S": "0",
                "KTRDR_LOAD_PROGRESS_INTERVAL_S": "0.2",
            }
        )
    )
    await app.start()
    try:
        yield data_dir
    finally:
        await app.stop()


async def finished(js: JetStreamContext, job_id: str, timeout_s: float = 240) -> Any:
    return await wait_for_job_event(js, job_id, DONE, timeout_s=timeout_s)


def stored(data_dir: Path, symbol: str, timeframe: Timeframe) -> Any:
    return ParquetBarStore(data_dir).read(symbol, timeframe)


def historical(sim: IBGatewaySimulator) -> list[dict[str, Any]]:
    return [r for r in sim.records() if r["kind"] == "historical"]


# What is in flight across the blip is held, not late: a request timeout the machine's load
# could reach would cancel and re-ask it (the test after this one proves that path).
@pytest.mark.connector_options(KTRDR_IB_REQUEST_TIMEOUT_S="120")
async def test_a_year_of_minute_bars_comes_through_a_daily_reset_and_a_blip(
    connector: ServiceApp,
    store: Path,
    nc: NATS,
    js: JetStreamContext,
    sim: IBGatewaySimulator,
) -> None:
    start = dt.datetime(2023, 6, 28, tzinfo=UTC)
    job = await KtrdrClient(nc).load_data("AAPL", "1m", mode="full", start=start, end=NOW)

    def answered(at_least: int) -> Callable[[dict[str, Any]], bool]:
        """At least that many answered, and one in flight now (for the link to take away)."""

        def check(_: dict[str, Any]) -> bool:
            outcomes = [r["outcome"] for r in historical(sim)]
            return outcomes.count("ok") >= at_least and "pending" in outcomes

        return check

    await sim.wait_until(answered(15), wait_s=120)  # of ~57 weekly requests
    assert sim.lose_link()  # IB's daily reset: 1100, sockets up ...
    await asyncio.sleep(0.5)
    assert sim.restore_link(data_lost=True)  # ... then 1101: what was in flight is gone
    await sim.wait_until(answered(35), wait_s=120)
    assert sim.lose_link()  # a blip: 1100 ...
    await asyncio.sleep(0.5)
    assert sim.restore_link(data_lost=False)  # ... then 1102: the answers come after all
    done = await finished(js, job)
    assert isinstance(done, JobCompleted), done
    assert isinstance(done.result, LoadResult) and not done.result.failed_segments
    got = stored(store, "AAPL", Timeframe.M1).column("ts").cast("int64").to_numpy()
    np.testing.assert_array_equal(got, expected_stamps("AAPL", "STK", "1 min", start, NOW))
    counters = sim.counters()
    assert counters["pacing_violations"] == 0
    records = historical(sim)
    lost = [r for r in records if r["outcome"] == "lost"]
    assert lost  # the reset dropped what was in flight ...
    # A request the connector sent as the 1100 arrived may reach the gateway after it and be
    # held rather than dropped; at the 1101 the connector cannot tell it from a dropped one,
    # so it cancels it and asks again (seen on a loaded machine): the one other outcome.
    again = [r for r in records if r["outcome"] in ("lost", "cancelled")]
    for r in again:  # ... and each of those was asked again and answered
        assert any(
            a["end"] == r["end"] and a["seq"] > r["seq"] and a["outcome"] == "ok" for a in records
        )
    assert any(r["held"] and r["outcome"] == "ok" for r in records)  # the blip's: answered
    assert all(r["outcome"] in ("ok", "lost", "cancelled") for r in records), records
    assert counters["link_restores_data_lost"] == counters["link_restores_data_maintained"] == 1


async def test_an_answer_that_does_not_come_in_time_is_cancelled_at_ib_and_asked_again(
    connector: ServiceApp,
    store: Path,
    nc: NATS,
    js: JetStreamContext,
    sim: IBGatewaySimulator,
) -> None:
    sim.slow_next(1, seconds=30)  # longer than the connector's 5 s request timeout
    start = dt.datetime(2024, 6, 24, tzinfo=UTC)
    job = await KtrdrClient(nc).load_data("AAPL", "1h", mode="full", start=start, end=NOW)
    done = await finished(js, job)
    assert isinstance(done, JobCompleted), done
    got = stored(store, "AAPL", Timeframe.H1).column("ts").cast("int64").to_numpy()
    np.testing.assert_array_equal(got, expected_stamps("AAPL", "STK", "1 hour", start, NOW))
    records = historical(sim)
    cancelled = [r for r in records if r["outcome"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["cancelled_at"] is not None
    again = [r for r in records if r["end"] == cancelled[0]["end"] and r["outcome"] == "ok"]
    assert again and again[0]["seq"] > cancelled[0]["seq"]  # asked again, and answered


def contract_bars(local_symbol: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Return the simulator's hourly bars of one ES contract, stamped as the store keeps them."""
    frame = expected_bars(local_symbol, "FUT", "1 hour", "TRADES", False, start, end, now_utc=NOW)
    frame = frame.assign(
        ts=pd.to_datetime(frame["start_utc"], utc=True).dt.as_unit("ns").astype("int64")
    )
    lo, hi = int(pd.Timestamp(start).value), int(pd.Timestamp(end).value)
    return frame[(frame["ts"] >= lo) & (frame["ts"] < hi)]


async def test_a_load_over_an_es_roll_takes_each_side_from_its_front_month(
    connector: ServiceApp,
    store: Path,
    nc: NATS,
    js: JetStreamContext,
    sim: IBGatewaySimulator,
) -> None:
    start, end = dt.datetime(2024, 3, 11, tzinfo=UTC), dt.datetime(2024, 3, 21, tzinfo=UTC)
    roll = dt.datetime(2024, 3, 16, tzinfo=UTC)  # ESH4 traded through Friday the 15th
    job = await KtrdrClient(nc).load_data(
        "ES", "1h", mode="full", start=start, end=end, instrument_type="FUT"
    )
    done = await finished(js, job)
    assert isinstance(done, JobCompleted), done
    table = stored(store, "ES", Timeframe.H1)
    march, june = contract_bars("ESH4", start, roll), contract_bars("ESM4", roll, end)
    assert len(march) and len(june)
    want = pd.concat([march, june])
    np.testing.assert_array_equal(table.column("ts").cast("int64").to_numpy(), want["ts"])
    np.testing.assert_allclose(table.column("close").to_numpy(), want["close"])
    asked = {r["con_id"] for r in historical(sim)}
    assert len(asked) == 2  # two contracts, each asked for its own side of the roll


async def test_forex_trades_fails_at_once_saying_to_use_midpoint(
    connector: ServiceApp,
    store: Path,
    nc: NATS,
    js: JetStreamContext,
    sim: IBGatewaySimulator,
) -> None:
    start = dt.datetime(2024, 6, 24, tzinfo=UTC)
    job = await KtrdrClient(nc).load_data(
        "EURUSD", "1h", mode="full", start=start, end=NOW, what_to_show="TRADES"
    )
    done = await finished(js, job, timeout_s=60)
    assert isinstance(done, JobFailed), done
    assert "MIDPOINT" in done.message
    assert len(historical(sim)) == 1  # IB's answer is final: no retries


@pytest.mark.sim_options(hmds_at_connect="inactive")
async def test_a_load_with_the_data_farm_inactive_at_connect_completes(
    connector: ServiceApp,
    store: Path,
    nc: NATS,
    js: JetStreamContext,
    sim: IBGatewaySimulator,
) -> None:
    start = dt.datetime(2024, 6, 24, tzinfo=UTC)
    job = await KtrdrClient(nc).load_data("AAPL", "1h", mode="full", start=start, end=NOW)
    done = await finished(js, job)
    assert isinstance(done, JobCompleted), done
    got = stored(store, "AAPL", Timeframe.H1).column("ts").cast("int64").to_numpy()
    np.testing.assert_array_equal(got, expected_stamps("AAPL", "STK", "1 hour", start, NOW))
