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
from ktrdr_shared.testing.events import dispatch_by_hand, read_all
from ktrdr_shared.types import Timeframe, WhatToShow
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

pytestmark = pytest.mark.integration

S = 10**9
DAY = 86_400 * S
D0 = 1_704_153_600 * S  # 2024-01-02 00:00 UTC
Y2200 = 7_258_118_400 * S  # 2200-01-01 00:00 UTC


def load_of(symbol: str) -> str:
    """Return the job id of the hand-written daily load of ``symbol``."""
    return hashlib.md5(symbol.encode()).hexdigest()


def days(first: int, count: int, *, symbol: str = "AAPL") -> BarBatch:
    """Return daily bars answering the segment ``dispatch`` wrote for ``symbol``."""
    prices = [100.0 + first + i for i in range(count)]
    return BarBatch(
        symbol=symbol,
        timeframe=Timeframe.D1,
        job_id=load_of(symbol),
        segment_id="s0000",
        start=D0 + first * DAY,
        end=D0 + (first + count) * DAY,
        ts=[D0 + (first + i) * DAY for i in range(count)],
        open=prices,
        high=[p + 1 for p in prices],
        low=[p - 1 for p in prices],
        close=prices,
        volume=[10.0] * count,
        wap=prices,
        count=[5] * count,
    )


def with_column(b: BarBatch, name: str, index: int, value: object, **more: object) -> BarBatch:
    column = list(getattr(b, name))
    column[index] = value
    return msgspec.structs.replace(b, **{name: column}, **more)


async def publish(js: JetStreamContext, b: BarBatch, subject: str | None = None) -> None:
    await js.publish(
        subject or subjects.bars(b.symbol, b.timeframe),
        codec.encode(b, content_type=codec.MSGPACK),
        headers=codec.headers_for(codec.MSGPACK),
    )


async def drained(js: JetStreamContext) -> ConsumerInfo:
    """Wait until the ingest consumer has settled every message (acked or terminated)."""
    async with asyncio.timeout(30):
        while True:
            info: ConsumerInfo = await js.consumer_info(streams.BARS.name or "", "data-store-bars")
            settled = info.num_pending == 0 and info.num_ack_pending == 0
            if settled and info.delivered is not None and info.delivered.stream_seq:
                return info
            await asyncio.sleep(0.05)


async def dispatch(js: JetStreamContext, *symbols: str) -> None:
    """Write the events of a daily load per symbol that dispatched [D0 - 10 days, D0 + 100)."""
    for symbol in symbols:
        await dispatch_by_hand(
            js, load_of(symbol), symbol, Timeframe.D1, D0 - 10 * DAY, D0 + 100 * DAY
        )


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("bars", "answered")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


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
    await dispatch(js, "AAPL", "MSFT")
    app = build_app(
        DataStoreSettings.from_env({"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(tmp_path)})
    )
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
    # Nothing rejected is dropped: each poison batch is in the quarantine, whole, with its reason.
    quarantine = Quarantine.under(tmp_path)
    assert len(quarantine.list()) == len(POISON)
    rejected = rejections(events, quarantine)
    assert len(rejected) == len(POISON)
    for batch, subject, check in POISON:
        event = rejected[(subject or "ktrdr.bars.AAPL.1d", encoded(batch))]
        assert event.code == "invalid_bars"
        assert check in event.message and event.subject in event.message
        entry = quarantine.get(event.quarantine_id or "")
        assert entry is not None and entry.meta.subject == event.subject
        assert (entry.meta.code, entry.meta.message) == (event.code, event.message)


def encoded(batch: BarBatch) -> bytes:
    return codec.encode(batch, content_type=codec.MSGPACK)


def rejections(
    events: list[StoreEvent], quarantine: Quarantine
) -> dict[tuple[str, bytes], BatchRejected]:
    """Return each ``batch_rejected`` by its subject and the batch it quarantined (re-encoded)."""
    found = {}
    for event in events:
        if isinstance(event, BatchRejected):
            assert event.quarantine_id is not None
            entry = quarantine.get(event.quarantine_id)
            payload = quarantine.payload(event.quarantine_id)
            assert entry is not None and payload is not None and entry.bytes == len(payload)
            batch = codec.decode(payload, BarBatch, headers=entry.meta.headers)
            found[(event.subject, encoded(batch))] = event
    return found


Y1980, Y2024 = 315_532_800 * S, 1_704_067_200 * S
# Batches that pass every bar check but answer no segment the data-store dispatched.
UNDISPATCHED: list[tuple[BarBatch, str]] = [
    # the symptom 4: "IB answered 1980-2024", claimed by nobody's load
    (BarBatch(symbol="AAPL", timeframe=Timeframe.D1, start=Y1980, end=Y2024, ts=[], open=[],
              high=[], low=[], close=[], volume=[]), "names no job and segment"),
    (msgspec.structs.replace(days(0, 5), job_id="0" * 32), "is no load"),
    (msgspec.structs.replace(days(0, 5), segment_id="s0001"), "dispatched no segment 's0001'"),
    (days(200, 3), "lies outside segment"),
    (msgspec.structs.replace(days(0, 5), symbol="ZZZZ"), "is for AAPL 1d, not ZZZZ 1d"),
    (msgspec.structs.replace(days(0, 5), what_to_show=WhatToShow.BID_ASK), "not BID_ASK"),
]  # fmt: skip


async def test_bars_answering_no_dispatched_segment_are_quarantined_not_merged(
    nats_url: str, js: JetStreamContext, tmp_path: Path
) -> None:
    await dispatch(js, "AAPL")
    await publish(js, days(0, 5))  # before the store is up: it waits for the log's replay
    app = build_app(
        DataStoreSettings.from_env({"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(tmp_path)})
    )
    await app.start()
    try:
        await drained(js)
        before = digest(tmp_path)
        for batch, _ in UNDISPATCHED:
            await publish(js, batch)
        await drained(js)
        events = await read_all(js, subjects.STORE_EVENTS, StoreEvent)
    finally:
        await app.stop()
    assert ParquetBarStore(tmp_path).read("AAPL", Timeframe.D1).num_rows == 5
    assert digest(tmp_path) == before  # bars and answered ledger alike
    assert not (tmp_path / "bars" / "ZZZZ").exists()  # a symbol never loaded gets no dataset
    quarantine = Quarantine.under(tmp_path)
    rejected = rejections(events, quarantine)
    assert len(rejected) == len(UNDISPATCHED) == len(quarantine.list())
    for batch, why in UNDISPATCHED:
        event = rejected[(subjects.bars(batch.symbol, batch.timeframe), encoded(batch))]
        assert event.code == "unknown_segment"
        assert why in event.message
