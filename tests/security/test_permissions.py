"""NATS with one user per service (infra/nats/auth.conf): restrictive, and sufficient.

A real nats-server runs the configuration `just up --secure` runs
(``infra/nats/nats-secure.conf``). Each user may publish and subscribe only
where its service's code does: the api cannot write bar batches or fetch
commands, the connector cannot give the commands of others, an anonymous
client is refused. And the permissions are enough: the connector (against the
simulator) and the data-store, each connected as its own user, complete a
load that the api user asks for, without one permission violation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from pathlib import Path

import nats
import nats.errors
import pytest
from ktrdr_api.event_log import EventLog
from ktrdr_api.gateway import Gateway
from ktrdr_api.snapshot import KTRDR_STREAMS, NatsSnapshot
from ktrdr_api.testing import load_events, publish_all
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
    DatasetList,
    JobCompleted,
    JobKind,
    LoadResult,
    QueryBars,
    StatusRequest,
)
from ktrdr_shared.runtime import flush_subscriptions
from ktrdr_shared.testing.auth import ConnectAs, TestUsers, Violations
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.tls import client_context
from nats.aio.msg import Msg
from nats.js.api import RePublish, StreamSource

pytestmark = pytest.mark.integration

NOW = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)  # the simulator's frozen "now"
TIME_SCALE = 0.01
JOB = "0123456789abcdef0123456789abcdef"


def tls_of(users: TestUsers, user: str) -> ssl.SSLContext:
    """Return ``user``'s TLS context: the CA and its client certificate, no password."""
    files = users.tls_files
    return client_context(
        str(files.ca_cert), str(files.client_cert(user)), str(files.client_key(user))
    )


async def test_an_anonymous_client_is_refused(server: NatsServer, users: TestUsers) -> None:
    # A valid client certificate gets through TLS (tests/security/test_tls.py); no user, no entry.
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            server.url,
            tls=tls_of(users, "api"),
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=Violations().record,
        )


async def test_a_wrong_password_is_refused(server: NatsServer, users: TestUsers) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            server.url,
            user="api",
            password="not-the-password",
            tls=tls_of(users, "api"),
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=Violations().record,
        )


