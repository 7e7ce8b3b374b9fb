"""The multi-host layout on one machine: gateway hosts and a GPU host as network namespaces.

This machine plays the core host: the nats-server, SeaweedFS and the data-store (its bars in
the bucket), all listening on a private bridge only. Two namespaces play gateway hosts, each
with an IB Gateway simulator and an ib-connector; a third plays the GPU host, with a trainer
that reads the bucket. A namespace has its own loopback, so everything it reaches of the core
host goes through the bridge, as over a network (the test checks it cannot reach the core
host's loopback).

Two one-session loads of 1-second bars are spread over both gateways (each answers requests,
neither counts a pacing violation) and stored in the bucket equal to the simulators' bars; the
trainer on the GPU host trains on them from the bucket, with the fingerprint of a trainer that
pages them over NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from ktrdr_data_store.objstore import ObjectBarStore
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_shared import subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import (
    JobCompleted,
    MlpModel,
    ModelList,
    StartTraining,
    StatusRequest,
    TrainingResult,
)
from ktrdr_shared.stack import ChildProcess, free_port, ping_services, service_command, sim_command
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.netns import Netns, hosts
from ktrdr_shared.testing.seaweed import SeaweedServer, store_url
from ktrdr_shared.testing.stack import SIM_NOW
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("pool")]

UTC = dt.UTC
ONE_DAY = (dt.datetime(2024, 6, 27, tzinfo=UTC), dt.datetime(2024, 6, 28, tzinfo=UTC))
TIME_SCALE = 0.5  # as tests/pool/test_gateway_pool.py, and for its reasons
TERMINAL = {"completed", "failed", "cancelled"}
TIMEOUT_S = 240.0

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
"""


async def reaches(host: Netns, address: str, port: int) -> bool:
    """Return whether a process in ``host`` can connect to ``address:port``."""
    probe = await asyncio.create_subprocess_exec(
        *host.exec(sys.executable, "-c", PROBE, address, str(port))
    )
    return await probe.wait() == 0


async def ledger(address: str, control_port: int) -> dict[str, Any]:
    """Return a simulator's ledger, read over the bridge."""
    reader, writer = await asyncio.open_connection(address, control_port)
    writer.write(b"GET /ledger HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    return dict(json.loads(raw.partition(b"\r\n\r\n")[2]))


async def until_listening(address: str, port: int) -> None:
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(address, port)
                writer.close()
                return
            await asyncio.sleep(0.1)


async def trained_on(nc: NATS, model_id: str) -> tuple[str | None, int | None]:
    models = await KtrdrClient(nc).request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
    [info] = [m for m in models.models if m.model_id == model_id]
    return info.data_sha256, info.data_rows


async def train(nc: NATS, trainer: ChildProcess) -> tuple[str | None, int | None]:
    spec = StartTraining(
        symbols=["AAPL"], timeframe=Timeframe.S1, epochs=1, batch_size=1024,
        model=MlpModel(hidden_sizes=[8]),
    )  # fmt: skip
    job_id = await KtrdrClient(nc).start_training(spec)
    done = await wait_for_job_event(nc.jetstream(), job_id, TERMINAL, TIMEOUT_S)
    assert isinstance(done, JobCompleted), (done, trainer.log_tail())
    assert isinstance(done.result, TrainingResult)
    return await trained_on(nc, done.result.model_id)


async def test_gateway_hosts_and_a_gpu_host_on_one_core_host(tmp_path: Path) -> None:
    with hosts(3) as (gateway_a, gateway_b, gpu):
        core_ip = gateway_a.host_ip
        nats_server = NatsServer(store_dir=tmp_path / "jetstream", host=core_ip)
        nats_server.start()
        seaweed = SeaweedServer(tmp_path / "seaweedfs", host=core_ip)
        children: list[ChildProcess] = []
        nc = NATS()
        try:
            seaweed.start()
            url = store_url()
            bucket_env = seaweed.store_env(url)
            common = {
                "KTRDR_NATS_URL": nats_server.url,
                "KTRDR_DATA_DIR": str(tmp_path / "data"),
                "KTRDR_GAP_FILL_INTERVAL_S": "0",
                "PYTHONUNBUFFERED": "1",
            }

            def start(name: str, argv: list[str], **env: str) -> ChildProcess:
                child = ChildProcess(name, argv, common | env, tmp_path / "logs" / f"{name}.log")
                children.append(child)
                child.start()
                return child

            start("data-store", service_command("data-store"), **bucket_env)
            gateways = []
            for name, host in (("a", gateway_a), ("b", gateway_b)):
                port, control = free_port(), free_port()
                sim = sim_command(port, control, TIME_SCALE, now=SIM_NOW, soft_delay_ms=0)
                start(f"sim-{name}", host.exec(*sim, "--host", host.inner_ip))
                start(
                    f"ib-connector-{name}",
                    host.exec(*service_command("ib-connector")),
                    KTRDR_IB_HOST=host.inner_ip,
                    KTRDR_IB_PORT=str(port),
                    KTRDR_IB_TIME_SCALE=str(TIME_SCALE),
                    KTRDR_IB_SEGMENTS_IN_FLIGHT="2",
                    KTRDR_IB_REQUEST_TIMEOUT_S="10",
                )
                gateways.append((host.inner_ip, control))
            gpu_trainer = start(
                "trainer-gpu-host", gpu.exec(*service_command("trainer")), **bucket_env
            )
            await nc.connect(nats_server.url, max_reconnect_attempts=-1)
            _, missing = await ping_services(
                nc, ["data-store", "ib-connector", "trainer"], asyncio.get_running_loop().time()
                + 90, lambda _: None
            )  # fmt: skip
            assert not missing, missing
            for address, control in gateways:
                await until_listening(address, control)
            # another host: the core host's loopback is not its loopback
            assert not await reaches(gateway_a, "127.0.0.1", nats_server.port)
            assert await reaches(gateway_a, core_ip, nats_server.port)

            client = KtrdrClient(nc)
            jobs = [
                await client.load_data(s, "1s", mode="full", start=ONE_DAY[0], end=ONE_DAY[1])
                for s in ("AAPL", "MSFT")
            ]
            for job in jobs:
                done = await wait_for_job_event(nc.jetstream(), job, TERMINAL, TIMEOUT_S)
                assert isinstance(done, JobCompleted), done
            ledgers = [await ledger(a, c) for a, c in gateways]
            asked = [sum(r["kind"] == "historical" for r in led["records"]) for led in ledgers]
            assert all(n > 0 for n in asked), f"a gateway host got no request: {asked}"
            assert [led["counters"]["pacing_violations"] for led in ledgers] == [0, 0]
            store = ObjectBarStore(seaweed.bucket(url))
            for symbol in ("AAPL", "MSFT"):
                want = expected_stamps(symbol, "STK", "1 secs", *ONE_DAY)
                assert store.stats(symbol, Timeframe.S1).rows == len(want), symbol

            from_bucket = await train(nc, gpu_trainer)  # the only trainer: it reads the bucket
            gpu_trainer.stop()
            paging = start("trainer-paging", service_command("trainer"))
            from_pages = await train(nc, paging)
            assert from_bucket == from_pages and from_bucket[1] == len(
                expected_stamps("AAPL", "STK", "1 secs", *ONE_DAY)
            )
            print(f"requests per gateway host: {asked}")
        finally:
            for child in reversed(children):
                child.stop()
            await nc.close()
            seaweed.stop()
            nats_server.stop()
