"""A data load as a pure decider: ``evolve(state, event)`` and ``decide(state, facts)``.

The data-store keeps nothing about a job that is not in the event log. ``evolve`` folds one
event into the job's state; it is the shared job projection's (``ktrdr_shared.job_log``:
events may repeat or arrive late, folding one twice changes nothing, and the first report
of a segment, the first plan, the first cancel and the first terminal event stand).
``decide`` looks at that state and at the facts of the moment (the clock, which ranges of
the dataset are durable, whether an ib-connector answers) and returns the effects that move
the load on:

* ``Plan`` — ask IB what the load needs and publish ``planned`` (or ``failed``);
* ``Dispatch`` — send ``FetchBars`` for the next segments (at most ``segments_in_flight``
  unreported at once, so other jobs' segments interleave in the work queue), then record
  them with ``segments_dispatched``; a recorded segment is never sent again: the work queue
  holds it until the connector reports on it;
* ``Publish`` — progress (with its reason and estimate), then ``completed``, ``failed`` or
  ``cancelled`` — never a second terminal event, because a job with one decides nothing.

The runner (``loads.py``) feeds events and facts in and carries effects out, folding each
event it publishes straight back in, so the next ``decide`` already sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec
from ktrdr_shared.job_log import JobProjection, Terminal, evolve
from ktrdr_shared.messages import FetchBars, LoadData  # the commands
from ktrdr_shared.messages.base import event_type
from ktrdr_shared.messages.jobs import (
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobKind,
    JobProgress,
    PlannedSegment,
    ProgressReason,
    SegmentProgress,
    SegmentsDispatched,
)
from ktrdr_shared.types import LoadMode, default_what_to_show

from ktrdr_data_store.job_numbers import (
    Range,
    covered,
    load_result,
    planned_requests,
    segment_range,
    stored_fraction,
    unstored,
)

__all__ = [
    "Range",
    "covered",
    "evolve",
    "load_result",
    "segment_range",
    "stored_fraction",
    "unstored",
]


@dataclass(kw_only=True)
class LoadState(JobProjection):
    """A data load: the job's projection (``ktrdr_shared.job_log``) and the command it runs."""

    command: LoadData

    def in_flight(self) -> list[str]:
        """Return the dispatched segments the connector has not reported on yet."""
        sent, done = self.dispatched, self.outcomes
        return [s.segment_id for s in self.segments if s.segment_id in sent - done.keys()]

    def undispatched(self) -> list[PlannedSegment]:
        """Return the segments never sent to the connector (and not reported either)."""
        sent, done = self.dispatched, self.outcomes
        return [s for s in self.segments if s.segment_id not in sent and s.segment_id not in done]


@dataclass(frozen=True)
class ConnectorFacts:
    """What the data-store last heard from the ib-connector (None: not known yet)."""

    up: bool | None = None
    ib_connected: bool | None = None
    since: datetime | None = None  # when the connector lost IB


@dataclass(frozen=True)
class Facts:
    """The world outside the job's events, as of ``now``."""

    now: datetime
    durable: list[Range] = field(default_factory=list)  # the dataset's answered ranges
    connector: ConnectorFacts = ConnectorFacts()
    storage_full: str | None = None  # the problem, while the data directory's disk is full
    storage_back: datetime | None = None  # when writes last succeeded again after that


@dataclass(frozen=True)
class Policy:
    """The knobs of ``decide`` (from the data-store's settings)."""

    segments_in_flight: int = 8
    progress_interval_s: float = 1.0
    stall_timeout_s: float = 300.0
    cancel_wait_s: float = 10.0


@dataclass(frozen=True)
class Plan:
    """Plan the load (ask the connector, read the store) and publish ``planned``."""

    job_id: str


@dataclass(frozen=True)
class Dispatch:
    """Send these ``FetchBars`` (``Nats-Msg-Id`` job.segment), then publish ``recorded``."""

    commands: list[FetchBars]
    recorded: SegmentsDispatched


@dataclass(frozen=True)
class Publish:
    """Append ``event`` to the log with ``msg_id`` (None: its own, ``event_msg_id``)."""

    event: JobEvent
    msg_id: str | None = None


Effect = Plan | Dispatch | Publish


# -- the state ---------------------------------------------------------------------------


def accept(event: JobAccepted) -> LoadState | None:
    """Return the state a load starts in, or None for another kind of job.

    Raises:
        msgspec.ValidationError: if the event's params are not a ``LoadData``.
    """
    if event.kind is not JobKind.DATA_LOAD:
        return None
    command = msgspec.convert(event.params, LoadData)
    return LoadState(job_id=event.job_id, command=command, accepted=event)