# (user, subject) pairs each user may and may not publish on: the core of least privilege.
ALLOWED = [
    ("api", "ktrdr.cmd.data.load"),
    ("api", "ktrdr.cmd.train.start"),
    ("api", f"ktrdr.evt.job.data_load.{JOB}.cancel_requested"),
    ("api", f"ktrdr.evt.job.training.{JOB}.cancel_requested"),
    ("api", "ktrdr.store.query"),
    ("api", "ktrdr.store.quarantine.release"),
    ("api", "ktrdr.store.repair"),
    ("api", "$SRV.PING.trainer"),
    ("api", "$SRV.STATS"),  # the overview: every service's counts
    ("api", "$JS.API.STREAM.LIST"),
    ("api", "$JS.API.CONSUMER.LIST.KTRDR_COMMANDS"),
    ("api", "$JS.API.INFO"),
    ("ib-connector", "ktrdr.bars.AAPL.1m"),
    ("ib-connector", f"ktrdr.evt.job.data_load.{JOB}.segment_fetched"),
    ("ib-connector", "ktrdr.evt.ib.connection.connected"),
    ("data-store", "ktrdr.cmd.ib.fetch"),
    ("data-store", f"ktrdr.evt.job.data_load.{JOB}.planned"),
    ("data-store", f"ktrdr.evt.job.data_load.{JOB}.completed"),
    ("data-store", "ktrdr.evt.store.bars_stored"),
    ("data-store", "ktrdr.ib.validate"),
    # a released quarantined batch goes back on its bar subject; a repair (and the gap filler)
    # sends its own load: the data-store takes both anyway, so this widens nothing
    ("data-store", "ktrdr.bars.AAPL.1m"),
    ("data-store", "ktrdr.cmd.data.load"),
    ("trainer", f"ktrdr.evt.job.training.{JOB}.epoch_completed"),
    ("trainer", f"ktrdr.evt.job.training.{JOB}.completed"),
    ("trainer", "ktrdr.store.query"),
    ("data-store", "$SRV.PING.data-store"),  # a container's health check pings itself
    ("data-store", "$SRV.PING.ib-connector"),  # how many connectors a load is spread across
    ("ib-connector", "$KV.ktrdr_gateways.127_0_0_1_4002"),  # its gateway lease
    ("admin", "ktrdr.bars.AAPL.1m"),
    ("admin", "ktrdr.cmd.ib.fetch"),
]
DENIED = [
    ("api", "ktrdr.bars.AAPL.1m"),
    ("api", "ktrdr.cmd.ib.fetch"),
    ("api", f"ktrdr.evt.job.data_load.{JOB}.completed"),
    ("api", f"ktrdr.evt.job.training.{JOB}.completed"),
    ("api", "ktrdr.evt.store.bars_stored"),
    ("api", "$KV.ktrdr_symbols.AAPL"),
    ("api", "$O.ktrdr_models.C.x"),
    ("api", "$JS.API.STREAM.DELETE.KTRDR_BARS"),
    ("api", "$JS.API.STREAM.PURGE.KTRDR_EVENTS"),
    ("ib-connector", "ktrdr.cmd.data.load"),
    ("ib-connector", "ktrdr.store.repair"),
    ("trainer", "ktrdr.store.quarantine.release"),
    ("ib-connector", "ktrdr.cmd.train.start"),
    ("ib-connector", "ktrdr.cmd.ib.fetch"),
    ("ib-connector", f"ktrdr.evt.job.data_load.{JOB}.completed"),
    ("ib-connector", f"ktrdr.evt.job.training.{JOB}.segment_fetched"),
    ("ib-connector", "ktrdr.evt.store.bars_stored"),
    ("ib-connector", "$JS.API.CONSUMER.MSG.NEXT.KTRDR_COMMANDS.data-store-commands"),
    ("ib-connector", "$JS.API.STREAM.DELETE.KTRDR_COMMANDS"),
    ("data-store", "ktrdr.cmd.train.start"),
    # each service publishes its own kind of job's events only (the kind is a subject token)
    ("data-store", f"ktrdr.evt.job.training.{JOB}.epoch_completed"),
    ("data-store", f"ktrdr.evt.job.training.{JOB}.accepted"),
    ("data-store", f"ktrdr.evt.job.training.{JOB}.completed"),
    ("trainer", f"ktrdr.evt.job.data_load.{JOB}.accepted"),
    ("trainer", f"ktrdr.evt.job.data_load.{JOB}.completed"),
    ("trainer", f"ktrdr.evt.job.data_load.{JOB}.progress"),
    ("data-store", "$O.ktrdr_models.C.x"),
    ("data-store", "$SRV.PING.api"),
    ("trainer", "ktrdr.bars.AAPL.1m"),
    ("trainer", "ktrdr.cmd.ib.fetch"),
    ("trainer", "ktrdr.cmd.data.load"),
    ("trainer", "ktrdr.evt.ib.connection.connected"),
    ("trainer", "$KV.ktrdr_symbols.AAPL"),
    # only a connector takes a gateway's lease (a forged one would keep the real one standing by)
    ("api", "$KV.ktrdr_gateways.127_0_0_1_4002"),
    ("data-store", "$KV.ktrdr_gateways.127_0_0_1_4002"),
    ("trainer", "$KV.ktrdr_gateways.127_0_0_1_4002"),
    ("trainer", "$JS.API.CONSUMER.MSG.NEXT.KTRDR_BARS.data-store-bars"),
]


@pytest.mark.parametrize(("user", "subject"), ALLOWED, ids=[f"{u}:{s}" for u, s in ALLOWED])
async def test_a_user_may_publish_where_its_service_does(
    connect_as: ConnectAs, user: str, subject: str
) -> None:
    admin, _ = await connect_as("admin")
    seen = await admin.subscribe(subject)
    await flush_subscriptions(admin)  # flush() alone may beat the SUB to the server
    nc, violations = await connect_as(user)
    await nc.publish(subject, b"{}")
    assert (await seen.next_msg(timeout=10)).data == b"{}"  # it got through
    assert violations.errors == []


@pytest.mark.parametrize(("user", "subject"), DENIED, ids=[f"{u}:{s}" for u, s in DENIED])
async def test_a_user_may_not_publish_anywhere_else(
    connect_as: ConnectAs, user: str, subject: str
) -> None:
    nc, violations = await connect_as(user)
    await nc.publish(subject, b"{}")
    assert len(await violations.wait_for(subject)) == 1


@pytest.mark.parametrize(("user", "subject"), [
    ("api", "ktrdr.bars.>"),
    ("ib-connector", "ktrdr.cmd.>"),
    ("ib-connector", "ktrdr.store.query"),
    ("trainer", "ktrdr.ib.validate"),
])  # fmt: skip
async def test_a_user_may_not_listen_to_others_traffic(
    connect_as: ConnectAs, user: str, subject: str
) -> None:
    nc, violations = await connect_as(user)
    await nc.subscribe(subject)
    found = await violations.wait_for(subject)
    assert "for subscription" in found[0]


