"""Load jobs run exactly once: restarts, cancels and mixed workloads never waste IB's pacing budget.

The whole stack runs as real processes (nats-server, the TWS-protocol simulator, ib-connector,
data-store); loads are published as ``LoadData``. Every assertion reads one of two witnesses:
the simulator's own request log (``GET /ledger`` on its control port: what reached "IB",
stamped with the wall clock on arrival) and the event log (``KTRDR_EVENTS``). Assertions are
about counts and order; the one comparison of times is the cancel rule itself (no request
more than 1 s after ``cancel_requested``), between two wall-clock stamps of one machine.
Waits are awaited conditions with generous guards, never sleeps.

1. A restart of the stack (nats-server included) on an existing data dir and store sends
   nothing to IB and ends no job twice.
2. A cancel reaches IB: within 1 s of ``cancel_requested`` no request leaves the connector,
   whether the job was waiting for the connector, waiting in the pacing gate or had a
   request open; ``cancelled.result`` says what the job did before it stopped.
3. One paced job blocks no other: a 1-hour load completes while a 1-second load waits for
   IB's 10-minute window.
4. No request is spent on closed hours.
5. Progress says why a job waits (``no_connector``, ``pacing`` with ``until``), a repeated
   head-timestamp request is answered from a cache, and every load's
   ``result.ib_requests_made`` equals the requests the simulator saw for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors
import pyarrow.parquet as pq
import pytest
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_ib_sim.sessions import MarketKind, schedule
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import (
    CancelRequested,
    HeadTimestamp,
    HeadTimestampRequest,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobKind,
    JobProgress,
    LoadResult,
    SegmentFetched,
)
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import SIM_TIME_SCALE, Stack
from ktrdr_shared.types import symbol_key
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UTC = dt.UTC
TERMINAL = {"completed", "failed", "cancelled"}
PACED_KINDS = {"historical", "head_timestamp"}  # the simulator's records that IB paces
BAR_SIZE = {
    "1s": "1 secs",
    "1m": "1 min",
    "15m": "15 mins",
    "1h": "1 hour",
    "4h": "4 hours",
    "1d": "1 day",
}
IB_WINDOW_MAX = 60  # hard-paced requests IB admits per 10-minute window
# Two US sessions of AAPL (04:00-20:00 New York with extended hours: 32 requests of 1800
# one-second bars each), the night between them closed: 64 requests, so the pacing window
# fills once.
TWO_DAYS = (dt.datetime(2024, 6, 26, tzinfo=UTC), dt.datetime(2024, 6, 28, tzinfo=UTC))
JOB_TIMEOUT_S = 180.0  # a deadlock guard, never a pass/fail threshold


# -- the stack ------------------------------------------------------------------------------


@dataclass
class ScaledStack(Stack):
    """``Stack`` with the simulator's and connector's time scale chosen per test.

    A subclass here rather than a field of ``Stack``, so that these tests also run against
    trees whose ``stack.py`` predates them.
    """

    time_scale: float = SIM_TIME_SCALE

    def env(self) -> dict[str, str]:
        """Return the services' environment, the connector's pacing at this stack's scale."""
        return {**super().env(), "KTRDR_IB_TIME_SCALE": str(self.time_scale)}

    def start_sim(self) -> Any:
        """Start the simulator at this stack's time scale."""
        argv = [
            sys.executable,
            "-m",
            "ktrdr_ib_sim",
            "--port",
            str(self.sim_port),
            "--control-port",
            str(self.sim_control_port),
            "--time-scale",
            str(self.time_scale),
            "--soft-delay-ms",
            "0",
        ]
        if self.sim_now is not None:
            argv += ["--now", self.sim_now]
        child = self._child("sim", argv)
        child.start()
        return child


