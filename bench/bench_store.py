"""data-store benchmarks against a real nats-server and real Parquet files.

1. Durable ingest: bar batches over 100 partitions (symbols) published to ``KTRDR_BARS``,
   consumed by the real ``Ingestor`` into a ``ParquetBarStore`` (merged, fsynced, renamed, then
   acked), in bars/s until the last ``bars_stored`` event; the baseline is a raw JetStream pull
   consumer that decodes (``codec.decode``) and acks the same messages, in the same run on the
   same server. Target: ingest >= 0.5 of the raw rate.
2. Query: one day of 1-minute bars through ``ktrdr.store.query`` (the data-store app running
   in-process, the client decoding the reply) against pyarrow reading the same day straight
   from its year file with a filter, median of repeated requests (target <= 3x); and the same
   query on a dataset of 100 k rows against one of 10 M rows (1 M in quick mode) (target <=
   1.5x growth).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.ingest import Ingestor
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.store import SCHEMA, ParquetBarStore, year_of
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import BarBatch, BarsPage, BarsStored, QueryBars, QueryFormat
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.types import Timeframe, to_unix_nanos
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

MIN_NS = 60 * 10**9
T0 = to_unix_nanos(datetime(2024, 1, 2, tzinfo=UTC))
PARTITIONS = 100
BARS_PER_MESSAGE = 500  # about what one connector chunk of 1-minute bars holds
FETCH = 500  # messages per fetch, for both consumers (the Ingestor's default)


def _batch(symbol: str, first: int, count: int) -> BarBatch:
    ts = [T0 + (first + i) * MIN_NS for i in range(count)]
    close = [100.0 + (i % 97) * 0.01 for i in range(count)]
    return BarBatch(
        symbol=symbol,
        timeframe=Timeframe.M1,
        start=ts[0],
        end=ts[-1] + MIN_NS,
        ts=ts,
        open=close,
        high=[c + 0.05 for c in close],
        low=[c - 0.05 for c in close],
        close=close,
        volume=[float(1000 + i % 500) for i in range(count)],
        wap=close,
        count=[10 + i % 50 for i in range(count)],
    )


async def _publish_all(nc: NATS, per_partition: int) -> tuple[int, int]:
    """Publish ``per_partition`` messages to each partition, interleaved as a multi-symbol load."""
    js = nc.jetstream()
    headers = codec.headers_for(codec.MSGPACK)
    messages = bars = 0
    for k in range(per_partition):
        acks = []
        for p in range(PARTITIONS):
            batch = _batch(f"S{p:03d}", k * BARS_PER_MESSAGE, BARS_PER_MESSAGE)
            data = codec.encode(batch, content_type=codec.MSGPACK)
            subject = subjects.bars(batch.symbol, batch.timeframe)
            acks.append(js.publish(subject, data, headers=headers))
            messages, bars = messages + 1, bars + len(batch)
        await asyncio.gather(*acks)
    return messages, bars


async def _raw_consume(nc: NATS, messages: int) -> float:
    """Return seconds to pull, decode and ack ``messages`` bar batches with a bare consumer."""
    js = nc.jetstream()
    name = f"bench-raw-{time.monotonic_ns()}"
    config = ConsumerConfig(
        durable_name=name,
        filter_subject=subjects.BARS_ALL,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        max_ack_pending=20_000,
    )
    await js.add_consumer(streams.BARS.name or "", config)
    sub = await js.pull_subscribe_bind(name, stream=streams.BARS.name or "")
    seen = 0
    started = time.perf_counter()
    while seen < messages:
        for msg in await sub.fetch(FETCH, timeout=5):
            codec.decode(msg.data, BarBatch, subject=msg.subject, headers=msg.headers)
            await msg.ack()
            seen += 1
    await nc.flush()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await js.delete_consumer(streams.BARS.name or "", name)
    return elapsed


async def _ingest(nc: NATS, data_dir: Path, bars: int, *, validate: bool = True) -> float:
    """Return seconds for the real Ingestor to make ``bars`` bars durable and ack them."""
    js = nc.jetstream()
    await streams.ensure_consumers(js, streams.STORE_BARS)
    written, done = 0, asyncio.Event()

    async def count(msg: Any) -> None:
        nonlocal written
        event = codec.decode(msg.data, BarsStored)
        written += event.bars_written
        if written >= bars:
            done.set()

    sub = await nc.subscribe(subjects.store_event("bars_stored"), cb=count)
    store = ParquetBarStore(data_dir)
    ingestor = Ingestor(
        js=js,
        store=store,
        ledger=AnsweredLedger(data_dir),
        quarantine=Quarantine.under(data_dir),
        batch=FETCH,
        validate=validate,
    )
    stopping = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(ingestor.run(stopping))
    await asyncio.wait_for(done.wait(), timeout=1800)
    elapsed = time.perf_counter() - started  # acks precede each group's bars_stored event
    stopping.set()
    await task
    await sub.unsubscribe()
    stored = sum(d.rows for d in store.datasets())
    if stored != bars:
        raise RuntimeError(f"ingest stored {stored} bars, expected {bars}")
    await js.delete_consumer(streams.BARS.name or "", streams.STORE_BARS.durable)  # next round
    return elapsed


async def _ingest_rate(url: str, data_dir: Path, per_partition: int, rounds: int) -> dict[str, Any]:
    """Publish once; time both consumers ``rounds`` times, alternating; keep each one's best."""
    nc = await nats.connect(url, max_reconnect_attempts=0)
    raw_times, ingest_times, unchecked_times = [], [], []
    try:
        await streams.ensure_streams(nc.jetstream())
        messages, bars = await _publish_all(nc, per_partition)
        for i in range(rounds):  # alternate all three, so drifts in the machine's load hit each
            raw_times.append(await _raw_consume(nc, messages))
            # checked and unchecked swap places every round: the second of two ingests in a
            # row runs measurably faster, which would otherwise be counted as validation cost
            for validate in (True, False) if i % 2 == 0 else (False, True):
                times = ingest_times if validate else unchecked_times
                times.append(
                    await _ingest(nc, data_dir / f"round-{i}-{validate}", bars, validate=validate)
                )
    finally:
        await nc.close()
    raw_s, ingest_s = min(raw_times), min(ingest_times)
    raw_rate, rate = bars / raw_s, bars / ingest_s
    unchecked_ratio = bars / min(unchecked_times) / raw_rate
    return {
        "name": "store.durable_ingest_bars_per_s",
        "value": rate,
        "baseline": raw_rate,
        "ratio": rate / raw_rate,
        "unit": "bars/s",
        "target": ">= 0.5",
        "baseline_name": "raw JetStream pull + codec.decode + ack, same messages",
        "bars": bars,
        "messages": messages,
        "partitions": PARTITIONS,
        "bars_per_message": BARS_PER_MESSAGE,
        "rounds": rounds,
        "kept": "each side's best",
        "ingest_s": [round(t, 3) for t in ingest_times],
        "raw_s": [round(t, 3) for t in raw_times],
        "unchecked_s": [round(t, 3) for t in unchecked_times],
        "ratio_without_validation": unchecked_ratio,
        "validation_cost": unchecked_ratio - rate / raw_rate,  # target <= 0.02
        "store_at_start": "empty (each merge rewrites only this run's bars)",
    }


