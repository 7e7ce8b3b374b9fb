"""A pool of gateways: the same loads through three gateways against one, in the same run.

Each side runs on a fresh stack of real processes (a nats-server, TWS-protocol simulators at
time scale 0.2, one ib-connector per simulator, one data-store): first one gateway, then
three. Both are warmed alike (a daily load of every symbol: contracts resolved, calendars
built), then every symbol's year of 1-minute bars (regular hours, 53 weekly IB requests each)
is loaded at once. The figure is the time from the first ``LoadData`` to the last
``completed`` with three gateways, divided by the same with one.
Target: <= 0.4.

At this scale one weekly request takes the simulator 0.65 s (300 ms + 1.5 ms a bar, IB time),
so IB's answer time, not the machine, is what the pool multiplies. Every connector takes two
segments at a time (``KTRDR_IB_SEGMENTS_IN_FLIGHT=2``) on both sides, so a free one always
finds pieces left in the queue. Each side also reports what the issue asks to see: every
simulator's pacing violations (must be 0) and the rows stored against the simulators' bars.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pandas as pd
import pyarrow.parquet as pq
from ktrdr_ib_connector.testing import NOW
from ktrdr_ib_sim import expected_bars
from ktrdr_shared import streams
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.stack import free_port
from ktrdr_shared.store.bars import dataset_dir
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import Stack
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS

SYMBOLS = ("AAPL", "MSFT", "SPY", "BRK B")
START, END = datetime(2023, 6, 28, tzinfo=UTC), datetime(2024, 6, 28, tzinfo=UTC)
QUICK = (("AAPL", "MSFT"), datetime(2024, 3, 28, tzinfo=UTC))  # two symbols, one quarter
TIME_SCALE = 0.2
IN_FLIGHT = "2"
TIMEOUT_S = 900.0
TERMINAL = {"completed", "failed", "cancelled"}


async def _sim_ledger(control_port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", control_port)
    writer.write(b"GET /ledger HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    return dict(json.loads(raw.partition(b"\r\n\r\n")[2]))


async def _sim_ready(control_port: int) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                await _sim_ledger(control_port)
                return
            except OSError:
                await asyncio.sleep(0.1)


async def _all_end(nc: NATS, jobs: list[str]) -> list[str]:
    ends = await asyncio.gather(
        *(wait_for_job_event(nc.jetstream(), job, TERMINAL, TIMEOUT_S) for job in jobs)
    )
    return [type(e).__name__ for e in ends]


def _stored(data_dir: Path, symbol: str) -> int:
    folder = dataset_dir(data_dir, symbol, Timeframe.M1)
    return sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))


async def _phase(
    root: Path, gateways: int, symbols: tuple[str, ...], end: datetime
) -> dict[str, Any]:
    """Load every symbol's 1-minute bars through ``gateways`` gateways on a fresh stack."""
    server = NatsServer(store_dir=root / "jetstream")
    server.start()
    stack = Stack(
        server.url,
        root,
        services=("data-store",),
        time_scale=TIME_SCALE,
        extra_env={"KTRDR_LOG_LEVEL": "WARNING"},
    )
    nc: NATS = await nats.connect(server.url, max_reconnect_attempts=-1)
    try:
        ports = [(stack.sim_port, stack.sim_control_port)]
        ports += [(free_port(), free_port()) for _ in range(gateways - 1)]
        stack.start_sim()
        for i, (port, control) in enumerate(ports[1:], start=2):
            stack.start_gateway(f"sim-{i}", port, control)
        stack.start_service("data-store")
        for i, (port, _) in enumerate(ports, start=1):
            name = "ib-connector" if i == 1 else f"ib-connector-{i}"
            stack.start_connector(name, port, KTRDR_IB_SEGMENTS_IN_FLIGHT=IN_FLIGHT)
        await stack.wait_ready(nc, ["ib-connector", "data-store"], timeout_s=120)
        for _, control in ports:
            await _sim_ready(control)
        kv = await nc.jetstream().key_value(streams.GATEWAYS_BUCKET)
        async with asyncio.timeout(120):
            while True:
                if len(set(await kv.keys())) == gateways:
                    break
                await asyncio.sleep(0.1)
        client = KtrdrClient(nc, timeout_s=10.0)
        warm = [await client.load_data(s, "1d", start=START, end=end) for s in symbols]
        await _all_end(nc, warm)

        started = time.perf_counter()
        jobs = [
            await client.load_data(s, "1m", start=START, end=end, use_rth=True) for s in symbols
        ]
        outcomes = await _all_end(nc, jobs)
        elapsed = time.perf_counter() - started

        ledgers = [await _sim_ledger(control) for _, control in ports]
        requests = [
            sum(r["kind"] == "historical" and r["bar_size"] == "1 min" for r in led["records"])
            for led in ledgers
        ]
        stored = {s: _stored(stack.data_dir, s) for s in symbols}
        return {
            "gateways": gateways,
            "elapsed_s": round(elapsed, 2),
            "outcomes": outcomes,
            "requests_per_gateway": requests,
            "pacing_violations": [int(led["counters"]["pacing_violations"]) for led in ledgers],
            "stored_rows": stored,
        }
    finally:
        stack.down()
        await nc.close()
        server.stop()


def _expected(symbols: tuple[str, ...], end: datetime) -> dict[str, int]:
    """Return the regular-hours 1-minute bars the simulators hold for each symbol."""
    found = {}
    for symbol in symbols:
        frame = expected_bars(symbol, "STK", "1 min", "TRADES", True, START, end, now_utc=NOW)
        stamps = pd.to_datetime(frame["date"], utc=True)
        found[symbol] = int(((stamps >= START) & (stamps < end)).sum())
    return found


async def _measure(tmp: Path, quick: bool) -> dict[str, Any]:
    symbols, end = QUICK if quick else (SYMBOLS, END)
    one = await _phase(tmp / "one", 1, symbols, end)
    three = await _phase(tmp / "three", 3, symbols, end)
    return {
        "name": "pool.three_gateways_vs_one",
        "value": three["elapsed_s"],
        "baseline": one["elapsed_s"],
        "ratio": three["elapsed_s"] / one["elapsed_s"],
        "unit": "s",
        "target": "<= 0.4",
        "baseline_name": "the same loads through one gateway and one connector, fresh stack",
        "loads": f"{len(symbols)} symbols x 1-minute bars RTH {START:%Y-%m-%d}..{end:%Y-%m-%d}",
        "time_scale": TIME_SCALE,
        "one": one,
        "three": three,
        "simulators_bars": _expected(symbols, end),
        "quick": quick,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure the same loads through one gateway and through three."""
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        return [asyncio.run(_measure(Path(tmp), quick))]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
