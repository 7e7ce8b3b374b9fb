"""The data-store with its bars in a bucket (``KTRDR_STORE_URL``) on a real SeaweedFS server.

A load runs end to end (simulator, connector, data-store) and its bars land in the bucket,
equal to the simulator's; a query and the dataset list answer from the bucket; a store that
cannot reach the bucket waits for it (planning says so), quarantines nothing, and stores the
load once the server is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ktrdr_data_store.objstore import ObjectBarStore
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_shared import subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import (
    BarsPage,
    DatasetList,
    JobCompleted,
    LoadResult,
    QueryBars,
    StatusRequest,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.seaweed import SeaweedServer, store_url
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("seaweed")]

StartStore = Callable[..., Awaitable[ServiceApp]]
DONE = {"completed", "failed", "cancelled"}
UTC = dt.UTC
START = dt.datetime(2024, 6, 17, tzinfo=UTC)


def stored_ts(store: ObjectBarStore, symbol: str, timeframe: Timeframe) -> np.ndarray:
    return store.read(symbol, timeframe).column("ts").cast("int64").to_numpy()


async def finished(js: JetStreamContext, job_id: str) -> Any:
    return await wait_for_job_event(js, job_id, DONE, timeout_s=120)


async def test_a_load_lands_in_the_bucket_and_is_answered_from_it(
    connector: ServiceApp,
    start_store: StartStore,
    seaweed: SeaweedServer,
    nc: NATS,
    js: JetStreamContext,
    data_dir: Path,
) -> None:
    url = store_url()
    await start_store(**seaweed.store_env(url))
    client = KtrdrClient(nc)
    job = await client.load_data("AAPL", "1h", start=START)
    done = await finished(js, job)
    assert isinstance(done, JobCompleted), done
    assert isinstance(done.result, LoadResult)

    want = expected_stamps("AAPL", "STK", "1 hour", START)
    np.testing.assert_array_equal(
        stored_ts(ObjectBarStore(seaweed.bucket(url)), "AAPL", Timeframe.H1), want
    )
    assert not (data_dir / "bars" / "AAPL").exists()  # nothing in the local data directory
    page = await client.request(
        subjects.STORE_QUERY, QueryBars(symbol="AAPL", timeframe=Timeframe.H1), BarsPage
    )
    assert len(page.ts) == len(want)
    listed = await client.request(subjects.STORE_DATASETS, StatusRequest(), DatasetList)
    [aapl] = listed.datasets
    assert (aapl.symbol, aapl.rows, aapl.bytes > 0) == ("AAPL", len(want), True)


async def test_an_unreachable_bucket_keeps_the_bars_on_the_bus_until_it_answers(
    connector: ServiceApp,
    start_store: StartStore,
    tmp_path: Path,
    nc: NATS,
    js: JetStreamContext,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ktrdr_data_store.loads")
    server = SeaweedServer(tmp_path / "seaweedfs")  # its own server: this test kills it
    server.start()
    try:
        url = store_url()
        await start_store(
            **server.store_env(url),
            KTRDR_INGEST_RETRY_DELAY_S="0.2",
            KTRDR_INGEST_RETRY_MAX_DELAY_S="1",
        )
        rejected = await nc.subscribe(subjects.store_event("batch_rejected"))
        server.kill()  # gone before the load: planning and every write find it so
        client = KtrdrClient(nc)
        job = await client.load_data("AAPL", "1h", start=START)
        async with asyncio.timeout(60):  # the load waits for the store, and says so
            while True:
                if any("waiting for the bar store" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
        server.start()  # back, with what it held
        done = await finished(js, job)
        assert isinstance(done, JobCompleted), done
        want = expected_stamps("AAPL", "STK", "1 hour", START)
        np.testing.assert_array_equal(
            stored_ts(ObjectBarStore(server.bucket(url)), "AAPL", Timeframe.H1), want
        )
        assert rejected.pending_msgs == 0  # nothing quarantined for the outage
        assert not (data_dir / "quarantine").exists() or not any(
            (data_dir / "quarantine").iterdir()
        )
    finally:
        server.stop()
