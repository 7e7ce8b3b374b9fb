"""How the Ingestor writes a backlog in rounds (a merge per dataset each) and live bars at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ktrdr_data_store.ingest import Ingestor
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.messages import BarBatch, BarsStored, BatchRejected
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration

MIN = 60 * 10**9
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC
BARS = 10


def batch(symbol: str, index: int) -> BarBatch:
    first = T0 + index * BARS * MIN
    ts = [first + i * MIN for i in range(BARS)]
    return BarBatch(
        symbol=symbol,
        timeframe=Timeframe.M1,
        start=first,
        end=first + BARS * MIN,
        ts=ts,
        open=[1.0] * BARS,
        high=[2.0] * BARS,
        low=[0.5] * BARS,
        close=[1.5] * BARS,
        volume=[3.0] * BARS,
    )


async def publish(js: JetStreamContext, b: BarBatch) -> None:
    await js.publish(
        subjects.bars(b.symbol, b.timeframe),
        codec.encode(b, content_type=codec.MSGPACK),
        headers=codec.headers_for(codec.MSGPACK),
    )


class Run:
    """An Ingestor running in the background, and the bars_stored events it has published."""

    def __init__(self, nc: NATS, ingestor: Ingestor) -> None:
        self.nc, self.ingestor = nc, ingestor
        self.events: asyncio.Queue[BarsStored] = asyncio.Queue()
        self.stopping = asyncio.Event()

    async def __aenter__(self) -> Run:
        async def collect(msg: Msg) -> None:
            self.events.put_nowait(codec.decode(msg.data, BarsStored))

        self.sub = await self.nc.subscribe(subjects.store_event("bars_stored"), cb=collect)
        self.task = asyncio.create_task(self.ingestor.run(self.stopping))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stopping.set()
        await self.task
        await self.sub.unsubscribe()

    async def events_until(self, bars: int) -> list[BarsStored]:
        """Return the events up to the one that brings the bars written to ``bars``."""
        got: list[BarsStored] = []
        async with asyncio.timeout(30):
            while sum(e.bars_written for e in got) < bars:
                got.append(await self.events.get())
        return got


@pytest.fixture
async def backlog(js: JetStreamContext) -> JetStreamContext:
    """Thirty batches of ten bars for one dataset, in the stream before ingest starts."""
    await streams.ensure_streams(js)
    await streams.ensure_consumers(js, streams.STORE_BARS)
    for i in range(30):
        await publish(js, batch("AAPL", i))
    return js


def ingestor(js: JetStreamContext, tmp_path: Path, **bounds: float) -> Ingestor:
    return Ingestor(
        js=js,
        store=ParquetBarStore(tmp_path),
        ledger=AnsweredLedger(tmp_path),
        quarantine=Quarantine.under(tmp_path),
        batch=5,
        **bounds,
    )  # type: ignore[arg-type]


async def test_a_backlog_is_written_once_it_is_drained(
    backlog: JetStreamContext, nc: NATS, tmp_path: Path
) -> None:
    async with Run(nc, ingestor(backlog, tmp_path, max_delay_s=3600.0)) as run:
        events = await run.events_until(300)
    assert [e.bars_written for e in events] == [300]  # six fetches, one merge
    assert ParquetBarStore(tmp_path).stats("AAPL", Timeframe.M1).rows == 300


async def test_a_backlog_is_written_in_rounds_of_max_rows(
    backlog: JetStreamContext, nc: NATS, tmp_path: Path
) -> None:
    async with Run(nc, ingestor(backlog, tmp_path, max_rows=100, max_delay_s=3600.0)) as run:
        events = await run.events_until(300)
    assert [e.bars_written for e in events] == [100, 100, 100]  # two fetches of 50 bars each


async def test_live_bars_are_written_without_waiting_for_more(
    js: JetStreamContext, nc: NATS, tmp_path: Path
) -> None:
    await streams.ensure_streams(js)
    async with Run(nc, ingestor(js, tmp_path, max_delay_s=3600.0)) as run:
        for i in range(3):  # each alone in the stream: written before the next is published
            await publish(js, batch("MSFT", i))
            assert [e.bars_written for e in await run.events_until(BARS)] == [BARS]
    assert ParquetBarStore(tmp_path).stats("MSFT", Timeframe.M1).rows == 3 * BARS


async def test_bars_in_hand_are_written_when_ingest_stops(
    backlog: JetStreamContext, nc: NATS, tmp_path: Path
) -> None:
    ingest = ingestor(backlog, tmp_path, max_rows=10**9, max_delay_s=3600.0)
    in_hand, decode_all = asyncio.Event(), ingest._decode_all

    async def noting(msgs: list[Msg]) -> list[Any]:
        held = await decode_all(msgs)
        in_hand.set()
        return held

    ingest._decode_all = noting  # type: ignore[method-assign]
    async with Run(nc, ingest):
        await asyncio.wait_for(in_hand.wait(), 30)  # bars are in hand, waiting for more: stop
    info = await backlog.consumer_info(streams.BARS.name or "", streams.STORE_BARS.durable)
    stored = ParquetBarStore(tmp_path).stats("AAPL", Timeframe.M1).rows
    assert info.num_ack_pending == 0
    assert 0 < stored == BARS * (30 - info.num_pending)


async def test_a_batch_that_decodes_but_cannot_be_a_table_is_rejected(
    js: JetStreamContext, nc: NATS, tmp_path: Path
) -> None:
    await streams.ensure_streams(js)
    await streams.ensure_consumers(js, streams.STORE_BARS)
    too_big = msgspec.structs.replace(batch("AAPL", 0), count=[2**63] * BARS)  # past int64
    rejected: asyncio.Queue[BatchRejected] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        rejected.put_nowait(codec.decode(msg.data, BatchRejected))

    sub = await nc.subscribe(subjects.store_event("batch_rejected"), cb=collect)
    await publish(js, too_big)
    await publish(js, batch("AAPL", 1))
    async with Run(nc, ingestor(js, tmp_path)) as run:
        events = await run.events_until(BARS)  # the good batch after it is stored
        event = await asyncio.wait_for(rejected.get(), 30)
    await sub.unsubscribe()
    assert [e.bars_written for e in events] == [BARS]
    assert event.subject == "ktrdr.bars.AAPL.1m" and "int" in event.message
