"""The load decider as tables: event sequences (+ facts) -> effects.

Every case folds a prefix of a job's log into a fresh state, which is exactly what a
restarted data-store does, so "restart at step N" is the case that stops at step N.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from ktrdr_data_store import jobs
from ktrdr_data_store.jobs import ConnectorFacts, Dispatch, Facts, LoadState, Plan, Policy, Publish
from ktrdr_shared.job_log import event_msg_id
from ktrdr_shared.messages import (
    CancelRequested,
    FailedSegment,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobKind,
    JobPlanned,
    JobProgress,
    LoadResult,
    PlannedSegment,
    ProgressReason,
    SegmentFailed,
    SegmentFetched,
    SegmentProgress,
    SegmentsDispatched,
)
from ktrdr_shared.messages.base import event_type
from ktrdr_shared.types import InstrumentType, WhatToShow, to_unix_nanos

pytestmark = pytest.mark.unit

JOB = "ab" * 16
T0 = dt.datetime(2024, 6, 28, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
POLICY = Policy(
    segments_in_flight=2, progress_interval_s=1.0, stall_timeout_s=60.0, cancel_wait_s=10.0
)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def seg(i: int) -> PlannedSegment:
    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC) + i * DAY
    return PlannedSegment(segment_id=f"s{i:04d}", start=start, end=start + DAY / 2)


SEGMENTS = [seg(i) for i in range(3)]
ALL_DURABLE = [(to_unix_nanos(SEGMENTS[0].start), to_unix_nanos(SEGMENTS[-1].end))]


def accepted(mode: str = "backfill") -> JobAccepted:
    params = {"job_id": JOB, "symbol": "AAPL", "timeframe": "1h", "mode": mode}
    return JobAccepted(job_id=JOB, ts=T0, kind=JobKind.DATA_LOAD, params=params)


def planned(n: int = 3) -> JobPlanned:
    return JobPlanned(
        job_id=JOB,
        ts=at(1),
        gaps_analyzed=n,
        cached_before=5,
        segments=SEGMENTS[:n],
        instrument_type=InstrumentType.STK,
        exchange="NASDAQ",
        what_to_show=WhatToShow.TRADES,
    )


def dispatched(*ids: int, t: float = 2) -> SegmentsDispatched:
    return SegmentsDispatched(job_id=JOB, ts=at(t), segment_ids=[f"s{i:04d}" for i in ids])


def fetched(i: int, bars: int = 100, requests: int = 2, t: float = 5) -> SegmentFetched:
    return SegmentFetched(
        job_id=JOB, ts=at(t), segment_id=f"s{i:04d}", chunks=2, bars=bars, ib_requests=requests
    )


def seg_failed(
    i: int, code: str = "unknown_symbol", bars: int = 0, requests: int = 1, t: float = 5
) -> SegmentFailed:
    return SegmentFailed(
        job_id=JOB,
        ts=at(t),
        segment_id=f"s{i:04d}",
        code=code,
        message=f"{code}!",
        bars=bars,
        ib_requests=requests,
    )


def running(i: int, state: ProgressReason, **kw: Any) -> SegmentProgress:
    fields: dict[str, Any] = {"chunks": 4, "chunks_done": 1, "bars": 50, "ib_requests": 3, **kw}
    return SegmentProgress(job_id=JOB, ts=at(3), segment_id=f"s{i:04d}", state=state, **fields)


def cancel(t: float = 3) -> CancelRequested:
    return CancelRequested(job_id=JOB, ts=at(t), reason="user")


def fold(*events: JobEvent, mode: str = "backfill") -> LoadState:
    state = jobs.accept(accepted(mode))
    assert state is not None
    for event in events:
        jobs.evolve(state, event)
    return state


def decide(
    state: LoadState,
    t: float = 6,
    durable: list[jobs.Range] | None = None,
    connector: ConnectorFacts | None = None,
) -> list[jobs.Effect]:
    facts = Facts(now=at(t), durable=durable or [], connector=connector or ConnectorFacts())
    return jobs.decide(state, facts, POLICY)


def kinds(effects: list[jobs.Effect]) -> list[str]:
    """Return effects as short words: plan, dispatch:s0000+s0001, progress:<reason>, <type>."""
    words = []
    for e in effects:
        if isinstance(e, Plan):
            words.append("plan")
        elif isinstance(e, Dispatch):
            words.append("dispatch:" + "+".join(c.segment_id for c in e.commands))
        elif isinstance(e.event, JobProgress):
            words.append(f"progress:{e.event.reason}")
        else:
            words.append(event_type(e.event))
    return words


def terminal(effects: list[jobs.Effect]) -> Any:
    ends = [
        e.event
        for e in effects
        if isinstance(e, Publish) and isinstance(e.event, JobCompleted | JobFailed | JobCancelled)
    ]
    assert len(ends) == 1, effects
    return ends[0]


# -- the lifecycle, and a restart at every step -------------------------------------------

LIFECYCLE: list[tuple[str, list[JobEvent], list[jobs.Range], list[str]]] = [
    ("accepted", [], [], ["plan", "progress:planning"]),
    ("planned", [planned()], [], ["dispatch:s0000+s0001", "progress:queued"]),
    ("two sent", [planned(), dispatched(0, 1)], [], ["progress:queued"]),
    ("one back", [planned(), dispatched(0, 1), fetched(0)], [], ["dispatch:s0002",
                                                                 "progress:queued"]),
    ("all sent", [planned(), dispatched(0, 1), fetched(0), dispatched(2)], [],
     ["progress:queued"]),
    ("all back, not durable", [planned(), dispatched(0, 1), fetched(0), dispatched(2),
                               fetched(1), fetched(2)], [], ["progress:storing"]),
    ("all back and durable", [planned(), dispatched(0, 1), fetched(0), dispatched(2),
                              fetched(1), fetched(2)], ALL_DURABLE, ["progress:done",
                                                                     "completed"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("step", "events", "durable", "want"), LIFECYCLE, ids=[c[0] for c in LIFECYCLE]
)
def test_a_restart_at_every_step_does_only_what_is_left(
    step: str, events: list[JobEvent], durable: list[jobs.Range], want: list[str]
) -> None:
    assert kinds(decide(fold(*events), durable=durable)) == want


def test_a_recorded_segment_is_never_sent_again_after_a_restart() -> None:
    state = fold(planned(), dispatched(0, 1))
    effects = decide(state, t=10_000)  # long after the queue's duplicate window
    assert not any(isinstance(e, Dispatch) for e in effects)


def test_the_completed_result_counts_every_request_and_bar() -> None:
    state = fold(
        planned(),
        dispatched(0, 1),
        fetched(0, bars=10, requests=3),
        seg_failed(1, code="timeout", bars=4, requests=5),
        dispatched(2),
        fetched(2, bars=20, requests=1),
    )
    end = terminal(decide(state, durable=ALL_DURABLE))
    assert isinstance(end, JobCompleted)
    assert end.result == LoadResult(
        fetched_bars=34,
        cached_before=5,
        gaps_analyzed=3,
        segments_fetched=2,
        ib_requests_made=9,
        failed_segments=[
            FailedSegment(
                segment_id="s0001",
                start=SEGMENTS[1].start,
                end=SEGMENTS[1].end,
                code="timeout",
                message="timeout!",
            )
        ],
    )


def test_every_segment_failed_fails_the_job_with_the_first_code() -> None:
    state = fold(planned(2), dispatched(0, 1), seg_failed(0), seg_failed(1, code="timeout"))
    end = terminal(decide(state))
    assert isinstance(end, JobFailed)
    assert end.code == "unknown_symbol"


def test_nothing_to_fetch_completes_at_once() -> None:
    end = terminal(decide(fold(planned(0))))
    assert isinstance(end, JobCompleted)


def test_bars_that_never_become_durable_complete_as_not_stored_after_the_stall() -> None:
    state = fold(planned(2), dispatched(0, 1), fetched(0, t=5), fetched(1, t=5))
    first_only = [(to_unix_nanos(SEGMENTS[0].start), to_unix_nanos(SEGMENTS[0].end))]
    assert kinds(decide(state, t=30, durable=first_only)) == ["progress:storing"]
    end = terminal(decide(state, t=70, durable=first_only))
    assert isinstance(end, JobCompleted)
    assert isinstance(end.result, LoadResult)
    assert [f.code for f in end.result.failed_segments] == ["not_stored"]
    assert end.result.fetched_bars == 100  # the stored segment's only


# -- duplicates, late events, terminal at most once ----------------------------------------


def test_duplicate_and_late_events_change_nothing() -> None:
    once = fold(planned(), dispatched(0, 1), fetched(0, bars=10))
    twice = fold(
        planned(),
        planned(),
        dispatched(0, 1),
        dispatched(0, 1),
        fetched(0, bars=10),
        fetched(0, bars=99),
        running(0, ProgressReason.PACING),
    )
    assert (twice.outcomes, twice.dispatched, twice.running) == (
        once.outcomes,
        once.dispatched,
        once.running,
    )


@pytest.mark.parametrize(
    "end",
    [
        JobCompleted(
            job_id=JOB,
            ts=at(9),
            result=LoadResult(
                fetched_bars=0,
                cached_before=0,
                gaps_analyzed=0,
                segments_fetched=0,
                ib_requests_made=0,
            ),
        ),
        JobFailed(job_id=JOB, ts=at(9), code="x", message="y"),
        JobCancelled(job_id=JOB, ts=at(9)),
    ],
)
def test_a_job_with_a_terminal_event_decides_nothing_ever(end: JobEvent) -> None:
    state = fold(planned(), dispatched(0, 1), end, cancel(10), fetched(0), fetched(1))
    assert decide(state, durable=ALL_DURABLE, t=10_000) == []


def test_the_terminal_effect_is_the_last_and_folding_it_closes_the_job() -> None:
    state = fold(planned(1), dispatched(0), fetched(0))
    effects = decide(state, durable=ALL_DURABLE)
    assert kinds(effects) == ["progress:done", "completed"]
    ids = [e.msg_id or event_msg_id(e.event) for e in effects if isinstance(e, Publish)]
    assert ids == [f"{JOB}.progress.final", f"{JOB}.completed"]  # the same on every try
    for effect in effects:
        assert isinstance(effect, Publish)
        jobs.evolve(state, effect.event)
    assert decide(state, durable=ALL_DURABLE) == []


# -- cancel at every step ---------------------------------------------------------------

CANCELS: list[tuple[str, list[JobEvent], float, list[str]]] = [
    ("before planning", [cancel()], 4, ["progress:done", "cancelled"]),
    ("planned, nothing sent", [planned(), cancel()], 4, ["progress:done", "cancelled"]),
    ("segments running", [planned(), dispatched(0, 1), cancel()], 4, ["progress:cancelling"]),
    ("connector reported", [planned(), dispatched(0, 1), cancel(),
                            seg_failed(0, "cancelled"), seg_failed(1, "cancelled")], 4,
     ["progress:done", "cancelled"]),
    ("connector silent too long", [planned(), dispatched(0, 1), cancel()], 14,
     ["progress:done", "cancelled"]),
]  # fmt: skip


@pytest.mark.parametrize(("step", "events", "t", "want"), CANCELS, ids=[c[0] for c in CANCELS])
def test_a_cancel_at_every_step_sends_nothing_more(
    step: str, events: list[JobEvent], t: float, want: list[str]
) -> None:
    effects = decide(fold(*events), t=t)
    assert kinds(effects) == want
    assert not any(isinstance(e, Plan | Dispatch) for e in effects)


def test_a_cancelled_load_reports_what_it_did() -> None:
    state = fold(
        planned(),
        dispatched(0, 1),
        fetched(0, bars=40, requests=2),
        cancel(),
        seg_failed(1, "cancelled", bars=7, requests=3),
    )
    end = terminal(decide(state, t=4))
    assert isinstance(end, JobCancelled)
    assert isinstance(end.result, LoadResult)
    assert (end.result.fetched_bars, end.result.ib_requests_made) == (47, 5)


# -- progress: a reason, an estimate, and not too often ------------------------------------


def progress(effects: list[jobs.Effect]) -> JobProgress:
    found = [
        e.event for e in effects if isinstance(e, Publish) and isinstance(e.event, JobProgress)
    ]
    assert len(found) == 1, effects
    return found[0]


def test_progress_says_when_ibs_pacing_window_opens() -> None:
    until = at(300)
    state = fold(planned(1), dispatched(0), running(0, ProgressReason.PACING, until=until))
    event = progress(decide(state))
    assert (event.reason, event.until, event.eta) == (ProgressReason.PACING, until, None)
    assert (event.bars, event.requests_done, event.requests_planned) == (50, 3, 4)


def test_progress_says_since_when_ib_is_lost() -> None:
    lost = at(-60)
    state = fold(planned(1), dispatched(0))
    event = progress(
        decide(state, connector=ConnectorFacts(up=True, ib_connected=False, since=lost))
    )
    assert (event.reason, event.since) == (ProgressReason.IB_DISCONNECTED, lost)


@pytest.mark.parametrize("events", [[], [planned(1), dispatched(0)]], ids=["planning", "sent"])
def test_progress_says_no_connector_is_running(events: list[JobEvent]) -> None:
    event = progress(decide(fold(*events), connector=ConnectorFacts(up=False)))
    assert event.reason is ProgressReason.NO_CONNECTOR
    assert "no ib-connector" in event.message


def test_progress_is_throttled_but_a_new_reason_goes_out_at_once() -> None:
    state = fold(planned(1), dispatched(0), running(0, ProgressReason.FETCHING))
    first = progress(decide(state, t=6))
    jobs.evolve(state, first)
    jobs.evolve(state, running(0, ProgressReason.FETCHING, bars=80))
    assert kinds(decide(state, t=6.5)) == []  # numbers moved, but within the interval
    later = progress(decide(state, t=8))
    assert later.rate == pytest.approx(15.0)  # 30 bars in 2 s
    assert later.eta is None  # nothing is durable yet: no pace to extrapolate
    jobs.evolve(state, later)
    jobs.evolve(state, running(0, ProgressReason.PACING, bars=80, until=at(60)))
    assert progress(decide(state, t=8.1)).reason is ProgressReason.PACING


def test_tail_loads_are_sent_ahead_of_backfills() -> None:
    def priority(mode: str) -> int:
        effects = decide(fold(planned(1), mode=mode))
        sent = [e for e in effects if isinstance(e, Dispatch)]
        return sent[0].commands[0].priority

    assert priority("tail") < priority("backfill") == priority("full")


def test_a_load_cancelled_before_its_plan_reports_that_it_did_nothing() -> None:
    end = terminal(decide(fold(cancel()), t=4))
    assert isinstance(end, JobCancelled)
    assert end.result == LoadResult(
        fetched_bars=0, cached_before=0, gaps_analyzed=0, segments_fetched=0, ib_requests_made=0
    )


def test_the_eta_follows_the_stored_share_while_fetching_and_is_absent_while_waiting() -> None:
    span = jobs.segment_range(SEGMENTS[0])
    length = span[1] - span[0]

    def stored(share: float) -> list[jobs.Range]:
        return [(span[0], span[0] + int(length * share))]

    state = fold(planned(1), dispatched(0), running(0, ProgressReason.FETCHING))
    jobs.evolve(state, progress(decide(state, t=6, durable=stored(0.1))))
    later = progress(decide(state, t=8, durable=stored(0.3)))  # 10 % a second
    assert later.eta == at(8 + 7)
    jobs.evolve(state, later)
    jobs.evolve(state, running(0, ProgressReason.PACING, until=at(600)))
    assert progress(decide(state, t=9, durable=stored(0.3))).eta is None


# -- a full disk -----------------------------------------------------------------------------

FULL = "the data directory /data has no space left (No space left on device); ..."


def test_a_full_disk_holds_the_dispatch_and_says_so() -> None:
    state = fold(planned(3), dispatched(0), fetched(0))
    facts = Facts(now=at(6), connector=ConnectorFacts(up=True), storage_full=FULL)
    effects = jobs.decide(state, facts, POLICY)
    assert kinds(effects) == ["progress:storage_full"]  # nothing more asked of IB
    assert FULL in progress(effects).message
    assert progress(effects).eta is None


def test_a_full_disk_is_no_stall_and_the_stall_clock_restarts_when_it_clears() -> None:
    state = fold(planned(1), dispatched(0), fetched(0, t=5))
    full = Facts(now=at(500), storage_full=FULL)  # far past the 60 s stall timeout
    assert kinds(jobs.decide(state, full, POLICY)) == ["progress:storage_full"]
    back = Facts(now=at(520), storage_back=at(510))
    assert kinds(jobs.decide(state, back, POLICY)) == ["progress:storing"]
    durable = [(to_unix_nanos(SEGMENTS[0].start), to_unix_nanos(SEGMENTS[0].end))]
    resumed = Facts(now=at(525), durable=durable, storage_back=at(510))
    assert isinstance(terminal(jobs.decide(state, resumed, POLICY)), JobCompleted)
    # a disk that clears while the bars never come back stalls 60 s after it cleared
    stalled = terminal(jobs.decide(state, Facts(now=at(580), storage_back=at(510)), POLICY))
    assert isinstance(stalled, JobFailed) and stalled.code == "not_stored"