async def test_the_api_cannot_write_bar_batches_into_ktrdr_bars(
    connect_as: ConnectAs, declared
) -> None:
    admin, _ = await connect_as("admin")
    api, violations = await connect_as("api")
    await admin.jetstream().publish("ktrdr.bars.AAPL.1m", b"{}")  # one message that must stay
    with pytest.raises(nats.errors.TimeoutError):  # dropped by the server: no ack ever comes
        await api.jetstream().publish("ktrdr.bars.AAPL.1m", b"{}", timeout=1)
    with pytest.raises(nats.errors.TimeoutError):
        await api.jetstream(timeout=1).purge_stream("KTRDR_BARS")
    await violations.wait_for("ktrdr.bars.AAPL.1m")
    await violations.wait_for("$JS.API.STREAM.PURGE.KTRDR_BARS")
    info = await admin.jetstream().stream_info("KTRDR_BARS")
    assert info.state.messages == 1


async def test_the_api_user_reads_the_overview_without_a_violation(
    connect_as: ConnectAs, declared
) -> None:
    """The console's overview (every service's $SRV.STATS, JetStream's streams, consumers and
    account, the IB connection events) is read as the api user, all of it allowed."""
    api, violations = await connect_as("api")
    source = NatsSnapshot(Gateway(api, timeout_s=5))
    async with source.changes(lambda: None):
        snapshot = await source.snapshot()
        await flush_subscriptions(api)  # a refused subscription is reported by now
    assert snapshot.jetstream.problem is None
    assert snapshot.jetstream.account is not None
    pending = {s.name: s.consumer_pending for s in snapshot.jetstream.streams}
    assert set(KTRDR_STREAMS) <= set(pending)
    assert pending["KTRDR_COMMANDS"] == {
        "data-store-commands": 0,
        "ib-connector-commands": 0,
        "trainer-commands": 0,
    }
    assert violations.errors == []


async def test_the_api_user_lists_jobs_through_the_job_index_without_a_violation(
    connect_as: ConnectAs, declared
) -> None:
    """The job list's feed (an ordered push consumer on ``ktrdr.evt.job.>``, its flow control
    and heartbeats) and its read of the last job event are the api user's to use."""
    admin, _ = await connect_as("admin")
    api, violations = await connect_as("api")
    events = EventLog(api, timeout_s=5)
    try:
        await publish_all(admin.jetstream(), load_events(JOB))
        assert [s.job_id for s in await events.list_jobs()] == [JOB]
        later = "fedcba9876543210fedcba9876543210"
        await publish_all(admin.jetstream(), load_events(later)[:1])  # now the live path
        assert {s.job_id for s in await events.list_jobs()} == {JOB, later}
        await flush_subscriptions(api)  # a refused subscription is reported by now
    finally:
        await events.close()
    assert violations.errors == []


async def test_the_connector_cannot_give_the_commands_of_others(
    connect_as: ConnectAs, declared
) -> None:
    admin, _ = await connect_as("admin")
    connector, violations = await connect_as("ib-connector")
    for subject in (subjects.CMD_DATA_LOAD, subjects.CMD_TRAIN_START):
        with pytest.raises(nats.errors.TimeoutError):
            await connector.jetstream().publish(subject, b'{"symbol": "AAPL"}', timeout=1)
        await violations.wait_for(subject)
    info = await admin.jetstream().stream_info("KTRDR_COMMANDS")
    assert info.state.messages == 0


