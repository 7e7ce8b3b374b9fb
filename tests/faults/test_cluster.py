"""A 3-node JetStream cluster loses a node mid-stream, and no bar is lost or stored twice.

Three nats-servers run the cluster configuration of ``infra/nats/cluster/``
(with its users, ``auth.conf``) on loopback ports; the streams are declared
at replication 3 (``KTRDR_NATS_REPLICAS=3``). A publisher, connected as the
ib-connector user, writes bar batches into KTRDR_BARS the way the connector
does (content-derived ``Nats-Msg-Id``, retried until acknowledged) while the
real data-store app, connected as its own user, ingests them into Parquet.
Half-way through, the node leading KTRDR_BARS is killed (SIGKILL). Every bar
published must end up in the store exactly once, and the stream must hold
each batch once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.messages import BarBatch
from ktrdr_shared.runtime import ServiceApp, connect
from ktrdr_shared.testing.auth import TestUsers
from ktrdr_shared.testing.events import dispatch_by_hand
from ktrdr_shared.testing.nats_server import NatsServer, free_port
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "infra/nats/cluster"
NODES = 3
BATCHES = 60
BARS_PER_BATCH = 100
MIN = 60 * 10**9
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC
JOB = "c" * 32  # the load whose one segment the batches answer (written by hand)
# What a client sees while the cluster forms or elects a new leader: retry.
RETRYABLE = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.APIError,
    nats.js.errors.NoStreamResponseError,
)


@dataclass
class Cluster:
    """Three nodes of infra/nats/cluster/node-N.conf, moved to free loopback ports."""

    nodes: dict[str, NatsServer]  # by server_name (ktrdr-nats-N)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(node.url for node in self.nodes.values())


@pytest.fixture
def users() -> TestUsers:
    return TestUsers()


@pytest.fixture
def cluster(tmp_path: Path, users: TestUsers) -> Iterator[Cluster]:
    route_ports = [free_port() for _ in range(NODES)]
    nodes: dict[str, NatsServer] = {}
    for n in range(1, NODES + 1):
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in route_ports)
        nodes[f"ktrdr-nats-{n}"] = NatsServer(
            store_dir=tmp_path / f"node-{n}",
            config_file=CLUSTER_DIR / f"node-{n}.conf",
            extra_args=[
                "-m",
                str(free_port()),
                "--cluster",
                f"nats://127.0.0.1:{route_ports[n - 1]}",
                "--routes",
                routes,
            ],
            env=users.server_env(),
        )
    try:
        for node in nodes.values():
            node.start()
        yield Cluster(nodes)
    finally:
        for node in nodes.values():
            node.stop()


def batch(index: int) -> BarBatch:
    first = index * BARS_PER_BATCH
    ts = [T0 + (first + i) * MIN for i in range(BARS_PER_BATCH)]
    prices = [100.0 + (first + i) / 100 for i in range(BARS_PER_BATCH)]
    volumes = [float(i % 7 + 1) for i in range(BARS_PER_BATCH)]
    return BarBatch(
        symbol="AAPL",
        timeframe=Timeframe.M1,
        job_id=JOB,
        segment_id="s0000",
        start=ts[0],
        end=ts[-1] + MIN,
        ts=ts,
        open=prices,
        high=[p + 0.5 for p in prices],
        low=[p - 0.5 for p in prices],
        close=prices,
        volume=volumes,
    )


async def publish_until_acked(js: JetStreamContext, b: BarBatch) -> None:
    """Publish like the connector: the same id on every retry, so JetStream keeps one copy."""
    payload = codec.encode(b, content_type=codec.MSGPACK)
    headers = {
        codec.CONTENT_TYPE: codec.MSGPACK,
        "Nats-Msg-Id": hashlib.sha256(payload).hexdigest()[:40],
    }
    async with asyncio.timeout(30):
        while True:
            try:
                await js.publish(
                    subjects.bars(b.symbol, b.timeframe), payload, headers=headers, timeout=2
                )
                return
            except RETRYABLE:  # no leader yet, or the connection is moving to another node
                await asyncio.sleep(0.1)


async def declare_at_r3(js: JetStreamContext) -> None:
    """Declare everything at R3 (the admin's step) once the cluster has elected its meta leader."""
    async with asyncio.timeout(30):
        while True:
            try:
                await streams.ensure_all(js)
                return
            except RETRYABLE:  # "JetStream system temporarily unavailable" while forming
                await asyncio.sleep(0.2)


async def drained(js: JetStreamContext) -> None:
    """Wait until the data-store has acknowledged every bar batch (acks follow durability)."""
    async with asyncio.timeout(60):
        while True:
            try:
                info = await js.consumer_info(streams.BARS.name or "", streams.STORE_BARS.durable)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
            except RETRYABLE:
                pass
            await asyncio.sleep(0.1)


@pytest.fixture
async def admin(cluster: Cluster, users: TestUsers) -> AsyncIterator[NATS]:
    nc = await connect(
        users.settings("admin", *cluster.urls), name="test-admin", reconnect_time_wait=0.2
    )
    try:
        yield nc
    finally:
        await nc.close()


async def test_a_killed_stream_leader_loses_no_bar_and_stores_none_twice(
    cluster: Cluster,
    users: TestUsers,
    admin: NATS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_NATS_REPLICAS", "3")  # what every process of a cluster sets
    await declare_at_r3(admin.jetstream())
    info = await admin.jetstream().stream_info(streams.BARS.name or "")
    assert info.config.num_replicas == 3
    settings = DataStoreSettings.from_env(
        {
            "KTRDR_NATS_URL": ",".join(cluster.urls),
            "KTRDR_DATA_DIR": str(tmp_path / "data"),
            **users.env("data-store"),
        }
    )
    await dispatch_by_hand(
        admin.jetstream(), JOB, "AAPL", Timeframe.M1, T0, T0 + BATCHES * BARS_PER_BATCH * MIN
    )
    store_app: ServiceApp = build_app(settings)
    await store_app.start(await connect(settings, name="data-store", reconnect_time_wait=0.2))
    publisher = await connect(
        users.settings("ib-connector", *cluster.urls), name="ib-connector", reconnect_time_wait=0.2
    )
    try:
        js = publisher.jetstream()
        for i in range(BATCHES // 2):
            await publish_until_acked(js, batch(i))
        leader = (await admin.jetstream().stream_info(streams.BARS.name or "")).cluster.leader
        cluster.nodes[leader].kill()  # SIGKILL, as a crashed machine
        for i in range(BATCHES // 2, BATCHES):
            await publish_until_acked(js, batch(i))
        await drained(admin.jetstream())
        after = await admin.jetstream().stream_info(streams.BARS.name or "")
        consumer = await admin.jetstream().consumer_info(
            streams.BARS.name or "", streams.STORE_BARS.durable
        )
    finally:
        await store_app.stop()
        await publisher.close()

    assert after.cluster.leader != leader  # the stream moved to a surviving node
    assert consumer.cluster is not None and consumer.cluster.replicas  # it inherited R3
    assert len(consumer.cluster.replicas) == NODES - 1  # its peers besides the leader
    assert after.state.messages == BATCHES  # retried publishes were deduplicated
    stored = ParquetBarStore(tmp_path / "data").read("AAPL", Timeframe.M1)
    expected = [batch(i) for i in range(BATCHES)]
    assert stored.column("ts").cast("int64").to_pylist() == [t for b in expected for t in b.ts]
    assert stored.column("close").to_pylist() == [c for b in expected for c in b.close]
    assert stored.column("volume").to_pylist() == [v for b in expected for v in b.volume]
