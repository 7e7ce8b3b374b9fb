"""The job projection and the message-id rule, as tables: event sequences -> state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ktrdr_shared import messages as m
from ktrdr_shared.job_log import JobProjection, event_msg_id, evolve
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit

JOB = "cd" * 16
T0 = datetime(2024, 6, 28, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def accepted(t: float = 0, symbol: str = "AAPL") -> m.JobAccepted:
    return m.JobAccepted(job_id=JOB, ts=at(t), kind=m.JobKind.DATA_LOAD, params={"symbol": symbol})


def planned(*ids: str, t: float = 1) -> m.JobPlanned:
    segments = [m.PlannedSegment(segment_id=s, start=at(-7200), end=at(-3600)) for s in ids]
    return m.JobPlanned(
        job_id=JOB, ts=at(t), gaps_analyzed=len(ids), cached_before=0, segments=segments
    )


def dispatched(*ids: str, t: float = 2) -> m.SegmentsDispatched:
    return m.SegmentsDispatched(job_id=JOB, ts=at(t), segment_ids=list(ids))


def running(segment: str, bars: int, requests: int = 1, t: float = 3) -> m.SegmentProgress:
    return m.SegmentProgress(
        job_id=JOB,
        ts=at(t),
        segment_id=segment,
        state=m.ProgressReason.FETCHING,
        chunks=4,
        chunks_done=1,
        bars=bars,
        ib_requests=requests,
    )


def fetched(segment: str, bars: int, requests: int = 2, t: float = 4) -> m.SegmentFetched:
    return m.SegmentFetched(
        job_id=JOB, ts=at(t), segment_id=segment, chunks=4, bars=bars, ib_requests=requests
    )


def failed(segment: str, bars: int = 0, requests: int = 1, t: float = 4) -> m.SegmentFailed:
    return m.SegmentFailed(
        job_id=JOB,
        ts=at(t),
        segment_id=segment,
        code="cancelled",
        message="m",
        bars=bars,
        ib_requests=requests,
    )


def progress(done: float, t: float = 5) -> m.JobProgress:
    return m.JobProgress(job_id=JOB, ts=at(t), done=done, total=100, unit="percent")


def cancel(reason: str, t: float = 6) -> m.CancelRequested:
    return m.CancelRequested(job_id=JOB, ts=at(t), reason=reason)


def completed(t: float = 9) -> m.JobCompleted:
    result = m.LoadResult(
        fetched_bars=0, cached_before=0, gaps_analyzed=0, segments_fetched=0, ib_requests_made=0
    )
    return m.JobCompleted(job_id=JOB, ts=at(t), result=result)


def fold(*events: Any) -> JobProjection:
    state = JobProjection(job_id=JOB)
    for event in events:
        evolve(state, event)
    return state


def view(state: JobProjection) -> dict[str, Any]:
    """The projection's numbers a table compares."""
    return {
        "outcomes": {s: type(o).__name__ for s, o in state.outcomes.items()},
        "running": sorted(state.running),
        "bars": state.bars_fetched,
        "requests": state.ib_requests,
        "fetched": state.segments_fetched,
        "failed": state.segments_failed,
    }


def counts(
    outcomes: dict[str, str], running: list[str], bars: int, requests: int, ok: int, bad: int
) -> dict[str, Any]:
    return {
        "outcomes": outcomes,
        "running": running,
        "bars": bars,
        "requests": requests,
        "fetched": ok,
        "failed": bad,
    }


F, X = "SegmentFetched", "SegmentFailed"