async def test_each_service_does_its_work_as_its_own_user(
    server: NatsServer,
    users: TestUsers,
    sim: IBGatewaySimulator,
    tmp_path: Path,
    connect_as: ConnectAs,
    declared: None,
) -> None:
    """A load asked for by the api user completes through the connector and the data-store,
    each connected as itself (the admin declared the streams), with no violation at all."""
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
            {**auth, **users.env("data-store"), "KTRDR_DATA_DIR": str(tmp_path / "data")}
        )
    )
    connector_nc, connector_violations = await connect_as("ib-connector")
    store_nc, store_violations = await connect_as("data-store")
    await connector.start(connector_nc)
    await store.start(store_nc)
    try:
        api_nc, api_violations = await connect_as("api")
        client = KtrdrClient(api_nc, timeout_s=10)
        await wait_connected(api_nc)  # the connector's IB connection comes up in the background
        job_id = await client.load_data("AAPL", "1h", start=NOW - dt.timedelta(days=7), end=NOW)
        events = [e async for e in client.job_events(job_id)]
        assert isinstance(events[-1], JobCompleted), events[-1]
        result = events[-1].result
        assert isinstance(result, LoadResult)
        assert result.fetched_bars > 0
        page = await client.request(
            subjects.STORE_QUERY, QueryBars(symbol="AAPL", timeframe="1h"), BarsPage
        )
        assert len(page.ts) == result.fetched_bars
        found = await client.request(subjects.STORE_DATASETS, StatusRequest(), DatasetList)
        assert [(d.symbol, d.rows) for d in found.datasets] == [("AAPL", result.fetched_bars)]
    finally:
        await store.stop()
        await connector.stop()
    assert connector_violations.errors == []
    assert store_violations.errors == []
    assert api_violations.errors == []


# -- issue 15: no service user manages JetStream, reads another's replies or acks for it --------

SERVICE_USERS = ["ib-connector", "data-store", "trainer", "api"]
ALL_STREAMS = [
    "KTRDR_COMMANDS",
    "KTRDR_BARS",
    "KTRDR_EVENTS",
    "KV_ktrdr_symbols",
    "KV_ktrdr_gateways",
    "OBJ_ktrdr_models",
]
DURABLES = [(spec.stream, spec.durable) for spec in streams.CONSUMERS]


def management_subjects() -> list[str]:
    """Every JetStream management request a service user must be refused."""
    api = "$JS.API"
    found = [
        f"{api}.STREAM.CREATE.EVIL",
        f"{api}.STREAM.CREATE.KV_evil",
        f"{api}.STREAM.CREATE.OBJ_evil",
    ]
    for stream in ALL_STREAMS:
        found += [f"{api}.STREAM.{op}.{stream}" for op in ("CREATE", "UPDATE", "DELETE", "PURGE")]
    for stream, durable in DURABLES:
        found += [
            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"{api}.CONSUMER.CREATE.{stream}.{durable}",
            f"{api}.CONSUMER.CREATE.{stream}.{durable}.ktrdr.cmd.>",
            f"{api}.CONSUMER.DELETE.{stream}.{durable}",
        ]
    for stream in ("KTRDR_EVENTS", "OBJ_ktrdr_models"):  # readers create ephemerals only
        found += [
            f"{api}.CONSUMER.CREATE.{stream}.evil",
            f"{api}.CONSUMER.CREATE.{stream}.evil.ktrdr.evt.>",
            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.evil",
        ]
    return found


@pytest.mark.parametrize("user", SERVICE_USERS)
async def test_no_service_user_may_manage_streams_consumers_or_buckets(
    connect_as: ConnectAs, user: str
) -> None:
    """The matrix: each service user x each management operation is a permission violation."""
    nc, violations = await connect_as(user)
    wanted = management_subjects()
    for subject in wanted:
        await nc.publish(subject, b"{}")
    await nc.flush()
    refused = []
    for subject in wanted:
        with contextlib.suppress(TimeoutError):
            await violations.wait_for(subject, timeout_s=5)
            refused.append(subject)
    assert refused == wanted


async def test_attack_1_stream_updates_by_service_users_fail(
    connect_as: ConnectAs, declared: None
) -> None:
    """The api grafting a source onto KTRDR_BARS or a republish rule onto KTRDR_EVENTS, or
    emptying the event log; the connector changing the command stream's subjects."""
    admin, _ = await connect_as("admin")
    ajs = admin.jetstream()
    await ajs.add_stream(name="EVIL", subjects=["evil.>"])
    await ajs.publish("ktrdr.evt.store.bars_stored", b"{}")
    api, api_violations = await connect_as("api")
    connector, connector_violations = await connect_as("ib-connector")
    attacks = [
        (
            api,
            api_violations,
            "KTRDR_BARS",
            streams.BARS.evolve(sources=[StreamSource(name="EVIL")]),
        ),
        (
            api,
            api_violations,
            "KTRDR_EVENTS",
            streams.EVENTS.evolve(
                republish=RePublish(src="ktrdr.evt.>", dest="ktrdr.bars.AAPL.1d")
            ),
        ),
        (api, api_violations, "KTRDR_EVENTS", streams.EVENTS.evolve(max_msgs=1)),
        (
            connector,
            connector_violations,
            "KTRDR_COMMANDS",
            streams.COMMANDS.evolve(subjects=["ktrdr.cmd.ib.>"]),
        ),
    ]
    for nc, violations, name, config in attacks:
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).update_stream(config)
        await violations.wait_for(f"$JS.API.STREAM.UPDATE.{name}")
    assert await streams.verify(ajs, streams.CONSUMERS, buckets=True) == []
    assert (await ajs.stream_info("KTRDR_EVENTS")).state.messages == 1


