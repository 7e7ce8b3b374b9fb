"""The load runner: feeds job events and facts to the decider (``jobs.py``), carries effects out.

- ``handle_command`` accepts a ``LoadData``: it assigns the job id (a hand-published command
  may lack one), publishes ``accepted`` and acks. From then on the job lives in the log.
- ``follow`` folds ``ktrdr.evt.job.data_load.>`` from the start of the log (an ordered
  consumer that replays history, then stays live; training jobs are none of its business).
  The replay is complete once the event that was the last load-job event when it started
  has been folded — a sure signal, unlike a pending count, which reads zero while history
  still sits unread in the client's buffer. Only then does
  it decide anything, so a restart moves on exactly the unfinished jobs.
- ``decide`` runs for every unfinished job whenever something changed: an event folded,
  bars became durable (``on_durable``, called in-process by the ingestor), the connector's
  state changed, or a second passed (progress, stall and cancel deadlines are about time).
- Effects are carried out idempotently: each published step has a ``Nats-Msg-Id`` of job
  and step, each event published is folded straight back into the state, and a terminal
  event is never published when the log already has one for the job.

The runner talks to the event log, the command queue and the connector through the ports of
``ports.py``: ``LoadRunner.on_nats`` wires the JetStream ones, and the in-memory ones run the
same orchestration in tests that take milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import nats.errors
from ktrdr_shared import codec, subjects
from ktrdr_shared.consumer import derived_job_id, salvage_job_id
from ktrdr_shared.errors import IbUnavailable, KtrdrError, RetryableError
from ktrdr_shared.messages import (
    TERMINAL_JOB_EVENTS,
    HeadTimestamp,
    HeadTimestampRequest,
    IbStatus,
    JobAccepted,
    JobEvent,
    JobFailed,
    JobKind,
    JobPlanned,
    LoadData,
    PlannedSegment,
    SegmentsDispatched,
    StatusRequest,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.store.remote import StoreUnreachable
from ktrdr_shared.types import (
    InstrumentType,
    LoadMode,
    Timeframe,
    default_what_to_show,
    from_unix_nanos,
    symbol_key,
    to_unix_nanos,
    utc_now,
)
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ktrdr_data_store import jobs
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.jobs import ConnectorFacts, Dispatch, Effect, Facts, LoadState, Plan, Policy
from ktrdr_data_store.ledger import AnsweredLedger, InstrumentBook, merge_ranges
from ktrdr_data_store.planning import (
    assumed_notes,
    load_range,
    market_calendar,
    plan_segments,
    read_margin_ns,
)
from ktrdr_data_store.ports import (
    CommandQueue,
    Connector,
    EventLog,
    JetStreamEventLog,
    JetStreamQueue,
    NatsConnector,
)
from ktrdr_data_store.profiles import DatasetProfile, ProfileBook
from ktrdr_data_store.segments import SegmentBook
from ktrdr_data_store.spread import piece_requests, spread
from ktrdr_data_store.storage import is_full, storage_full
from ktrdr_data_store.store import BarStore

log = logging.getLogger(__name__)

R = TypeVar("R")
Dataset = tuple[str, Timeframe]


class LoadRunner:
    """Run data loads from their events (see the module docstring)."""

    def __init__(
        self,
        events: EventLog,
        queue: CommandQueue,
        ib: Connector,
        store: BarStore,
        ledger: AnsweredLedger,
        settings: DataStoreSettings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.events, self.queue, self.ib, self.clock = events, queue, ib, clock
        self.store, self.ledger, self.settings = store, ledger, settings
        self.instruments = InstrumentBook(settings.data_dir)
        self.profiles = ProfileBook(settings.data_dir)
        self.policy = Policy(
            segments_in_flight=settings.load_segments_in_flight,
            progress_interval_s=settings.load_progress_interval_s,
            stall_timeout_s=settings.load_stall_timeout_s,
            cancel_wait_s=settings.load_cancel_wait_s,
        )
        self.jobs: dict[str, LoadState] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.planning: dict[str, asyncio.Task[None]] = {}
        self.durable: dict[Dataset, list[jobs.Range]] = {}
        self.loaded: set[Dataset] = set()
        self.connector = ConnectorFacts()
        self.segments = SegmentBook()  # what ingest may merge: the segments dispatched
        self.storage_full: str | None = None  # the ingest found the disk full (the problem)
        self.storage_back: datetime | None = None  # ... and since then wrote again
        self.caught_up = asyncio.Event()
        self.wake = asyncio.Event()

    @classmethod
    def on_nats(
        cls, nc: NATS, store: BarStore, ledger: AnsweredLedger, settings: DataStoreSettings
    ) -> LoadRunner:
        """Return the runner the service runs: JetStream's log and queues, the connector over
        request/reply."""
        return cls(
            JetStreamEventLog(nc), JetStreamQueue(nc), NatsConnector(nc), store, ledger, settings
        )

    # -- commands ---------------------------------------------------------------------

    async def handle_command(self, msg: Msg) -> None:
        """Accept a ``LoadData``: announce the job (once), then the message may be acked."""
        command = codec.decode(msg.data, LoadData, subject=msg.subject, headers=msg.headers)
        await self.accept(command, command.job_id or derived_job_id(msg))

    async def accept(self, command: LoadData, job_id: str) -> None:
        """Announce the load as job ``job_id`` unless the log already has it."""
        if await self.events.last(job_id, "accepted") is not None:
            return  # a resend of a job already under way or done
        params = msgspec.to_builtins(msgspec.structs.replace(command, job_id=job_id))
        await self.events.publish(  # Nats-Msg-Id <job>.accepted (job_log.event_msg_id)
            JobAccepted(job_id=job_id, kind=JobKind.DATA_LOAD, params=params)
        )

    async def on_rejected(self, msg: Msg, error: KtrdrError) -> None:
        """Report a command that can never run as a failed job, naming the problem."""
        job_id = salvage_job_id(msg.data) or derived_job_id(msg)
        await self.events.publish(
            JobFailed(
                job_id=job_id,
                code=error.code,
                message=error.message,
                details={"subject": msg.subject, **error.details},
            )
        )

    # -- inputs: events, durable bars, the connector -----------------------------------

    def on_durable(self, key: str, timeframe: Timeframe, ranges: list[jobs.Range]) -> None:
        """Note ranges whose bars just became durable (the ingestor calls this in-process)."""
        dataset = (key, timeframe)
        self.durable[dataset] = merge_ranges(self.durable.get(dataset, []) + ranges)
        self.wake.set()

    def forget(self, key: str, timeframe: Timeframe) -> None:
        """Drop what is known in memory of a dataset's durable ranges (a repair forgot some of
        its ledger): the next decision reads the ledger again."""
        self.durable.pop((key, timeframe), None)
        self.loaded.discard((key, timeframe))

    def on_storage(self, problem: str | None) -> None:
        """Note that the disk is full (``problem``) or takes writes again (None): the ingestor
        calls this in-process; loads wait meanwhile instead of stalling."""
        if problem is None and self.storage_full is not None:
            self.storage_back = self.clock()
        self.storage_full = problem
        self.wake.set()

    def fold(self, event: JobEvent) -> None:
        """Fold one job event into its load's state (loads only; finished jobs are let go)."""
        if isinstance(event, JobAccepted):
            if event.job_id not in self.jobs and event.job_id not in self.finished:
                try:
                    state = jobs.accept(event)
                except msgspec.ValidationError as e:
                    log.warning(
                        "job %s: accepted with params that are no load: %s", event.job_id, e
                    )
                    return
                if state is not None:
                    self.jobs[event.job_id] = state
                    self.wake.set()
            return
        state = self.jobs.get(event.job_id)
        if state is None:
            return
        if isinstance(event, SegmentsDispatched) and state.planned is not None:
            self.segments.record(state.command, state.planned, event.segment_ids)
        jobs.evolve(state, event)
        if state.terminal is not None:
            self._let_go(state.job_id)
        self.wake.set()

    def _let_go(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        task = self.planning.pop(job_id, None)
        if task is not None:
            task.cancel()
        self.finished[job_id] = None
        while len(self.finished) > 10_000:
            self.finished.popitem(last=False)

    async def follow(self, stopping: asyncio.Event) -> None:
        """Fold job events from the start of the log; decide once the replay is complete."""
        last = await self.events.last_seq()
        if last is None:
            self._caught_up()
        deciding = asyncio.create_task(self._decide_loop(stopping))
        watching = asyncio.create_task(self._watch_connector(stopping))
        try:
            async for seq, event in self.events.follow(stopping):
                if event is not None:
                    self.fold(event)
                if last is not None and seq >= last:
                    self._caught_up()
        finally:
            for task in (deciding, watching, *self.planning.values()):
                task.cancel()

    def _caught_up(self) -> None:
        """The replay is complete: jobs may be decided, dispatched segments' bars merged."""
        self.caught_up.set()
        self.segments.ready = True
        self.wake.set()

    async def _watch_connector(self, stopping: asyncio.Event) -> None:
        """Keep ``connector`` current while loads run (is it there, has it IB, since when)."""
        while not stopping.is_set():
            if self.jobs and self.caught_up.is_set():
                facts = await self.ib.facts(self.connector)
                if facts != self.connector:
                    self.connector = facts
                    self.wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=2.0)

    # -- deciding and carrying effects out ----------------------------------------------

    async def _decide_loop(self, stopping: asyncio.Event) -> None:
        await self.caught_up.wait()
        while not stopping.is_set():
            self.wake.clear()
            for state in list(self.jobs.values()):
                await self._move_on(state)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0 if self.jobs else None)

    async def _move_on(self, state: LoadState) -> None:
        """Decide for one job and carry the effects out (a failure is logged, retried later)."""
        try:
            facts = Facts(
                now=self.clock(),
                durable=await self._durable_of(state),
                connector=self.connector,
                storage_full=self.storage_full,
                storage_back=self.storage_back,
            )
            for effect in jobs.decide(state, facts, self.policy):
                await self._carry_out(state, effect)
                if state.terminal is not None:
                    break
        except (nats.errors.Error, OSError) as e:
            log.warning("job %s: %s; trying again", state.job_id, e or type(e).__name__)

    async def _durable_of(self, state: LoadState) -> list[jobs.Range]:
        dataset = (symbol_key(state.command.symbol), state.command.timeframe)
        if dataset not in self.loaded and state.planned is not None:
            on_disk = await asyncio.to_thread(self.ledger.ranges, *dataset)
            self.loaded.add(dataset)
            self.durable[dataset] = merge_ranges(self.durable.get(dataset, []) + on_disk)
        return self.durable.get(dataset, [])

    async def _carry_out(self, state: LoadState, effect: Effect) -> None:
        if isinstance(effect, Plan):
            if effect.job_id not in self.planning:
                self.planning[effect.job_id] = asyncio.create_task(self._plan(state))
        elif isinstance(effect, Dispatch):
            if state.planned is not None:  # known before the connector can answer them
                self.segments.record(state.command, state.planned, effect.recorded.segment_ids)
            for command in effect.commands:
                msg_id = f"{command.job_id}.{command.segment_id}"
                await self.queue.send(subjects.CMD_IB_FETCH, command, msg_id)
            await self._publish(state, effect.recorded)  # <job>.<first>.segments_dispatched
        else:
            await self._publish(state, effect.event, effect.msg_id)

    async def _publish(self, state: LoadState, event: JobEvent, msg_id: str | None = None) -> None:
        """Publish a job event (``msg_id``, else its own) and fold it in; a terminal one at
        most once per job, ever."""
        if isinstance(event, TERMINAL_JOB_EVENTS):
            earlier = await self._terminal_in_log(state.job_id)
            if earlier is not None:
                self.fold(earlier)
                return
        await self.events.publish(event, msg_id)
        self.fold(event)

    async def _terminal_in_log(self, job_id: str) -> JobEvent | None:
        for kind in ("completed", "failed", "cancelled"):
            event = await self.events.last(job_id, kind)
            if event is not None:
                return event
        return None

    # -- planning -----------------------------------------------------------------------

    async def _plan(self, state: LoadState) -> None:
        """Publish the load's plan, or its failure (the ``Plan`` effect)."""
        try:
            planned: JobEvent = await self.plan(state)
        except asyncio.CancelledError:
            raise
        except KtrdrError as e:
            planned = JobFailed(
                job_id=state.job_id, code=e.code, message=e.message, details=e.details
            )
        except ValueError as e:  # a range the calendar or the mode refuses, named in e
            planned = JobFailed(job_id=state.job_id, code="invalid_request", message=str(e))
        except Exception as e:
            log.exception("job %s: planning failed", state.job_id)
            planned = JobFailed(
                job_id=state.job_id, code="internal", message=f"planning the load failed: {e!r}"
            )
        try:
            if state.terminal is None and state.cancel is None:
                await self._publish(state, planned)  # <job>.planned or <job>.failed
        finally:
            self.planning.pop(state.job_id, None)
            self.wake.set()

    async def plan(self, state: LoadState) -> JobPlanned:
        """Return the plan of a load: ask IB what is needed, then read the store and ledger."""
        command = state.command
        key, timeframe = symbol_key(command.symbol), command.timeframe
        stats = await self._from_store(lambda: self.store.stats(key, timeframe))
        profile = DatasetProfile(contract=command.contract, use_rth=command.use_rth)
        try:
            await asyncio.to_thread(
                self.profiles.claim, key, timeframe, profile, has_bars=stats.rows > 0
            )
        except OSError as e:  # not recorded (a full disk): the check still ran; go on
            problem = storage_full(self.settings.data_dir, e).message if is_full(e) else str(e)
            log.warning("could not record the profile of %s %s: %s", key, timeframe, problem)
        instrument_type, exchange = await self.instrument(command)
        what = command.what_to_show or default_what_to_show(instrument_type)
        calendar = market_calendar(instrument_type, exchange, use_rth=command.use_rth)
        now_ns = await self.ib_now()
        head_ns = None
        if command.mode is not LoadMode.TAIL and command.start is None:
            request = HeadTimestampRequest(
                symbol=command.symbol,
                instrument_type=instrument_type,
                what_to_show=what,
                use_rth=command.use_rth,
                contract=command.contract,
            )
            head = await self.ask(subjects.IB_HEAD_TIMESTAMP, request, HeadTimestamp)
            head_ns = to_unix_nanos(head.head_timestamp)
        span = load_range(
            command,
            now_ns=now_ns,
            calendar=calendar,
            head_ns=head_ns,
            first_stored=stats.first_ns,
            last_stored=stats.last_ns,
        )
        margin = read_margin_ns(timeframe)
        table = await self._from_store(
            lambda: self.store.read(key, timeframe, span[0] - margin, span[1])
        )
        stored_ts = table.column("ts").cast("int64").to_numpy()
        answered = await asyncio.to_thread(self.ledger.ranges, key, timeframe)
        plan = plan_segments(
            timeframe, span, calendar=calendar, stored_ts=stored_ts, answered=answered
        )
        per_piece = piece_requests(
            timeframe,
            plan.segments,
            connectors=await self.ib.count(),
            max_requests=self.settings.load_piece_max_requests,
        )
        pieces = spread(timeframe, plan.segments, per_piece=per_piece)
        return JobPlanned(
            job_id=state.job_id,
            gaps_analyzed=len(plan.segments),
            cached_before=plan.cached_before,
            segments=[
                PlannedSegment(
                    segment_id=f"s{i:04d}", start=from_unix_nanos(a), end=from_unix_nanos(b)
                )
                for i, (a, b) in enumerate(pieces)
            ],
            start=from_unix_nanos(plan.start_ns),
            end=from_unix_nanos(plan.end_ns),
            instrument_type=instrument_type,
            exchange=exchange,
            what_to_show=what,
            notes=assumed_notes(
                command,
                start_ns=plan.start_ns,
                instrument_type=instrument_type,
                stored_rows=stats.rows,
                first_stored=stats.first_ns,
                last_stored=stats.last_ns,
            )
            + list(plan.notes),
        )

    async def instrument(self, command: LoadData) -> tuple[InstrumentType, str]:
        """Return the instrument a load fetches: the book's, else the connector's answer."""
        known = await asyncio.to_thread(self.instruments.get, command.symbol)
        fits = known is not None and command.instrument_type in (None, known[0])
        if known is not None and fits and command.contract is None:  # a spec: ask IB
            return known
        if command.instrument_type is not None and command.contract is None:
            await self._remember(command.symbol, command.instrument_type, "")
            return command.instrument_type, ""
        request = ValidateSymbol(
            symbol=command.symbol,
            instrument_type=command.instrument_type,
            contract=command.contract,
        )
        info = await self.ask(subjects.IB_VALIDATE, request, SymbolInfo)
        await self._remember(command.symbol, info.instrument_type, info.exchange)
        return info.instrument_type, info.exchange

    async def _remember(self, symbol: str, instrument_type: InstrumentType, exchange: str) -> None:
        """Write the instrument to the book; the book is a cache, so a failed write (a full
        disk) is logged and the load goes on: the next one asks the connector again."""
        try:
            await asyncio.to_thread(self.instruments.put, symbol, instrument_type, exchange)
        except OSError as e:
            problem = storage_full(self.settings.data_dir, e).message if is_full(e) else str(e)
            log.warning("could not write the instrument book for %s: %s", symbol, problem)

    async def ib_now(self) -> int:
        """Return IB's clock in ns: which bars are complete is the gateway's call, not ours."""

        async def ask() -> int:
            status = await self.ib.request(subjects.IB_STATUS, StatusRequest(), IbStatus)
            if status.server_time is None:
                raise IbUnavailable("the ib-connector is not connected to IB yet")
            return to_unix_nanos(status.server_time)

        return await self._retrying(ask, "IB's clock (ktrdr.ib.status)")

    async def ask(self, subject: str, request: Any, reply_type: type[R]) -> R:
        """Request from the connector, retrying while it is away (see ``_retrying``)."""
        return await self._retrying(lambda: self.ib.request(subject, request, reply_type), subject)

    async def _from_store(self, read: Callable[[], R]) -> R:
        """Read the store in a thread, waiting out an object store that does not answer."""

        async def attempt() -> R:
            try:
                return await asyncio.to_thread(read)
            except StoreUnreachable as e:
                raise RetryableError(str(e)) from e

        return await self._retrying(attempt, "the bar store")

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
                        f": {e.message}"
                        + (
                            ""
                            if what == "the bar store"
                            else "; is the ib-connector running and connected?"
                        ),
                        details={"waited_for": what},
                    ) from e
                log.info("waiting for %s: %s", what, e.message)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
