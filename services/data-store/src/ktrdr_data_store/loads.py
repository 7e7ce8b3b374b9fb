"""Load orchestration: ``LoadData`` in, ``FetchBars`` out, the job's events as its only state.

- The command handler assigns the job id (a hand-published command may lack one), publishes
  ``accepted`` and acks: from then on the job lives in the event log.
- ``follow`` reads ``ktrdr.evt.job.>`` from the beginning (an ordered consumer that replays
  history, then stays live) and folds every data load's events (``jobs.py``). Once caught
  up it moves each unfinished load on: plan it (``planning.py``: IB's clock, the symbol's
  market, the head timestamp, the store and the ledger), send one ``FetchBars`` per
  segment, and finish when every segment was reported and its bars are durable.
- Every event it publishes carries a ``Nats-Msg-Id`` made of the job id and the step, so a
  restart that repeats a step inside the duplicate window announces it once; a restart
  after it folds the step from the log and skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.consumer import derived_job_id, salvage_job_id
from ktrdr_shared.errors import KtrdrError, RetryableError
from ktrdr_shared.messages import (
    FetchBars,
    HeadTimestamp,
    HeadTimestampRequest,
    IbStatus,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobKind,
    JobPlanned,
    JobProgress,
    LoadData,
    PlannedSegment,
    StatusRequest,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.messages.base import Event, event_type
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import (
    InstrumentType,
    LoadMode,
    default_what_to_show,
    from_unix_nanos,
    symbol_key,
    to_unix_nanos,
)
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from ktrdr_data_store import jobs
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.jobs import LoadState
from ktrdr_data_store.ledger import AnsweredLedger, InstrumentBook
from ktrdr_data_store.planning import load_range, market_calendar, plan_segments, read_margin_ns
from ktrdr_data_store.store import BarStore

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass
class _Job:
    """A load being moved on: its folded state plus what this process has done for it."""

    state: LoadState
    planning: asyncio.Task[None] | None = None
    dispatched: bool = False
    closing: bool = False
    progress_at: float = 0.0
    progress_done: float = -1.0
    changed_at: float = field(default_factory=time.monotonic)


class LoadRunner:
    """Run data loads from their events (see the module docstring)."""

    def __init__(self, nc: NATS, store: BarStore, ledger: AnsweredLedger,
                 settings: DataStoreSettings, *, tick_s: float = 0.25) -> None:  # fmt: skip
        self.nc, self.js = nc, nc.jetstream()
        self.store, self.ledger, self.settings, self.tick_s = store, ledger, settings, tick_s
        self.client = KtrdrClient(nc, timeout_s=10.0)
        self.instruments = InstrumentBook(settings.data_dir)
        self.jobs: dict[str, _Job] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.caught_up = asyncio.Event()

    # -- commands ---------------------------------------------------------------------

    async def handle_command(self, msg: Msg) -> None:
        """Accept a ``LoadData``: announce the job (once), then the message may be acked."""
        command = codec.decode(msg.data, LoadData, subject=msg.subject, headers=msg.headers)
        job_id = command.job_id or derived_job_id(msg)
        if await self._has_event(job_id, "accepted"):
            return  # a resend of a job already under way or done
        params = msgspec.to_builtins(msgspec.structs.replace(command, job_id=job_id))
        await publish_event(
            self.js,
            JobAccepted(job_id=job_id, kind=JobKind.DATA_LOAD, params=params),
            msg_id=f"{job_id}.accepted",
        )

    async def on_rejected(self, msg: Msg, error: KtrdrError) -> None:
        """Report a command that can never run as a failed job, naming the problem."""
        job_id = salvage_job_id(msg.data) or derived_job_id(msg)
        await publish_event(self.js, JobFailed(job_id=job_id, code=error.code,
                                               message=error.message,
                                               details={"subject": msg.subject,
                                                        **error.details}),
                            msg_id=f"{job_id}.failed")  # fmt: skip

    async def _has_event(self, job_id: str, kind: str) -> bool:
        try:
            await self.js.get_last_msg(streams.EVENTS.name or "", subjects.job_event(job_id, kind))
        except nats.js.errors.NotFoundError:
            return False
        return True

    # -- following the event log ------------------------------------------------------

    async def follow(self, stopping: asyncio.Event) -> None:
        """Fold job events from the start of the log and move unfinished loads on."""
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        sub = await self.js.subscribe(subjects.JOB_EVENTS_ALL, stream=streams.EVENTS.name,
                                      ordered_consumer=True, idle_heartbeat=2.0,
                                      config=config)  # fmt: skip
        try:
            if (await sub.consumer_info()).num_pending == 0:
                self.caught_up.set()
            while not stopping.is_set():
                await self._step(sub)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            for job in self.jobs.values():
                if job.planning is not None:
                    job.planning.cancel()

    async def _step(self, sub: Any) -> None:
        try:
            msg = await sub.next_msg(timeout=self.tick_s)
        except nats.errors.TimeoutError:
            msg = None
        except nats.errors.Error as e:  # a reconnect in progress: the consumer resets itself
            log.warning("job events: %s; retrying", e)
            await asyncio.sleep(self.tick_s)
            return
        if msg is not None:
            self._fold(msg)
            if msg.metadata.num_pending == 0:
                self.caught_up.set()
        if self.caught_up.is_set():
            for job in list(self.jobs.values()):
                await self._advance(job)

    def _fold(self, msg: Msg) -> None:
        try:
            event = codec.decode(msg.data, JobEvent, subject=msg.subject, headers=msg.headers)
        except KtrdrError as e:
            log.warning("skipping a malformed job event: %s", e.message)
            return
        if isinstance(event, JobAccepted):
            if event.job_id not in self.jobs and event.job_id not in self.finished:
                try:
                    state = jobs.accept(event)
                except msgspec.ValidationError as e:
                    log.warning("job %s: accepted with params that are no load: %s",
                                event.job_id, e)  # fmt: skip
                    return
                if state is not None:
                    self.jobs[event.job_id] = _Job(state)
            return
        job = self.jobs.get(event.job_id)
        if job is not None:
            before = len(job.state.outcomes)
            jobs.apply(job.state, event)
            if len(job.state.outcomes) != before:
                job.changed_at = time.monotonic()

    # -- moving a load on ---------------------------------------------------------------

    async def _advance(self, job: _Job) -> None:
        state = job.state
        if state.finished:
            self._forget(job)
        elif job.closing:
            return
        elif state.cancel is not None:
            await self._close(job, JobCancelled(job_id=state.job_id, reason=state.cancel.reason))
        elif state.planned is None:
            if job.planning is None:
                job.planning = asyncio.create_task(self._plan(job))
        elif not job.dispatched:
            await self._dispatch(state)
            job.dispatched, job.changed_at = True, time.monotonic()
        else:
            await self._check_done(job)

    async def _check_done(self, job: _Job) -> None:
        state = job.state
        key, timeframe = symbol_key(state.command.symbol), state.command.timeframe
        now = time.monotonic()
        recently = now - job.progress_at < self.settings.load_progress_interval_s
        if recently and state.pending_segments():  # fmt: skip
            return
        answered = await asyncio.to_thread(self.ledger.ranges, key, timeframe)
        done = round(100 * jobs.stored_fraction(state, answered), 2)
        if done != job.progress_done:
            job.changed_at = now
        if state.pending_segments():
            await self._progress(job, done)
            return
        not_stored = jobs.unstored(state, answered)
        if not_stored and now - job.changed_at < self.settings.load_stall_timeout_s:
            await self._progress(job, done)
            return
        result = jobs.load_result(state, not_stored)
        if result.segments_fetched == 0 and result.failed_segments:
            first = result.failed_segments[0]
            await self._close(job, JobFailed(
                job_id=state.job_id, code=first.code, message=first.message,
                details={"failed_segments": msgspec.to_builtins(result.failed_segments)},
            ))  # fmt: skip
        else:
            await self._close(job, JobCompleted(job_id=state.job_id, result=result))

    async def _progress(self, job: _Job, done: float) -> None:
        recently = time.monotonic() - job.progress_at < self.settings.load_progress_interval_s
        if done == job.progress_done or recently:
            return
        state = job.state
        reported, total = len(state.outcomes), len(state.segments)
        bars = sum(o.bars for _, o in state.fetched())
        job.progress_at, job.progress_done = time.monotonic(), done
        await self._publish(JobProgress(
            job_id=state.job_id, done=done, total=100.0, unit="percent",
            message=f"{reported} of {total} segments fetched ({bars} bars); {done:g}% stored",
        ))  # fmt: skip

    async def _dispatch(self, state: LoadState) -> None:
        planned = state.planned
        assert planned is not None and planned.instrument_type is not None
        what = planned.what_to_show or default_what_to_show(planned.instrument_type)
        for segment in state.pending_segments():
            command = FetchBars(
                job_id=state.job_id, segment_id=segment.segment_id,
                symbol=state.command.symbol, timeframe=state.command.timeframe,
                start=segment.start, end=segment.end,
                instrument_type=planned.instrument_type, what_to_show=what,
            )  # fmt: skip
            msg_id = f"{state.job_id}.{segment.segment_id}"
            await self.js.publish(subjects.CMD_IB_FETCH, codec.encode(command),
                                  headers={"Nats-Msg-Id": msg_id})  # fmt: skip

    async def _close(self, job: _Job, event: JobCancelled | JobCompleted | JobFailed) -> None:
        job.closing = True
        if job.planning is not None:
            job.planning.cancel()
        await self._publish(event, msg_id=f"{event.job_id}.{event_type(event)}")

    def _forget(self, job: _Job) -> None:
        if job.planning is not None:
            job.planning.cancel()
        self.jobs.pop(job.state.job_id, None)
        self.finished[job.state.job_id] = None
        while len(self.finished) > 10_000:
            self.finished.popitem(last=False)

    async def _publish(self, event: Event, msg_id: str | None = None) -> None:
        await publish_event(self.js, event, msg_id=msg_id)

    # -- planning -----------------------------------------------------------------------

    async def _plan(self, job: _Job) -> None:
        state = job.state
        try:
            await self._publish(await self.plan(state), msg_id=f"{state.job_id}.planned")
        except asyncio.CancelledError:
            raise
        except KtrdrError as e:
            await self._close(job, JobFailed(job_id=state.job_id, code=e.code, message=e.message,
                                             details=e.details))  # fmt: skip
        except ValueError as e:  # a range the calendar or the mode refuses, named in e
            await self._close(job, JobFailed(job_id=state.job_id, code="invalid_request",
                                             message=str(e)))  # fmt: skip
        except Exception as e:
            log.exception("job %s: planning failed", state.job_id)
            await self._close(
                job,
                JobFailed(
                    job_id=state.job_id, code="internal", message=f"planning the load failed: {e!r}"
                ),
            )

    async def plan(self, state: LoadState) -> JobPlanned:
        """Return the plan of a load: ask IB what is needed, then read the store and ledger."""
        command = state.command
        instrument_type, exchange = await self.instrument(command)
        what = command.what_to_show or default_what_to_show(instrument_type)
        calendar = market_calendar(instrument_type, exchange)
        now_ns = await self.ib_now()
        key, timeframe = symbol_key(command.symbol), command.timeframe
        stats = await asyncio.to_thread(self.store.stats, key, timeframe)
        head_ns = None
        if command.mode is not LoadMode.TAIL and command.start is None:
            request = HeadTimestampRequest(symbol=command.symbol, instrument_type=instrument_type,
                                           what_to_show=what)  # fmt: skip
            head = await self.ask(subjects.IB_HEAD_TIMESTAMP, request, HeadTimestamp)
            head_ns = to_unix_nanos(head.head_timestamp)
        span = load_range(command, now_ns=now_ns, calendar=calendar, head_ns=head_ns,
                          first_stored=stats.first_ns, last_stored=stats.last_ns)  # fmt: skip
        margin = read_margin_ns(timeframe)
        table = await asyncio.to_thread(self.store.read, key, timeframe, span[0] - margin,
                                        span[1])  # fmt: skip
        stored_ts = table.column("ts").cast("int64").to_numpy()
        answered = await asyncio.to_thread(self.ledger.ranges, key, timeframe)
        plan = plan_segments(timeframe, span, calendar=calendar, stored_ts=stored_ts,
                             answered=answered)  # fmt: skip
        return JobPlanned(
            job_id=state.job_id, gaps_analyzed=len(plan.segments),
            cached_before=plan.cached_before,
            segments=[PlannedSegment(segment_id=f"s{i:04d}", start=from_unix_nanos(a),
                                     end=from_unix_nanos(b))
                      for i, (a, b) in enumerate(plan.segments)],
            start=from_unix_nanos(plan.start_ns), end=from_unix_nanos(plan.end_ns),
            instrument_type=instrument_type, exchange=exchange, what_to_show=what,
        )  # fmt: skip

    async def instrument(self, command: LoadData) -> tuple[InstrumentType, str]:
        """Return the instrument a load fetches: the book's, else the connector's answer."""
        known = await asyncio.to_thread(self.instruments.get, command.symbol)
        if known is not None and command.instrument_type in (None, known[0]):
            return known
        if command.instrument_type is not None:
            await asyncio.to_thread(self.instruments.put, command.symbol,
                                    command.instrument_type, "")  # fmt: skip
            return command.instrument_type, ""
        info = await self.ask(subjects.IB_VALIDATE, ValidateSymbol(symbol=command.symbol),
                              SymbolInfo)  # fmt: skip
        await asyncio.to_thread(self.instruments.put, command.symbol, info.instrument_type,
                                info.exchange)  # fmt: skip
        return info.instrument_type, info.exchange

    async def ib_now(self) -> int:
        """Return IB's clock in ns: which bars are complete is the gateway's call, not ours."""

        async def ask() -> int:
            status = await self.client.request(subjects.IB_STATUS, StatusRequest(), IbStatus)
            if status.server_time is None:
                raise RetryableError("the ib-connector is not connected to IB yet")
            return to_unix_nanos(status.server_time)

        return await self._retrying(ask, "IB's clock (ktrdr.ib.status)")

    async def ask(self, subject: str, request: Any, reply_type: type[R]) -> R:
        """Request from the connector, retrying while it is away (see ``_retrying``)."""
        return await self._retrying(
            lambda: self.client.request(subject, request, reply_type), subject
        )

    async def _retrying(self, call: Callable[[], Awaitable[R]], what: str) -> R:
        """Call until it answers; retry what may pass (no connector yet, IB down) a while."""
        deadline = time.monotonic() + self.settings.load_plan_timeout_s
        delay = 0.2
        while True:
            try:
                return await call()
            except RetryableError as e:
                if time.monotonic() + delay > deadline:
                    raise RetryableError(
                        f"gave up waiting for {what} after {self.settings.load_plan_timeout_s:g}s"
                        f": {e.message}; is the ib-connector running and connected?",
                        details={"waited_for": what},
                    ) from e
                log.info("waiting for %s: %s", what, e.message)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
