"""Subject builders and parsers agree with each other and with the contract."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ktrdr_shared import subjects
from ktrdr_shared.messages import (
    BarsStored,
    CancelRequested,
    EpochCompleted,
    IbConnected,
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobEventBase,
    JobKind,
    JobPlanned,
    SegmentFetched,
    TrainingResult,
    implied_kind,
)
from ktrdr_shared.testing.examples import EXAMPLES, JOB
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit


def test_bar_subjects_use_the_symbol_key() -> None:
    assert subjects.bars("BRK B", "1m") == "ktrdr.bars.BRK_B.1m"
    assert subjects.bars("EUR.USD", Timeframe.H1) == "ktrdr.bars.EUR_USD.1h"
    assert subjects.parse_bars("ktrdr.bars.BRK_B.1m") == ("BRK_B", Timeframe.M1)


@pytest.mark.parametrize(
    "bad", ["ktrdr.bars.AAPL", "ktrdr.bars.AAPL.2h", "ktrdr.evt.AAPL.1m", "ktrdr.bars.A.B.1m"]
)
def test_bad_bar_subjects_are_rejected(bad: str) -> None:
    with pytest.raises(subjects.SubjectError):
        subjects.parse_bars(bad)


def test_job_event_subjects_carry_the_kind() -> None:
    subject = subjects.job_event(JobKind.TRAINING, JOB, "completed")
    assert subject == f"ktrdr.evt.job.training.{JOB}.completed"
    assert subjects.parse_job_event(subject) == (JobKind.TRAINING, JOB, "completed")
    assert (
        subjects.job_event("data_load", JOB, "planned") == f"ktrdr.evt.job.data_load.{JOB}.planned"
    )
    assert subjects.job_events(JOB, JobKind.DATA_LOAD) == f"ktrdr.evt.job.data_load.{JOB}.>"
    assert subjects.job_events(JOB) == f"ktrdr.evt.job.*.{JOB}.>"
    assert subjects.job_kind_events(JobKind.DATA_LOAD) == "ktrdr.evt.job.data_load.>"
    assert subjects.cancel_requests(JobKind.TRAINING) == "ktrdr.evt.job.training.*.cancel_requested"


@pytest.mark.parametrize(
    "build",
    [
        lambda: subjects.job_event(JobKind.DATA_LOAD, "a.b", "completed"),
        lambda: subjects.job_event(JobKind.DATA_LOAD, JOB, "a>"),
        lambda: subjects.job_event("backtest", JOB, "completed"),
        lambda: subjects.job_events(JOB, "*"),
        lambda: subjects.job_kind_events(">"),
        lambda: subjects.cancel_requests("training.x"),
    ],
)
def test_bad_job_subject_parts_are_rejected(build: Callable[[], str]) -> None:
    with pytest.raises(subjects.SubjectError):
        build()


@pytest.mark.parametrize(
    "bad",
    [
        "ktrdr.evt.ib.connection.connected",
        f"ktrdr.evt.job.{JOB}.completed",  # the layout before kinds
        f"ktrdr.evt.job.backtest.{JOB}.completed",
        f"ktrdr.evt.job.data_load.{JOB}.completed.x",
    ],
)
def test_bad_job_event_subjects_are_rejected(bad: str) -> None:
    with pytest.raises(subjects.SubjectError):
        subjects.parse_job_event(bad)


def test_event_subject_is_derived_from_family_and_tag() -> None:
    completed = EXAMPLES[JobCompleted]  # a load's result
    assert subjects.event_subject(completed) == f"ktrdr.evt.job.data_load.{JOB}.completed"
    assert subjects.event_subject(EXAMPLES[IbConnected]) == "ktrdr.evt.ib.connection.connected"
    assert subjects.event_subject(EXAMPLES[BarsStored]) == "ktrdr.evt.store.bars_stored"


def test_a_job_event_that_does_not_name_its_kind_needs_one() -> None:
    cancel = CancelRequested(job_id=JOB)
    with pytest.raises(subjects.SubjectError, match="needs its job's kind"):
        subjects.event_subject(cancel)
    assert subjects.event_subject(cancel, kind=JobKind.TRAINING) == (
        f"ktrdr.evt.job.training.{JOB}.cancel_requested"
    )
    with pytest.raises(TypeError):
        subjects.event_subject(EXAMPLES[BarsStored], kind=JobKind.DATA_LOAD)


@pytest.mark.parametrize(
    ("event", "wrong"),
    [
        (JobAccepted(job_id=JOB, kind=JobKind.TRAINING), JobKind.DATA_LOAD),
        (EpochCompleted(job_id=JOB, epoch=1, epochs=2, train_loss=1.0, val_loss=1.0,
                        val_accuracy=0.5, samples_per_s=1.0, device="cpu"), JobKind.DATA_LOAD),
        (SegmentFetched(job_id=JOB, segment_id="s0", chunks=1, bars=1, ib_requests=1),
         JobKind.TRAINING),
        (JobPlanned(job_id=JOB, gaps_analyzed=0, cached_before=0), JobKind.TRAINING),
        (JobCompleted(job_id=JOB, result=TrainingResult(model_id="m", device="cpu")),
         JobKind.DATA_LOAD),
    ],
)  # fmt: skip
def test_an_event_is_never_published_under_the_other_kind(event: JobEvent, wrong: JobKind) -> None:
    """The data-store (data_load) cannot put a training event in the trainer's subjects, nor
    the trainer a load's; the right kind is implied by the event."""
    with pytest.raises(subjects.SubjectError, match="belongs to"):
        subjects.event_subject(event, kind=wrong)
    right = subjects.event_subject(event)
    assert subjects.parse_job_event(right).kind is not wrong
    assert subjects.event_subject(event, kind=subjects.parse_job_event(right).kind) == right


def test_every_event_subject_falls_inside_the_events_stream() -> None:
    for example in EXAMPLES.values():
        kind = None
        if isinstance(example, JobEventBase):
            kind = implied_kind(example) or JobKind.DATA_LOAD
        try:
            subject = subjects.event_subject(example, kind=kind)
        except (TypeError, AttributeError):
            continue
        assert subject.startswith("ktrdr.evt.")
        if kind is not None:
            assert subjects.parse_job_event(subject).kind is kind


def test_bar_filters_take_wildcards() -> None:
    assert subjects.bars_filter() == "ktrdr.bars.*.*"
    assert subjects.bars_filter("BRK_B") == "ktrdr.bars.BRK_B.*"


def test_micro_subjects_name_the_verb_and_the_service() -> None:
    assert subjects.micro(subjects.PING, "trainer") == "$SRV.PING.trainer"
    assert subjects.micro(subjects.STATS, "data-store") == "$SRV.STATS.data-store"
    assert subjects.micro(subjects.STATS) == "$SRV.STATS"  # every service answers it
    with pytest.raises(subjects.SubjectError):
        subjects.micro(subjects.PING, "a.b")


@pytest.mark.parametrize(
    ("subject", "service"),
    [
        (subjects.IB_VALIDATE, "ib-connector"),
        (subjects.STORE_QUERY, "data-store"),
        (subjects.TRAIN_MODELS, "trainer"),
        ("$SRV.PING.trainer", "trainer"),
        ("ktrdr.silent", None),
        ("$SRV.PING", None),
    ],
)
def test_answered_by_names_the_service_of_a_request_subject(
    subject: str, service: str | None
) -> None:
    assert subjects.answered_by(subject) == service
