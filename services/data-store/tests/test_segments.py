"""The book of dispatched segments: which bar batches the store may merge."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from ktrdr_data_store.segments import SegmentBook
from ktrdr_shared.messages import BarBatch, JobPlanned, LoadData, PlannedSegment
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow, to_unix_nanos

pytestmark = pytest.mark.unit

JOB = "ab" * 16
START = dt.datetime(2024, 6, 3, tzinfo=dt.UTC)
END = START + dt.timedelta(days=5)
COMMAND = LoadData(job_id=JOB, symbol="brk b", timeframe=Timeframe.D1)
PLANNED = JobPlanned(
    job_id=JOB,
    gaps_analyzed=2,
    cached_before=0,
    segments=[
        PlannedSegment(segment_id="s0000", start=START, end=END),
        PlannedSegment(segment_id="s0001", start=END, end=END + dt.timedelta(days=5)),
    ],
    instrument_type=InstrumentType.STK,
    what_to_show=WhatToShow.TRADES,
)
ANSWER = BarBatch(
    symbol="BRK B",
    timeframe=Timeframe.D1,
    job_id=JOB,
    segment_id="s0000",
    start=to_unix_nanos(START),
    end=to_unix_nanos(END),
    ts=[],
    open=[],
    high=[],
    low=[],
    close=[],
    volume=[],
)


def book() -> SegmentBook:
    segments = SegmentBook()
    segments.record(COMMAND, PLANNED, ["s0000"])  # s0001 is planned, not dispatched
    return segments


@pytest.mark.parametrize(("change", "why"), [
    ({"job_id": None, "segment_id": None}, "names no job and segment"),
    ({"job_id": "cd" * 16}, "is no load this data-store dispatched"),
    ({"segment_id": "s0001"}, "dispatched no segment 's0001'"),
    ({"symbol": "AAPL"}, "is for BRK_B 1d, not AAPL 1d"),
    ({"timeframe": Timeframe.H1}, "not BRK_B 1h"),
    ({"what_to_show": WhatToShow.MIDPOINT}, "shows TRADES, not MIDPOINT"),
    ({"start": to_unix_nanos(START) - 1}, "lies outside segment"),
    ({"end": to_unix_nanos(END) + 1}, "lies outside segment"),
])  # fmt: skip
def test_a_batch_answering_no_dispatched_segment_says_why(
    change: dict[str, object], why: str
) -> None:
    assert why in (book().problem(msgspec.structs.replace(ANSWER, **change)) or "")


def test_a_chunk_inside_its_dispatched_segment_is_an_answer() -> None:
    segments = book()
    assert segments.problem(ANSWER) is None
    inner = msgspec.structs.replace(ANSWER, start=to_unix_nanos(START) + 86_400 * 10**9)
    assert segments.problem(inner) is None
    segments.record(COMMAND, PLANNED, ["s0001"])  # dispatched later
    later = msgspec.structs.replace(
        ANSWER,
        segment_id="s0001",
        start=to_unix_nanos(END),
        end=to_unix_nanos(END) + 86_400 * 10**9,
    )
    assert segments.problem(later) is None


def test_the_oldest_jobs_are_let_go_beyond_the_bound() -> None:
    segments = SegmentBook(max_jobs=2)
    for job in ("a" * 32, "b" * 32, "c" * 32):
        segments.record(COMMAND, msgspec.structs.replace(PLANNED, job_id=job), ["s0000"])
    assert "is no load" in (
        segments.problem(msgspec.structs.replace(ANSWER, job_id="a" * 32)) or ""
    )
    assert segments.problem(msgspec.structs.replace(ANSWER, job_id="c" * 32)) is None
