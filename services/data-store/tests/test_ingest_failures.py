"""Writes that fail: bounded retries then the quarantine; a full disk waits and resumes.

A real nats-server and the real data-store app; the failures are real too: a dataset
directory that is a file (every write of it fails) and a data directory on a small tmpfs
filled to the last byte (ENOSPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.store import ParquetBarStore, table_from_arrays
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.bar_checks import batch_arrays
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.errors import StorageFull
from ktrdr_shared.messages import (
    BarBatch,
    BarsStored,
    BatchRejected,
    DatasetRepaired,
    JobEvent,
    JobProgress,
    ProgressReason,
    RepairDataset,
    StoreEvent,
)
from ktrdr_shared.testing.events import dispatch_by_hand, read_all
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration

MIN = 60 * 10**9
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC
AAPL, MSFT = "a" * 32, "b" * 32  # the hand-written loads whose segments the batches answer


def minutes(symbol: str, job: str, count: int) -> BarBatch:
    ts = [T0 + i * MIN for i in range(count)]
    prices = [100.0 + i / 100 for i in range(count)]
    return BarBatch(
        symbol=symbol,
        timeframe=Timeframe.M1,
        job_id=job,
        segment_id="s0000",
        start=T0,
        end=T0 + count * MIN,
        ts=ts,
        open=prices,
        high=[p + 1 for p in prices],
        low=[p - 1 for p in prices],
        close=prices,
        volume=[10.0] * count,
    )


async def publish(js: JetStreamContext, b: BarBatch) -> None:
    await js.publish(
        subjects.bars(b.symbol, b.timeframe),
        codec.encode(b, content_type=codec.MSGPACK),
        headers=codec.headers_for(codec.MSGPACK),
    )


async def first_event(
    js: JetStreamContext, subject: str, kind: type, *, match: object = None, timeout_s: float = 60.0
) -> object:
    """Return the first event of ``kind`` on ``subject`` (history included) passing ``match``."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = [
                e
                for e in await read_all(
                    js,
                    subject,
                    JobEvent if subject.startswith("ktrdr.evt.job") else StoreEvent,
                    idle_s=0.2,
                )
                if isinstance(e, kind) and (match is None or match(e))
            ]  # type: ignore[operator]
            if found:
                return found[0]
            await asyncio.sleep(0.2)


def app_settings(nats_url: str, data_dir: Path, **extra: str) -> DataStoreSettings:
    return DataStoreSettings.from_env(
        {"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(data_dir), **extra}
    )


async def test_a_write_that_keeps_failing_is_retried_a_few_times_then_quarantined(
    nats_url: str, js: JetStreamContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await dispatch_by_hand(js, AAPL, "AAPL", Timeframe.M1, T0, T0 + 600 * MIN)
    await dispatch_by_hand(js, MSFT, "MSFT", Timeframe.M1, T0, T0 + 600 * MIN)
    (tmp_path / "bars" / "AAPL").mkdir(parents=True)
    (tmp_path / "bars" / "AAPL" / "1m").write_text("not a directory")  # every write fails
    app = build_app(
        app_settings(
            nats_url, tmp_path, KTRDR_INGEST_RETRY_DELAY_S="0.05", KTRDR_INGEST_WRITE_ATTEMPTS="4"
        )
    )
    caplog.set_level(logging.INFO, logger="ktrdr_data_store.ingest")
    await app.start()
    try:
        await publish(js, minutes("AAPL", AAPL, 30))
        await publish(js, minutes("MSFT", MSFT, 30))
        rejected = await first_event(js, subjects.STORE_EVENTS, BatchRejected)
        stored = await first_event(js, subjects.STORE_EVENTS, BarsStored)
    finally:
        await app.stop()
    assert isinstance(rejected, BatchRejected) and rejected.code == "write_failed"
    assert "in 4 attempts" in rejected.message and "FileExistsError" in rejected.message
    assert rejected.job_id == AAPL and rejected.quarantine_id is not None
    assert [e.id for e in Quarantine.under(tmp_path).list()] == [rejected.quarantine_id]
    assert isinstance(stored, BarsStored) and stored.symbol == "MSFT"  # the others go on
    assert ParquetBarStore(tmp_path).read("MSFT", Timeframe.M1).num_rows == 30
    failures = [
        r for r in caplog.records if r.levelno == logging.ERROR and "AAPL 1m" in r.getMessage()
    ]
    assert len(failures) == 4  # one line per failure, not a flood
    assert sum(r.exc_info is not None for r in failures) == 1  # the traceback once
    assert "attempt 1 of 4" in failures[0].getMessage()
    assert "quarantining" in failures[-1].getMessage()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only; skipped where mounting is refused)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def deliveries(js: JetStreamContext, count: int) -> None:
    """Wait until the ingest consumer has made ``count`` deliveries (redeliveries included)."""
    async with asyncio.timeout(30):
        while True:
            info = await js.consumer_info(streams.BARS.name or "", "data-store-bars")
            if info.delivered is not None and (info.delivered.consumer_seq or 0) >= count:
                return
            await asyncio.sleep(0.05)  # a poll of the condition, not a guess at a duration


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; return it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="No space left"):
        (disk / "probe").write_bytes(b"\0")
    return filler


