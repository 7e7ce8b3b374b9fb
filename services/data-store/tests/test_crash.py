"""kill -9 the data-store process again and again while a multi-symbol load streams in.

After the last restart every job completes and the store holds exactly the bars the
simulator serves: none lost (acks only after durable writes, jobs resumed from events),
none twice (merges are idempotent, files replaced atomically).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import sys
from pathlib import Path

import nats.js.errors
import numpy as np
import pytest
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_shared import subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import JobCompleted, JobKind, LoadResult
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UTC = dt.UTC
LOADS = [  # symbol, sec type, timeframe, IB bar size, whatToShow, start
    ("AAPL", "STK", Timeframe.M1, "1 min", "TRADES", dt.datetime(2024, 4, 1, tzinfo=UTC)),
    ("EURUSD", "CASH", Timeframe.M5, "5 mins", "MIDPOINT", dt.datetime(2024, 3, 1, tzinfo=UTC)),
    ("ES", "FUT", Timeframe.M5, "5 mins", "TRADES", dt.datetime(2024, 4, 1, tzinfo=UTC)),
]


async def spawn_store(nats_url: str, data_dir: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "KTRDR_NATS_URL": nats_url,
        "KTRDR_DATA_DIR": str(data_dir),
        "KTRDR_GAP_FILL_INTERVAL_S": "0",
    }
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "ktrdr_data_store", env=env)


async def serving(nc: NATS) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                await nc.request(subjects.STORE_DATASETS, b"{}", timeout=1)
                return
            except Exception:  # not up yet
                await asyncio.sleep(0.1)


async def ended(js: JetStreamContext, job_id: str) -> bool:
    for event in ("completed", "failed", "cancelled"):
        try:
            await js.get_last_msg(
                "KTRDR_EVENTS", subjects.job_event(JobKind.DATA_LOAD, job_id, event)
            )
            return True
        except nats.js.errors.NotFoundError:
            pass
    return False


async def test_kill_9_mid_load_loses_nothing_and_duplicates_nothing(
    connector: ServiceApp, nats_url: str, nc: NATS, js: JetStreamContext, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(20241121)
    proc = await spawn_store(nats_url, data_dir)
    try:
        await serving(nc)
        client = KtrdrClient(nc)
        jobs = [
            await client.load_data(sym, tf.value, start=start) for sym, _, tf, _, _, start in LOADS
        ]
        unfinished_at_kill = []
        for kill in range(4):  # the first soon after the commands: a load takes a few seconds
            await asyncio.sleep(rng.uniform(0.05, 0.3) if kill == 0 else rng.uniform(0.2, 1.0))
            unfinished_at_kill.append(sum([not await ended(js, j) for j in jobs]))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            proc = await spawn_store(nats_url, data_dir)
        # the kills landed mid-load, not after it
        assert unfinished_at_kill[0] == len(jobs) and unfinished_at_kill[-1] >= 1, (
            unfinished_at_kill
        )
        for job_id in jobs:
            done = await wait_for_job_event(
                js, job_id, {"completed", "failed", "cancelled"}, timeout_s=120
            )
            assert isinstance(done, JobCompleted), done
            assert isinstance(done.result, LoadResult)
            assert not done.result.failed_segments
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    store = ParquetBarStore(data_dir)
    for symbol, sec, tf, bar_size, what, start in LOADS:
        got = store.read(symbol, tf).column("ts").cast("int64").to_numpy()
        np.testing.assert_array_equal(got, expected_stamps(symbol, sec, bar_size, start, what=what))
