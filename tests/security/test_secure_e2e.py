"""Secure mode end to end, with the trainer on "another host".

A real nats-server runs ``infra/nats/nats-secure.conf`` (one user per service, TLS with
client certificates) and listens on one end of a veth pair only. The trainer runs as a
process in its own network namespace, behind the other end: it reaches NATS over that
link, by the address the server certificate names, and cannot reach the host's loopback.
The connector (against the simulator) and the data-store run in this process, each as
its own NATS user. A load, a bar query and a training run on the loaded bars all complete,
and no connection meets a single permission violation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ktrdr_data_store.app import build_app as build_data_store
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_ib_connector.app import build_app as build_connector
from ktrdr_ib_connector.config import IbConnectorSettings
from ktrdr_ib_connector.testing import wait_connected
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared import streams, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import (
    BarsPage,
    Device,
    JobCompleted,
    JobEvent,
    LoadResult,
    LstmModel,
    ModelList,
    QueryBars,
    StartTraining,
    StatusRequest,
    TrainingResult,
    ZigZagLabel,
)
from ktrdr_shared.testing.auth import ConnectAs, TestUsers
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.netns import Netns, ip
from ktrdr_shared.types import Timeframe
from ktrdr_trainer.repository import ModelRepository

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

NOW = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)  # the simulator's frozen "now"
START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)  # about 1000 hourly EURUSD bars to NOW
TIME_SCALE = 0.01
JOB_TIMEOUT_S = 40.0

# From inside the namespace: connect to (host, port); exit 0 when it connects, 1 when not.
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError as e:
    print(type(e).__name__, e)
    sys.exit(1)
"""


_ip = ip


@pytest.fixture
def netns() -> Iterator[Netns]:
    """Create a namespace and a veth pair (10.213.x.1 here, 10.213.x.2 inside); remove both."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` binary (iproute2): cannot create a network namespace")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    used = _ip("-4", "-o", "addr").stdout
    x = secrets.choice([n for n in range(256) if f"10.213.{n}." not in used])
    tag = secrets.token_hex(3)
    ns = Netns(name=f"ktrdr-e2e-{tag}", host_ip=f"10.213.{x}.1", inner_ip=f"10.213.{x}.2")
    host_end, inner_end = f"kte{tag}h", f"kte{tag}n"
    added = _ip("netns", "add", ns.name)
    if added.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {added.stderr.strip()}")
    try:
        for args in (
            ("link", "add", host_end, "type", "veth", "peer", "name", inner_end),
            ("link", "set", inner_end, "netns", ns.name),
            ("addr", "add", f"{ns.host_ip}/30", "dev", host_end),
            ("link", "set", host_end, "up"),
            ("-n", ns.name, "addr", "add", f"{ns.inner_ip}/30", "dev", inner_end),
            ("-n", ns.name, "link", "set", inner_end, "up"),
            ("-n", ns.name, "link", "set", "lo", "up"),
        ):
            done = _ip(*args)
            if done.returncode != 0:
                pytest.skip(f"cannot set up the veth pair: ip {' '.join(args)}: {done.stderr}")
        yield ns
    finally:
        _ip("netns", "del", ns.name)  # takes the inner end, and with it the pair, along
        _ip("link", "del", host_end)  # in case the pair outlived it


@pytest.fixture
def secure_host(netns: Netns) -> str:
    """The secure server listens on the host's veth address only (its certificate names it)."""
    return netns.host_ip


@dataclass
class Trainer:
    """The trainer process inside the namespace, logging to ``log``."""

    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        """Return the end of the trainer's log (stdout and stderr)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def trainer(
    tmp_path: Path, netns: Netns, server: NatsServer, users: TestUsers, declared: None
) -> Iterator[Trainer]:
    """Start ``python -m ktrdr_trainer`` in the namespace as the trainer user; kill it after."""
    password_file = tmp_path / "trainer.password"
    password_file.write_text(users.passwords["trainer"])
    password_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env |= {k: v for k, v in users.env("trainer").items() if k != "KTRDR_NATS_PASSWORD"}
    env |= {
        "KTRDR_NATS_URL": f"tls://{netns.host_ip}:{server.port}",
        "KTRDR_NATS_PASSWORD_FILE": str(password_file),
        "KTRDR_DATA_DIR": str(tmp_path / "trainer-scratch"),
        "KTRDR_TRAINER_THREADS": "1",
        "KTRDR_NATS_DECLARE_WAIT_S": "10",
        "OMP_NUM_THREADS": "1",
    }
    log = tmp_path / "trainer.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            netns.exec(sys.executable, "-m", "ktrdr_trainer"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield Trainer(process, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def probe(netns: Netns, host: str, port: int) -> tuple[bool, str]:
    """Return whether a TCP connect to ``host:port`` from inside the namespace succeeds."""
    child = await asyncio.create_subprocess_exec(
        *netns.exec(sys.executable, "-c", PROBE, host, str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await child.communicate()
    return child.returncode == 0, out.decode(errors="replace").strip()


def connections(monitor_port: int) -> list[dict[str, object]]:
    """Return the server's client connections, with their users (``/connz?auth=true``)."""
    url = f"http://127.0.0.1:{monitor_port}/connz?auth=true&limit=1000"
    with urllib.request.urlopen(url, timeout=5) as reply:
        found: list[dict[str, object]] = json.load(reply)["connections"]
    return found


