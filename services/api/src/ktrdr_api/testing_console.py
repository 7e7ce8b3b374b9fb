"""The whole system for the console's browser tests and bench, and a store to show in it.

``run_console_stack`` starts a nats-server and, as processes through the launcher
(``ktrdr_shared.testing.stack.Stack``), the IB Gateway simulator, the ib-connector, the
data-store, the trainer and the api gateway, optionally with an API key; the console is
then served at ``api_url``. ``seed_datasets`` writes small datasets through the data-store's
own writer (``ParquetBarStore.merge``), and ``seed_jobs`` publishes finished jobs' real
event sequences (accepted, planned, progress, completed) to the event log, so a page has
many rows to draw.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats
import numpy as np
from ktrdr_data_store.store import ParquetBarStore, table_from_arrays
from ktrdr_shared import streams
from ktrdr_shared.messages import (
    EpochCompleted,
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobKind,
    JobPlanned,
    JobProgress,
    LoadData,
    LoadResult,
    PlannedSegment,
    SegmentFetched,
    StartTraining,
    TrainingResult,
)
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import SERVICES, Stack
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

# A key strong enough for any bind address (``config.check_exposure``), sent by the console
# tests of the keyed stack as ``X-API-Key``.
CONSOLE_API_KEY = "console-test-key-4f9c2b7e1a8d3c6f5e0b9a7d"
API_KEY_HEADER = "X-API-Key"
SEED_END = datetime(2024, 6, 28, 20, 0, tzinfo=UTC)  # the simulator's last session's close
SEED_TIMEFRAMES = (Timeframe.H1, Timeframe.D1, Timeframe.M5, Timeframe.M15)
PUBLISHING_JOBS = 64  # jobs whose events are in flight at once while seeding


@dataclass
class ConsoleStack:
    """A running system: its nats-server, the launcher's processes and a client of NATS."""

    server: NatsServer
    stack: Stack
    nc: NATS
    api_key: str | None = None

    @property
    def api_url(self) -> str:
        """Return the gateway's base URL (the console is served at ``/``)."""
        return self.stack.api_url

    @property
    def data_dir(self) -> Path:
        """Return the data directory every service shares."""
        return self.stack.data_dir

    @property
    def js(self) -> JetStreamContext:
        """Return the JetStream context of ``nc``."""
        return self.nc.jetstream()

    @property
    def headers(self) -> dict[str, str]:
        """Return the headers an HTTP client sends to pass the key (none without one)."""
        return {API_KEY_HEADER: self.api_key} if self.api_key else {}


@contextlib.asynccontextmanager
async def run_console_stack(
    root: Path,
    *,
    api_key: str | None = None,
    datasets: int = 0,
    jobs: int = 0,
    timeout_s: float = 120.0,
) -> AsyncIterator[ConsoleStack]:
    """Start nats-server, the simulator and the four services under ``root``; stop them after.

    Args:
        root: where the JetStream store, the data directory and the logs go.
        api_key: the gateway's ``KTRDR_API_KEY`` (None: no key).
        datasets: datasets written to the store before the services start (``seed_datasets``).
        jobs: finished jobs published to the event log before they start (``seed_jobs``).
        timeout_s: how long the services may take to answer ``$SRV.PING`` (api: ``/health``).
    """
    server = NatsServer(store_dir=root / "jetstream")
    server.start()
    env = {
        "KTRDR_LOG_LEVEL": "WARNING",
        # a test machine under load: a service may take longer than production's 5 s
        "KTRDR_API_REQUEST_TIMEOUT_S": "30",
        **({"KTRDR_API_KEY": api_key} if api_key else {}),
    }
    stack = Stack(server.url, root, services=SERVICES, extra_env=env)
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        seed_datasets(stack.data_dir, datasets)
        if jobs:
            await seed_jobs(nc.jetstream(), jobs)
        await stack.up(nc, timeout_s=timeout_s)
        yield ConsoleStack(server, stack, nc, api_key)
    finally:
        stack.down()
        await nc.close()
        server.stop()


# -- a store to show ------------------------------------------------------------------------


def seed_symbols(count: int) -> list[tuple[str, Timeframe]]:
    """Return the (symbol, timeframe) of ``count`` seeded datasets; the first is 1-hour bars."""
    return [(f"SEED{i:03d}", SEED_TIMEFRAMES[i % len(SEED_TIMEFRAMES)]) for i in range(count)]


def seed_datasets(data_dir: Path, count: int, bars: int = 500, seed: int = 18) -> None:
    """Write ``count`` datasets of ``bars`` bars each (a random walk ending at ``SEED_END``)."""
    store = ParquetBarStore(data_dir)
    rng = np.random.default_rng(seed)
    for symbol, timeframe in seed_symbols(count):
        store.merge(symbol, timeframe, table_from_arrays(_walk(rng, timeframe, bars)))


