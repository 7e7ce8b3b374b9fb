"""The job fold: status, counters and result from a job's events, in log order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    JobFailed,
    JobKind,
    JobProgress,
    SegmentFailed,
    TrainingResult,
)

pytestmark = pytest.mark.unit

JOB = "0123456789abcdef0123456789abcdef"
T0 = datetime(2024, 6, 28, 22, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def accepted(kind: JobKind = JobKind.DATA_LOAD) -> JobAccepted:
    return JobAccepted(job_id=JOB, ts=at(0), kind=kind, params={"symbol": "AAPL"})


def test_a_full_load_folds_to_its_result_and_the_old_counts() -> None:
    state = fold(JOB, load_events(JOB, segments=3, bars=50))
    assert state.status is JobStatus.COMPLETED
    assert state.kind == "data_load"
    assert (state.segments_planned, state.segments_fetched, state.bars_fetched) == (3, 3, 150)
    assert (state.gaps_analyzed, state.cached_before, state.ib_requests) == (3, 7, 3)
    assert state.result is not None and state.result.fetched_bars == 150
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
    epochs = [EpochCompleted(job_id=JOB, ts=at(e), epoch=e, epochs=4, train_loss=1.0 / e,
                             val_loss=1.0, val_accuracy=0.5, samples_per_s=1e4, device="cpu")
              for e in (1, 2)]  # fmt: skip
    state = fold(JOB, [accepted(JobKind.TRAINING), *epochs])
    assert (state.progress_done, state.progress_total, state.progress_unit) == (2, 4, "epochs")
    assert state.percent == 50.0
    assert state.last_epoch is not None and state.last_epoch["epoch"] == 2
    done = JobCompleted(job_id=JOB, ts=at(3), result=TrainingResult(model_id="m1", device="cpu"))
    final = fold(JOB, [accepted(JobKind.TRAINING), *epochs, done])
    assert isinstance(final.result, TrainingResult) and final.result.model_id == "m1"


def test_failure_keeps_its_code_and_message() -> None:
    state = fold(JOB, [accepted(), JobFailed(job_id=JOB, ts=at(5), code="unknown_symbol",
                                             message="IB has no AAPLX")])  # fmt: skip
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
    expected = {"completed": JobStatus.COMPLETED, "failed": JobStatus.FAILED,
                "cancelled": JobStatus.CANCELLED}.get(first_end or "")  # fmt: skip
    if expected is None:
        assert not state.status.is_terminal
    else:
        assert state.status is expected
        assert state.ended == at(kinds.index(first_end) + 1)  # type: ignore[arg-type]
    assert state.events == len(events)