# -- decide ------------------------------------------------------------------------------


def decide(state: LoadState, facts: Facts, policy: Policy) -> list[Effect]:
    """Return what moves the load on now (nothing once it has a terminal event)."""
    if state.terminal is not None:
        return []
    if state.cancel is not None:
        return _decide_cancel(state, facts, policy)
    if state.planned is None:
        return [Plan(state.job_id), *_progress(state, facts, policy)]
    effects: list[Effect] = []
    room = policy.segments_in_flight - len(state.in_flight())
    if facts.storage_full is not None:  # nothing more from IB until its bars can be stored
        room = 0
    if room > 0 and state.undispatched():
        effects.append(_dispatch(state, state.undispatched()[:room], facts))
    elif not state.in_flight() and not state.undispatched():
        return _decide_end(state, facts, policy)
    return effects + _progress(state, facts, policy)


def _decide_end(state: LoadState, facts: Facts, policy: Policy) -> list[Effect]:
    """Every segment is reported: close once its bars are durable (or stopped coming)."""
    not_stored = unstored(state, facts.durable)
    since = state.last_outcome_at or (state.planned.ts if state.planned else facts.now)
    if facts.storage_back is not None:  # a full disk is no stall: count from when it cleared
        since = max(since, facts.storage_back)
    stalled = (facts.now - since).total_seconds() >= policy.stall_timeout_s
    if not_stored and (facts.storage_full is not None or not stalled):
        return _progress(state, facts, policy)
    result = load_result(state, not_stored)
    if result.segments_fetched == 0 and result.failed_segments:
        first = result.failed_segments[0]
        end: Terminal = JobFailed(
            job_id=state.job_id,
            ts=facts.now,
            code=first.code,
            message=first.message,
            details={"failed_segments": msgspec.to_builtins(result.failed_segments)},
        )
    else:
        end = JobCompleted(job_id=state.job_id, ts=facts.now, result=result)
    return _close(state, facts, end)


def _decide_cancel(state: LoadState, facts: Facts, policy: Policy) -> list[Effect]:
    """Send nothing more; wait (a while) for the connector to stop what it runs; close."""
    assert state.cancel is not None
    waited = (facts.now - state.cancel.ts).total_seconds()
    if state.in_flight() and waited < policy.cancel_wait_s:
        return _progress(state, facts, policy)
    result = load_result(state, [])  # zeros for a load cancelled before it was planned
    end = JobCancelled(job_id=state.job_id, ts=facts.now, reason=state.cancel.reason, result=result)
    return _close(state, facts, end)


def _close(state: LoadState, facts: Facts, end: Terminal) -> list[Effect]:
    """Return the last progress (done) and the terminal event, each with its step's id."""
    final = JobProgress(
        job_id=state.job_id,
        ts=facts.now,
        done=100.0,
        total=100.0,
        unit="percent",
        message=f"{event_type(end)}: {_counts_text(state)}",
        reason=ProgressReason.DONE,
        bars=state.bars_fetched,
        requests_done=state.ib_requests,
    )
    return [
        Publish(final, f"{state.job_id}.progress.final"),
        Publish(end),  # <job>.<type>: the job's one terminal event
    ]


def _dispatch(state: LoadState, segments: list[PlannedSegment], facts: Facts) -> Dispatch:
    planned, command = state.planned, state.command
    assert planned is not None and planned.instrument_type is not None
    what = planned.what_to_show or default_what_to_show(planned.instrument_type)
    priority = 1 if command.mode is LoadMode.TAIL else 5  # tail loads go ahead of backfills
    commands = [
        FetchBars(
            job_id=state.job_id,
            segment_id=s.segment_id,
            symbol=command.symbol,
            timeframe=command.timeframe,
            start=s.start,
            end=s.end,
            instrument_type=planned.instrument_type,
            what_to_show=what,
            priority=priority,
            use_rth=command.use_rth,
            contract=command.contract,
        )
        for s in segments
    ]
    ids = [s.segment_id for s in segments]
    return Dispatch(
        commands, SegmentsDispatched(job_id=state.job_id, ts=facts.now, segment_ids=ids)
    )


# -- progress ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Why:
    reason: ProgressReason
    text: str
    since: datetime | None = None
    until: datetime | None = None