@pytest.mark.parametrize("user", SERVICE_USERS)
async def test_attack_2_no_user_reads_another_users_replies(
    connect_as: ConnectAs, declared: None, user: str
) -> None:
    """The connector listening on every inbox got the api's pages and the admin's replies."""
    nc, violations = await connect_as(user)
    assert nc.new_inbox().startswith(f"_INBOX.{user}.")  # where its own replies come
    others = [f"_INBOX.{other}.>" for other in [*SERVICE_USERS, "admin"] if other != user]
    for inbox in ["_INBOX.>", "_INBOX.*.*", *others]:
        await nc.subscribe(inbox)
        found = await violations.wait_for(inbox)
        assert "for subscription" in found[0]
    # and its own reply space works: a request it may make, answered by the admin, comes back
    asks = {
        "api": "ktrdr.train.status",
        "data-store": "ktrdr.ib.status",
        "trainer": "ktrdr.store.query",
        "ib-connector": "$SRV.PING.ib-connector",
    }
    admin, _ = await connect_as("admin")

    async def pong(msg: Msg) -> None:
        await msg.respond(b"pong")

    await admin.subscribe(asks[user], cb=pong)
    await flush_subscriptions(admin)  # flush() alone may beat the SUB to the server
    assert (await nc.request(asks[user], b"", timeout=5)).data == b"pong"


async def test_attack_2_no_user_acks_another_users_delivery(
    connect_as: ConnectAs, declared: None
) -> None:
    """The api sent +TERM on the data-store's command delivery (its reply subject)."""
    admin, _ = await connect_as("admin")
    await admin.jetstream().publish(subjects.CMD_DATA_LOAD, b'{"symbol": "AAPL"}')
    store, store_violations = await connect_as("data-store")
    sub = await store.jetstream().pull_subscribe_bind(
        streams.DATA_COMMANDS.durable, stream=streams.COMMANDS.name or ""
    )
    (delivery,) = await sub.fetch(1, timeout=5)
    assert delivery.reply.startswith("$JS.ACK.KTRDR_COMMANDS.data-store-commands.")
    api, api_violations = await connect_as("api")
    await api.publish(delivery.reply, b"+TERM")
    await api_violations.wait_for(delivery.reply)
    info = await admin.jetstream().consumer_info("KTRDR_COMMANDS", "data-store-commands")
    assert info.num_ack_pending == 1  # still the data-store's to settle
    await delivery.ack()
    await store.flush()
    assert store_violations.errors == []


async def test_attack_3_the_trainer_cannot_purge_the_model_store(
    connect_as: ConnectAs, declared: None
) -> None:
    trainer, violations = await connect_as("trainer")
    models = await trainer.jetstream().object_store(streams.MODELS_BUCKET)
    await models.put("m1/info.json", b"{}")  # it writes its own models
    with pytest.raises(nats.errors.TimeoutError):
        await trainer.jetstream(timeout=1).purge_stream("OBJ_ktrdr_models")
    await violations.wait_for("$JS.API.STREAM.PURGE.OBJ_ktrdr_models")
    admin, _ = await connect_as("admin")
    kept = await (await admin.jetstream().object_store(streams.MODELS_BUCKET)).get("m1/info.json")
    assert kept.data == b"{}"


async def test_attack_3_events_of_the_other_kind_cannot_be_forged(
    connect_as: ConnectAs, declared: None
) -> None:
    """The trainer and the data-store published `completed` for any job."""
    admin, _ = await connect_as("admin")
    trainer, trainer_violations = await connect_as("trainer")
    store, store_violations = await connect_as("data-store")
    forged = [
        (trainer, trainer_violations, subjects.job_event(JobKind.DATA_LOAD, JOB, "completed")),
        (store, store_violations, subjects.job_event(JobKind.TRAINING, JOB, "completed")),
    ]
    for nc, violations, subject in forged:
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream().publish(subject, b"{}", timeout=1)
        await violations.wait_for(subject)
    assert (await admin.jetstream().stream_info("KTRDR_EVENTS")).state.messages == 0
