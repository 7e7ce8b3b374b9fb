"""Subject builders and parsers agree with each other and with the contract."""

from __future__ import annotations

import pytest
from ktrdr_shared import subjects
from ktrdr_shared.messages import BarsStored, IbConnected, JobCompleted
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


def test_job_event_subjects() -> None:
    subject = subjects.job_event(JOB, "completed")
    assert subject == f"ktrdr.evt.job.{JOB}.completed"
    assert subjects.parse_job_event(subject) == (JOB, "completed")
    assert subjects.job_events(JOB) == f"ktrdr.evt.job.{JOB}.>"
    with pytest.raises(subjects.SubjectError):
        subjects.job_event("a.b", "completed")
    with pytest.raises(subjects.SubjectError):
        subjects.parse_job_event("ktrdr.evt.ib.connection.connected")


def test_event_subject_is_derived_from_family_and_tag() -> None:
    assert subjects.event_subject(EXAMPLES[JobCompleted]) == f"ktrdr.evt.job.{JOB}.completed"
    assert subjects.event_subject(EXAMPLES[IbConnected]) == "ktrdr.evt.ib.connection.connected"
    assert subjects.event_subject(EXAMPLES[BarsStored]) == "ktrdr.evt.store.bars_stored"


def test_every_event_subject_falls_inside_the_events_stream() -> None:
    for example in EXAMPLES.values():
        try:
            subject = subjects.event_subject(example)
        except (TypeError, AttributeError):
            continue
        assert subject.startswith("ktrdr.evt.")
