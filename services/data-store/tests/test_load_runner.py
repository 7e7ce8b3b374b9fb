"""The load runner through its ports, in memory: plan, dispatch, replay, cancel, a full disk.

The runner is the one the service runs (``loads.LoadRunner``); only its event log, command
queue and connector are the in-memory adapters of ``ports.py``, the store is
``MemoryBarStore`` and the clock is the test's. The test plays the ib-connector (it reads the
``FetchBars`` sent and publishes the segment reports) and the ingestor (``on_durable``).
Every wait is on an event in the log; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.ledger import AnsweredLedger, InstrumentBook
from ktrdr_data_store.loads import LoadRunner
from ktrdr_data_store.ports import MemoryConnector, MemoryEventLog, MemoryQueue
from ktrdr_data_store.store import SCHEMA, BarStore, MemoryBarStore, ParquetBarStore
from ktrdr_shared import subjects
from ktrdr_shared.client import new_job_id
from ktrdr_shared.errors import UnknownSymbol
from ktrdr_shared.messages import (
    CancelRequested,
    FetchBars,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobPlanned,
    JobProgress,
    LoadData,
    LoadResult,
    ProgressReason,
    SegmentFailed,
    SegmentFetched,
    SegmentsDispatched,
    SymbolInfo,
)
from ktrdr_shared.types import InstrumentType, LoadMode, Timeframe, symbol_key, to_unix_nanos

pytestmark = pytest.mark.unit

UTC = dt.UTC
NOW = dt.datetime(2024, 6, 28, 22, tzinfo=UTC)  # IB's clock: a Friday evening
AAPL = SymbolInfo(
    symbol="AAPL",
    instrument_type=InstrumentType.STK,
    exchange="NASDAQ",
    currency="USD",
    time_zone="America/New_York",
)


@dataclass
class World:
    """One data directory, one log, one queue, one connector; runners come and go on them."""

    data_dir: Path
    settings: DataStoreSettings
    log: MemoryEventLog = field(default_factory=MemoryEventLog)
    queue: MemoryQueue = field(default_factory=MemoryQueue)
    store: BarStore = field(default_factory=MemoryBarStore)
    connector: MemoryConnector = field(
        default_factory=lambda: MemoryConnector(
            server_time=NOW, instrument=AAPL, head=dt.datetime(2024, 6, 3, 8, tzinfo=UTC)
        )
    )
    now: dt.datetime = NOW
    runner: LoadRunner | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> LoadRunner:
        """Start a runner (a fresh process: it knows only what the log tells it)."""
        ledger = AnsweredLedger(self.data_dir)
        clock: Callable[[], dt.datetime] = lambda: self.now  # noqa: E731
        self.runner = LoadRunner(
            self.log, self.queue, self.connector, self.store, ledger, self.settings, clock
        )
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self.runner.follow(self._stopping))
        return self.runner

    async def stop(self) -> None:
        """Stop the runner as a crash would: mid-job, nothing kept but the log."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()  # a crash: no waiting for the log's next poll
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def load(
        self, mode: LoadMode, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> str:
        """Send a load of AAPL 1h (``accept``, as ``handle_command`` does); return its job id."""
        assert self.runner is not None
        job_id = new_job_id()
        command = LoadData(symbol="AAPL", timeframe=Timeframe.H1, mode=mode, start=start, end=end)
        await self.runner.accept(command, job_id)
        return job_id

    def fetches(self) -> list[FetchBars]:
        return self.queue.of(subjects.CMD_IB_FETCH, FetchBars)

    async def planned(self, job_id: str) -> JobPlanned:
        event = await self.log.wait_for(lambda e: e.job_id == job_id and _is(e, JobPlanned))
        assert isinstance(event, JobPlanned)
        return event

    async def dispatched(self, job_id: str, segment_id: str) -> None:
        await self.log.wait_for(
            lambda e: (
                isinstance(e, SegmentsDispatched)
                and e.job_id == job_id
                and segment_id in e.segment_ids
            )
        )

    async def ended(self, job_id: str) -> JobEvent:
        return await self.log.wait_for(
            lambda e: e.job_id == job_id and _is(e, JobCompleted, JobFailed, JobCancelled)
        )

    async def progress(self, job_id: str, why: Callable[[JobProgress], bool]) -> JobProgress:
        event = await self.log.wait_for(
            lambda e: isinstance(e, JobProgress) and e.job_id == job_id and why(e)
        )
        assert isinstance(event, JobProgress)
        return event

    async def fetched(self, command: FetchBars, bars: int = 10, durable: bool = True) -> None:
        """Report a segment fetched (the connector) and, unless the disk is full, its bars
        durable (the ingestor)."""
        report = SegmentFetched(
            job_id=command.job_id,
            segment_id=command.segment_id,
            chunks=1,
            bars=bars,
            ib_requests=1,
        )
        await self.log.publish(report)
        if durable:
            self.durable(command)

    def durable(self, command: FetchBars) -> None:
        assert self.runner is not None
        span = (to_unix_nanos(command.start), to_unix_nanos(command.end))
        self.runner.on_durable(symbol_key(command.symbol), command.timeframe, [span])


def _is(event: JobEvent, *kinds: type) -> bool:
    return isinstance(event, kinds)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = DataStoreSettings(
        data_dir=str(tmp_path),
        load_segments_in_flight=2,
        load_progress_interval_s=0.0,  # a progress event whenever the numbers move
        load_cancel_wait_s=10.0,
        load_plan_timeout_s=1.0,
    )
    w = World(tmp_path, settings)
    w.start()
    yield w
    await w.stop()


def stored_bars(start: dt.datetime, hours: int) -> pa.Table:
    ts = [to_unix_nanos(start + dt.timedelta(hours=h)) for h in range(hours)]
    n = len(ts)
    return pa.table(
        {
            "ts": pa.array(ts, pa.int64()).cast(SCHEMA.field("ts").type),
            **{c: [100.0] * n for c in ("open", "high", "low", "close")},
            "volume": [1.0] * n,
            "wap": pa.nulls(n, pa.float64()),
            "count": pa.nulls(n, pa.int64()),
        },
        schema=SCHEMA,
    )


MAY1, JUNE1 = dt.datetime(2024, 5, 1, tzinfo=UTC), dt.datetime(2024, 6, 1, tzinfo=UTC)
STORED_DAYS = (8, 15, 22)  # Wednesdays of May held already: a full load of May has 4 holes


def hold_may_days(world: World) -> None:
    for day in STORED_DAYS:
        world.store.merge(
            "AAPL", Timeframe.H1, stored_bars(dt.datetime(2024, 5, day, tzinfo=UTC), 24)
        )


async def may_in_flight(world: World) -> tuple[str, FetchBars, FetchBars]:
    """Start a full load of May around the held days; return it once two segments are out."""
    hold_may_days(world)
    job = await world.load(mode=LoadMode.FULL, start=MAY1, end=JUNE1)
    await world.dispatched(job, "s0001")
    first, second = world.fetches()
    return job, first, second


async def run_to_end(world: World, job_id: str, bars: int = 10) -> JobEvent:
    """Answer every segment sent for the job, as they come, until it ends."""
    answered: set[str] = set()
    while True:
        for command in world.fetches():
            if command.job_id == job_id and command.segment_id not in answered:
                answered.add(command.segment_id)
                await world.fetched(command, bars)
        end = await world.log.wait_for(
            lambda e: (
                e.job_id == job_id
                and (
                    _is(e, JobCompleted, JobFailed, JobCancelled)
                    or (isinstance(e, SegmentsDispatched) and not set(e.segment_ids) <= answered)
                )
            )
        )
        if _is(end, JobCompleted, JobFailed, JobCancelled):
            return end


async def test_a_full_load_is_planned_dispatched_in_order_and_completes(world: World) -> None:
    hold_may_days(world)
    job = await world.load(mode=LoadMode.FULL, start=MAY1, end=JUNE1)
    planned = await world.planned(job)
    assert [s.segment_id for s in planned.segments] == ["s0000", "s0001", "s0002", "s0003"]
    assert planned.cached_before == 24 * len(STORED_DAYS)
    await world.dispatched(job, "s0001")
    sent = world.fetches()
    # two in flight at most (load_segments_in_flight): the rest wait for reports
    assert [c.segment_id for c in sent] == ["s0000", "s0001"]
    assert {(c.priority, c.instrument_type) for c in sent} == {(5, InstrumentType.STK)}
    assert [(c.start, c.end) for c in sent] == [(s.start, s.end) for s in planned.segments[:2]]

    done = await run_to_end(world, job, bars=10)
    assert isinstance(done, JobCompleted), done
    assert isinstance(done.result, LoadResult)
    assert done.result.segments_fetched == 4
    assert done.result.fetched_bars == 40
    assert done.result.cached_before == 72
    assert [c.segment_id for c in world.fetches()] == ["s0000", "s0001", "s0002", "s0003"]
    assert len(world.log.of(job, JobCompleted)) == 1


async def test_a_tail_load_starts_at_the_last_stored_bar_and_goes_first(world: World) -> None:
    world.store.merge("AAPL", Timeframe.H1, stored_bars(dt.datetime(2024, 6, 26, tzinfo=UTC), 24))
    job = await world.load(mode=LoadMode.TAIL)
    planned = await world.planned(job)
    assert planned.start == dt.datetime(2024, 6, 26, 23, tzinfo=UTC)  # the last stored bar
    assert planned.segments and planned.segments[-1].end <= NOW
    await world.dispatched(job, "s0000")
    assert {c.priority for c in world.fetches()} == {1}  # tail loads go ahead of backfills
    assert isinstance(await run_to_end(world, job), JobCompleted)
    assert "ktrdr.ib.head_timestamp" not in world.connector.asked  # a tail needs no head


async def test_a_backfill_without_a_start_asks_for_the_head_and_ends_at_the_first_bar(
    world: World,
) -> None:
    world.store.merge("AAPL", Timeframe.H1, stored_bars(dt.datetime(2024, 6, 12, tzinfo=UTC), 24))
    job = await world.load(mode=LoadMode.BACKFILL)
    planned = await world.planned(job)
    assert subjects.IB_HEAD_TIMESTAMP in world.connector.asked
    assert planned.start == world.connector.head
    assert planned.segments[-1].end <= dt.datetime(2024, 6, 12, tzinfo=UTC)
    await world.dispatched(job, "s0000")
    assert {c.priority for c in world.fetches()} == {5}
    assert isinstance(await run_to_end(world, job), JobCompleted)


async def test_a_restart_mid_load_replays_the_log_and_sends_no_answered_segment_again(
    world: World,
) -> None:
    job, first, second = await may_in_flight(world)
    await world.stop()  # the data-store dies with s0000 and s0001 in the queue
    await world.fetched(first)  # the connector goes on: s0000 answered while no store runs

    world.start()  # nothing in memory: the log is all it has
    world.durable(first)  # the ledger had it durable
    await world.dispatched(job, "s0002")  # s0000's report frees room for one more
    assert [c.segment_id for c in world.fetches()] == ["s0000", "s0001", "s0002"]
    recorded = [s for e in world.log.of(job, SegmentsDispatched) for s in e.segment_ids]
    assert sorted(recorded) == ["s0000", "s0001", "s0002"]  # none recorded twice
    assert world.queue.repeats == 0  # and none sent twice, not even one the queue would drop
    await world.fetched(second)
    done = await run_to_end(world, job)
    assert isinstance(done, JobCompleted)
    assert len(world.log.of(job, JobPlanned)) == 1  # planned once, not again on resume


async def test_a_duplicate_or_late_segment_report_counts_once(world: World) -> None:
    job = await world.load(mode=LoadMode.FULL, start=MAY1, end=JUNE1)
    await world.dispatched(job, "s0000")
    [command] = world.fetches()
    await world.fetched(command, bars=10)
    await world.fetched(command, bars=10)  # a redelivered fetch command, run again
    late = SegmentFailed(job_id=job, segment_id="s0000", code="ib_unavailable", message="late")
    await world.log.publish(late)  # a report from a run that lost the race
    done = await world.ended(job)
    assert isinstance(done, JobCompleted)
    assert isinstance(done.result, LoadResult)
    assert (done.result.fetched_bars, done.result.ib_requests_made) == (10, 1)
    assert done.result.failed_segments == []


async def test_a_cancel_sends_nothing_more_and_ends_cancelled_once_the_wait_is_over(
    world: World,
) -> None:
    job, first, _ = await may_in_flight(world)
    await world.log.publish(CancelRequested(job_id=job, ts=world.now, reason="test"))
    await world.progress(job, lambda p: p.reason is ProgressReason.CANCELLING)
    await world.fetched(first)  # room for more, but a cancelled load sends nothing
    await world.progress(job, lambda p: p.reason is ProgressReason.CANCELLING and bool(p.bars))
    assert [c.segment_id for c in world.fetches()] == ["s0000", "s0001"]
    assert world.log.of(job, JobCancelled) == []  # s0001 still runs: wait for the connector

    world.now += dt.timedelta(seconds=world.settings.load_cancel_wait_s)
    assert world.runner is not None
    world.runner.wake.set()  # the runner's tick, without waiting a second for it
    done = await world.ended(job)
    assert isinstance(done, JobCancelled)
    assert done.reason == "test"
    assert isinstance(done.result, LoadResult)
    assert done.result.fetched_bars == 10


async def test_a_full_disk_holds_back_new_segments_until_writes_succeed_again(
    world: World,
) -> None:
    job, first, second = await may_in_flight(world)
    assert world.runner is not None
    world.runner.on_storage("no space left on /data")  # what the ingestor reports
    await world.progress(job, lambda p: p.reason is ProgressReason.STORAGE_FULL)
    await world.fetched(first, durable=False)  # room for one more, but no bar can be stored
    await world.progress(job, lambda p: p.reason is ProgressReason.STORAGE_FULL and bool(p.bars))
    assert [c.segment_id for c in world.fetches()] == ["s0000", "s0001"]

    world.runner.on_storage(None)
    world.durable(first)
    await world.dispatched(job, "s0002")
    await world.fetched(second)
    assert isinstance(await run_to_end(world, job), JobCompleted)


async def test_a_failed_segment_is_named_in_the_result_and_all_failed_fails_the_job(
    world: World,
) -> None:
    job, first, _ = await may_in_flight(world)
    await world.fetched(first)
    no_data = SegmentFailed(
        job_id=job, segment_id="s0001", code="no_data", message="HMDS query returned no data"
    )
    await world.log.publish(no_data)
    done = await run_to_end(world, job)
    assert isinstance(done, JobCompleted) and isinstance(done.result, LoadResult)
    assert [(f.segment_id, f.code) for f in done.result.failed_segments] == [("s0001", "no_data")]
    assert done.result.segments_fetched == 3

    alone = await world.load(
        mode=LoadMode.FULL, start=JUNE1, end=dt.datetime(2024, 6, 8, tzinfo=UTC)
    )
    await world.dispatched(alone, "s0000")
    assert [c.segment_id for c in world.fetches() if c.job_id == alone] == ["s0000"]
    await world.log.publish(
        SegmentFailed(job_id=alone, segment_id="s0000", code="no_data", message="none")
    )
    failed = await world.ended(alone)
    assert isinstance(failed, JobFailed)
    assert failed.code == "no_data"


async def test_an_unknown_symbol_fails_the_load_with_the_connectors_answer(world: World) -> None:
    world.connector.error = UnknownSymbol("IB knows no symbol NOSUCHSYM")
    job = await world.load(mode=LoadMode.FULL, start=MAY1, end=JUNE1)
    failed = await world.ended(job)
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.message) == ("unknown_symbol", "IB knows no symbol NOSUCHSYM")
    assert world.fetches() == []