def _progress(state: LoadState, facts: Facts, policy: Policy) -> list[Effect]:
    """Return a progress event when the reason changed, or the numbers moved a while ago."""
    why = _why(state, facts)
    done = round(100 * stored_fraction(state, facts.durable), 2) if state.planned else 0.0
    bars, requests = state.bars_fetched, state.ib_requests
    last = state.last_progress
    if last is not None and (last.reason, last.until, last.since) == (
        why.reason,
        why.until,
        why.since,
    ):
        moved = (last.done, last.bars, last.requests_done) != (done, bars, requests)
        elapsed = (facts.now - last.ts).total_seconds()
        if not moved or elapsed < policy.progress_interval_s:
            return []
    rate, eta = _rates(last, facts.now, done, bars)
    if why.reason not in (ProgressReason.FETCHING, ProgressReason.STORING):
        eta = None  # the pace so far says nothing while the job waits (for IB, a connector)
    event = JobProgress(
        job_id=state.job_id,
        ts=facts.now,
        done=done,
        total=100.0,
        unit="percent",
        message=f"{why.text}; {_counts_text(state)}; {done:g}% stored",
        reason=why.reason,
        since=why.since,
        until=why.until,
        eta=eta,
        rate=rate,
        bars=bars,
        requests_done=requests,
        requests_planned=planned_requests(state),
    )
    return [Publish(event)]


def _why(state: LoadState, facts: Facts) -> _Why:
    """Return why the job is where it is, in a word and a phrase."""
    conn = facts.connector
    if state.cancel is not None:
        return _Why(ProgressReason.CANCELLING, "cancel requested; stopping the ib-connector's work")
    if facts.storage_full is not None:
        return _Why(ProgressReason.STORAGE_FULL, f"storage_full: {facts.storage_full}")
    if conn.up is False and (state.planned is None or state.in_flight()):
        return _Why(ProgressReason.NO_CONNECTOR, "no ib-connector is running; the load waits")
    if state.planned is None:
        return _Why(ProgressReason.PLANNING, "planning: asking IB for the instrument and its clock")
    running = [state.running[s] for s in state.in_flight() if s in state.running]
    return _running_why(running) or _idle_why(state, conn)


def _running_why(running: list[SegmentProgress]) -> _Why | None:
    """Return the reason the connector gives for the job's running segments, if any."""
    by_state = {p.state: p for p in running}
    if ProgressReason.FETCHING in by_state:
        return _Why(ProgressReason.FETCHING, "fetching from IB")
    pacing = [p.until for p in running if p.state is ProgressReason.PACING and p.until]
    if pacing or ProgressReason.PACING in by_state:
        until = min(pacing) if pacing else None
        return _Why(ProgressReason.PACING, "waiting for IB's pacing window", until=until)
    lost = [p.since for p in running if p.state is ProgressReason.IB_DISCONNECTED and p.since]
    if lost or ProgressReason.IB_DISCONNECTED in by_state:
        since = min(lost) if lost else None
        return _Why(ProgressReason.IB_DISCONNECTED, "the ib-connector lost IB", since=since)
    return None


def _idle_why(state: LoadState, conn: ConnectorFacts) -> _Why:
    """Return the reason when no running segment says anything."""
    if state.in_flight():
        if conn.ib_connected is False:
            return _Why(
                ProgressReason.IB_DISCONNECTED, "the ib-connector lost IB", since=conn.since
            )
        return _Why(ProgressReason.QUEUED, "queued: the ib-connector has other work first")
    if state.undispatched():
        return _Why(ProgressReason.QUEUED, "queued")
    return _Why(ProgressReason.STORING, "every segment is in; writing the bars")


def _rates(
    last: JobProgress | None, now: datetime, done: float, bars: int
) -> tuple[float | None, datetime | None]:
    """Return bars/s since the last progress and the end estimated from the stored share."""
    if last is None or last.bars is None:
        return None, None
    elapsed = (now - last.ts).total_seconds()
    if elapsed <= 0:
        return None, None
    rate = max(0.0, (bars - last.bars) / elapsed)
    speed = (done - last.done) / elapsed  # percent per second
    eta = now + timedelta(seconds=(100 - done) / speed) if speed > 0 else None
    return round(rate, 1), eta


def _counts_text(state: LoadState) -> str:
    reported, total = len(state.outcomes), len(state.segments)
    return (
        f"{reported} of {total} segments done, {state.bars_fetched:,} bars, "
        f"{state.ib_requests} IB requests"
    )
