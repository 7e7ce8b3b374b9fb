"""A job's events in the log: the id each is published with, and the fold every reader shares.

**Message ids.** ``event_msg_id(event)`` is the ``Nats-Msg-Id`` of a job event;
``runtime.publish_event`` sends it whenever its caller names none, so every publisher (the
data-store, the ib-connector, the trainer, the api) follows one rule, and JetStream drops a
repeat that arrives inside the event stream's duplicate window (``streams.EVENTS``):

* one-per-job events (``accepted``, ``planned``, ``cancel_requested``, ``completed``,
  ``failed``, ``cancelled``): ``<job>.<type>``;
* a segment's report (``segment_fetched``, ``segment_failed``): ``<job>.<segment>.<type>``,
  so a redelivered ``FetchBars`` run again does not append its report twice;
* ``segments_dispatched``: ``<job>.<first segment>.segments_dispatched`` (a segment is
  dispatched once ever, so the first names the batch);
* reports that repeat (``progress``, ``segment_progress``, ``epoch_completed``, and any type
  not named above): ``<job>[.<segment>].<type>.<digest>``, the digest being 16 hex digits of
  the SHA-256 of the encoded event. An event's ``ts`` is stamped once, when it is made, so a
  retried publish of one emission carries the same id and the next emission (a later
  ``ts``) another.

A publisher that knows its step better names the id itself (the data-store's last progress
is ``<job>.progress.final``, the same for every try to close the job). Events that are not a
job's (IB connection, store) get no id. Past the window, and for an emission made afresh (a
restarted service deciding again), the fold below keeps a repeat harmless.

**The fold.** ``JobProjection`` and ``evolve(state, event)`` are what every reader of a job's
log needs, keyed by segment id: the first report of a segment stands; a running segment's
latest ``segment_progress`` counts until it reports, and a late one changes nothing; the first
``accepted``, plan, cancel and terminal event stand; after a terminal event only the event
count and the first and last timestamps move. The data-store's load decider
(``ktrdr_data_store.jobs.LoadState``) and the api's job view (``ktrdr_api.jobs.JobState``)
extend it with what is theirs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from ktrdr_shared import codec
from ktrdr_shared.messages import jobs as ev
from ktrdr_shared.messages.base import Event, event_type

Terminal = ev.JobCompleted | ev.JobFailed | ev.JobCancelled
Outcome = ev.SegmentFetched | ev.SegmentFailed

ONE_PER_JOB = (
    ev.JobAccepted,
    ev.JobPlanned,
    ev.CancelRequested,
    ev.JobCompleted,
    ev.JobFailed,
    ev.JobCancelled,
)
DIGEST_HEX = 16


# -- message ids -------------------------------------------------------------------------


def event_msg_id(event: Event) -> str | None:
    """Return the ``Nats-Msg-Id`` of ``event`` by the rule above (None: not a job's event)."""
    if not isinstance(event, ev.JobEventBase):
        return None
    job, kind = event.job_id, event_type(event)
    if isinstance(event, ONE_PER_JOB):
        return f"{job}.{kind}"
    if isinstance(event, ev.SegmentFetched | ev.SegmentFailed):
        return f"{job}.{event.segment_id}.{kind}"
    if isinstance(event, ev.SegmentsDispatched) and event.segment_ids:
        return f"{job}.{event.segment_ids[0]}.{kind}"
    digest = hashlib.sha256(codec.encode(event)).hexdigest()[:DIGEST_HEX]
    if isinstance(event, ev.SegmentProgress):
        return f"{job}.{event.segment_id}.{kind}.{digest}"
    return f"{job}.{kind}.{digest}"


# -- the fold ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class JobProjection:
    """What a job's events say, as every reader needs it."""

    job_id: str
    events: int = 0  # every event folded, those after the end too
    created: datetime | None = None  # the earliest event's ts
    updated: datetime | None = None  # the latest event's ts
    accepted: ev.JobAccepted | None = None
    planned: ev.JobPlanned | None = None
    started: bool = False  # an event other than accepted or a cancel came before the end
    dispatched: set[str] = field(default_factory=set)
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # segment -> its first report
    running: dict[str, ev.SegmentProgress] = field(default_factory=dict)  # unreported segments
    last_outcome_at: datetime | None = None
    last_progress: ev.JobProgress | None = None
    cancel: ev.CancelRequested | None = None
    terminal: Terminal | None = None

    @property
    def ended(self) -> datetime | None:
        """Return when the job ended (None while it runs)."""
        return None if self.terminal is None else self.terminal.ts

    @property
    def segments(self) -> list[ev.PlannedSegment]:
        """Return the planned segments (none before planning)."""
        return [] if self.planned is None else self.planned.segments

    @property
    def segments_fetched(self) -> int:
        """Return how many segments reported ``segment_fetched`` (first reports only)."""
        return sum(isinstance(o, ev.SegmentFetched) for o in self.outcomes.values())

    @property
    def segments_failed(self) -> int:
        """Return how many segments reported ``segment_failed`` (cancelled ones included)."""
        return sum(isinstance(o, ev.SegmentFailed) for o in self.outcomes.values())

    @property
    def bars_fetched(self) -> int:
        """Return the bars the segments published: reported ones, then running ones."""
        reported = sum(o.bars for o in self.outcomes.values())
        return reported + sum(p.bars for p in self.running.values())

    @property
    def ib_requests(self) -> int:
        """Return the requests sent to IB for the segments, retries included."""
        reported = sum(o.ib_requests for o in self.outcomes.values())
        return reported + sum(p.ib_requests for p in self.running.values())

    def fetched(self) -> list[tuple[ev.PlannedSegment, ev.SegmentFetched]]:
        """Return the planned segments that were fetched, with their reports."""
        return [
            (s, o)
            for s in self.segments
            if isinstance(o := self.outcomes.get(s.segment_id), ev.SegmentFetched)
        ]

    def failed(self) -> list[tuple[ev.PlannedSegment, ev.SegmentFailed]]:
        """Return the planned segments that failed, with their reports."""
        return [
            (s, o)
            for s in self.segments
            if isinstance(o := self.outcomes.get(s.segment_id), ev.SegmentFailed)
        ]


S = TypeVar("S", bound=JobProjection)


def evolve(state: S, event: ev.JobEvent) -> S:
    """Fold one event into its job's state, in place; return the state.

    Repeats and late events change nothing; an event type this code does not know counts
    as a sign of life and is otherwise ignored.
    """
    state.events += 1
    if state.created is None or event.ts < state.created:
        state.created = event.ts
    if state.updated is None or event.ts > state.updated:
        state.updated = event.ts
    if state.terminal is not None:
        return state
    if not isinstance(event, ev.JobAccepted | ev.CancelRequested):
        state.started = True
    if isinstance(event, ev.JobAccepted):
        state.accepted = state.accepted or event
    elif isinstance(event, ev.JobPlanned):
        state.planned = state.planned or event
    elif isinstance(event, ev.SegmentsDispatched):
        state.dispatched.update(event.segment_ids)
    elif isinstance(event, ev.SegmentProgress):
        if event.segment_id not in state.outcomes:
            state.running[event.segment_id] = event
    elif isinstance(event, ev.SegmentFetched | ev.SegmentFailed):
        if event.segment_id not in state.outcomes:
            state.outcomes[event.segment_id] = event
            state.running.pop(event.segment_id, None)
            state.last_outcome_at = event.ts
    elif isinstance(event, ev.CancelRequested):
        state.cancel = state.cancel or event
    elif isinstance(event, ev.JobProgress):
        state.last_progress = event
    elif isinstance(event, ev.JobCompleted | ev.JobFailed | ev.JobCancelled):
        state.terminal = event
    return state