async def test_a_full_disk_is_storage_full_for_the_load_and_it_resumes_when_freed(
    nats_url: str, js: JetStreamContext, small_disk: Path
) -> None:
    data_dir = small_disk / "data"
    await dispatch_by_hand(js, AAPL, "AAPL", Timeframe.M1, T0, T0 + 6000 * MIN)
    app = build_app(
        app_settings(
            nats_url,
            data_dir,
            KTRDR_INGEST_RETRY_DELAY_S="0.05",
            KTRDR_INGEST_RETRY_MAX_DELAY_S="0.5",
            KTRDR_INGEST_WRITE_ATTEMPTS="2",
        )
    )
    await app.start()
    try:
        filler = fill(small_disk)
        await publish(js, minutes("AAPL", AAPL, 5000))
        waiting = await first_event(
            js,
            subjects.job_events(AAPL),
            JobProgress,
            match=lambda e: e.reason is ProgressReason.STORAGE_FULL,
        )
        assert isinstance(waiting, JobProgress)
        assert f"the data directory {data_dir} has no space left" in waiting.message
        # delivered twice more than the 2 attempts a failing write gets: still waiting, never
        # quarantined (a full disk is no failed write)
        await deliveries(js, 4)
        assert Quarantine.under(data_dir).list() == []
        assert not [p for p in data_dir.rglob("*") if p.name.endswith(".tmp")]  # none half-written
        assert not list((data_dir / "bars").rglob("*.parquet"))
        filler.unlink()
        stored = await first_event(js, subjects.STORE_EVENTS, BarsStored)
    finally:
        await app.stop()
    assert isinstance(stored, BarsStored) and stored.bars_written == 5000
    assert ParquetBarStore(data_dir).read("AAPL", Timeframe.M1).num_rows == 5000


async def test_a_repair_on_a_full_disk_is_storage_full_moves_nothing_and_runs_again(
    nats_url: str, nc: NATS, small_disk: Path
) -> None:
    data_dir = small_disk / "data"
    store, ledger = ParquetBarStore(data_dir), AnsweredLedger(data_dir)
    batch = minutes("AAPL", AAPL, 30)
    store.merge("AAPL", Timeframe.M1, table_from_arrays(batch_arrays(batch)))  # type: ignore[arg-type]
    ledger.add("AAPL", Timeframe.M1, [(batch.start, batch.end)])
    year = data_dir / "bars" / "AAPL" / "1m" / "2024.parquet"
    year.write_bytes(year.read_bytes()[:100])  # torn
    app = build_app(app_settings(nats_url, data_dir))
    await app.start()
    client = KtrdrClient(nc)
    request = RepairDataset(symbol="AAPL", timeframe=Timeframe.M1)
    try:
        filler = fill(small_disk)
        with pytest.raises(StorageFull, match=f"the data directory {data_dir} has no space left"):
            await client.request(subjects.STORE_REPAIR, request, DatasetRepaired)
        assert year.exists() and ledger.ranges("AAPL", Timeframe.M1)  # nothing done by half
        filler.unlink()
        done = await client.request(subjects.STORE_REPAIR, request, DatasetRepaired)
    finally:
        await app.stop()
    assert done.moved == ["bars/AAPL/1m/2024.parquet"] and done.job_id is not None
    assert not year.exists() and ledger.ranges("AAPL", Timeframe.M1) == []
