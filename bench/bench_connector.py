"""ib-connector benchmarks against the TWS-protocol simulator and a real nats-server.

1. Pacing utilisation for 30-second bars in compressed time: hard-paced
   requests the gateway admitted per 10-minute window, divided by IB's
   ceiling of 60 (the baseline is IB's own rule); plus violations (target 0).
2. One year of 1-minute bars for one symbol against the simulator's latency
   model: the connector's wall time divided by a sequential ib_async loop with
   a fixed 2 s gap between requests (the old system's way), measured in the
   same run against the same simulator process (target <= 0.33).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
from ib_async import IB
from ktrdr_ib_connector.app import build_app
from ktrdr_ib_connector.chunking import plan_chunks
from ktrdr_ib_connector.config import IbConnectorSettings
from ktrdr_ib_connector.contracts import query_contract
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import FetchBars, IbStatus, StatusRequest
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow, to_unix_nanos

NOW = "2024-06-28T22:00:00+00:00"


def _start_sim(*args: str) -> tuple[subprocess.Popen[str], int, int | None]:
    """Run the simulator as its own process (as a real gateway is); return its ports."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ktrdr_ib_sim",
            "--port",
            "0",
            "--now",
            NOW,
            "--log-level",
            "WARNING",
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", line)]
    if not ports:
        proc.kill()
        raise RuntimeError(f"simulator did not report its port: {line!r}")
    return proc, ports[0], (ports[1] if len(ports) > 1 else None)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(10)


async def _connector(nats_url: str, port: int, scale: float) -> Any:
    settings = IbConnectorSettings.from_env(
        {
            "KTRDR_NATS_URL": nats_url,
            "KTRDR_IB_PORT": str(port),
            "KTRDR_IB_TIME_SCALE": str(scale),
            "KTRDR_LOG_LEVEL": "WARNING",
        }
    )
    app = build_app(settings)
    await app.start()
    return app


async def _ledger(control_port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", control_port)
    writer.write(b"GET /ledger HTTP/1.0\r\nHost: x\r\n\r\n")
    raw = await reader.read()
    writer.close()
    return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))


async def _utilisation(nats_url: str, windows: int) -> list[dict[str, Any]]:
    scale = 0.01  # a 10-minute window lasts 6 s
    proc, port, control = _start_sim("--time-scale", str(scale), "--control-port", "0")
    assert control is not None
    app = await _connector(nats_url, port, scale)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        start = dt.datetime(2024, 6, 3, 14, 0, tzinfo=dt.UTC)
        count = 60 * windows + 40  # more than the windows can take: the gate is the limit
        for i in range(count):
            begin = start + dt.timedelta(minutes=i)
            await js.publish(
                subjects.CMD_IB_FETCH,
                codec.encode(
                    FetchBars(
                        job_id=uuid.uuid4().hex,
                        segment_id=f"u{i}",
                        symbol=("AAPL", "MSFT", "SPY")[i % 3],
                        timeframe=Timeframe.S30,
                        start=begin,
                        end=begin + dt.timedelta(minutes=1),
                        instrument_type=InstrumentType.STK,
                        what_to_show=WhatToShow.TRADES,
                    )
                ),
            )
        window_s = 600 * scale
        await asyncio.sleep(window_s * windows + 2.0)
        ledger = await _ledger(control)
    finally:
        await app.stop()
        await nc.close()
        _stop(proc)
    admitted = sorted(
        r["at"] for r in ledger["records"] if r["kind"] == "historical" and r["outcome"] == "ok"
    )
    first = admitted[0]
    within = [t for t in admitted if t < first + windows * window_s]
    violations = ledger["counters"]["pacing_violations"]
    ceiling = 60 * windows
    return [
        {
            "name": "connector.pacing_utilisation_30s_bars",
            "value": len(within),
            "baseline": ceiling,
            "ratio": len(within) / ceiling,
            "unit": "requests",
            "baseline_name": f"IB ceiling: 60 per 10 min x {windows} windows",
            "target": ">= 0.95",
            "pacing_violations": violations,
            "time_scale": scale,
        }
    ]


async def _year_of_minutes(nats_url: str) -> list[dict[str, Any]]:
    scale = 0.25  # IB latencies and the 2 s gap at a quarter: CPU (parsing) is not scaled
    latency = ("--latency-ms", "400", "--per-bar-us", "40", "--soft-delay-ms", "1000")
    end = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    start = end - dt.timedelta(days=365)
    proc, port, _ = _start_sim("--time-scale", str(scale), *latency)
    try:
        baseline_s, baseline_bars = await _sequential_baseline(port, start, end, gap_s=2.0 * scale)
        app = await _connector(nats_url, port, scale)
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        try:
            job = uuid.uuid4().hex
            started = time.perf_counter()
            await js.publish(
                subjects.CMD_IB_FETCH,
                codec.encode(
                    FetchBars(
                        job_id=job,
                        segment_id="year",
                        symbol="AAPL",
                        timeframe=Timeframe.M1,
                        start=start,
                        end=end,
                        instrument_type=InstrumentType.STK,
                        what_to_show=WhatToShow.TRADES,
                    )
                ),
            )
            done = await wait_for_job_event(js, job, {"segment_fetched", "segment_failed"}, 600)
            ours_s = time.perf_counter() - started
            status = await KtrdrClient(nc).request(subjects.IB_STATUS, StatusRequest(), IbStatus)
        finally:
            await app.stop()
            await nc.close()
    finally:
        _stop(proc)
    return [
        {
            "name": "connector.one_year_1min_wall_s",
            "value": ours_s,
            "baseline": baseline_s,
            "ratio": ours_s / baseline_s,
            "unit": "s",
            "target": "<= 0.33",
            "baseline_name": "sequential ib_async requests with a fixed 2 s gap (scaled)",
            "bars": getattr(done, "bars", None),
            "baseline_bars": baseline_bars,
            "outcome": type(done).__name__,
            "ib_requests": getattr(done, "ib_requests", None),
            "time_scale": scale,
            "sim_latency": " ".join(latency),
            "pacing": status.pacing,
        }
    ]


async def _sequential_baseline(
    port: int, start: dt.datetime, end: dt.datetime, gap_s: float
) -> tuple[float, int]:
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=99, timeout=10, readonly=True)
    try:
        [contract] = await ib.qualifyContractsAsync(query_contract("AAPL", InstrumentType.STK))
        chunks = plan_chunks(Timeframe.M1, to_unix_nanos(start), to_unix_nanos(end))
        started, bars = time.perf_counter(), 0
        for chunk in chunks:
            got = await ib.reqHistoricalDataAsync(
                contract,
                chunk.end_text,
                chunk.duration,
                chunk.bar_size,
                "TRADES",
                False,
                formatDate=2,
            )
            bars += len(got)
            await asyncio.sleep(gap_s)
        return time.perf_counter() - started, bars
    finally:
        ib.disconnect()


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run both connector benchmarks against a fresh nats-server."""
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp) / "js")
        server.start()
        try:
            return asyncio.run(_all(server.url, quick))
        finally:
            server.stop()


async def _all(url: str, quick: bool) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    await streams.ensure_streams(nc.jetstream())
    await nc.close()
    results = await _utilisation(url, windows=1 if quick else 3)
    results += await _year_of_minutes(url)
    return results


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
