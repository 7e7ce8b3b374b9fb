"""The store cannot be poisoned, and damage stays with the dataset that has it (issue 13).

Every numbered symptom of the issue, tried as a hostile client would, on the real stack
(nats-server, the TWS-protocol simulator, ib-connector, data-store and the api as processes).
A few small datasets are loaded first through real loads; then each test publishes exactly the
issue's batch, or damages exactly the issue's file, and asserts what is stored (the Parquet
files), what is quarantined (``GET /api/v1/quarantine`` and ``ktrdr data quarantine``), what the
API and the CLI say, and that every other dataset is byte-identical.

A hand-published batch is a realistic forgery: it carries the job id and a segment id of a
segment the data-store really dispatched for that dataset (read from the job's ``planned``
event), with its window inside that segment, so that what refuses it is the check the symptom
is about, not a missing segment. Batches go out as msgpack (as the connector sends them), which
keeps ``inf`` a float. Waits are awaited conditions with generous guards, never sleeps.

One stack serves the module; the full-disk symptom runs its own, on a data dir that is a small
tmpfs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient, new_job_id
from ktrdr_shared.messages import BarBatch, JobCompleted, JobFailed, LoadResult
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import MODULES, ChildProcess, Stack
from ktrdr_shared.types import symbol_key, to_unix_nanos
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

UTC = dt.UTC
SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
HOUR_NS = 3_600 * SECOND_NS
TERMINAL = {"completed", "failed", "cancelled"}
JOB_TIMEOUT_S = 120.0  # deadlock guards, never pass/fail thresholds
VERDICT_TIMEOUT_S = 20.0  # a batch's rejection normally comes in well under a second
WRITE_ATTEMPTS = 3  # KTRDR_INGEST_WRITE_ATTEMPTS for the data-store (symptom 8)
RETRY_DELAY_S = 0.2  # KTRDR_INGEST_RETRY_DELAY_S (doubling)


def _utc(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=UTC)


# The datasets every test starts from: (symbol, timeframe) -> LoadData fields. AAPL 1d spans two
# year files (2023 and 2024); SPY 1d leaves a head and a tail to load later (symptom 3).
LOADS: dict[tuple[str, str], dict[str, Any]] = {
    ("AAPL", "1d"): {"start": _utc(2023, 10, 2)},
    ("MSFT", "1d"): {"start": _utc(2024, 3, 1)},
    ("AAPL", "1h"): {"start": _utc(2024, 6, 17), "end": _utc(2024, 6, 22)},
    ("SPY", "1d"): {"start": _utc(2024, 2, 1), "end": _utc(2024, 4, 1)},
}


# -- the stack ---------------------------------------------------------------------------------


def _store_settings() -> dict[str, str]:
    """Return the data-store's ingest retry settings, where its settings know them.

    Every ``KTRDR_*`` variable a service does not know stops it at start, so these go to the
    data-store only, and only once it has them.
    """
    from ktrdr_data_store.config import DataStoreSettings

    wanted = {
        "ingest_write_attempts": str(WRITE_ATTEMPTS),
        "ingest_retry_delay_s": str(RETRY_DELAY_S),
    }
    fields = set(DataStoreSettings.__struct_fields__)
    return {f"KTRDR_{name.upper()}": value for name, value in wanted.items() if name in fields}


@dataclass
class PoisonStack(Stack):
    """``Stack`` with environment variables for one service only (the data-store's)."""

    service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def start_service(self, name: str) -> ChildProcess:
        """Start one service with the stack's environment plus its own."""
        env = {**self.env(), **self.service_env.get(name, {})}
        child = ChildProcess(
            name, [sys.executable, "-m", MODULES[name]], env, self.root / "logs" / f"{name}.log"
        )
        self.children[name] = child
        child.start()
        return child


@dataclass
class World:
    """A running stack, the handles a test reads it through, and the loads it started with."""

    stack: PoisonStack
    server: NatsServer
    nc: NATS
    http: httpx.AsyncClient
    jobs: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def js(self) -> JetStreamContext:
        """Return the JetStream context."""
        return self.nc.jetstream()

    @property
    def data_dir(self) -> Path:
        """Return the data dir the data-store writes."""
        return self.stack.data_dir

    @property
    def client(self) -> KtrdrClient:
        """Return a client on the stack's NATS."""
        return KtrdrClient(self.nc, timeout_s=10.0)

    async def load(self, symbol: str, timeframe: str, **fields: Any) -> str:
        """Publish a ``LoadData``; return its job id."""
        return await self.client.load_data(symbol, timeframe, **fields)

    async def ended(self, job_id: str) -> Any:
        """Wait for a job's terminal event and return it."""
        return await wait_for_job_event(self.js, job_id, TERMINAL, timeout_s=JOB_TIMEOUT_S)

    async def settled(self, timeout_s: float = 30.0) -> None:
        """Wait until no command is queued and every bar batch was acked or terminated."""
        try:
            async with asyncio.timeout(timeout_s):
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
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(
                f"bar batches still pending after {timeout_s}s (redelivered for ever?)"
                f"\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 25) -> str:
        """Return the end of the data-store's log, for failure messages."""
        return "== data-store log\n" + self.stack.children["data-store"].log_tail(lines)

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``ktrdr <args>`` against the api, as a user runs it."""
        argv = [sys.executable, "-m", "ktrdr_api.cli", "--url", self.stack.api_url, *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
        return await asyncio.to_thread(
            subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60
        )

    async def cli_json(self, *args: str) -> Any:
        """Run ``ktrdr <args> --json``; return its JSON (the exit code must be 0)."""
        done = await self.cli(*args, "--json")
        assert done.returncode == 0, f"ktrdr {' '.join(args)}: {done.stdout}{done.stderr}"
        return json.loads(done.stdout)


async def _connect(url: str) -> NATS:
    nc = NATS()
    # nats-py annotates the wait as int; it is seconds and takes a float
    await nc.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)  # type: ignore[arg-type]
    return nc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """Run the stack once for the module and load the starting datasets through it."""
    root = tmp_path_factory.mktemp("poisoning")
    server = NatsServer(store_dir=root / "jetstream")
    server.start()
    stack = PoisonStack(
        server.url,
        root,
        services=("ib-connector", "data-store", "api"),
        service_env={"data-store": _store_settings()},
    )
    nc = await _connect(server.url)
    http = httpx.AsyncClient(base_url=stack.api_url, timeout=30.0)
    try:
        await stack.up(nc, timeout_s=90)
        world = World(stack, server, nc, http)
        for (symbol, timeframe), fields in LOADS.items():
            world.jobs[(symbol, timeframe)] = await world.load(symbol, timeframe, **fields)
        for key, job_id in world.jobs.items():
            end = await world.ended(job_id)
            assert isinstance(end, JobCompleted), f"starting load {key}: {end}"
        await world.settled()
        yield world
    finally:
        await http.aclose()
        stack.down()
        await nc.close()
        server.stop()


# -- reading what is stored --------------------------------------------------------------------


def fingerprint(data_dir: Path, *, skip: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Return the sha256 of every bar and ledger file, but those of the ``skip`` datasets."""
    skipped = {f"bars/{symbol_key(s)}/{tf}/" for s, tf in skip}
    skipped |= {f"answered/{symbol_key(s)}.{tf}.json" for s, tf in skip}
    found: dict[str, str] = {}
    for folder in ("bars", "answered"):
        for path in sorted((data_dir / folder).rglob("*")):
            name = path.relative_to(data_dir).as_posix()
            if path.is_file() and not any(name.startswith(s) for s in skipped):
                found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_same_files(before: dict[str, str], after: dict[str, str], what: str) -> None:
    """Assert that two fingerprints are equal, naming the files that differ."""
    changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    assert not changed, f"{what}: files changed, appeared or went away: {changed}"


def stored(data_dir: Path, symbol: str, timeframe: str) -> pa.Table:
    """Return a dataset's bars as stored (every year file), sorted, ``ts`` as int64 ns."""
    folder = data_dir / "bars" / symbol_key(symbol) / timeframe
    tables = [pq.read_table(p) for p in sorted(folder.glob("*.parquet"))]
    if not tables:
        return pa.table({"ts": pa.array([], pa.int64())})
    table = pa.concat_tables(tables).sort_by("ts")
    return table.set_column(0, "ts", table.column("ts").cast(pa.int64()))


def bar_at(table: pa.Table, ts: int) -> dict[str, Any]:
    """Return the stored bar stamped ``ts`` as a dict (it must exist)."""
    rows = [r for r in table.to_pylist() if r["ts"] == ts]
    assert len(rows) == 1, f"{len(rows)} bars stamped {ts}"
    return dict(rows[0])


# -- reading the event log ---------------------------------------------------------------------


def _from_seq(seq: int) -> ConsumerConfig:
    return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq)


async def events_mark(js: JetStreamContext) -> int:
    """Return the event log's last sequence: what a test publishes next comes after it."""
    return int((await js.stream_info(streams.EVENTS.name or "")).state.last_seq)


async def raw_events(js: JetStreamContext, subject: str) -> list[dict[str, Any]]:
    """Return every event on ``subject`` now in the log, as JSON objects (any new enum value)."""
    sub = await js.subscribe(
        subject,
        stream=streams.EVENTS.name,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    found: list[dict[str, Any]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                return found
            found.append(dict(json.loads(msg.data)))
            if msg.metadata.num_pending == 0:
                return found
    finally:
        await sub.unsubscribe()


@dataclass(frozen=True)
class Segment:
    """A segment the data-store planned and dispatched for a job."""

    job_id: str
    segment_id: str
    start_ns: int
    end_ns: int


async def dispatched_segments(world: World, key: tuple[str, str]) -> list[Segment]:
    """Return the segments the starting load of ``key`` planned and dispatched."""
    job_id = world.jobs[key]
    events = await raw_events(world.js, subjects.job_events(job_id))
    (planned,) = [e for e in events if e["type"] == "planned"]
    sent = {s for e in events if e["type"] == "segments_dispatched" for s in e["segment_ids"]}
    segments = [
        Segment(job_id, s["segment_id"], _ns(s["start"]), _ns(s["end"]))
        for s in planned["segments"]
        if s["segment_id"] in sent
    ]
    assert segments, f"{key}: the starting load dispatched no segment: {events}"
    return segments


def _ns(text: str) -> int:
    return to_unix_nanos(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


async def segment_holding(world: World, key: tuple[str, str], ts: int) -> Segment:
    """Return the dispatched segment of ``key`` whose window holds ``ts``."""
    for segment in await dispatched_segments(world, key):
        if segment.start_ns <= ts < segment.end_ns:
            return segment
    raise AssertionError(f"{key}: no dispatched segment holds {ts}")


# -- forging and publishing batches ------------------------------------------------------------


def forge(
    symbol: str,
    timeframe: str,
    segment: Segment | None,
    bars: list[dict[str, Any]],
    *,
    start: int,
    end: int,
    job_id: str | None = None,
    segment_id: str | None = None,
) -> BarBatch:
    """Return a ``BarBatch`` of ``bars`` (dicts with ts, open, high, low, close, volume).

    Carries the job and segment id of ``segment`` unless ``job_id``/``segment_id`` say
    otherwise (None and no segment: a batch that names no segment at all).
    """
    return BarBatch(
        symbol=symbol,
        timeframe=timeframe,  # type: ignore[arg-type]
        job_id=job_id if job_id is not None else (segment.job_id if segment else None),
        segment_id=segment_id
        if segment_id is not None
        else (segment.segment_id if segment else None),
        start=start,
        end=end,
        ts=[b["ts"] for b in bars],
        open=[b["open"] for b in bars],
        high=[b["high"] for b in bars],
        low=[b["low"] for b in bars],
        close=[b["close"] for b in bars],
        volume=[b["volume"] for b in bars],
    )


@dataclass(frozen=True)
class Published:
    """A batch on the bus: its subject, its bytes and the event log's mark before it."""

    subject: str
    payload: bytes
    mark: int


async def publish(world: World, subject: str, batch: BarBatch) -> Published:
    """Publish ``batch`` on ``subject`` through JetStream, as msgpack (``inf`` stays a float)."""
    mark = await events_mark(world.js)
    payload = codec.encode(batch, content_type=codec.MSGPACK)
    await world.js.publish(subject, payload, headers=codec.headers_for(codec.MSGPACK))
    return Published(subject, payload, mark)


async def verdict(world: World, sent: Published, timeout_s: float = VERDICT_TIMEOUT_S) -> Any:
    """Return the store's word on a batch: its ``batch_rejected`` or ``bars_stored`` event.

    None when neither comes within the guard (an empty batch merged says nothing).
    """
    key, timeframe = subjects.parse_bars(sent.subject)
    sub = await world.js.subscribe(
        subjects.STORE_EVENTS,
        stream=streams.EVENTS.name,
        ordered_consumer=True,
        config=_from_seq(sent.mark + 1),
    )
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await sub.next_msg(timeout=None)
                event = dict(json.loads(msg.data))
                if event["type"] == "batch_rejected" and event["subject"] == sent.subject:
                    return event
                if (
                    event["type"] == "bars_stored"
                    and symbol_key(event["symbol"]) == key
                    and event["timeframe"] == timeframe.value
                ):
                    return event
    except TimeoutError:
        return None
    finally:
        await sub.unsubscribe()


async def assert_quarantined(
    world: World, sent: Published, codes: set[str], timeout_s: float = VERDICT_TIMEOUT_S
) -> dict[str, Any]:
    """Assert the batch was rejected with one of ``codes`` and is listed in the quarantine.

    Both by ``GET /api/v1/quarantine`` and by ``ktrdr data quarantine``; returns the event.
    """
    event = await verdict(world, sent, timeout_s)
    assert event is not None, (
        f"no batch_rejected for the batch on {sent.subject} within {timeout_s}s; "
        f"the store said nothing (taken as IB's answer?)\n{world.log_tail()}"
    )
    assert event["type"] == "batch_rejected", f"the batch on {sent.subject} was stored: {event}"
    assert event["code"] in codes, f"rejected with {event['code']!r}, want {codes}: {event}"
    entry_id = event.get("quarantine_id")
    assert entry_id, f"rejected but not quarantined: {event}"
    response = await world.http.get("/api/v1/quarantine")
    assert response.status_code == 200, response.text
    entries = {e["id"]: e for e in response.json()["entries"]}
    assert entry_id in entries, f"GET /api/v1/quarantine does not list {entry_id}: {entries}"
    entry = entries[entry_id]
    assert (entry["subject"], entry["code"], entry["bytes"]) == (
        sent.subject,
        event["code"],
        len(sent.payload),
    ), entry
    listed = await world.cli_json("data", "quarantine")
    assert entry_id in {e["id"] for e in listed["entries"]}, f"ktrdr data quarantine: {listed}"
    return dict(event)


async def assert_untouched(world: World, before: dict[str, str], what: str) -> None:
    """Assert, once every batch is settled, that no bar or ledger file changed."""
    await world.settled()
    assert_same_files(before, fingerprint(world.data_dir), what)


def iso(ns: int) -> str:
    """Return RFC 3339 for Unix nanoseconds."""
    return dt.datetime.fromtimestamp(ns / SECOND_NS, UTC).isoformat().replace("+00:00", "Z")


async def dataset_list(world: World) -> dict[tuple[str, str], dict[str, Any]]:
    """Return ``GET /api/v1/data`` by (symbol, timeframe); it must answer 200."""
    response = await world.http.get("/api/v1/data")
    assert response.status_code == 200, f"GET /api/v1/data: {response.status_code} {response.text}"
    return {(d["symbol"], d["timeframe"]): d for d in response.json()["datasets"]}


# -- 1. +inf high ------------------------------------------------------------------------------


async def test_symptom_1_inf_high_is_quarantined_and_the_good_bar_stays(world: World) -> None:
    key = ("AAPL", "1d")
    before = fingerprint(world.data_dir)
    good = bar_at(stored(world.data_dir, *key), to_unix_nanos(_utc(2024, 3, 1)))
    segment = await segment_holding(world, key, good["ts"])
    bad = {**good, "high": float("inf")}
    batch = forge(*key, segment, [bad], start=good["ts"], end=good["ts"] + DAY_NS)
    sent = await publish(world, subjects.bars(*key), batch)

    await assert_quarantined(world, sent, {"invalid_bars"})
    await assert_untouched(world, before, "a +inf high")
    assert bar_at(stored(world.data_dir, *key), good["ts"]) == good
    window = {"start": iso(good["ts"]), "end": iso(good["ts"] + DAY_NS)}
    page = await world.http.get("/api/v1/data/AAPL/1d", params=window)
    assert page.status_code == 200, page.text
    (bar,) = page.json()["bars"]
    assert bar["high"] == good["high"], bar
    csv = await world.http.get("/api/v1/data/AAPL/1d", params={**window, "format": "csv"})
    assert csv.status_code == 200, csv.text
    assert len(csv.text.strip().splitlines()) == 2, csv.text  # a header and the one bar


# -- 2. high below low -------------------------------------------------------------------------


async def test_symptom_2_high_below_low_is_quarantined_and_nothing_stored(world: World) -> None:
    key = ("AAPL", "1d")
    before = fingerprint(world.data_dir)
    table = stored(world.data_dir, *key)
    good = bar_at(table, to_unix_nanos(_utc(2024, 3, 4)))
    segment = await segment_holding(world, key, good["ts"])
    bad = {**good, "open": 500.0, "high": 1.0, "low": 1000.0, "close": 500.0}
    batch = forge(*key, segment, [bad], start=good["ts"], end=good["ts"] + DAY_NS)
    sent = await publish(world, subjects.bars(*key), batch)

    await assert_quarantined(world, sent, {"invalid_bars"})
    await assert_untouched(world, before, "high 1.0, low 1000.0")
    assert stored(world.data_dir, *key).equals(table)


# -- 3. bars in 2200 and 1970 ------------------------------------------------------------------


async def test_symptom_3_bars_in_2200_and_1970_are_quarantined_and_loads_still_fetch(
    world: World,
) -> None:
    key = ("SPY", "1d")
    before = fingerprint(world.data_dir)
    table = stored(world.data_dir, *key)
    (segment, *_) = await dispatched_segments(world, key)
    good = bar_at(table, table.column("ts")[3].as_py())
    window = {"start": good["ts"], "end": good["ts"] + 3 * DAY_NS}
    assert segment.start_ns <= window["start"] and window["end"] <= segment.end_ns
    for when in (_utc(2200, 1, 1), _utc(1970, 1, 2)):
        bad = {**good, "ts": to_unix_nanos(when)}
        sent = await publish(
            world, subjects.bars(*key), forge(*key, segment, [good, bad], **window)
        )
        await assert_quarantined(world, sent, {"invalid_bars"})
    await assert_untouched(world, before, "bars stamped 2200 and 1970")

    # The tail after the stored bars and the head before them still load.
    others = fingerprint(world.data_dir, skip=(key,))
    first, last = table.column("ts")[0].as_py(), table.column("ts")[-1].as_py()
    for fields in ({"mode": "tail"}, {"mode": "backfill", "start": _utc(2024, 1, 2)}):
        end = await world.ended(await world.load(*key, **fields))
        assert isinstance(end, JobCompleted), f"{fields}: {end}"
        assert isinstance(end.result, LoadResult) and end.result.fetched_bars > 0, (
            f"a {fields['mode']} load after the 2200/1970 batches fetched nothing: {end.result}"
        )
    await world.settled()
    after = stored(world.data_dir, *key).column("ts")
    assert after[0].as_py() < first and after[-1].as_py() > last, (iso(first), iso(last))
    assert after[-1].as_py() < to_unix_nanos(_utc(2024, 6, 29)), iso(after[-1].as_py())
    assert_same_files(others, fingerprint(world.data_dir, skip=(key,)), "SPY 1d's loads")


# -- 4. an answered window claimed without a segment -------------------------------------------


async def test_symptom_4_an_empty_batch_without_a_dispatched_segment_is_quarantined(
    world: World,
) -> None:
    key = ("AAPL", "1d")
    before = fingerprint(world.data_dir)
    ledger = world.data_dir / "answered" / "AAPL.1d.json"
    ledger_bytes = ledger.read_bytes()
    (segment, *_) = await dispatched_segments(world, key)
    claims = {  # 1980-2024 answered empty: no ids, a made-up job, a real job outside its segment
        "no segment": forge(
            *key,
            None,
            [],
            start=to_unix_nanos(_utc(1980, 1, 1)),
            end=to_unix_nanos(_utc(2024, 1, 1)),
        ),
        "made-up job": forge(
            *key,
            None,
            [],
            start=to_unix_nanos(_utc(1980, 1, 1)),
            end=to_unix_nanos(_utc(2024, 1, 1)),
            job_id=new_job_id(),
            segment_id="s0",
        ),
        "outside its segment": forge(
            *key,
            segment,
            [],
            start=to_unix_nanos(_utc(1980, 1, 1)),
            end=to_unix_nanos(_utc(1990, 1, 1)),
        ),
    }
    for name, batch in claims.items():
        sent = await publish(world, subjects.bars(*key), batch)
        event = await verdict(world, sent)
        assert event is not None and event["type"] == "batch_rejected", (
            f"{name}: no batch_rejected ({event}); ledger now {ledger.read_bytes()!r}"
        )
        await assert_quarantined(world, sent, {"unknown_segment"})
    await assert_untouched(world, before, "claims that IB answered 1980-2024 empty")
    assert ledger.read_bytes() == ledger_bytes
    coverage = await world.http.get("/api/v1/data/AAPL/1d/coverage")
    assert coverage.status_code == 200, coverage.text
    empty = coverage.json().get("answered_empty", [])
    assert not [r for r in empty if r["start"] < "2023"], f"answered_empty: {empty}"


# -- 5. a subject that is not the body's -------------------------------------------------------


async def test_symptom_5_a_batch_whose_subject_is_not_its_body_is_quarantined(
    world: World,
) -> None:
    key = ("AAPL", "1d")
    before = fingerprint(world.data_dir)
    good = bar_at(stored(world.data_dir, *key), to_unix_nanos(_utc(2024, 3, 5)))
    segment = await segment_holding(world, key, good["ts"])
    changed = {**good, "close": good["low"]}  # what would overwrite AAPL 1d
    batch = forge(*key, segment, [changed], start=good["ts"], end=good["ts"] + DAY_NS)
    sent = await publish(world, subjects.bars("MSFT", "1w"), batch)

    await assert_quarantined(world, sent, {"invalid_bars"})
    await assert_untouched(world, before, "AAPL 1d published on ktrdr.bars.MSFT.1w")
    assert not (world.data_dir / "bars" / "MSFT" / "1w").exists()


# -- 6. off the grid; a symbol never loaded ----------------------------------------------------


async def test_symptom_6_an_off_grid_bar_and_a_never_loaded_symbol_are_quarantined(
    world: World,
) -> None:
    key = ("AAPL", "1d")
    before = fingerprint(world.data_dir)
    good = bar_at(stored(world.data_dir, *key), to_unix_nanos(_utc(2024, 3, 6)))
    segment = await segment_holding(world, key, good["ts"])
    half_second = {**good, "ts": good["ts"] + SECOND_NS // 2}
    sent = await publish(
        world,
        subjects.bars(*key),
        forge(*key, segment, [half_second], start=good["ts"], end=good["ts"] + DAY_NS),
    )
    await assert_quarantined(world, sent, {"invalid_bars"})

    # ZZZZ: a well-formed bar, once with made-up ids, once with a real AAPL segment's.
    for job_id, segment_id in ((new_job_id(), "s0"), (segment.job_id, segment.segment_id)):
        batch = forge(
            "ZZZZ",
            "1d",
            None,
            [good],
            start=good["ts"],
            end=good["ts"] + DAY_NS,
            job_id=job_id,
            segment_id=segment_id,
        )
        sent = await publish(world, subjects.bars("ZZZZ", "1d"), batch)
        await assert_quarantined(world, sent, {"unknown_segment"})
    await assert_untouched(world, before, "an off-grid bar and ZZZZ batches")
    assert not (world.data_dir / "bars" / "ZZZZ").exists()
    assert not (world.data_dir / "answered" / "ZZZZ.1d.json").exists()
    assert "ZZZZ" not in {s for s, _ in await dataset_list(world)}


# -- 7. a truncated year file ------------------------------------------------------------------


async def test_symptom_7_a_truncated_year_file_damages_only_its_dataset_and_is_repaired(
    world: World,
) -> None:
    key = ("AAPL", "1d")
    damaged = world.data_dir / "bars" / "AAPL" / "1d" / "2023.parquet"
    name = "bars/AAPL/1d/2023.parquet"
    whole = damaged.read_bytes()
    bars_before = stored(world.data_dir, *key)
    others = fingerprint(world.data_dir, skip=(key,))
    damaged.write_bytes(whole[: len(whole) // 2])
    failures: list[str] = []  # each part is tried even when one before it fails
    try:
        parts: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("listing and queries", lambda: _damaged_is_local(world, name)),
            ("a load of the damaged dataset", lambda: _load_of_damaged_fails(world)),
            ("repair", lambda: _repair(world, name, whole, bars_before)),
        ]
        for what, part in parts:
            try:
                await part()
            except AssertionError as e:
                failures.append(f"{what}: {e}")
    finally:
        if damaged.exists() and damaged.read_bytes() != whole and not _repaired(world, name):
            damaged.write_bytes(whole)  # leave the module's dataset whole for the tests after
    await world.settled()
    assert_same_files(others, fingerprint(world.data_dir, skip=(key,)), "AAPL 1d's damage")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def _repaired(world: World, name: str) -> bool:
    return any((world.data_dir / "damaged").glob(f"*/{name}"))


async def _damaged_is_local(world: World, name: str) -> None:
    listed = await dataset_list(world)
    assert set(LOADS) <= set(listed), f"GET /api/v1/data lost datasets: {sorted(listed)}"
    assert name in (listed[("AAPL", "1d")].get("damaged") or ""), listed[("AAPL", "1d")]
    assert all(not d.get("damaged") for k, d in listed.items() if k != ("AAPL", "1d")), listed
    ls = await world.cli_json("data", "ls")
    (aapl,) = [d for d in ls["datasets"] if (d["symbol"], d["timeframe"]) == ("AAPL", "1d")]
    assert name in (aapl.get("damaged") or ""), f"ktrdr data ls: {aapl}"

    year = {"start": "2023-11-01T00:00:00Z", "end": "2023-12-01T00:00:00Z"}
    problems = [
        await world.http.get("/api/v1/data/AAPL/1d/coverage"),
        await world.http.get("/api/v1/data/AAPL/1d", params=year),
    ]
    for problem in problems:
        assert problem.status_code == 409, f"{problem.url}: {problem.status_code} {problem.text}"
        body = problem.json()
        assert body["code"] == "dataset_damaged" and name in body["detail"], body
    for path in ("/api/v1/data/MSFT/1d/coverage", "/api/v1/data/MSFT/1d", "/api/v1/data/AAPL/1h"):
        answer = await world.http.get(path)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text}"
    msft = await world.http.get("/api/v1/data/MSFT/1d", params={"limit": 5})
    assert len(msft.json()["bars"]) == 5
    # NEW: the problem names the repair command.
    for problem in problems:
        assert "ktrdr data repair AAPL 1d" in problem.json()["detail"], problem.json()


async def _load_of_damaged_fails(world: World) -> None:
    end = await world.ended(await world.load("AAPL", "1d", mode="full", start=_utc(2023, 10, 2)))
    assert isinstance(end, JobFailed), f"a load of a damaged dataset: {end}"
    assert end.code == "dataset_damaged", f"{end.code}: {end.message}"


async def _repair(world: World, name: str, whole: bytes, bars_before: pa.Table) -> None:
    """NEW: ``POST .../repair`` moves the file aside, forgets its range and reloads it."""
    answer = await world.http.post("/api/v1/data/AAPL/1d/repair")
    assert answer.status_code in (200, 202), f"repair: {answer.status_code} {answer.text}"
    reply = answer.json()
    assert name in reply.get("moved", []) and reply.get("job_id"), reply
    kept = list((world.data_dir / "damaged").glob(f"*/{name}"))
    assert len(kept) == 1 and kept[0].read_bytes() == whole[: len(whole) // 2], kept
    end = await world.ended(reply["job_id"])
    assert isinstance(end, JobCompleted), f"the repair's reload: {end}"
    await world.settled()
    assert stored(world.data_dir, "AAPL", "1d").equals(bars_before), "not whole after repair"
    listed = await dataset_list(world)
    assert not listed[("AAPL", "1d")].get("damaged"), listed[("AAPL", "1d")]
    coverage = await world.http.get("/api/v1/data/AAPL/1d/coverage")
    assert coverage.status_code == 200, coverage.text
    # The CLI's repair of a whole dataset moves nothing and starts nothing.
    again = await world.cli_json("data", "repair", "AAPL", "1d")
    assert not again.get("moved") and not again.get("job_id"), again


# -- 8. a write that keeps failing -------------------------------------------------------------


async def test_symptom_8_a_batch_whose_write_keeps_failing_is_retried_then_quarantined(
    world: World,
) -> None:
    key = ("AAPL", "1h")
    year_file = world.data_dir / "bars" / "AAPL" / "1h" / "2024.parquet"
    whole = year_file.read_bytes()
    good = stored(world.data_dir, *key).slice(0, 1).to_pylist()[0]
    segment = await segment_holding(world, key, good["ts"])
    others = fingerprint(world.data_dir, skip=(key,))
    log = world.stack.children["data-store"].log_path
    log_at = log.stat().st_size
    year_file.unlink()
    year_file.mkdir()  # the year file's path is a directory: no write can replace it
    try:
        batch = forge(*key, segment, [good], start=good["ts"], end=good["ts"] + HOUR_NS)
        sent = await publish(world, subjects.bars(*key), batch)
        bound = 30.0 if _store_settings() else 60.0  # a guard: 3 quick tries, or 5 slow ones
        await assert_quarantined(world, sent, {"write_failed", "dataset_damaged"}, bound)
        await world.settled()
        with log.open("rb") as f:
            f.seek(log_at)
            said = f.read().decode(errors="replace").splitlines()
        tracebacks = sum(line.startswith("Traceback") for line in said)
        assert tracebacks <= 1, f"{tracebacks} tracebacks for one failing batch"
        # one line per failed try, the traceback once, the rejection: a few dozen lines at most
        assert len(said) <= 60, f"{len(said)} log lines for one failing batch:\n" + "\n".join(
            said[:40]
        )
    finally:
        if year_file.is_dir():
            shutil.rmtree(year_file)
        if not year_file.exists():
            year_file.write_bytes(whole)
    await world.settled()
    assert_same_files(others, fingerprint(world.data_dir, skip=(key,)), "AAPL 1h's failing write")


# -- 9. a corrupt instrument book and a corrupt ledger -----------------------------------------


async def test_symptom_9_a_corrupt_instrument_book_and_ledger_stay_local(world: World) -> None:
    book = world.data_dir / "instruments.json"
    assert book.exists(), "no instruments.json after the starting loads"
    before = fingerprint(world.data_dir)
    book.write_bytes(b"{ not json")
    new = [("AAPL", "1w"), ("MSFT", "1h"), ("SPY", "1h")]
    window = {"start": _utc(2024, 6, 3), "end": _utc(2024, 6, 26)}
    jobs = [await world.load(s, tf, **window) for s, tf in new]
    for (symbol, timeframe), job_id in zip(new, jobs, strict=True):
        end = await world.ended(job_id)
        assert isinstance(end, JobCompleted), f"{symbol} {timeframe} with a corrupt book: {end}"
        assert isinstance(end.result, LoadResult) and end.result.fetched_bars > 0, end.result
    await world.settled()
    for symbol, timeframe in new:
        assert stored(world.data_dir, symbol, timeframe).num_rows > 0, (symbol, timeframe)
    json.loads(book.read_bytes())  # the book is a cache: rewritten whole
    assert_same_files(before, fingerprint(world.data_dir, skip=tuple(new)), "the new loads")

    ledger = world.data_dir / "answered" / "AAPL.1d.json"
    kept = ledger.read_bytes()
    others = fingerprint(world.data_dir, skip=(("AAPL", "1d"),))
    ledger.write_bytes(b"[[1, 2], oops")
    try:
        listed = await dataset_list(world)
        damaged = {k: d.get("damaged") for k, d in listed.items() if d.get("damaged")}
        assert list(damaged) == [("AAPL", "1d")], f"damaged datasets: {damaged}"
        assert "answered/AAPL.1d.json" in str(damaged[("AAPL", "1d")]), damaged
        coverage = await world.http.get("/api/v1/data/AAPL/1d/coverage")
        assert coverage.status_code == 409, coverage.text
        assert coverage.json()["code"] == "dataset_damaged", coverage.json()
        for symbol, timeframe in [("MSFT", "1d"), ("AAPL", "1h"), *new]:
            answer = await world.http.get(f"/api/v1/data/{symbol}/{timeframe}/coverage")
            assert answer.status_code == 200, f"{symbol} {timeframe}: {answer.text}"
        assert_same_files(
            others, fingerprint(world.data_dir, skip=(("AAPL", "1d"),)), "AAPL 1d's corrupt ledger"
        )
        end = await world.ended(await world.load("MSFT", "1d", mode="tail"))
        assert isinstance(end, JobCompleted), f"MSFT 1d beside a damaged ledger: {end}"
    finally:
        ledger.write_bytes(kept)
    await world.settled()


# -- 10. a full disk ---------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Any:
    """Mount a tmpfs of ``size`` on ``path`` (skip when mounting is refused); unmount after."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write a filler file into ``path`` until its disk is full; return the file."""
    filler = path / "filler"
    block = b"\0" * (64 * 1024)
    with filler.open("wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return filler


async def _progress_until(
    js: JetStreamContext, job_id: str, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """Return the job's first event that is ``wanted``; None when the job ends without one."""
    sub = await js.subscribe(
        subjects.job_events(job_id),
        stream=streams.EVENTS.name,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        async with asyncio.timeout(JOB_TIMEOUT_S):
            while True:
                event = dict(json.loads((await sub.next_msg(timeout=None)).data))
                if wanted(event):
                    return event
                if event["type"] in TERMINAL:
                    return event
    finally:
        await sub.unsubscribe()


async def test_symptom_10_a_full_disk_pauses_a_load_until_space_returns(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "data") as data_dir:
        server = NatsServer(store_dir=tmp_path / "jetstream")
        server.start()
        stack = PoisonStack(server.url, tmp_path, services=("ib-connector", "data-store"))
        nc = await _connect(server.url)
        try:
            await stack.up(nc, timeout_s=90)
            js = nc.jetstream()
            filler = fill(data_dir)
            job_id = await KtrdrClient(nc, timeout_s=10.0).load_data(
                "SPY", "1h", start=_utc(2024, 6, 3), end=_utc(2024, 6, 8)
            )
            said = await _progress_until(
                js, job_id, lambda e: e["type"] == "progress" and e.get("reason") == "storage_full"
            )
            log = "\n" + stack.children["data-store"].log_tail()
            assert said is not None and said["type"] == "progress", (
                f"the load on a full disk ended without saying storage_full: {said}{log}"
            )
            assert str(data_dir) in said.get("message", ""), said
            leftovers = [
                p.name
                for p in data_dir.rglob("*")
                if p.is_file() and p != filler and ("tmp" in p.name or p.name.startswith("."))
            ]
            assert not leftovers, f"temp files left on the full disk: {leftovers}"
            for part in data_dir.rglob("*.parquet"):
                pq.read_table(part)  # nothing half-written

            filler.unlink()
            end = await wait_for_job_event(js, job_id, TERMINAL, timeout_s=JOB_TIMEOUT_S)
            assert isinstance(end, JobCompleted), f"after space returned: {end}{log}"
            assert isinstance(end.result, LoadResult) and end.result.fetched_bars > 0
            rows = stored(data_dir, "SPY", "1h").num_rows
            assert rows >= end.result.fetched_bars > 0, (rows, end.result)
        finally:
            stack.down()
            await nc.close()
            server.stop()