@dataclass
class System:
    """A running stack and the handles a test reads it through."""

    stack: ScaledStack
    server: NatsServer
    nc: NATS
    client: KtrdrClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = KtrdrClient(self.nc, timeout_s=10.0)

    @property
    def js(self) -> JetStreamContext:
        """Return the JetStream context."""
        return self.nc.jetstream()

    # -- the simulator's side ---------------------------------------------------------

    async def sim(self, method: str, path: str) -> dict[str, Any]:
        """Call the simulator's HTTP control port; return its JSON answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.stack.sim_control_port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n", 1)[0], raw[:300]
        return dict(json.loads(body))

    async def sim_ready(self) -> None:
        """Wait until the simulator's control port answers."""
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(OSError):
                    await self.sim("GET", "/health")
                    return
                await asyncio.sleep(0.1)

    async def records(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the simulator's request records after ``since``, oldest first."""
        return list((await self.sim("GET", f"/ledger?since={since}"))["records"])

    async def last_seq(self) -> int:
        """Return the sequence number of the simulator's latest request record (0: none)."""
        records = await self.records()
        return int(records[-1]["seq"]) if records else 0

    async def until_requests(
        self, symbol: str, timeframe: str, count: int, outcome: str | None = None
    ) -> list[dict[str, Any]]:
        """Wait until the simulator has seen ``count`` historical requests of a dataset."""
        async with asyncio.timeout(JOB_TIMEOUT_S):
            while True:
                found = historical(await self.records(), symbol, timeframe)
                if outcome is not None:
                    found = [r for r in found if r["outcome"] == outcome]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.05)

    async def until_paced(self, job_id: str, symbol: str, timeframe: str) -> float:
        """Wait until a job's next request waits in the pacing gate; return the wall clock.

        Either witness will do: the simulator has seen the 60 requests that fill IB's window
        (the next one must wait for it), or the job itself says it waits for pacing.
        """
        said_pacing = asyncio.Event()

        async def on_event(msg: Any) -> None:
            event = codec.decode(msg.data, JobEvent, subject=msg.subject, headers=msg.headers)
            if "pacing" in (getattr(event, "reason", None), getattr(event, "state", None)):
                said_pacing.set()

        sub = await self.nc.subscribe(subjects.job_events(job_id), cb=on_event)
        try:
            async with asyncio.timeout(JOB_TIMEOUT_S):
                while True:
                    sent = historical(await self.records(), symbol, timeframe)
                    if said_pacing.is_set() or len(sent) >= IB_WINDOW_MAX:
                        return time.time()
                    await asyncio.sleep(0.05)
        finally:
            await sub.unsubscribe()

    # -- the system's side ------------------------------------------------------------

    async def load(self, symbol: str, timeframe: str, **fields: Any) -> str:
        """Publish a ``LoadData``; return its job id."""
        return await self.client.load_data(symbol, timeframe, **fields)

    async def cancel(self, job_id: str) -> None:
        """Publish ``cancel_requested`` for a job (what ``POST /jobs/{id}/cancel`` does)."""
        await publish_event(
            self.js, CancelRequested(job_id=job_id, reason="test"), kind=JobKind.DATA_LOAD
        )

    async def ended(self, job_id: str) -> Any:
        """Wait for the job's terminal event and return it."""
        return await wait_for_job_event(self.js, job_id, TERMINAL, timeout_s=JOB_TIMEOUT_S)

    async def first_event(
        self, job_id: str, wanted: Callable[[Any], bool], timeout_s: float
    ) -> Any:
        """Return the job's first event (history included) that is ``wanted``.

        None when the job ends, or ``timeout_s`` passes, without one (a guard: the event
        comes at once or never).
        """
        sub = await self.js.subscribe(
            subjects.job_events(job_id),
            stream=streams.EVENTS.name,
            ordered_consumer=True,
            config=from_start(),
        )
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    msg = await sub.next_msg(timeout=None)
                    event = codec.decode(
                        msg.data, JobEvent, subject=msg.subject, headers=msg.headers
                    )
                    if wanted(event):
                        return event
                    if msg.subject.rsplit(".", 1)[-1] in TERMINAL:
                        return None
        except TimeoutError:
            return None
        finally:
            await sub.unsubscribe()

    async def events(self, job_id: str) -> list[tuple[int, Any]]:
        """Return every event of a job now in the log, with its stream sequence."""
        return await log_events(self.js, subjects.job_events(job_id))

    async def settled(self) -> None:
        """Wait until every command was taken and acked and every bar batch is stored.

        The connector acks a ``FetchBars`` only once the segment is over (fetched, failed or
        cancelled), so once the command queue is empty no segment is running.
        """
        async with asyncio.timeout(JOB_TIMEOUT_S):
            while True:
                commands = await self.js.stream_info(streams.COMMANDS.name or "")
                bars = await self.js.consumer_info(
                    streams.STORE_BARS.stream, streams.STORE_BARS.durable
                )
                if (
                    commands.state.messages == 0
                    and bars.num_pending == 0
                    and bars.num_ack_pending == 0
                ):
                    return
                await asyncio.sleep(0.1)

    def stored_rows(self, symbol: str, timeframe: str) -> int:
        """Return how many bars the Parquet store holds for a dataset."""
        folder = self.stack.data_dir / "bars" / symbol_key(symbol) / timeframe
        files = sorted(folder.glob("*.parquet"))
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