SEGMENTS: list[tuple[str, list[m.JobEvent], dict[str, Any]]] = [
    ("nothing yet", [accepted(), planned("s0", "s1")], counts({}, [], 0, 0, 0, 0)),
    ("a running segment counts live",
     [planned("s0"), running("s0", 50)], counts({}, ["s0"], 50, 1, 0, 0)),
    ("its latest progress replaces the earlier",
     [planned("s0"), running("s0", 50), running("s0", 80, 2, t=3.5)],
     counts({}, ["s0"], 80, 2, 0, 0)),
    ("its report replaces its progress",
     [planned("s0"), running("s0", 80), fetched("s0", 100, 3)],
     counts({"s0": F}, [], 100, 3, 1, 0)),
    ("a late progress of a reported segment changes nothing",
     [planned("s0"), fetched("s0", 100, 3), running("s0", 90, t=7)],
     counts({"s0": F}, [], 100, 3, 1, 0)),
    ("a duplicate report counts once",
     [planned("s0"), fetched("s0", 100, 3), fetched("s0", 100, 3)],
     counts({"s0": F}, [], 100, 3, 1, 0)),
    ("a redelivered segment's second report: the first stands",
     [planned("s0"), failed("s0", 40, 3), fetched("s0", 100, 2, t=8)],
     counts({"s0": X}, [], 40, 3, 0, 1)),
    ("a failed segment still counts what it did",
     [planned("s0", "s1"), fetched("s0", 100), failed("s1", 40, 3)],
     counts({"s0": F, "s1": X}, [], 140, 5, 1, 1)),
    ("one running, one reported",
     [planned("s0", "s1"), fetched("s0", 100, 3), running("s1", 30)],
     counts({"s0": F}, ["s1"], 130, 4, 1, 0)),
    ("a report before its plan (late plan) still counts",
     [fetched("s0", 100, 3), planned("s0")], counts({"s0": F}, [], 100, 3, 1, 0)),
    ("reports after the end change nothing",
     [planned("s0"), completed(), fetched("s0", 100, 3)], counts({}, [], 0, 0, 0, 0)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "events", "want"), SEGMENTS, ids=[c[0] for c in SEGMENTS])
def test_segments_fold_by_segment_id(case: str, events: list[m.JobEvent], want: Any) -> None:
    assert view(fold(*events)) == want


def test_fetched_and_failed_pair_the_planned_segments_with_their_first_reports() -> None:
    state = fold(planned("s0", "s1", "s2"), fetched("s1", 10), failed("s2"), fetched("s2", 5))
    assert [(s.segment_id, o.bars) for s, o in state.fetched()] == [("s1", 10)]
    assert [(s.segment_id, o.code) for s, o in state.failed()] == [("s2", "cancelled")]
    assert state.last_outcome_at == at(4)


FIRSTS: list[tuple[str, list[m.JobEvent], str, Any]] = [
    ("the first accept stands", [accepted(symbol="A"), accepted(t=1, symbol="B")],
     "accepted", accepted(symbol="A")),
    ("the first plan stands", [planned("s0"), planned("s1", t=2)], "planned", planned("s0")),
    ("the first cancel stands", [cancel("user"), cancel("again", t=7)], "cancel", cancel("user")),
    ("the first end stands",
     [completed(), m.JobFailed(job_id=JOB, ts=at(10), code="c", message="m")],
     "terminal", completed()),
    ("a cancel after the end is ignored", [completed(), cancel("late", t=10)], "cancel", None),
    ("the latest progress is the one", [progress(10), progress(20, t=6)], "last_progress",
     progress(20, t=6)),
    ("progress after the end is ignored", [progress(10), completed(), progress(50, t=10)],
     "last_progress", progress(10)),
    ("dispatches accumulate", [dispatched("s0"), dispatched("s1", t=3), dispatched("s0", t=4)],
     "dispatched", {"s0", "s1"}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "events", "attr", "want"), FIRSTS, ids=[c[0] for c in FIRSTS])
def test_what_stands(case: str, events: list[m.JobEvent], attr: str, want: Any) -> None:
    assert getattr(fold(*events), attr) == want


STARTED: list[tuple[list[m.JobEvent], bool]] = [
    ([], False),
    ([accepted()], False),
    ([accepted(), cancel("user")], False),
    ([accepted(), planned("s0")], True),
    ([accepted(), failed("s0")], True),
    ([cancel("user"), completed()], True),
]  # fmt: skip


@pytest.mark.parametrize(("events", "started"), STARTED)
def test_started_means_a_sign_of_work(events: list[m.JobEvent], started: bool) -> None:
    assert fold(*events).started is started


def test_every_event_counts_and_moves_the_clock_even_after_the_end() -> None:
    state = fold(planned("s0", t=3), accepted(t=1), completed(t=9), cancel("late", t=12))
    assert (state.events, state.created, state.updated, state.ended) == (4, at(1), at(12), at(9))


