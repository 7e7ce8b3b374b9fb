"""The job index: the list's fold in log order, its order and filters, repeats, expiry, and
waiting for a sequence, without servers.

A log here is a list of (kind, event) in publish order; its stream sequences count from 1.
``latest_per_subject`` is what the feed's ordered consumer delivers first
(``DeliverPolicy.LAST_PER_SUBJECT``), and ``old_list`` is the list as the gateway answered it
before the index (that fold on every request), so the two can be compared.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ktrdr_api.job_index import JobIndex
from ktrdr_api.jobs import JobState, JobStatus, apply, fold
from ktrdr_api.testing import load_events
from ktrdr_api.views import job_summary
from ktrdr_shared.messages import (
    CancelRequested,
    EpochCompleted,
    JobAccepted,
    JobEvent,
    JobKind,
    JobProgress,
    ProgressReason,
    SegmentProgress,
)
from ktrdr_shared.messages.base import event_type

pytestmark = pytest.mark.unit

T0 = datetime(2024, 6, 28, 22, 0, tzinfo=UTC)
STORED = datetime(2024, 6, 29, tzinfo=UTC)  # when the log stored every event (expiry aside)
Log = list[tuple[JobKind, JobEvent]]


def job(i: int) -> str:
    return f"{i:032x}"


def training_events(job_id: str, ts: datetime, epochs: int = 3) -> list[JobEvent]:
    events: list[JobEvent] = [JobAccepted(job_id=job_id, ts=ts, kind=JobKind.TRAINING)]
    for e in range(1, epochs + 1):
        events.append(
            EpochCompleted(
                job_id=job_id,
                ts=ts + timedelta(seconds=e),
                epoch=e,
                epochs=epochs + 1,  # still running
                train_loss=1.0,
                val_loss=1.0,
                val_accuracy=0.5,
                samples_per_s=1e4,
                device="cpu",
            )
        )
    return events


def mixed_log() -> Log:
    """Five jobs, interleaved: loads ended or running, a cancelling one, a training run."""
    per_job: list[list[tuple[JobKind, JobEvent]]] = []
    for i in range(4):
        events = load_events(job(i), segments=3, ts=T0 + timedelta(minutes=i))
        if i == 1:
            events = events[:4]  # still running
        if i == 2:
            events = [*events[:3], CancelRequested(job_id=job(i), ts=T0 + timedelta(minutes=3))]
        per_job.append([(JobKind.DATA_LOAD, e) for e in events])
    per_job.append([(JobKind.TRAINING, e) for e in training_events(job(9), T0)])
    log: Log = []
    while any(per_job):  # round robin, as many publishers at once would
        for events in per_job:
            if events:
                log.append(events.pop(0))
    return log


def subject(kind: JobKind, event: JobEvent) -> tuple[str, str, str]:
    return (kind.value, event.job_id, event_type(event))


def latest_per_subject(log: Log, kind: JobKind | None = None) -> list[tuple[int, JobEvent]]:
    """Return the last event of each (kind, job, type) subject with its sequence, in log order."""
    last: dict[tuple[str, str, str], tuple[int, JobEvent]] = {}
    for seq, (k, event) in enumerate(log, start=1):
        if kind is None or k is kind:
            last[subject(k, event)] = (seq, event)
    return sorted(last.values(), key=lambda found: found[0])


def old_list(
    log: Log, kind: JobKind | None, status: JobStatus | None, limit: int
) -> list[JobState]:
    """Return the list as ``list_jobs`` answered it before the index."""
    by_job: dict[str, JobState] = {}
    for _, event in latest_per_subject(log, kind):
        apply(by_job.setdefault(event.job_id, JobState(job_id=event.job_id)), event)
    jobs = [
        s
        for s in by_job.values()
        if (kind is None or s.kind == kind.value) and (status is None or s.status is status)
    ]
    jobs.sort(key=lambda s: (s.created is not None, s.created), reverse=True)
    return jobs[:limit]


def caught_up(log: Log, **index_options: timedelta) -> JobIndex:
    """Return an index fed what the feed delivers first: the latest event of each subject."""
    index = JobIndex(**index_options)
    for seq, event in latest_per_subject(log):
        index.apply(seq, STORED, event)
    return index


@pytest.mark.parametrize("kind", [None, JobKind.DATA_LOAD, JobKind.TRAINING])
@pytest.mark.parametrize("status", [None, *JobStatus])
@pytest.mark.parametrize("limit", [1, 3, 100])
def test_the_caught_up_index_lists_what_the_list_folded_before(
    kind: JobKind | None, status: JobStatus | None, limit: int
) -> None:
    log = mixed_log()
    listed = caught_up(log).jobs(now=STORED, kind=kind, status=status, limit=limit)
    assert [job_summary(s) for s in listed] == [
        job_summary(s) for s in old_list(log, kind, status, limit)
    ]


def test_the_list_is_newest_created_first_and_ties_keep_the_log_order() -> None:
    same = T0 + timedelta(hours=1)
    log: Log = [
        (JobKind.DATA_LOAD, JobAccepted(job_id=job(1), ts=T0, kind=JobKind.DATA_LOAD)),
        (JobKind.DATA_LOAD, JobAccepted(job_id=job(2), ts=same, kind=JobKind.DATA_LOAD)),
        (JobKind.DATA_LOAD, JobAccepted(job_id=job(3), ts=same, kind=JobKind.DATA_LOAD)),
        (
            JobKind.DATA_LOAD,
            JobAccepted(job_id=job(4), ts=T0 - timedelta(days=1), kind=JobKind.DATA_LOAD),
        ),
    ]
    index = caught_up(log)
    assert [s.job_id for s in index.jobs(now=STORED)] == [job(2), job(3), job(1), job(4)]
    assert [s.job_id for s in index.jobs(now=STORED, limit=2)] == [job(2), job(3)]


@given(st.data())
def test_events_after_the_catch_up_are_folded_as_the_job_itself_folds_them(
    data: st.DataObject,
) -> None:
    log = mixed_log()
    split = data.draw(st.integers(0, len(log)), label="events logged before the feed started")
    index = caught_up(log[:split])
    for seq, (_, event) in enumerate(log[split:], start=split + 1):
        index.apply(seq, STORED, event)
    first = {seq for seq, _ in latest_per_subject(log[:split])}
    for state in index.jobs(now=STORED):
        # What the catch-up delivered of the job, then every event of it logged after.
        seen = [
            e
            for seq, (_, e) in enumerate(log, start=1)
            if e.job_id == state.job_id and (seq in first or seq > split)
        ]
        assert job_summary(state) == job_summary(fold(state.job_id, seen))
    assert index.seen_seq == len(log)  # the prefix's last event is the latest of its subject


def test_a_running_segment_counts_live_as_the_job_view_counts_it() -> None:
    accepted = JobAccepted(job_id=job(1), ts=T0, kind=JobKind.DATA_LOAD)
    progress = [
        SegmentProgress(
            job_id=job(1),
            ts=T0,
            segment_id=s,
            state=ProgressReason.FETCHING,
            chunks=2,
            chunks_done=1,
            bars=10,
            ib_requests=1,
        )
        for s in ("s0", "s1")
    ]
    index = JobIndex()
    for seq, event in enumerate([accepted, *progress], start=1):
        index.apply(seq, STORED, event)
    (state,) = index.jobs(now=STORED)
    assert state.bars == 20 == fold(job(1), [accepted, *progress]).bars


def test_a_repeat_changes_nothing_and_an_unreadable_event_still_counts_as_seen() -> None:
    index = JobIndex()
    progress = JobProgress(job_id=job(1), ts=T0, done=1, total=4, unit="segments")
    assert index.apply(1, STORED, JobAccepted(job_id=job(1), ts=T0, kind=JobKind.DATA_LOAD))
    assert index.apply(2, STORED, progress)
    assert not index.apply(2, STORED, progress)  # the feed resumed at a sequence it had
    assert not index.apply(1, STORED, JobAccepted(job_id=job(2), ts=T0, kind=JobKind.TRAINING))
    assert index.apply(3, STORED, None)
    assert index.seen_seq == 3 and len(index) == 1
    (state,) = index.jobs(now=STORED)
    assert state.events == 2 and state.status is JobStatus.RUNNING


def test_a_job_is_forgotten_once_the_log_has_dropped_its_newest_event() -> None:
    index = JobIndex(retention=timedelta(days=30))
    index.apply(1, STORED, JobAccepted(job_id=job(1), ts=T0, kind=JobKind.DATA_LOAD))
    index.apply(2, STORED, JobAccepted(job_id=job(2), ts=T0, kind=JobKind.DATA_LOAD))
    index.apply(
        3,
        STORED + timedelta(days=2),
        JobProgress(job_id=job(2), ts=T0, done=1, total=2, unit="segments"),
    )
    day_31 = STORED + timedelta(days=31)
    assert [s.job_id for s in index.jobs(now=STORED + timedelta(days=29))] == [job(1), job(2)]
    assert [s.job_id for s in index.jobs(now=day_31)] == [job(2)]
    assert index.jobs(now=day_31 + timedelta(days=2)) == [] and len(index) == 0
    assert index.seen_seq == 3  # the sequence read stays: the feed goes on from there


def test_reset_forgets_every_job_and_sequence() -> None:
    index = caught_up(mixed_log())
    index.reset()
    assert (len(index), index.seen_seq, index.jobs(now=STORED)) == (0, 0, [])


async def test_wait_for_returns_once_the_sequence_is_seen() -> None:
    index = JobIndex()
    assert await index.wait_for(0, timeout_s=0)
    assert not await index.wait_for(1, timeout_s=0)
    assert not await index.wait_for(1, timeout_s=0.01)
    waiting = asyncio.create_task(index.wait_for(2, timeout_s=10))
    await asyncio.sleep(0)
    index.apply(1, STORED, None)
    await asyncio.sleep(0)
    assert not waiting.done()
    index.apply(2, STORED, None)
    assert await waiting
    index.reset()  # a waiter made after a reset waits for the sequence to come again
    again = asyncio.create_task(index.wait_for(1, timeout_s=10))
    await asyncio.sleep(0)
    index.apply(1, STORED, None)
    assert await again