@contextlib.asynccontextmanager
async def running(
    tmp: Path,
    *,
    services: tuple[str, ...] = ("ib-connector", "data-store"),
    time_scale: float = SIM_TIME_SCALE,
) -> AsyncIterator[System]:
    """Run nats-server, the simulator and ``services`` as processes around a test."""
    server = NatsServer(store_dir=tmp / "jetstream")
    server.start()
    stack = ScaledStack(server.url, tmp, services=services, time_scale=time_scale)
    nc = NATS()
    # nats-py annotates the wait as int; it is seconds and takes a float
    await nc.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)  # type: ignore[arg-type]
    try:
        await stack.up(nc, timeout_s=90)
        system = System(stack, server, nc)
        await system.sim_ready()
        yield system
    finally:
        stack.down()
        await nc.close()
        server.stop()


async def log_events(js: JetStreamContext, subject: str) -> list[tuple[int, Any]]:
    """Return every job event on ``subject`` now in the log, with its stream sequence."""
    sub = await js.subscribe(
        subject, stream=streams.EVENTS.name, ordered_consumer=True, config=from_start()
    )
    found: list[tuple[int, Any]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                return found  # nothing on the subject at all
            event = codec.decode(msg.data, JobEvent, subject=msg.subject, headers=msg.headers)
            found.append((msg.metadata.sequence.stream, event))
            if msg.metadata.num_pending == 0:
                return found
    finally:
        await sub.unsubscribe()


def from_start() -> ConsumerConfig:
    """Return a consumer config that replays from the first message (subscribe mutates it)."""
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


def historical(records: list[dict[str, Any]], symbol: str, timeframe: str) -> list[dict[str, Any]]:
    """Return the historical-data requests of one dataset (the simulator's records)."""
    return [
        r
        for r in records
        if r["kind"] == "historical"
        and r["symbol"] == symbol
        and r["bar_size"] == BAR_SIZE[timeframe]
    ]


def kinds(events: list[tuple[int, Any]]) -> list[str]:
    """Return the ``type`` tag of each event."""
    return [type(e).__struct_config__.tag for _, e in events]


def of_type(events: list[tuple[int, Any]], kind: type[Any]) -> list[Any]:
    """Return the events of one type."""
    return [e for _, e in events if isinstance(e, kind)]


def assert_requests_match(
    result: Any, records: list[dict[str, Any]], symbol: str, timeframe: str
) -> None:
    """Assert that a job's result counts exactly the requests the simulator saw for it."""
    assert isinstance(result, LoadResult), result
    seen = len(historical(records, symbol, timeframe))
    assert result.ib_requests_made == seen, (
        f"{symbol} {timeframe}: the job reports {result.ib_requests_made} IB requests, "
        f"the simulator saw {seen}"
    )


# -- 1. a restart repeats nothing -------------------------------------------------------------

RESTART_LOADS = (  # symbol, timeframe, LoadData fields
    ("AAPL", "1h", {"start": dt.datetime(2024, 1, 2, tzinfo=UTC)}),
    ("EURUSD", "15m", {"start": dt.datetime(2024, 5, 1, tzinfo=UTC)}),
    ("MSFT", "1d", {"mode": "full"}),  # planning asks IB for the head timestamp
    ("ES", "15m", {"start": dt.datetime(2024, 5, 1, tzinfo=UTC)}),
)
# One fresh load after each restart, named as IB's records name it (USD.JPY is USD there).
RESTART_SENTINELS = (("USDJPY", "USD"), ("GBPUSD", "GBP"))


async def _restart_the_stack(system: System) -> tuple[int, int]:
    """Stop the services, restart nats-server on its store, start the services again.

    Returns the simulator's last record and the event log's last sequence before the
    restart. A restarted nats-server forgets the ids of the commands its work queue already
    removed, so nothing but the services' own memory of the log stops a job from running
    again, as after any restart more than the 10-minute dedup window after the job.
    """
    for name in ("data-store", "ib-connector"):
        assert system.stack.children[name].stop() == 0
    seq = await system.last_seq()
    last_event = (await system.js.stream_info(streams.EVENTS.name or "")).state.last_seq
    system.server.restart()
    for name in ("ib-connector", "data-store"):
        system.stack.start_service(name)
    await system.stack.wait_ready(system.nc, ["ib-connector", "data-store"])
    return seq, last_event


async def test_a_restart_of_the_stack_sends_nothing_to_ib_and_ends_no_job_twice(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, services=("data-store",)) as system:
        # A job cancelled while it waited for a connector: accepted, cancel_requested, cancelled.
        cancelled = await system.load("SPY", "1h", start=dt.datetime(2024, 3, 1, tzinfo=UTC))
        await wait_for_job_event(system.js, cancelled, {"accepted"}, timeout_s=JOB_TIMEOUT_S)
        await system.cancel(cancelled)
        assert isinstance(await system.ended(cancelled), JobCancelled)
        system.stack.start_service("ib-connector")
        await system.stack.wait_ready(system.nc, ["ib-connector"])
        finished = [await system.load(s, tf, **f) for s, tf, f in RESTART_LOADS]
        for job_id in finished:
            assert isinstance(await system.ended(job_id), JobCompleted)
        await system.settled()
        # A job still running at the first restart: 1-second bars waiting for IB's window.
        unfinished = await system.load("AAPL", "1s", start=TWO_DAYS[0], end=TWO_DAYS[1])
        await system.until_paced(unfinished, "AAPL", "1s")

        # Whether the data-store has replayed the log when it starts moving jobs on is decided
        # on every start; two restarts give a wrong decision two chances to show.
        ended = [cancelled, *finished]
        for restart, (sentinel_symbol, ib_symbol) in enumerate(RESTART_SENTINELS, start=1):
            seq, last_event = await _restart_the_stack(system)
            if restart == 1:  # the running job carries on and ends, once, with every bar
                assert isinstance(await system.ended(unfinished), JobCompleted)
                want = expected_stamps("AAPL", "STK", "1 secs", *TWO_DAYS)
                assert system.stored_rows("AAPL", "1s") == len(want)
            # A fresh load: its FetchBars queue behind anything the replay sent, so once it
            # is done and the queue is empty, whatever the replay set off has run.
            sentinel = await system.load(
                sentinel_symbol, "1h", start=dt.datetime(2024, 6, 3, tzinfo=UTC)
            )
            assert isinstance(await system.ended(sentinel), JobCompleted)
            await system.settled()
            # What spends IB's pacing budget, for anything but the fresh load.
            carried_on = ("AAPL", "1 secs") if restart == 1 else None
            stray = [
                (r["kind"], r["symbol"], r["bar_size"], r["end"])
                for r in await system.records(since=seq)
                if r["kind"] in PACED_KINDS
                and r["symbol"] != ib_symbol
                and (r["symbol"], r["bar_size"]) != carried_on
            ]
            assert not stray, (
                f"after restart {restart} IB was asked {len(stray)} times again for finished "
                f"jobs (kind, symbol, bar size, end): {stray}"
            )
            for job_id in ended:
                events = await system.events(job_id)
                tags = kinds(events)
                assert sum(t in TERMINAL for t in tags) == 1, (job_id, tags)
                again = [
                    tag
                    for (seq_no, _), tag in zip(events, tags, strict=True)
                    if seq_no > last_event
                ]
                assert not again, (
                    f"job {job_id} ended before restart {restart}, then got events {again}"
                )
            ended += [sentinel, unfinished] if restart == 1 else [sentinel]


# -- 2. a cancel reaches IB ---------------------------------------------------------------------


async def _cancel_waiting_for_a_connector(system: System) -> tuple[str, str, str]:
    job_id = await system.load("AAPL", "1m", start=dt.datetime(2023, 7, 1, tzinfo=UTC))
    await wait_for_job_event(system.js, job_id, {"accepted"}, timeout_s=JOB_TIMEOUT_S)
    await system.cancel(job_id)
    await system.ended(job_id)
    # The connector arrives after the cancel: it must find nothing to do for the job.
    system.stack.start_service("ib-connector")
    await system.stack.wait_ready(system.nc, ["ib-connector"])
    return job_id, "AAPL", "1m"


async def _cancel_in_the_pacing_gate(system: System) -> tuple[str, str, str]:
    job_id = await system.load("AAPL", "1s", start=TWO_DAYS[0], end=TWO_DAYS[1])
    # Once IB's window is full the job's next requests wait in the connector's gate.
    await system.until_paced(job_id, "AAPL", "1s")
    await system.cancel(job_id)
    return job_id, "AAPL", "1s"


async def _cancel_with_a_request_open(system: System) -> tuple[str, str, str]:
    await system.sim("POST", "/faults/stall?n=4")  # IB holds the first answers
    job_id = await system.load("AAPL", "1m", start=dt.datetime(2023, 7, 1, tzinfo=UTC))
    await system.until_requests("AAPL", "1m", 1, outcome="stalled")
    await system.cancel(job_id)
    return job_id, "AAPL", "1m"


CANCEL_MOMENTS = {
    "before_dispatch": (("data-store",), _cancel_waiting_for_a_connector),
    "in_pacing_gate": (("ib-connector", "data-store"), _cancel_in_the_pacing_gate),
    "mid_request": (("ib-connector", "data-store"), _cancel_with_a_request_open),
}


@pytest.mark.parametrize("moment", list(CANCEL_MOMENTS))
async def test_a_cancel_stops_requests_to_ib_and_reports_what_the_job_did(
    tmp_path: Path, moment: str
) -> None:
    services, cancel_at_moment = CANCEL_MOMENTS[moment]
    async with running(tmp_path, services=services) as system:
        job_id, symbol, timeframe = await cancel_at_moment(system)
        end = await system.ended(job_id)
        assert isinstance(end, JobCancelled), end
        await system.settled()
        events = await system.events(job_id)
        (cancel,) = of_type(events, CancelRequested)
        records = historical(await system.records(), symbol, timeframe)
        cancel_at = cancel.ts.timestamp()
        late = [
            (r["seq"], round(r["at"] - cancel_at, 2), r["end"])
            for r in records
            if r["at"] > cancel_at + 1.0
        ]
        assert not late, (
            f"{len(late)} of {len(records)} requests reached IB more than 1 s after the cancel "
            f"(seq, seconds after, end): {late[:5]}"
        )
        # The job says what it did before it stopped: requests sent, bars stored.
        result = end.result
        assert isinstance(result, LoadResult), f"cancelled without a result: {end}"
        assert result.ib_requests_made == len(records), (result, len(records))
        assert result.fetched_bars == system.stored_rows(symbol, timeframe), result
        late_reports = [e for e in of_type(events, SegmentFetched) if e.ts > end.ts]
        assert not late_reports, f"segments reported fetched after the cancel: {late_reports}"


# -- 3. one paced job blocks no other -----------------------------------------------------------


async def test_a_short_load_completes_while_a_paced_load_waits_for_the_window(
    tmp_path: Path,
) -> None:
    # At 0.03 IB's 10-minute window lasts 18 s: a short load could finish many times over
    # inside it, so the ordering asserted below depends on scheduling, not on speed.
    async with running(tmp_path, time_scale=0.03) as system:
        paced = await system.load("AAPL", "1s", start=TWO_DAYS[0], end=TWO_DAYS[1])
        paced_at = await system.until_paced(paced, "AAPL", "1s")
        short = await system.load("MSFT", "1h", start=dt.datetime(2024, 4, 1, tzinfo=UTC))
        short_end = await system.ended(short)
        paced_end = await system.ended(paced)
        await system.settled()
        assert isinstance(short_end, JobCompleted), short_end
        assert isinstance(paced_end, JobCompleted), paced_end
        records = await system.records()
        one_second = historical(records, "AAPL", "1s")
        assert len(one_second) > IB_WINDOW_MAX, "the paced load never had to wait"
        # The paced load was waiting when the short one was sent: its next request is the
        # first after the wait.
        after_wait = next(r for r in one_second if r["at"] > paced_at)
        short_requests = historical(records, "MSFT", "1h")
        assert short_requests, "the short load made no request"
        assert short_requests[-1]["seq"] < after_wait["seq"], (
            "the 1h load's request waited behind the paced 1s load's window"
        )
        assert short_end.ts.timestamp() < after_wait["at"], (
            "the 1h load completed only after the paced 1s load's window reopened"
        )
        short_events, paced_events = await system.events(short), await system.events(paced)
        assert short_events[-1][0] < paced_events[-1][0]  # completed first, in the log
        assert_requests_match(short_end.result, records, "MSFT", "1h")
        assert_requests_match(paced_end.result, records, "AAPL", "1s")


# -- 4. no request for closed hours ---------------------------------------------------------------


def _ib_end_s(text: str) -> int:
    """Return the epoch seconds of an ``endDateTime`` the connector sends (UTC form)."""
    moment = dt.datetime.strptime(text.replace(" UTC", "").strip(), "%Y%m%d-%H:%M:%S")
    return int(moment.replace(tzinfo=UTC).timestamp())


async def test_a_two_day_one_second_load_asks_nothing_for_closed_hours(tmp_path: Path) -> None:
    async with running(tmp_path) as system:
        job_id = await system.load("AAPL", "1s", start=TWO_DAYS[0], end=TWO_DAYS[1])
        end = await system.ended(job_id)
        await system.settled()
        assert isinstance(end, JobCompleted), end
        records = historical(await system.records(), "AAPL", "1s")
        no_data = [r for r in records if r["error_code"] == 162 and "no data" in r["error_text"]]
        assert not no_data, (
            f"{len(no_data)} of {len(records)} requests asked for hours with no session; "
            f"IB answered 'no data' for windows ending {[r['end'] for r in no_data][:5]}"
        )
        sessions = schedule(MarketKind.US_EQUITY, False, "America/New_York")
        closed = []
        for r in records:
            if not r["duration"].endswith(" S"):
                continue
            end_s = _ib_end_s(r["end"])
            if not len(sessions.overlapping(end_s - int(r["duration"].split()[0]), end_s)):
                closed.append(r["end"])
        assert not closed, f"requests whose whole window is closed: {closed[:5]}"
        assert_requests_match(end.result, await system.records(), "AAPL", "1s")


# -- 5. progress says why; a head timestamp is asked once; metrics are IB's --------------------


async def test_progress_says_no_connector_while_none_runs(tmp_path: Path) -> None:
    async with running(tmp_path, services=("data-store",)) as system:
        job_id = await system.load("MSFT", "1h", start=dt.datetime(2024, 4, 1, tzinfo=UTC))
        # Wait for a progress event that names the missing connector, or for the job to end.
        said = await system.first_event(
            job_id,
            lambda e: isinstance(e, JobProgress) and e.reason == "no_connector",
            timeout_s=20,
        )
        if said is None:
            seen = [
                (type(e).__name__, getattr(e, "reason", None))
                for _, e in await system.events(job_id)
            ]
            pytest.fail(f"no progress said 'no_connector' while no ib-connector ran: {seen}")

        system.stack.start_service("ib-connector")
        await system.stack.wait_ready(system.nc, ["ib-connector"])
        end = await system.ended(job_id)
        assert isinstance(end, JobCompleted), end
        await system.settled()
        assert_requests_match(end.result, await system.records(), "MSFT", "1h")


async def test_progress_says_pacing_until_the_window_opens(tmp_path: Path) -> None:
    async with running(
        tmp_path, time_scale=0.03
    ) as system:  # an 18 s window: a slow machine still fills it
        job_id = await system.load("AAPL", "1s", start=TWO_DAYS[0], end=TWO_DAYS[1])
        end = await system.ended(job_id)
        assert isinstance(end, JobCompleted), end
        await system.settled()
        records = await system.records()
        assert len(historical(records, "AAPL", "1s")) > IB_WINDOW_MAX  # it had to wait
        progress = of_type(await system.events(job_id), JobProgress)
        pacing = [p for p in progress if p.reason == "pacing"]
        assert pacing, f"no progress said 'pacing': {[(p.reason, p.message) for p in progress]}"
        assert all(p.until is not None and p.until > p.ts for p in pacing), pacing
        assert_requests_match(end.result, records, "AAPL", "1s")


async def test_a_repeated_head_timestamp_request_costs_ib_one_request(tmp_path: Path) -> None:
    async with running(tmp_path) as system:
        ask = HeadTimestampRequest(symbol="SPY")
        heads = [
            await system.client.request(subjects.IB_HEAD_TIMESTAMP, ask, HeadTimestamp)
            for _ in range(2)
        ]
        assert heads[0] == heads[1]
        asked = [
            r
            for r in await system.records()
            if r["kind"] == "head_timestamp" and r["symbol"] == "SPY"
        ]
        assert len(asked) == 1, f"IB was asked {len(asked)} times for SPY's head timestamp"