def _walk(rng: np.random.Generator, timeframe: Timeframe, bars: int) -> dict[str, np.ndarray]:
    """Return ``bars`` consecutive bars of a random walk, as the store's columns."""
    end_ns = int(SEED_END.timestamp()) * 10**9
    ts = end_ns - timeframe.nanos * np.arange(bars, 0, -1, dtype=np.int64)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, bars)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    spread = np.abs(rng.normal(0.0, 0.002, bars)) * close
    return {
        "ts": ts,
        "open": open_,
        "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread,
        "close": close,
        "volume": rng.integers(100, 10_000, bars).astype(np.float64),
    }


async def seed_jobs(js: JetStreamContext, count: int, *, training_every: int = 10) -> list[str]:
    """Publish ``count`` finished jobs' events (every ``training_every``-th a training run).

    Each job's events go in order, many jobs at once; the jobs ended a minute apart, the
    last one at ``SEED_END``. Returns the job ids, oldest first.
    """
    await streams.ensure_streams(js)
    job_ids = [f"{i:032x}" for i in range(1, count + 1)]
    gate = asyncio.Semaphore(PUBLISHING_JOBS)

    async def publish(i: int, job_id: str) -> None:
        ended = SEED_END - timedelta(minutes=count - 1 - i)
        training = training_every > 0 and i % training_every == training_every - 1
        kind = JobKind.TRAINING if training else JobKind.DATA_LOAD
        events = training_run_events(job_id, ended) if training else load_events(job_id, ended)
        async with gate:
            for event in events:
                await publish_event(js, event, kind=kind)

    await asyncio.gather(*(publish(i, job_id) for i, job_id in enumerate(job_ids)))
    return job_ids


def load_events(job_id: str, ended: datetime, segments: int = 2) -> list[JobEvent]:
    """Return a finished data load's events: accepted, planned, a progress per segment,
    completed (the load ran for ``segments`` + 1 seconds before ``ended``)."""
    began = ended - timedelta(seconds=segments + 1)
    symbol = f"SEED{int(job_id, 16) % 100:03d}"
    command = LoadData(job_id=job_id, symbol=symbol, timeframe=Timeframe.H1)
    planned = [
        PlannedSegment(
            segment_id=f"s{i}", start=ended - timedelta(days=i + 1), end=ended - timedelta(days=i)
        )
        for i in range(segments)
    ]
    events: list[JobEvent] = [
        JobAccepted(
            job_id=job_id, ts=began, kind=JobKind.DATA_LOAD, params=msgspec.to_builtins(command)
        ),
        JobPlanned(
            job_id=job_id,
            ts=began,
            gaps_analyzed=segments,
            cached_before=0,
            segments=planned,
            start=planned[-1].start,
            end=ended,
        ),
    ]
    for i, segment in enumerate(planned, start=1):
        at = began + timedelta(seconds=i)
        events.append(
            SegmentFetched(
                job_id=job_id,
                ts=at,
                segment_id=segment.segment_id,
                chunks=1,
                bars=24,
                ib_requests=1,
            )
        )
        events.append(JobProgress(job_id=job_id, ts=at, done=i, total=segments, unit="segments"))
    result = LoadResult(
        fetched_bars=24 * segments,
        cached_before=0,
        gaps_analyzed=segments,
        segments_fetched=segments,
        ib_requests_made=segments,
    )
    events.append(JobCompleted(job_id=job_id, ts=ended, result=result))
    return events


def training_run_events(job_id: str, ended: datetime, epochs: int = 3) -> list[JobEvent]:
    """Return a finished training run's events: accepted, a progress and an epoch each epoch,
    completed."""
    began = ended - timedelta(seconds=epochs + 1)
    command = StartTraining(job_id=job_id, symbols=["SEED000"], timeframe=Timeframe.H1)
    events: list[JobEvent] = [
        JobAccepted(
            job_id=job_id, ts=began, kind=JobKind.TRAINING, params=msgspec.to_builtins(command)
        )
    ]
    for epoch in range(1, epochs + 1):
        at = began + timedelta(seconds=epoch)
        events.append(JobProgress(job_id=job_id, ts=at, done=epoch, total=epochs, unit="epochs"))
        events.append(
            EpochCompleted(
                job_id=job_id,
                ts=at,
                epoch=epoch,
                epochs=epochs,
                train_loss=1.0 / epoch,
                val_loss=1.1 / epoch,
                val_accuracy=0.4 + 0.05 * epoch,
                samples_per_s=10_000.0,
                device="cpu",
            )
        )
    result = TrainingResult(
        model_id=f"m-{job_id[-8:]}", device="cpu", metrics={"accuracy": 0.55, "f1_macro": 0.5}
    )
    events.append(JobCompleted(job_id=job_id, ts=ended, result=result))
    return events