def test_an_unknown_event_type_is_a_sign_of_life_and_nothing_else() -> None:
    class FutureEvent(m.JobEventBase, frozen=True, kw_only=True, tag="something_new"):
        detail: str = ""

    state = fold(accepted(), FutureEvent(job_id=JOB, ts=at(3)))
    assert state.started and state.events == 2 and state.updated == at(3)
    assert (state.planned, state.outcomes, state.terminal) == (None, {}, None)


def test_folding_a_log_twice_over_changes_nothing_a_reader_sees() -> None:
    log: list[m.JobEvent] = [
        accepted(),
        planned("s0", "s1"),
        dispatched("s0", "s1"),
        running("s0", 20),
        fetched("s0", 100),
        failed("s1", 5),
        progress(100),
        completed(),
    ]
    once, twice = fold(*log), fold(*log, *log)  # a replay redelivered whole
    assert view(twice) == view(once)
    assert (twice.planned, twice.terminal, twice.last_progress) == (
        once.planned,
        once.terminal,
        once.last_progress,
    )


# -- message ids -------------------------------------------------------------------------


METRICS: dict[str, Any] = {"train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5}


def epoch(n: int, t: float) -> m.EpochCompleted:
    return m.EpochCompleted(
        job_id=JOB, ts=at(t), epoch=n, epochs=4, samples_per_s=1e4, device="cpu", **METRICS
    )


IDS: list[tuple[m.JobEvent, str]] = [
    (accepted(), f"{JOB}.accepted"),
    (planned("s0"), f"{JOB}.planned"),
    (cancel("user"), f"{JOB}.cancel_requested"),
    (completed(), f"{JOB}.completed"),
    (m.JobFailed(job_id=JOB, ts=at(1), code="c", message="m"), f"{JOB}.failed"),
    (m.JobCancelled(job_id=JOB, ts=at(1)), f"{JOB}.cancelled"),
    (fetched("s0007", 10), f"{JOB}.s0007.segment_fetched"),
    (failed("s0007"), f"{JOB}.s0007.segment_failed"),
    (dispatched("s0003", "s0004"), f"{JOB}.s0003.segments_dispatched"),
]  # fmt: skip


@pytest.mark.parametrize(("event", "msg_id"), IDS, ids=[i for _, i in IDS])
def test_a_step_has_one_id_whatever_its_content(event: m.JobEvent, msg_id: str) -> None:
    assert event_msg_id(event) == msg_id


@pytest.mark.parametrize(
    ("first", "again", "prefix"),
    [
        (fetched("s0", 10, t=4), fetched("s0", 99, t=8), f"{JOB}.s0.segment_fetched"),
        (accepted(t=0), accepted(t=5), f"{JOB}.accepted"),
    ],
)
def test_a_repeated_step_made_afresh_has_the_same_id(
    first: m.JobEvent, again: m.JobEvent, prefix: str
) -> None:
    assert event_msg_id(first) == event_msg_id(again) == prefix


REPEATED: list[tuple[m.JobEvent, m.JobEvent, str]] = [
    (progress(10, t=5), progress(10, t=6), f"{JOB}.progress."),
    (running("s0", 50, t=3), running("s0", 50, t=4), f"{JOB}.s0.segment_progress."),
    (epoch(1, t=3), epoch(2, t=4), f"{JOB}.epoch_completed."),
]  # fmt: skip


@pytest.mark.parametrize(("one", "next_one", "prefix"), REPEATED, ids=[p for *_, p in REPEATED])
def test_a_report_that_repeats_is_one_id_per_emission(
    one: m.JobEvent, next_one: m.JobEvent, prefix: str
) -> None:
    first = event_msg_id(one)
    assert first is not None and first.startswith(prefix)
    assert event_msg_id(one) == first  # a retried publish of the same emission
    assert event_msg_id(next_one) != first  # the next emission (a later ts)
    assert len(first) == len(prefix) + 16


def test_events_that_are_not_a_jobs_get_no_id() -> None:
    event = m.BarsStored(
        symbol="AAPL", timeframe=Timeframe.H1, first=at(0), last=at(1), bars_written=2
    )
    assert event_msg_id(event) is None