async def test_a_resent_command_is_one_job(world: World) -> None:
    assert world.runner is not None
    job = new_job_id()
    command = LoadData(symbol="AAPL", timeframe=Timeframe.H1, start=MAY1, end=JUNE1)
    await world.runner.accept(command, job)
    await world.planned(job)
    await world.runner.accept(command, job)  # redelivered after the first was announced
    assert len(world.log.of(job, JobAccepted)) == 1
    assert len(world.log.of(job, JobPlanned)) == 1


async def test_a_load_ending_in_the_future_is_refused_by_name(world: World) -> None:
    job = await world.load(mode=LoadMode.FULL, end=dt.datetime(2030, 1, 1, tzinfo=UTC))
    refused = await world.ended(job)
    assert isinstance(refused, JobFailed)
    assert refused.code == "invalid_request"
    assert "end" in refused.message and "future" in refused.message
    assert world.fetches() == []


async def test_a_garbage_instrument_book_is_asked_of_the_connector_and_rewritten(
    world: World,
) -> None:
    (world.data_dir / "instruments.json").write_bytes(b"\x00garbage")
    job = await world.load(mode=LoadMode.FULL, start=MAY1, end=JUNE1)
    await world.planned(job)
    assert subjects.IB_VALIDATE in world.connector.asked
    assert InstrumentBook(world.data_dir).get("AAPL") == (InstrumentType.STK, "NASDAQ")


