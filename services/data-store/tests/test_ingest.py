"""Ingest against a real nats-server: durable, idempotent, and it survives bad batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.ledger import AnsweredLedger, merge_ranges
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.messages import BarBatch, StoreEvent
from ktrdr_shared.testing.events import dispatch_by_hand, read_all
from ktrdr_shared.types import Timeframe
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

pytestmark = pytest.mark.integration

MIN = 60 * 10**9
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC


JOB = "a" * 32  # the load whose one segment, [T0, T0 + 300 min), the batches answer


def batch(first: int, count: int, *, end_extra: int = 0) -> BarBatch:
    ts = [T0 + (first + i) * MIN for i in range(count)]
    prices = [100.0 + first + i for i in range(count)]
    return BarBatch(
        symbol="AAPL",
        timeframe=Timeframe.M1,
        job_id=JOB,
        segment_id="s0000",
        start=T0 + first * MIN,
        end=T0 + (first + count + end_extra) * MIN,
        ts=ts,
        open=prices,
        high=[p + 1 for p in prices],
        low=[p - 1 for p in prices],
        close=prices,
        volume=[10.0] * count,
        wap=prices,
        count=[5] * count,
    )


async def publish(js: JetStreamContext, b: BarBatch) -> None:
    await js.publish(
        subjects.bars(b.symbol, b.timeframe),
        codec.encode(b, content_type=codec.MSGPACK),
        headers=codec.headers_for(codec.MSGPACK),
    )


async def drained(js: JetStreamContext) -> ConsumerInfo:
    """Wait until the ingest consumer has settled every message (acked or terminated)."""
    async with asyncio.timeout(30):
        while True:
            info = await js.consumer_info(streams.BARS.name or "", "data-store-bars")
            if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq:
                return info
            await asyncio.sleep(0.05)


async def test_batches_become_durable_bars_once_each(
    nats_url: str, js: JetStreamContext, tmp_path: Path
) -> None:
    await dispatch_by_hand(js, JOB, "AAPL", Timeframe.M1, T0, T0 + 300 * MIN)
    app = build_app(
        DataStoreSettings.from_env({"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(tmp_path)})
    )
    await app.start()
    try:
        await publish(js, batch(0, 30))
        await publish(js, batch(20, 30))  # overlaps the first by 10 bars
        await publish(js, batch(0, 30))  # the same again (a redelivery or re-fetch)
        await publish(js, batch(200, 0, end_extra=60))  # IB answered an empty hour
        await js.publish(
            subjects.bars("AAPL", "1m"), b"\x93garbage", headers=codec.headers_for(codec.MSGPACK)
        )
        await js.publish("ktrdr.bars.AAPL.1m", b'{"symbol": "AAPL", "timeframe": "1m"}')
        await publish(js, batch(50, 10))  # and the consumer keeps going after bad input
        info = await drained(js)
        events = await read_all(js, subjects.STORE_EVENTS, StoreEvent)
    finally:
        await app.stop()
    stored = ParquetBarStore(tmp_path).read("AAPL", Timeframe.M1)
    minutes = [(t - T0) // MIN for t in stored.column("ts").cast("int64").to_pylist()]
    assert minutes == list(range(60))
    rejected = [e for e in events if type(e).__name__ == "BatchRejected"]
    assert len(rejected) == 2
    assert any("missing required field" in e.message for e in rejected)  # type: ignore[attr-defined]
    written = sum(e.bars_written for e in events if type(e).__name__ == "BarsStored")  # type: ignore[attr-defined]
    assert written == 60
    answered = AnsweredLedger(tmp_path).ranges("AAPL", Timeframe.M1)
    assert answered == merge_ranges([(T0, T0 + 60 * MIN), (T0 + 200 * MIN, T0 + 260 * MIN)])
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
