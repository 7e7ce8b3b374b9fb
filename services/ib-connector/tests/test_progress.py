"""When a running segment says what it is doing (pure decisions of ``progress.py``)."""

from __future__ import annotations

import datetime as dt

import pytest
from ktrdr_ib_connector.fetcher import RequestTally
from ktrdr_ib_connector.progress import Snapshot, due, observe
from ktrdr_ib_connector.segments import SegmentRun
from ktrdr_shared.messages import FetchBars, ProgressReason
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow

pytestmark = pytest.mark.unit

NOW = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)
FETCHING, PACING, LOST = (
    ProgressReason.FETCHING,
    ProgressReason.PACING,
    ProgressReason.IB_DISCONNECTED,
)


def _run(waiting: int = 0, in_flight: int = 0, sent: int = 3) -> SegmentRun:
    command = FetchBars(
        job_id="0" * 32,
        segment_id="s1",
        symbol="AAPL",
        timeframe=Timeframe.S1,
        start=NOW - dt.timedelta(hours=2),
        end=NOW,
        instrument_type=InstrumentType.STK,
        what_to_show=WhatToShow.TRADES,
    )
    return SegmentRun(
        command,
        RequestTally(sent=sent, waiting=waiting, in_flight=in_flight),
        chunks=4,
        chunks_done=1,
        bars=1800,
    )


@pytest.mark.parametrize(
    ("waiting", "in_flight", "next_send_in_s", "lost", "state"),
    [
        (2, 0, 300.0, False, PACING),  # all it has waits for the window
        (2, 1, 300.0, False, FETCHING),  # one is still being answered
        (2, 0, 0.2, False, FETCHING),  # a short wait is part of fetching
        (0, 0, None, False, FETCHING),  # between a retry and its next try
        (2, 0, 300.0, True, LOST),  # IB is gone: nothing else matters
    ],
)  # fmt: skip
def test_observe_names_the_state(
    waiting: int, in_flight: int, next_send_in_s: float | None, lost: bool, state: ProgressReason
) -> None:
    since = NOW - dt.timedelta(seconds=5) if lost else None
    snap = observe(
        _run(waiting, in_flight), lost_since=since, next_send_in_s=next_send_in_s, now=NOW
    )
    assert snap.state is state
    assert snap.counts() == (4, 1, 1800, 3)
    assert snap.until == (NOW + dt.timedelta(seconds=300) if state is PACING else None)
    assert snap.since == since


def _snap(state: ProgressReason, sent: int = 3) -> Snapshot:
    return Snapshot(state, 4, 1, 1800, sent)


@pytest.mark.parametrize(
    ("last", "now", "since_last_s", "age_s", "expected"),
    [
        (None, _snap(FETCHING), 0.0, 0.3, False),  # a small segment: no event at all
        (None, _snap(FETCHING), 0.0, 1.2, True),  # still at it after a second
        (None, _snap(PACING), 0.0, 0.1, True),  # waiting for the window: say so at once
        (_snap(FETCHING), _snap(PACING), 0.1, 5.0, True),  # every change of state
        (_snap(PACING), _snap(LOST), 0.1, 5.0, True),
        (_snap(FETCHING), _snap(FETCHING, sent=4), 0.5, 5.0, False),  # not twice a second
        (_snap(FETCHING), _snap(FETCHING, sent=4), 1.0, 5.0, True),
        (_snap(PACING), _snap(PACING), 30.0, 60.0, False),  # nothing moved
    ],
)  # fmt: skip
def test_due_reports_changes_and_moving_counts_at_most_once_a_second(
    last: Snapshot | None, now: Snapshot, since_last_s: float, age_s: float, expected: bool
) -> None:
    assert due(last, now, since_last_s=since_last_s, age_s=age_s) is expected
