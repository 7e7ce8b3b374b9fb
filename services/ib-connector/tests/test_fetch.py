"""Fetching through the real connector, nats-server, simulator and unmodified ib_async.

The union of stored batches must equal the simulator's ground truth for the
range: none missing at chunk edges, none twice.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from ktrdr_ib_connector.chunking import BAR_SIZE
from ktrdr_ib_connector.memory import segment_command
from ktrdr_ib_sim import IBGatewaySimulator, expected_bars
from ktrdr_ib_sim.catalogue import es_expiries
from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import SegmentFailed, SegmentFetched
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import read_all, wait_for_job_event
from ktrdr_shared.types import InstrumentType, Timeframe, default_what_to_show
from nats.js import JetStreamContext

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UTC = dt.UTC
DAY = dt.timedelta(days=1)

# Ranges sized so every timeframe needs several chunks yet the suite stays quick.
SPANS = {
    Timeframe.S1: dt.timedelta(hours=1), Timeframe.S5: dt.timedelta(hours=3),
    Timeframe.S15: dt.timedelta(hours=8), Timeframe.S30: dt.timedelta(days=1),
    Timeframe.M1: dt.timedelta(days=9), Timeframe.M5: dt.timedelta(days=40),
    Timeframe.M15: dt.timedelta(days=100), Timeframe.M30: dt.timedelta(days=200),
    Timeframe.H1: dt.timedelta(days=400), Timeframe.H4: dt.timedelta(days=400),
    Timeframe.D1: dt.timedelta(days=1500), Timeframe.W1: dt.timedelta(days=3000),
}  # fmt: skip
INSTRUMENTS = [
    ("AAPL", InstrumentType.STK),
    ("EURUSD", InstrumentType.CASH),
    ("ES", InstrumentType.FUT),
]


def _expected_ts(
    symbol: str,
    kind: InstrumentType,
    tf: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
) -> list[int]:
    if kind is InstrumentType.FUT:  # each side of a roll from the contract then the front month
        ends = [
            dt.datetime(e.year, e.month, e.day, tzinfo=UTC) + DAY
            for e in es_expiries(now.date(), "live")
        ]
        stamps, at = [], start
        for stop, expiry in zip(ends, es_expiries(now.date(), "live"), strict=True):
            if stop <= at:
                continue
            month = f"{expiry.year}{expiry.month:02d}"
            stamps += _contract_ts(symbol, kind, tf, at, min(stop, end), now, month)
            at = min(stop, end)
            if at >= end:
                break
        return stamps
    return _contract_ts(symbol, kind, tf, start, end, now, "")


def _contract_ts(
    symbol: str,
    kind: InstrumentType,
    tf: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    month: str,
) -> list[int]:
    lead = dt.timedelta(days=10) if not tf.is_intraday else dt.timedelta(0)
    frame = expected_bars(
        symbol,
        kind.value,
        BAR_SIZE[tf],
        default_what_to_show(kind).value,
        False,
        start - lead,
        end + lead,
        now_utc=now,
        contract_month=month,
    )
    if tf.is_intraday:
        stamps = pd.to_datetime(frame["start_utc"])
    else:
        stamps = pd.to_datetime(frame["date"].astype(str)).dt.tz_localize("UTC")
    ns = [int(t.value) for t in stamps]
    lo, hi = int(pd.Timestamp(start).value), int(pd.Timestamp(end).value)
    return sorted(t for t in ns if lo <= t < hi)


async def _fetch(
    js: JetStreamContext,
    symbol: str,
    kind: InstrumentType,
    tf: Timeframe,
    start: dt.datetime,
    end: dt.datetime,
) -> SegmentFetched | SegmentFailed:
    command = segment_command(symbol, tf, start, end, kind=kind)
    await js.publish(subjects.CMD_IB_FETCH, codec.encode(command))
    event = await wait_for_job_event(js, command.job_id, {"segment_fetched", "segment_failed"})
    assert isinstance(event, SegmentFetched | SegmentFailed)
    return event


@pytest.mark.parametrize(("symbol", "kind"), INSTRUMENTS, ids=[i[0] for i in INSTRUMENTS])
async def test_every_timeframe_stores_exactly_the_gateways_bars(
    ready: ServiceApp,
    js: JetStreamContext,
    sim: IBGatewaySimulator,
    sim_now: dt.datetime,
    symbol: str,
    kind: InstrumentType,
) -> None:
    end = dt.datetime(2024, 6, 26, 0, 0, tzinfo=UTC)
    for tf in Timeframe:
        start = end - SPANS[tf]
        event = await _fetch(js, symbol, kind, tf, start, end)
        assert isinstance(event, SegmentFetched), f"{symbol} {tf}: {event}"
        batches = await read_all(js, subjects.bars(symbol, tf))
        got = [t for b in batches for t in b.ts]
        assert len(got) == len(set(got)), f"{symbol} {tf}: a bar was stored twice"
        assert sorted(got) == _expected_ts(symbol, kind, tf, start, end, sim_now), f"{symbol} {tf}"
        assert len(got) > 0
        assert event.bars == len(got)
        assert event.chunks == len({b.chunk_index for b in batches})
    assert sim.counters()["pacing_violations"] == 0
