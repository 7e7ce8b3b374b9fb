"""Load orchestration end to end: LoadData -> plan -> FetchBars -> connector -> bars -> completed.

A real nats-server, the TWS-protocol simulator behind the unmodified ib_async client in the
connector, and the data-store writing real Parquet files. The bars the store ends up with are
compared with exactly what the simulator serves (``expected_bars``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.gapfill import fill_once
from ktrdr_data_store.ledger import AnsweredLedger, InstrumentBook
from ktrdr_data_store.loads import LoadRunner
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import KtrdrClient, new_job_id
from ktrdr_shared.messages import (
    CancelRequested,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobKind,
    JobPlanned,
    LoadResult,
    SegmentFailed,
    SegmentFetched,
    SegmentsDispatched,
)
from ktrdr_shared.messages.base import event_type
from ktrdr_shared.runtime import ServiceApp, publish_event
from ktrdr_shared.testing.events import read_all, wait_for_job_event
from ktrdr_shared.types import InstrumentType, Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

pytestmark = pytest.mark.integration

StartStore = Callable[..., Awaitable[ServiceApp]]
DONE = {"completed", "failed", "cancelled"}
UTC = dt.UTC


def stored_ts(data_dir: Path, symbol: str, timeframe: Timeframe) -> np.ndarray:
    table = ParquetBarStore(data_dir).read(symbol, timeframe)
    return table.column("ts").cast("int64").to_numpy()


async def finished(js: JetStreamContext, job_id: str, timeout_s: float = 90) -> Any:
    return await wait_for_job_event(js, job_id, DONE, timeout_s=timeout_s)


async def reported(js: JetStreamContext, job_id: str, segment_ids: set[str]) -> None:
    """Wait until the connector has reported on each of ``segment_ids`` (history included)."""
    pending = set(segment_ids)
    sub = await js.subscribe(
        subjects.job_events(job_id),
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        async with asyncio.timeout(60):
            while pending:
                msg = await sub.next_msg(timeout=None)
                event = codec.decode(msg.data, JobEvent, subject=msg.subject)
                if isinstance(event, SegmentFetched | SegmentFailed):
                    pending.discard(event.segment_id)
    finally:
        await sub.unsubscribe()


def historical_requests(sim: IBGatewaySimulator, since_seq: int = 0) -> int:
    """Return how many historical-bar requests the simulator received (its own ledger)."""
    return sum(1 for r in sim.ledger.records(since_seq) if r["kind"] == "historical")


def last_seq(sim: IBGatewaySimulator) -> int:
    records = sim.ledger.records()
    return int(records[-1]["seq"]) if records else 0


async def test_a_hand_published_json_load_runs_to_completed(
    connector: ServiceApp,
    start_store: StartStore,
    nc: NATS,
    js: JetStreamContext,
    tmp_path: Path,
    sim: IBGatewaySimulator,
) -> None:
    await start_store()
    accepted = await nc.subscribe("ktrdr.evt.job.data_load.*.accepted")
    # what `nats pub ktrdr.cmd.data.load '{...}'` sends: JSON, no job id, a lower-case symbol
    start = dt.datetime(2024, 6, 17, tzinfo=UTC)
    payload = {"symbol": "aapl", "timeframe": "1h", "start": "2024-06-17T00:00:00Z"}
    await js.publish(subjects.CMD_DATA_LOAD, json.dumps(payload).encode())
    msg = await accepted.next_msg(timeout=10)
    job_id = subjects.parse_job_event(msg.subject).job_id

    done = await finished(js, job_id)
    assert isinstance(done, JobCompleted), done
    result = done.result
    assert isinstance(result, LoadResult)
    want = expected_stamps("AAPL", "STK", "1 hour", start)
    got = stored_ts(tmp_path / "data", "AAPL", Timeframe.H1)
    np.testing.assert_array_equal(got, want)  # Juneteenth (19th) skipped, nothing twice
    assert result.fetched_bars == len(want)
    assert result.cached_before == 0
    assert result.segments_fetched == result.gaps_analyzed >= 1
    assert result.ib_requests_made == historical_requests(sim) >= 1  # the gateway's count
    assert not result.failed_segments

    # a tail load now finds nothing missing: the bar still forming at IB's "now" is not asked
    before = last_seq(sim)
    again = await KtrdrClient(nc).load_data("AAPL", "1h")
    repeat = await finished(js, again)
    assert historical_requests(sim, before) == 0
    assert isinstance(repeat, JobCompleted)
    assert isinstance(repeat.result, LoadResult)
    assert repeat.result.ib_requests_made == 0
    assert repeat.result.gaps_analyzed == 0
    assert repeat.result.cached_before == 1  # the last stored bar, where a tail starts
    [planned] = [
        e
        for e in await read_all(js, subjects.job_events(again), JobEvent)
        if isinstance(e, JobPlanned)
    ]
    first, last = (dt.datetime.fromtimestamp(int(t) / 1e9, UTC) for t in (got[0], got[-1]))
    assert planned.notes == [
        f"no start given: this tail load starts at the last stored bar, "
        f"{last:%Y-%m-%dT%H:%M:%SZ} (AAPL 1h holds {len(want):,} bars from "
        f"{first:%Y-%m-%dT%H:%M:%SZ})",
        "use_rth not set: 1h bars include extended hours (pre- and post-market); set use_rth "
        "(ktrdr data load --rth) for regular trading hours only",
    ]


async def test_bad_commands_fail_by_name_and_the_next_one_runs(
    connector: ServiceApp,
    start_store: StartStore,
    js: JetStreamContext,
    nc: NATS,
    tmp_path: Path,
) -> None:
    await start_store()
    bad = new_job_id()
    wrong = {"job_id": bad, "symbol": "AAPL", "timeframe": "2h"}
    await js.publish(subjects.CMD_DATA_LOAD, json.dumps(wrong).encode())
    await js.publish(subjects.CMD_DATA_LOAD, b"\x00 not json at all")
    rejected = await finished(js, bad)
    assert isinstance(rejected, JobFailed)
    assert rejected.code == "invalid_request"
    assert "timeframe" in rejected.message and "1h" in rejected.message  # the allowed values

    good = await KtrdrClient(nc).load_data(
        "EURUSD", "1d", start=dt.datetime(2024, 6, 3, tzinfo=UTC)
    )
    done = await finished(js, good)
    assert isinstance(done, JobCompleted)
    got = stored_ts(tmp_path / "data", "EURUSD", Timeframe.D1)
    want = expected_stamps(
        "EURUSD", "CASH", "1 day", dt.datetime(2024, 6, 3, tzinfo=UTC), what="MIDPOINT"
    )
    np.testing.assert_array_equal(got, want)


async def test_a_cancelled_load_ends_cancelled_and_says_what_it_did(
    connector: ServiceApp,
    start_store: StartStore,
    js: JetStreamContext,
    nc: NATS,
    sim: IBGatewaySimulator,
) -> None:
    await start_store()
    job_id = await KtrdrClient(nc).load_data(
        "AAPL", "1m", start=dt.datetime(2024, 1, 2, tzinfo=UTC)
    )
    await wait_for_job_event(js, job_id, {"segment_progress", "segment_fetched"})
    await publish_event(js, CancelRequested(job_id=job_id, reason="test"), kind=JobKind.DATA_LOAD)
    done = await finished(js, job_id)
    assert isinstance(done, JobCancelled)
    assert done.reason == "test"
    assert isinstance(done.result, LoadResult)
    batches = await read_all(js, subjects.bars("AAPL", Timeframe.M1))
    assert done.result.fetched_bars == sum(len(b.ts) for b in batches if b.job_id == job_id)
    assert done.result.ib_requests_made == historical_requests(sim)


async def test_a_restarted_store_resumes_the_job_from_its_events(
    connector: ServiceApp,
    start_store: StartStore,
    js: JetStreamContext,
    nc: NATS,
    tmp_path: Path,
) -> None:
    first = await start_store()
    start = dt.datetime(2024, 6, 3, tzinfo=UTC)
    job_id = await KtrdrClient(nc).load_data("ES", "5m", start=start)
    await wait_for_job_event(js, job_id, {"segments_dispatched"})
    await first.stop()  # mid-job: nothing about the job is kept but its events
    before = await read_all(js, subjects.job_events(job_id), JobEvent)
    sent = {s for e in before if isinstance(e, SegmentsDispatched) for s in e.segment_ids}
    await reported(js, job_id, sent)  # the connector answers them while no store runs
    await start_store()
    done = await finished(js, job_id)
    assert isinstance(done, JobCompleted), done
    got = stored_ts(tmp_path / "data", "ES", Timeframe.M5)
    np.testing.assert_array_equal(got, expected_stamps("ES", "FUT", "5 mins", start))
    # the instrument the connector resolved is kept for coverage and the gap filler
    assert InstrumentBook(tmp_path / "data").get("ES") == (InstrumentType.FUT, "CME")
    kinds = [event_type(e) for e in await read_all(js, subjects.job_events(job_id), JobEvent)]
    assert kinds.count("planned") == 1  # planned once, not again on resume
    events = await read_all(js, subjects.job_events(job_id), JobEvent)
    recorded = [s for e in events if isinstance(e, SegmentsDispatched) for s in e.segment_ids]
    assert len(recorded) == len(set(recorded))  # no answered segment sent again
    assert kinds.count("completed") == 1
    # every event of the load (the connector's included) is under the data-load kind
    training = subjects.job_events(job_id, JobKind.TRAINING)
    assert await read_all(js, training, JobEvent) == []


async def test_the_gap_filler_tops_up_a_dataset_whose_market_traded(
    connector: ServiceApp,
    start_store: StartStore,
    js: JetStreamContext,
    nc: NATS,
    tmp_path: Path,
) -> None:
    await start_store()
    data_dir = tmp_path / "data"
    start = dt.datetime(2024, 6, 24, tzinfo=UTC)
    job_id = await KtrdrClient(nc).load_data(
        "AAPL", "1h", start=start, end=dt.datetime(2024, 6, 26, tzinfo=UTC)
    )
    assert isinstance(await finished(js, job_id), JobCompleted)

    store = ParquetBarStore(data_dir)
    settings = DataStoreSettings(data_dir=str(data_dir))
    runner = LoadRunner.on_nats(nc, store, AnsweredLedger(data_dir), settings)
    completions = await nc.subscribe("ktrdr.evt.job.data_load.*.completed")
    sent = await fill_once(runner, store)
    assert [(c.symbol, c.timeframe, c.mode) for c in sent] == [("AAPL", Timeframe.H1, "tail")]
    await completions.next_msg(timeout=30)  # the gap filler's load, run like any other
    want = expected_stamps("AAPL", "STK", "1 hour", start)
    np.testing.assert_array_equal(stored_ts(data_dir, "AAPL", Timeframe.H1), want)
    # up to date now: IB's "now" is 22:00 on Friday and the 21:00 bar is stored
    assert await fill_once(runner, store) == []


async def test_the_gap_filler_asks_ib_for_the_symbol_not_the_store_key(
    connector: ServiceApp,
    start_store: StartStore,
    js: JetStreamContext,
    nc: NATS,
    tmp_path: Path,
) -> None:
    """Issue 17: a dataset stored under the key BRK_B was topped up as symbol BRK_B, which IB
    does not know; the load that filled it said BRK B."""
    await start_store()
    data_dir = tmp_path / "data"
    start, end = dt.datetime(2024, 6, 24, tzinfo=UTC), dt.datetime(2024, 6, 26, tzinfo=UTC)
    job_id = await KtrdrClient(nc).load_data("BRK B", "1h", start=start, end=end)
    assert isinstance(await finished(js, job_id), JobCompleted)
    store = ParquetBarStore(data_dir)
    settings = DataStoreSettings(data_dir=str(data_dir))
    runner = LoadRunner.on_nats(nc, store, AnsweredLedger(data_dir), settings)
    ends = await nc.subscribe("ktrdr.evt.job.data_load.*.*")
    sent = await fill_once(runner, store)
    assert [(c.symbol, c.timeframe) for c in sent] == [("BRK B", Timeframe.H1)]
    async with asyncio.timeout(30):  # IB knows BRK B: the top-up completes (BRK_B would fail)
        async for msg in ends.messages:
            if msg.subject.endswith((".completed", ".failed")):
                assert msg.subject.endswith(".completed"), msg.data
                break