async def test_a_load_of_a_damaged_dataset_fails_naming_the_file_and_its_repair(
    world: World,
) -> None:
    await world.stop()
    world.store = ParquetBarStore(world.data_dir)
    world.store.merge("AAPL", Timeframe.H1, stored_bars(dt.datetime(2024, 5, 8, tzinfo=UTC), 24))
    year = world.data_dir / "bars/AAPL/1h/2024.parquet"
    year.write_bytes(year.read_bytes()[:100])  # torn by something outside the store
    world.start()
    job = await world.load(mode=LoadMode.FULL, start=MAY1, end=JUNE1)
    failed = await world.ended(job)
    assert isinstance(failed, JobFailed)
    assert failed.code == "dataset_damaged"
    assert "bars/AAPL/1h/2024.parquet" in failed.message
    assert "ktrdr data repair AAPL 1h" in failed.message
    assert world.fetches() == []


@pytest.mark.parametrize(("connectors", "pieces"), [(1, 2), (3, 5)])
async def test_a_long_gap_is_cut_into_pieces_for_the_connectors_serving(
    world: World, connectors: int, pieces: int
) -> None:
    world.connector.connectors = connectors
    assert world.runner is not None
    job = new_job_id()
    command = LoadData(
        symbol="AAPL", timeframe=Timeframe.M1, mode=LoadMode.FULL, start=MAY1, end=JUNE1
    )
    await world.runner.accept(command, job)
    planned = await world.planned(job)
    assert planned.gaps_analyzed == 1  # one gap: May, joined across its nights and weekends
    # May's 1-minute bars are five weekly IB requests: about two pieces per connector
    assert len(planned.segments) == pieces
    assert planned.segments[0].start >= MAY1 and planned.segments[-1].end <= JUNE1
    assert all(
        a.end == b.start for a, b in zip(planned.segments, planned.segments[1:], strict=False)
    )