def _write_minutes(store: ParquetBarStore, symbol: str, end_ns: int, rows: int) -> None:
    """Store ``rows`` consecutive 1-minute bars ending at ``end_ns``, a year file at a time."""
    ts = end_ns - np.arange(rows, 0, -1, dtype=np.int64) * MIN_NS
    years = year_of(ts)
    for year in np.unique(years):
        part = ts[years == year]
        close = 100.0 + (part // MIN_NS % 997) * 0.01
        table = pa.table(
            {
                "ts": pa.array(part, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                "open": close,
                "high": close + 0.05,
                "low": close - 0.05,
                "close": close,
                "volume": np.full(len(part), 100.0),
                "wap": close,
                "count": np.full(len(part), 7, dtype=np.int64),
            },
            schema=SCHEMA,
        )
        store.merge(symbol, Timeframe.M1, table)


async def _medians_s(
    calls: dict[Any, Callable[[], Awaitable[Any]]], repeats: int
) -> dict[Any, float]:
    """Return each call's median seconds, the calls interleaved so that load drifts hit all."""
    for call in calls.values():  # warm caches and connections
        for _ in range(3):
            await call()
    times: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            started = time.perf_counter()
            await call()
            times[key].append(time.perf_counter() - started)
    return {key: statistics.median(t) for key, t in times.items()}


async def _query(url: str, data_dir: Path, large_rows: int, repeats: int) -> list[dict[str, Any]]:
    # The day lies in a full year file of the large dataset (525,600 rows), the layout's worst
    # case, and in the small dataset's only file (100 k rows).
    store = ParquetBarStore(data_dir)
    _write_minutes(store, "SMALL", to_unix_nanos(datetime(2023, 7, 1, tzinfo=UTC)), 100_000)
    _write_minutes(store, "LARGE", to_unix_nanos(datetime(2024, 7, 1, tzinfo=UTC)), large_rows)
    day = datetime(2023, 6, 12, tzinfo=UTC)
    lo, hi = to_unix_nanos(day), to_unix_nanos(day + timedelta(days=1))
    settings = DataStoreSettings.from_env(
        {"KTRDR_NATS_URL": url, "KTRDR_DATA_DIR": str(data_dir), "KTRDR_LOG_LEVEL": "WARNING"}
    )
    nc = await nats.connect(url, max_reconnect_attempts=0)
    # the ingest benchmark's batches (no load dispatched them) would otherwise be ingested,
    # i.e. quarantined one by one, by this app while the queries are timed
    await nc.jetstream().purge_stream(streams.BARS.name or "")
    app = build_app(settings)
    await app.start()
    client = KtrdrClient(nc)
    calls: dict[tuple[str, str], Callable[[], Awaitable[Any]]] = {}
    try:
        for symbol in ("SMALL", "LARGE"):
            json_q = QueryBars(
                symbol=symbol, timeframe=Timeframe.M1, start=day, end=day + timedelta(days=1)
            )
            arrow_q = QueryBars(
                symbol=symbol,
                timeframe=Timeframe.M1,
                start=day,
                end=day + timedelta(days=1),
                format=QueryFormat.ARROW,
            )
            path = store.dataset_dir(symbol, Timeframe.M1) / "2023.parquet"
            filters = [
                ("ts", ">=", pa.scalar(lo, pa.timestamp("ns", tz="UTC"))),
                ("ts", "<", pa.scalar(hi, pa.timestamp("ns", tz="UTC"))),
            ]

            async def by_json(q: QueryBars = json_q) -> None:
                page = await client.request(subjects.STORE_QUERY, q, BarsPage)
                assert len(page.ts) == 1440 and page.next_cursor is None

            async def by_arrow(q: QueryBars = arrow_q) -> None:
                reply = await nc.request(subjects.STORE_QUERY, codec.encode(q), timeout=10)
                assert pa.ipc.open_stream(reply.data).read_all().num_rows == 1440

            async def direct(p: Path = path, f: list[Any] = filters) -> None:
                assert pq.read_table(p, schema=SCHEMA, filters=f).num_rows == 1440

            calls[symbol, "json"], calls[symbol, "arrow"] = by_json, by_arrow
            calls[symbol, "pyarrow"] = direct
        timings = await _medians_s(calls, repeats)
    finally:
        await nc.close()
        await app.stop()
    file_rows = {
        s: pq.ParquetFile(store.dataset_dir(s, Timeframe.M1) / "2023.parquet").metadata.num_rows
        for s in ("SMALL", "LARGE")
    }
    ms = {k: v * 1000 for k, v in timings.items()}
    common = {"unit": "ms", "rows_returned": 1440, "repeats": repeats, "year_file_rows": file_rows}
    return [
        {
            "name": "store.query_day_1m_json_vs_pyarrow",
            "value": ms["LARGE", "json"],
            "baseline": ms["LARGE", "pyarrow"],
            "ratio": ms["LARGE", "json"] / ms["LARGE", "pyarrow"],
            "target": "<= 3",
            "baseline_name": "pq.read_table of the year file with a ts filter",
            "stored_rows": large_rows,
            **common,
        },
        {
            "name": "store.query_day_1m_arrow_vs_pyarrow",
            "value": ms["LARGE", "arrow"],
            "baseline": ms["LARGE", "pyarrow"],
            "ratio": ms["LARGE", "arrow"] / ms["LARGE", "pyarrow"],
            "target": "<= 3",
            "baseline_name": "pq.read_table of the year file with a ts filter",
            "stored_rows": large_rows,
            **common,
        },
        {
            "name": f"store.query_day_1m_growth_100k_to_{_size(large_rows)}",
            "value": ms["LARGE", "json"],
            "baseline": ms["SMALL", "json"],
            "ratio": ms["LARGE", "json"] / ms["SMALL", "json"],
            "target": "<= 1.5",
            "baseline_name": "the same query on a 100 k-row dataset",
            "stored_rows": large_rows,
            **common,
        },
    ]


def _size(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1000}k"


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the ingest and query benchmarks against a fresh nats-server and temporary stores.

    Quick mode: 250 k bars ingested (5 messages of 500 per partition) and a 1 M-row large dataset;
    full mode: 1 M bars (20 messages per partition) and 10 M rows.
    """
    per_partition, rounds = (5, 2) if quick else (20, 4)
    large_rows, repeats = (1_000_000, 30) if quick else (10_000_000, 100)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        server = NatsServer(store_dir=Path(tmp) / "js")
        server.start()
        try:
            ingest = asyncio.run(
                _ingest_rate(server.url, Path(tmp) / "ingest", per_partition, rounds)
            )
            ingest["quick"] = quick
            query = asyncio.run(_query(server.url, Path(tmp) / "query", large_rows, repeats))
        finally:
            server.stop()
    return [ingest, *({**q, "quick": quick} for q in query)]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
