"""The job fold: status, counters and result from a job's events, in log order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ktrdr_api.jobs import JobStatus, fold
from ktrdr_api.testing import load_events
from ktrdr_shared.messages import (
    CancelRequested,
    EpochCompleted,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobEventBase,
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
    TrainingResult,
)

pytestmark = pytest.mark.unit

JOB = "0123456789abcdef0123456789abcdef"
T0 = datetime(2024, 6, 28, 22, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def accepted(kind: JobKind = JobKind.DATA_LOAD) -> JobAccepted:
    return JobAccepted(job_id=JOB, ts=at(0), kind=kind, params={"symbol": "AAPL"})


def epoch(e: int, epochs: int, train_loss: float = 1.0) -> EpochCompleted:
    scores = {"val_loss": 1.0, "val_accuracy": 0.5, "samples_per_s": 1e4}
    return EpochCompleted(
        job_id=JOB, ts=at(e), epoch=e, epochs=epochs, train_loss=train_loss, device="cpu", **scores
    )


def test_a_full_load_folds_to_its_result_and_the_old_counts() -> None:
    state = fold(JOB, load_events(JOB, segments=3, bars=50))
    assert state.status is JobStatus.COMPLETED
    assert state.kind == "data_load"
    assert (state.segments_planned, state.segments_fetched, state.bars_fetched) == (3, 3, 150)
    assert (state.gaps_analyzed, state.cached_before, state.ib_requests) == (3, 7, 3)
    assert isinstance(state.result, LoadResult) and state.result.fetched_bars == 150
    assert state.execution_time_s == 4.0
    assert state.percent == 100.0
    assert state.progress_done == state.progress_total == 3


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([], JobStatus.QUEUED),
        ([accepted()], JobStatus.ACCEPTED),
        ([accepted(), JobProgress(job_id=JOB, ts=at(1), done=1, total=4, unit="segments")],
         JobStatus.RUNNING),
        ([accepted(), CancelRequested(job_id=JOB, ts=at(1))], JobStatus.CANCELLING),
        ([accepted(), CancelRequested(job_id=JOB, ts=at(1)),
          JobProgress(job_id=JOB, ts=at(2), done=2, total=4, unit="segments")],
         JobStatus.CANCELLING),
        ([accepted(), CancelRequested(job_id=JOB, ts=at(1)),
          JobCancelled(job_id=JOB, ts=at(2), reason="user")], JobStatus.CANCELLED),
        ([accepted(), JobFailed(job_id=JOB, ts=at(1), code="ib_unavailable", message="down")],
         JobStatus.FAILED),
        # A cancel that arrives after the end changes nothing.
        ([accepted(), JobFailed(job_id=JOB, ts=at(1), code="x", message="y"),
          CancelRequested(job_id=JOB, ts=at(2))], JobStatus.FAILED),
        # The connector's failed segment does not end the job.
        ([accepted(), SegmentFailed(job_id=JOB, ts=at(1), segment_id="s1", code="pacing",
                                    message="m")], JobStatus.RUNNING),
    ],
)  # fmt: skip
def test_status_after_each_sequence(events: list[JobEvent], status: JobStatus) -> None:
    assert fold(JOB, events).status is status


def test_training_epochs_become_progress_and_the_model_id_the_result() -> None:
    epochs = [epoch(e, 4, train_loss=1.0 / e) for e in (1, 2)]
    state = fold(JOB, [accepted(JobKind.TRAINING), *epochs])
    assert (state.progress_done, state.progress_total, state.progress_unit) == (2, 4, "epochs")
    assert state.percent == 50.0
    assert state.last_epoch is not None and state.last_epoch["epoch"] == 2
    done = JobCompleted(job_id=JOB, ts=at(3), result=TrainingResult(model_id="m1", device="cpu"))
    final = fold(JOB, [accepted(JobKind.TRAINING), *epochs, done])
    assert isinstance(final.result, TrainingResult) and final.result.model_id == "m1"


def test_failure_keeps_its_code_and_message() -> None:
    state = fold(
        JOB,
        [
            accepted(),
            JobFailed(job_id=JOB, ts=at(5), code="unknown_symbol", message="IB has no AAPLX"),
        ],
    )
    assert (state.error_code, state.error_message) == ("unknown_symbol", "IB has no AAPLX")
    assert state.execution_time_s == 5.0


_terminal = st.sampled_from(["completed", "failed", "cancelled"])
_other = st.sampled_from(["progress", "cancel", "segment_failed"])


def _event(kind: str, i: int) -> JobEvent:
    ts = at(i)
    if kind == "completed":
        return JobCompleted(job_id=JOB, ts=ts, result=TrainingResult(model_id="m", device="cpu"))
    if kind == "failed":
        return JobFailed(job_id=JOB, ts=ts, code="c", message="m")
    if kind == "cancelled":
        return JobCancelled(job_id=JOB, ts=ts)
    if kind == "cancel":
        return CancelRequested(job_id=JOB, ts=ts)
    if kind == "segment_failed":
        return SegmentFailed(job_id=JOB, ts=ts, segment_id="s", code="c", message="m")
    return JobProgress(job_id=JOB, ts=ts, done=i, total=100, unit="bars")


@given(st.lists(st.one_of(_terminal, _other), max_size=12))
def test_the_first_terminal_event_decides_and_nothing_reopens_the_job(kinds: list[str]) -> None:
    events = [accepted(), *(_event(k, i + 1) for i, k in enumerate(kinds))]
    state = fold(JOB, events)
    first_end = next((k for k in kinds if k in ("completed", "failed", "cancelled")), None)
    expected = {
        "completed": JobStatus.COMPLETED,
        "failed": JobStatus.FAILED,
        "cancelled": JobStatus.CANCELLED,
    }.get(first_end or "")
    if expected is None:
        assert not state.status.is_terminal
    else:
        assert state.status is expected
        assert state.ended == at(kinds.index(first_end) + 1)  # type: ignore[arg-type]
    assert state.events == len(events)


# ---------------------------------------------------------------- progress that explains itself


def planned(*segments: str, notes: tuple[str, ...] = ()) -> JobPlanned:
    return JobPlanned(
        job_id=JOB,
        ts=at(1),
        gaps_analyzed=len(segments),
        cached_before=0,
        segments=[PlannedSegment(segment_id=s, start=at(-86_400), end=at(-3600)) for s in segments],
        notes=list(notes),
    )


def seg_progress(
    segment: str,
    bars: int,
    requests: int,
    t: float = 2,
    state: ProgressReason = ProgressReason.FETCHING,
) -> SegmentProgress:
    return SegmentProgress(
        job_id=JOB,
        ts=at(t),
        segment_id=segment,
        state=state,
        chunks=4,
        chunks_done=1,
        bars=bars,
        ib_requests=requests,
    )


def fetched(segment: str, bars: int, requests: int, t: float = 3) -> SegmentFetched:
    return SegmentFetched(
        job_id=JOB, ts=at(t), segment_id=segment, chunks=4, bars=bars, ib_requests=requests
    )


def failed(segment: str, bars: int, requests: int, code: str = "cancelled") -> SegmentFailed:
    return SegmentFailed(
        job_id=JOB,
        ts=at(4),
        segment_id=segment,
        code=code,
        message="m",
        chunks_done=1,
        bars=bars,
        ib_requests=requests,
    )


def load_result(bars: int, requests: int, segments: int = 1) -> LoadResult:
    return LoadResult(
        fetched_bars=bars,
        cached_before=0,
        gaps_analyzed=2,
        segments_fetched=segments,
        ib_requests_made=requests,
    )


@pytest.mark.parametrize(
    ("events", "bars", "requests"),
    [
        # a failed or cancelled segment still sent requests and published bars
        ([planned("s0", "s1"), fetched("s0", 100, 2), failed("s1", 40, 3)], 140, 5),
        ([planned("s0"), failed("s0", 0, 7, code="pacing")], 0, 7),
        # a running segment's account counts live; its latest account replaces the earlier one
        ([planned("s0"), seg_progress("s0", 50, 1), seg_progress("s0", 80, 2)], 80, 2),
        # ...until the segment ends: then its final count alone (no double counting)
        ([planned("s0"), seg_progress("s0", 80, 2), fetched("s0", 100, 3)], 100, 3),
        # a late account of an ended segment changes nothing
        ([planned("s0"), fetched("s0", 100, 3), seg_progress("s0", 90, 2, t=5)], 100, 3),
        ([planned("s0", "s1"), fetched("s0", 100, 3), seg_progress("s1", 30, 1, t=5)], 130, 4),
        # a segment reported twice (a redelivered fetch command run again) counts once: the
        # first report, as in the data-store's fold (issue 17)
        ([planned("s0"), fetched("s0", 100, 3), fetched("s0", 100, 3, t=6)], 100, 3),
        ([planned("s0"), failed("s0", 40, 3), fetched("s0", 100, 2, t=6)], 40, 3),
    ],
)  # fmt: skip
def test_every_request_and_bar_a_segment_reports_counts_once(
    events: list[JobEvent], bars: int, requests: int
) -> None:
    state = fold(JOB, [accepted(), *events])
    assert (state.bars_fetched, state.ib_requests) == (bars, requests)
    assert state.status is JobStatus.RUNNING


def test_progress_carries_its_reason_and_estimate() -> None:
    progress = JobProgress(
        job_id=JOB,
        ts=at(2),
        done=40,
        total=100,
        unit="percent",
        reason=ProgressReason.PACING,
        until=at(70),
        eta=at(600),
        rate=1234.5,
        bars=5000,
        requests_done=12,
        requests_planned=30,
    )
    state = fold(JOB, [accepted(), planned("s0"), progress])
    assert state.progress_reason is ProgressReason.PACING
    assert (state.progress_until, state.progress_eta, state.progress_since) == (
        at(70),
        at(600),
        None,
    )
    assert (state.progress_rate, state.progress_bars) == (1234.5, 5000)
    assert (state.requests_done, state.requests_planned) == (12, 30)
    # the next snapshot replaces the whole account (IB came back: no 'until' any more)
    later = JobProgress(
        job_id=JOB,
        ts=at(3),
        done=50,
        total=100,
        unit="percent",
        reason=ProgressReason.IB_DISCONNECTED,
        since=at(2.5),
    )
    state = fold(JOB, [accepted(), planned("s0"), progress, later])
    assert state.progress_reason is ProgressReason.IB_DISCONNECTED
    assert (state.progress_since, state.progress_until, state.progress_rate) == (
        at(2.5),
        None,
        None,
    )


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([accepted()], None),
        ([accepted(), CancelRequested(job_id=JOB, ts=at(1))], ProgressReason.CANCELLING),
        # an older producer's progress (no reason) does not hide that the job is cancelling
        ([accepted(), CancelRequested(job_id=JOB, ts=at(1)),
          JobProgress(job_id=JOB, ts=at(2), done=1, total=4, unit="segments")],
         ProgressReason.CANCELLING),
        ([accepted(), JobProgress(job_id=JOB, ts=at(2), done=1, total=4, unit="segments")], None),
        ([accepted(JobKind.TRAINING), epoch(1, 4)], ProgressReason.TRAINING),
        ([accepted(), JobFailed(job_id=JOB, ts=at(1), code="c", message="m")],
         ProgressReason.DONE),
        ([accepted(), JobCancelled(job_id=JOB, ts=at(1))], ProgressReason.DONE),
    ],
)  # fmt: skip
def test_the_reason_after_each_sequence(
    events: list[JobEvent], reason: ProgressReason | None
) -> None:
    assert fold(JOB, events).progress_reason is reason


def test_a_finished_load_reads_done_not_its_last_stale_progress() -> None:
    stale = JobProgress(
        job_id=JOB,
        ts=at(2),
        done=0,
        total=100,
        unit="percent",
        reason=ProgressReason.FETCHING,
        rate=10.0,
        eta=at(90),
        message="0 of 1 segments fetched (0 bars); 0% stored",
    )
    done = JobCompleted(job_id=JOB, ts=at(5), result=load_result(142, 2))
    state = fold(JOB, [accepted(), planned("s0"), stale, fetched("s0", 142, 2), done])
    assert state.progress_reason is ProgressReason.DONE
    assert (state.progress_done, state.progress_total, state.percent) == (100, 100, 100.0)
    assert "0 bars" not in state.progress_message and "142 bars" in state.progress_message
    assert (state.progress_rate, state.progress_eta) == (None, None)
    assert (state.bars, state.requests) == (142, 2)


def test_a_final_done_progress_of_the_owner_is_kept() -> None:
    final = JobProgress(
        job_id=JOB,
        ts=at(4),
        done=100,
        total=100,
        unit="percent",
        reason=ProgressReason.DONE,
        bars=142,
        requests_done=3,
        message="1 of 1 segments fetched (142 bars); 100% stored",
    )
    done = JobCompleted(job_id=JOB, ts=at(5), result=load_result(142, 3))
    state = fold(JOB, [accepted(), planned("s0"), final, done])
    assert state.progress_message == final.message
    assert (state.bars, state.requests) == (142, 3)


def test_a_cancelled_load_keeps_what_it_did() -> None:
    cancelled = JobCancelled(
        job_id=JOB, ts=at(5), reason="user", result=load_result(4000, 9, segments=1)
    )
    events: list[JobEvent] = [
        accepted(),
        planned("s0", "s1"),
        fetched("s0", 4000, 6),
        CancelRequested(job_id=JOB, ts=at(4)),
        failed("s1", 300, 3),
        cancelled,
    ]
    state = fold(JOB, events)
    assert state.status is JobStatus.CANCELLED
    assert isinstance(state.result, LoadResult) and state.result.fetched_bars == 4000
    assert (state.bars_fetched, state.ib_requests) == (4300, 9)
    assert (state.bars, state.requests) == (4300, 9)
    assert state.progress_reason is ProgressReason.DONE
    assert "cancelled" in state.progress_message and "4,300 bars" in state.progress_message


def test_a_cancelled_job_without_a_result_keeps_none() -> None:
    state = fold(JOB, [accepted(), JobCancelled(job_id=JOB, ts=at(1), reason="user")])
    assert state.result is None and state.cancel_reason == "user"


def test_plan_notes_are_kept() -> None:
    note = "1s bars before 2024-01-01 are older than IB's six-month limit: not requested"
    state = fold(JOB, [accepted(), planned("s0", notes=(note,))])
    assert state.notes == [note]


def test_dispatched_segments_and_unknown_event_types_do_not_break_the_fold() -> None:
    class FutureEvent(JobEventBase, frozen=True, kw_only=True, tag="something_new"):
        detail: str = ""

    dispatched = SegmentsDispatched(job_id=JOB, ts=at(2), segment_ids=["s0"])
    events: list[Any] = [accepted(), planned("s0"), dispatched, FutureEvent(job_id=JOB, ts=at(3))]
    state = fold(JOB, events)
    assert state.status is JobStatus.RUNNING and state.events == 4
    assert state.updated == at(3)


def test_an_early_stopped_run_ends_at_the_epochs_it_ran() -> None:
    epochs = [epoch(e, 20) for e in range(1, 8)]
    result = TrainingResult(
        model_id="m",
        device="cpu",
        metrics={"epochs_run": 7, "stopped_early": True, "best_epoch": 4},
    )
    done = JobCompleted(job_id=JOB, ts=at(9), result=result)
    state = fold(JOB, [accepted(JobKind.TRAINING), *epochs, done])
    assert (state.progress_done, state.progress_total, state.progress_unit) == (7, 7, "epochs")
    assert state.progress_reason is ProgressReason.DONE
    assert "7 of 20 epochs" in state.progress_message
