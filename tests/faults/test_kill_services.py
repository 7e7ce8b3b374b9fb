"""kill -9 each service in turn during multi-symbol loads; the store ends as a fault-free run's.

The stack runs as real processes (nats-server, the simulator, ib-connector, data-store,
trainer, api). Four waves of three loads each run once without faults and once while one
service after another (connector, data-store, trainer, api; 20 kills in all) is killed with
SIGKILL at a random moment and restarted. Every job must complete with no failed segment, and
the rows in the Parquet store must hash the same as the fault-free run's.

The faulted run is repeated with the store in a bucket on SeaweedFS (``KTRDR_STORE_URL``),
whose server is itself killed with SIGKILL and restarted once a wave besides: its rows must
hash the same as the local fault-free run's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import JobCompleted, LoadResult
from ktrdr_shared.store.remote import Bucket
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.seaweed import SeaweedServer, store_url
from ktrdr_shared.testing.stack import Stack
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UTC = dt.UTC
SERVICES = ("ib-connector", "data-store", "trainer", "api")
SYMBOLS = (("AAPL", "5m"), ("EURUSD", "15m"), ("ES", "15m"))
WAVES = 4
KILLS_PER_WAVE = 5  # 20 kills, each service five times


def wave_range(wave: int) -> tuple[dt.datetime, dt.datetime]:
    """Return wave ``wave``'s range: consecutive fortnights going back from late June 2024."""
    end = dt.datetime(2024, 6, 28, tzinfo=UTC) - dt.timedelta(days=14 * wave)
    return end - dt.timedelta(days=14), end


def canonical_rows(data_dir: Path, bucket: Bucket | None = None) -> dict[str, str]:
    """Return a hash of every dataset's rows (sorted by ts), independent of file layout, from
    the data directory or the bucket."""
    fs = bucket.fs if bucket is not None else pafs.LocalFileSystem()
    base = bucket.key("bars") if bucket is not None else str(data_dir / "bars")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    folders = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.Directory and i.path[len(base) :].count("/") == 2
    )
    hashes = {}
    for folder in folders:
        table = pq.read_table(folder, filesystem=fs).sort_by("ts")
        digest = hashlib.sha256()
        for name in table.column_names:
            digest.update(name.encode() + repr(table.column(name).to_pylist()).encode())
        key, timeframe = folder.split("/")[-2:]
        hashes[f"{key}/{timeframe}"] = f"{table.num_rows}:{digest.hexdigest()}"
    return hashes


async def run_waves(
    stack: Stack,
    nc: NATS,
    js: JetStreamContext,
    rng: random.Random | None,
    kills: list[str],
    seaweed: SeaweedServer | None = None,
) -> None:
    client = KtrdrClient(nc)
    victims = iter(SERVICES * KILLS_PER_WAVE)
    for wave in range(WAVES):
        start, end = wave_range(wave)
        jobs = [await client.load_data(sym, tf, start=start, end=end) for sym, tf in SYMBOLS]
        if rng is not None:
            for i in range(KILLS_PER_WAVE):
                victim = next(victims)
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                stack.children[victim].restart()  # SIGKILL, then start again
                kills.append(victim)
                await stack.wait_ready(nc, [victim])
                if seaweed is not None and i == wave % KILLS_PER_WAVE:
                    seaweed.kill()  # the object store too, once a wave
                    kills.append("seaweedfs")
                    await asyncio.sleep(rng.uniform(0.05, 0.6))
                    await asyncio.to_thread(seaweed.start)
        for job_id in jobs:
            done = await wait_for_job_event(
                js, job_id, {"completed", "failed", "cancelled"}, timeout_s=180
            )
            assert isinstance(done, JobCompleted), done
            assert isinstance(done.result, LoadResult)
            assert not done.result.failed_segments, done.result.failed_segments


async def one_run(
    tmp: Path, seed: int | None, *, on_bucket: bool = False
) -> tuple[dict[str, str], list[str]]:
    server = NatsServer(store_dir=tmp / "jetstream")
    server.start()
    seaweed = SeaweedServer(tmp / "seaweedfs") if on_bucket else None
    env: dict[str, str] = {}
    bucket = None
    if seaweed is not None:
        seaweed.start()
        url = store_url()
        env = seaweed.store_env(url) | {"KTRDR_INGEST_RETRY_MAX_DELAY_S": "2"}  # back soon
        bucket = seaweed.bucket(url)
    stack = Stack(server.url, tmp, services=SERVICES, extra_env=env)
    nc = NATS()
    await nc.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    kills: list[str] = []
    try:
        await stack.up(nc, timeout_s=90)
        rng = None if seed is None else random.Random(seed)
        await run_waves(stack, nc, nc.jetstream(), rng, kills, seaweed)
        codes = stack.down()
        assert all(code == 0 for code in codes.values()), codes  # clean SIGTERM exits
        rows = canonical_rows(stack.data_dir, bucket)
    finally:
        stack.down()
        await nc.close()
        server.stop()
        if seaweed is not None:
            seaweed.stop()
    return rows, kills


async def test_kill_9_each_service_in_turn_leaves_the_fault_free_store(tmp_path: Path) -> None:
    reference, _ = await one_run(tmp_path / "fault-free", seed=None)
    assert len(reference) == len(SYMBOLS)
    faulted, kills = await one_run(tmp_path / "faulted", seed=20241121)
    assert len(kills) == WAVES * KILLS_PER_WAVE == 20
    assert {k: kills.count(k) for k in SERVICES} == dict.fromkeys(SERVICES, 5)
    assert faulted == reference

    on_bucket, kills = await one_run(tmp_path / "bucket", seed=20241202, on_bucket=True)
    assert kills.count("seaweedfs") == WAVES
    assert {k: kills.count(k) for k in SERVICES} == dict.fromkeys(SERVICES, 5)
    assert on_bucket == reference  # the same rows, in the bucket, through 24 kills
