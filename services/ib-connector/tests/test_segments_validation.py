"""A chunk IB answers with bad bars fails its segment (``invalid_bars``) and is not published."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, cast

import pytest
from ib_async import Contract
from ktrdr_ib_connector.chunking import Chunk
from ktrdr_ib_connector.fetcher import Columns, Fetcher
from ktrdr_ib_connector.segments import SegmentRun, run_segment
from ktrdr_shared.messages import FetchBars, SegmentFailed, SegmentFetched
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow, to_unix_nanos

pytestmark = pytest.mark.unit

DAY = 86_400 * 10**9


class OneAnswer:
    """A fetcher that answers every chunk with one daily bar a day, each with ``high``."""

    def __init__(self, high: float) -> None:
        self.high = high

    async def fetch(self, contract: Contract, chunk: Chunk, *args: Any, **kwargs: Any) -> Columns:
        ts = list(range(chunk.start, chunk.end, DAY))
        n = len(ts)
        return Columns(
            ts=ts,
            open=[10.0] * n,
            high=[self.high] * n,
            low=[9.0] * n,
            close=[10.5] * n,
            volume=[1.0] * n,
            wap=None,
            count=None,
        )


def command() -> FetchBars:
    return FetchBars(
        job_id="0" * 32,
        segment_id="s1",
        symbol="AAPL",
        timeframe=Timeframe.D1,
        start=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        end=dt.datetime(2024, 1, 9, tzinfo=dt.UTC),
        instrument_type=InstrumentType.STK,
        what_to_show=WhatToShow.TRADES,
    )


async def run(high: float) -> tuple[SegmentFetched | SegmentFailed, list[str]]:
    published: list[str] = []

    async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        published.append(subject)

    segment = command()
    whole = [(Contract(), to_unix_nanos(segment.start), to_unix_nanos(segment.end))]
    event = await run_segment(SegmentRun(segment), whole, cast(Fetcher, OneAnswer(high)), publish)
    return event, published


@pytest.mark.parametrize("high", [math.inf, math.nan, 1.0])
async def test_bad_bars_from_ib_fail_the_segment_unpublished(high: float) -> None:
    event, published = await run(high)
    assert isinstance(event, SegmentFailed)
    assert event.code == "invalid_bars"
    assert not event.retryable
    assert "AAPL" in event.message and (
        "non_finite" in event.message or "ohlc_order" in event.message
    )
    assert published == []


async def test_good_bars_from_ib_are_published() -> None:
    event, published = await run(11.0)
    assert isinstance(event, SegmentFetched)
    assert published and set(published) == {"ktrdr.bars.AAPL.1d"}