async def trainer_connected(
    monitor_port: int, netns: Netns, trainer: Trainer
) -> set[tuple[object, object]]:
    """Wait until the server lists the trainer user connected from the namespace's address;
    return every connection's (user, address)."""
    deadline = asyncio.get_running_loop().time() + JOB_TIMEOUT_S
    while True:
        found = await asyncio.to_thread(connections, monitor_port)
        by_user = {(c.get("authorized_user"), c.get("ip")) for c in found}
        if ("trainer", netns.inner_ip) in by_user:
            return by_user
        code = trainer.process.poll()
        assert code is None, f"the trainer exited with {code}:\n{trainer.tail()}"
        assert asyncio.get_running_loop().time() < deadline, (by_user, trainer.tail())
        await asyncio.sleep(0.2)


async def until_done(client: KtrdrClient, job_id: str, trainer: Trainer) -> list[JobEvent]:
    """Follow a training job to its end; fail at once, with its log, if the trainer dies."""

    async def follow() -> list[JobEvent]:
        return [e async for e in client.job_events(job_id)]

    following = asyncio.ensure_future(follow())
    try:
        async with asyncio.timeout(JOB_TIMEOUT_S):
            while not following.done():
                code = trainer.process.poll()
                assert code is None, f"the trainer exited with {code}:\n{trainer.tail()}"
                await asyncio.wait({following}, timeout=0.2)
    except TimeoutError:
        pytest.fail(
            f"training job {job_id} did not end in {JOB_TIMEOUT_S}s; trainer log:\n{trainer.tail()}"
        )
    finally:
        following.cancel()
    return following.result()


async def test_load_query_and_train_in_secure_mode_with_the_trainer_on_another_host(
    server: NatsServer,
    users: TestUsers,
    netns: Netns,
    sim: IBGatewaySimulator,
    tmp_path: Path,
    connect_as: ConnectAs,
    declared: None,
    trainer: Trainer,
) -> None:
    monitor_port = int(server.extra_args[1])
    auth = {"KTRDR_NATS_URL": server.url}
    connector = build_connector(
        IbConnectorSettings.from_env(
            {
                **auth,
                **users.env("ib-connector"),
                "KTRDR_IB_PORT": str(sim.port),
                "KTRDR_IB_TIME_SCALE": str(TIME_SCALE),
                "KTRDR_IB_REQUEST_TIMEOUT_S": "5",
                "KTRDR_IB_RETRY_DELAY_S": "0.2",
            }
        )
    )
    store = build_data_store(
        DataStoreSettings.from_env(
            {
                **auth,
                **users.env("data-store"),
                "KTRDR_DATA_DIR": str(tmp_path / "data"),
                "KTRDR_GAP_FILL_INTERVAL_S": "0",
            }
        )
    )
    connector_nc, connector_violations = await connect_as("ib-connector")
    store_nc, store_violations = await connect_as("data-store")
    await connector.start(connector_nc)
    await store.start(store_nc)
    try:
        api_nc, api_violations = await connect_as("api")
        client = KtrdrClient(api_nc, timeout_s=10)

        # 1. a full load: the data-store plans it, the connector fetches from the simulator
        await wait_connected(api_nc)
        load_id = await client.load_data("EURUSD", "1h", start=START, end=NOW)
        loaded = [e async for e in client.job_events(load_id)]
        assert isinstance(loaded[-1], JobCompleted), loaded[-1]
        load = loaded[-1].result
        assert isinstance(load, LoadResult)
        assert load.fetched_bars > 500

        # 2. a bar query, as the api
        page = await client.request(
            subjects.STORE_QUERY, QueryBars(symbol="EURUSD", timeframe=Timeframe.H1), BarsPage
        )
        assert len(page.ts) > 0

        # 3. training on those bars, by the trainer in the namespace (it pages the bars
        # from the data-store over NATS: it has no access to the store's files)
        spec = StartTraining(
            symbols=["EURUSD"],
            timeframe=Timeframe.H1,
            start=START,
            epochs=2,
            label=ZigZagLabel(threshold=0.004),
            device=Device.CPU,
            model=LstmModel(seq_len=8, hidden_size=16),
        )
        job_id = await client.start_training(spec)
        # the server sees the trainer's connection come from the namespace's address
        by_user = await trainer_connected(monitor_port, netns, trainer)
        assert all(ip == netns.host_ip for user, ip in by_user if user != "trainer"), by_user
        # while it trains: the namespace cannot reach this host's loopback, only the veth
        on_loopback, _ = await probe(netns, "127.0.0.1", server.port)
        assert not on_loopback, "the namespace reached 127.0.0.1: it is not another host"
        on_veth, why_not = await probe(netns, netns.host_ip, server.port)
        assert on_veth, f"the namespace cannot reach {netns.host_ip}: {why_not}"

        events = await until_done(client, job_id, trainer)
        done = events[-1]
        assert isinstance(done, JobCompleted), f"{done}\ntrainer log:\n{trainer.tail()}"
        result = done.result
        assert isinstance(result, TrainingResult)

        # the trained model is listed: by the trainer (as the api asks) and in the object store
        models = await client.request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
        assert [(m.model_id, m.job_id) for m in models.models] == [(result.model_id, job_id)]
        admin_nc, _ = await connect_as("admin")
        stored = ModelRepository(await admin_nc.jetstream().object_store(streams.MODELS_BUCKET))
        manifest = await stored.manifest(result.model_id)
        assert manifest.spec.job_id == job_id
        # it trained on every loaded bar, paged from the data-store over the veth link
        assert manifest.data.rows == load.fetched_bars
    finally:
        await store.stop()
        await connector.stop()

    assert connector_violations.errors == []
    assert store_violations.errors == []
    assert api_violations.errors == []
    assert "violation" not in trainer.log.read_text().lower(), trainer.tail()
    server_log = server.log_file.read_text(errors="replace")
    assert "violation" not in server_log.lower(), [
        line for line in server_log.splitlines() if "iolation" in line
    ]
    assert trainer.process.poll() is None, f"the trainer exited:\n{trainer.tail()}"
