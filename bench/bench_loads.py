"""Mixed-workload benchmark: do short loads wait behind a long, paced one?

The whole stack runs as processes (nats-server, the TWS-protocol simulator at time scale
0.01, so IB's 10-minute pacing window lasts 6 s, the ib-connector and the data-store), as
``tests/system`` runs it. Ten short loads (1-hour bars of the simulator's nine instruments and
30-minute bars of SPY, half a year each: one IB request apiece) are measured twice in the same
run, each time on a fresh stack and store:

- alone (the baseline);
- while one long load of 1-second AAPL bars (three sessions, about a hundred hard-paced
  requests) waits for IB's window: the short loads are sent once the simulator has seen the
  60 requests that fill it.

Each stack is first warmed the same way (a daily load of every short symbol: contracts
resolved, calendars built), so the baseline does not carry first-use costs the other side
escapes. The figure is the short loads' median completion time (``accepted`` to
``completed``, both read from the event log) with the paced load running, divided by the
same without it.
Target: <= 1.5 (a paced job must not hold the others up).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import JobAccepted, JobCompleted, JobEvent, JobKind
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import SIM_TIME_SCALE, Stack
from nats.aio.client import Client as NATS

SHORT_LOADS = (("AAPL", "1h"), ("MSFT", "1h"), ("SPY", "1h"), ("BRK B", "1h"),
               ("EURUSD", "1h"), ("GBPUSD", "1h"), ("USDJPY", "1h"), ("ES", "1h"),
               ("SPX", "1h"), ("SPY", "30m"))  # fmt: skip
SHORT_START = datetime(2024, 1, 2, tzinfo=UTC)
PACED = ("AAPL", "1s")
PACED_START, PACED_END = datetime(2024, 6, 25, tzinfo=UTC), datetime(2024, 6, 28, tzinfo=UTC)
PACED_END_QUICK = datetime(2024, 6, 27, tzinfo=UTC)  # two sessions: one pacing wait
IB_WINDOW_MAX = 60
TIMEOUT_S = 600.0


async def _sim_records(control_port: int) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", control_port)
    writer.write(b"GET /ledger HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    return list(json.loads(raw.partition(b"\r\n\r\n")[2])["records"])


async def _paced_requests(control_port: int) -> int:
    """Return the 1-second historical requests the simulator has seen."""
    while True:
        try:
            records = await _sim_records(control_port)
        except OSError:  # the control port is not up yet
            await asyncio.sleep(0.1)
            continue
        return sum(r["kind"] == "historical" and r["bar_size"] == "1 secs" for r in records)


async def _window_full(control_port: int) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            if await _paced_requests(control_port) >= IB_WINDOW_MAX:
                return
            await asyncio.sleep(0.05)


async def _completion_s(js: Any, job_id: str) -> float:
    """Return seconds from the job's ``accepted`` to its ``completed`` event (it must complete)."""
    end = await wait_for_job_event(
        js, job_id, {"completed", "failed", "cancelled"}, timeout_s=TIMEOUT_S
    )
    if not isinstance(end, JobCompleted):
        raise RuntimeError(f"short load {job_id} ended {end!r}")
    accepted_on = subjects.job_event(JobKind.DATA_LOAD, job_id, "accepted")
    msg = await js.get_last_msg(streams.EVENTS.name or "", accepted_on)
    accepted = codec.decode(msg.data, JobEvent, subject=msg.subject)
    assert isinstance(accepted, JobAccepted)
    return (end.ts - accepted.ts).total_seconds()


async def _phase(root: Path, with_paced: bool, paced_end: datetime) -> dict[str, Any]:
    """Run the short loads on a fresh stack, with or without the paced load; time them."""
    server = NatsServer(store_dir=root / "jetstream")
    server.start()
    stack = Stack(server.url, root, extra_env={"KTRDR_LOG_LEVEL": "WARNING"})
    nc: NATS = await nats.connect(server.url, max_reconnect_attempts=-1)
    try:
        await stack.up(nc, timeout_s=120)
        client = KtrdrClient(nc, timeout_s=10.0)
        js = nc.jetstream()
        # Warm both sides alike: each symbol resolved, each market's calendar built, every
        # code path run once (daily bars: one request apiece, and another dataset).
        warm = [await client.load_data(s, "1d", start=SHORT_START) for s, _ in SHORT_LOADS]
        await asyncio.gather(*(_completion_s(js, job) for job in warm))
        paced_job = None
        if with_paced:
            paced_job = await client.load_data(*PACED, start=PACED_START, end=paced_end)
            await _window_full(stack.sim_control_port)
        jobs = [await client.load_data(s, tf, start=SHORT_START) for s, tf in SHORT_LOADS]
        times = await asyncio.gather(*(_completion_s(js, job) for job in jobs))
        paced_requests = await _paced_requests(stack.sim_control_port) if with_paced else 0
        if paced_job is not None:  # let it end, so the run also says how long it took
            await wait_for_job_event(
                js, paced_job, {"completed", "failed", "cancelled"}, timeout_s=TIMEOUT_S
            )
        return {
            "median_s": statistics.median(times),
            "times_s": [round(t, 3) for t in times],
            "paced_requests_when_short_done": paced_requests,
        }
    finally:
        stack.down()
        await nc.close()
        server.stop()


async def _measure(tmp: Path, quick: bool) -> dict[str, Any]:
    rounds = 1 if quick else 2
    paced_end = PACED_END_QUICK if quick else PACED_END
    alone, mixed = [], []
    for i in range(rounds):  # alternate, so drifts in the machine's load hit both sides
        alone.append(await _phase(tmp / f"alone-{i}", False, paced_end))
        mixed.append(await _phase(tmp / f"mixed-{i}", True, paced_end))
    baseline = min(p["median_s"] for p in alone)
    value = min(p["median_s"] for p in mixed)
    return {
        "name": "loads.short_median_with_paced_vs_alone",
        "value": value,
        "baseline": baseline,
        "ratio": value / baseline,
        "unit": "s",
        "target": "<= 1.5",
        "baseline_name": "the same ten short loads on a fresh stack with no paced load",
        "short_loads": [f"{s} {tf}" for s, tf in SHORT_LOADS],
        "paced_load": f"{PACED[0]} {PACED[1]} {PACED_START:%Y-%m-%d}..{paced_end:%Y-%m-%d}",
        "time_scale": SIM_TIME_SCALE,
        "rounds": rounds,
        "kept": "each side's best median",
        "alone": alone,
        "mixed": mixed,
        "quick": quick,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure the short loads alone and beside a paced load (fresh stacks each time)."""
    with tempfile.TemporaryDirectory(prefix="bench-loads-") as tmp:
        return [asyncio.run(_measure(Path(tmp), quick))]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
