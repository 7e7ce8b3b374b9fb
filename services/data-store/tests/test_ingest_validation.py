"""Ingest refuses batches that would poison the store, and says which check they broke."""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path

import msgspec
import pytest
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.messages import BarBatch, BatchRejected, StoreEvent
from ktrdr_shared.testing.events import read_all
from ktrdr_shared.types import Timeframe
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

pytestmark = pytest.mark.integration

S = 10**9
DAY = 86_400 * S
D0 = 1_704_153_600 * S  # 2024-01-02 00:00 UTC
Y2200 = 7_258_118_400 * S  # 2200-01-01 00:00 UTC


def days(first: int, count: int, *, symbol: str = "AAPL") -> BarBatch:
    prices = [100.0 + first + i for i in range(count)]
    return BarBatch(symbol=symbol, timeframe=Timeframe.D1, start=D0 + first * DAY,
                    end=D0 + (first + count) * DAY,
                    ts=[D0 + (first + i) * DAY for i in range(count)],
                    open=prices, high=[p + 1 for p in prices], low=[p - 1 for p in prices],
                    close=prices, volume=[10.0] * count, wap=prices, count=[5] * count)  # fmt: skip


def with_column(b: BarBatch, name: str, index: int, value: object, **more: object) -> BarBatch:
    column = list(getattr(b, name))
    column[index] = value
    return msgspec.structs.replace(b, **{name: column}, **more)


async def publish(js: JetStreamContext, b: BarBatch, subject: str | None = None) -> None:
    await js.publish(subject or subjects.bars(b.symbol, b.timeframe),
                     codec.encode(b, content_type=codec.MSGPACK),
                     headers=codec.headers_for(codec.MSGPACK))  # fmt: skip


async def drained(js: JetStreamContext) -> ConsumerInfo:
    """Wait until the ingest consumer has settled every message (acked or terminated)."""
    async with asyncio.timeout(30):
        while True:
            info: ConsumerInfo = await js.consumer_info(streams.BARS.name or "", "data-store-bars")
            settled = info.num_pending == 0 and info.num_ack_pending == 0
            if settled and info.delivered is not None and info.delivered.stream_seq:
                return info
            await asyncio.sleep(0.05)


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "bars").rglob("*")) if p.is_file()}  # fmt: skip


# The batches of the issue, each aimed at the good AAPL 1d bars, and the check that stops it.
POISON: list[tuple[BarBatch, str | None, str]] = [
    (with_column(days(0, 5), "high", 2, math.inf), None, "non_finite"),
    (with_column(days(0, 5), "high", 1, 1.0, low=[99.0, 1000.0, 101.0, 102.0, 103.0]), None,
     "ohlc_order"),
    (with_column(days(0, 5), "ts", 4, Y2200, end=Y2200 + DAY), None, "future"),
    (days(0, 5), "ktrdr.bars.MSFT.1w", "subject_mismatch"),
    (with_column(days(0, 5), "ts", 1, D0 + DAY + S // 2), None, "off_grid"),
]  # fmt: skip


async def test_poisoned_batches_are_rejected_and_the_store_is_untouched(
    nats_url: str, js: JetStreamContext, tmp_path: Path
) -> None:
    app = build_app(DataStoreSettings.from_env({"KTRDR_NATS_URL": nats_url,
                                                "KTRDR_DATA_DIR": str(tmp_path)}))  # fmt: skip
    await app.start()
    try:
        await publish(js, days(0, 5))
        await drained(js)
        before = digest(tmp_path)
        for batch, subject, _ in POISON:
            await publish(js, batch, subject)
        await drained(js)
        after_poison = digest(tmp_path)
        await publish(js, days(0, 3, symbol="MSFT"))
        await drained(js)
        events = await read_all(js, subjects.STORE_EVENTS, StoreEvent)
    finally:
        await app.stop()
    assert before and after_poison == before
    store = ParquetBarStore(tmp_path)
    highs = store.read("AAPL", Timeframe.D1).column("high").to_pylist()
    assert highs == [101.0, 102.0, 103.0, 104.0, 105.0]
    assert store.read("MSFT", Timeframe.D1).num_rows == 3
    rejected = [e for e in events if isinstance(e, BatchRejected)]
    assert [e.code for e in rejected] == ["invalid_bars"] * len(POISON)
    for event, (_, subject, check) in zip(rejected, POISON, strict=True):
        assert check in event.message
        assert (subject or "ktrdr.bars.AAPL.1d") in event.message
    # Nothing rejected is dropped: each poison batch is in the quarantine, whole, with its reason.
    quarantine = Quarantine.under(tmp_path)
    kept = {entry.id: entry for entry in quarantine.list()}
    assert len(kept) == len(POISON)
    for event, (batch, subject, check) in zip(rejected, POISON, strict=True):
        assert event.quarantine_id is not None
        entry = kept[event.quarantine_id]
        assert entry.meta.subject == (subject or "ktrdr.bars.AAPL.1d") == event.subject
        assert (entry.meta.code, entry.meta.message) == (event.code, event.message)
        assert check in entry.meta.message
        payload = quarantine.payload(entry.id)
        assert payload is not None and entry.bytes == len(payload)
        assert codec.decode(payload, BarBatch, headers=entry.meta.headers) == batch
