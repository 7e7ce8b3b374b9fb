"""The NATS runtime against a real nats-server: streams, dedup, micro errors, consumers."""

from __future__ import annotations

import asyncio
import json

import nats
import nats.js.errors
import pytest
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.config import Settings
from ktrdr_shared.consumer import PullConsumer, keep_alive
from ktrdr_shared.errors import KtrdrError, NotFound, PermanentError, RetryableError
from ktrdr_shared.messages import ErrorReply, IbStatus, LoadData, StatusRequest, ValidateSymbol
from ktrdr_shared.runtime import ServiceApp, connect
from ktrdr_shared.testing.examples import JOB
from ktrdr_shared.testing.nats_server import NatsServer
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, RetentionPolicy

pytestmark = pytest.mark.integration


async def test_ensure_all_twice_leaves_one_correct_set(js: JetStreamContext) -> None:
    await streams.ensure_all(js)
    await streams.ensure_all(js)
    names = sorted([info.config.name async for info in _streams(js)])
    assert names == sorted(
        [
            "KTRDR_COMMANDS",
            "KTRDR_BARS",
            "KTRDR_EVENTS",
            "KV_ktrdr_symbols",
            "KV_ktrdr_gateways",
            "OBJ_ktrdr_models",
        ]
    )
    commands = await js.stream_info("KTRDR_COMMANDS")
    assert commands.config.retention == RetentionPolicy.WORK_QUEUE
    assert commands.config.duplicate_window == 600
    assert commands.config.subjects == ["ktrdr.cmd.>"]
    events = await js.stream_info("KTRDR_EVENTS")
    assert events.config.max_age == 30 * 86_400
    consumers = sorted(c.name for c in await js.consumers_info("KTRDR_COMMANDS"))
    assert consumers == ["data-store-commands", "ib-connector-commands", "trainer-commands"]
    assert [c.name for c in await js.consumers_info("KTRDR_BARS")] == ["data-store-bars"]


async def test_ensure_streams_repairs_a_drifted_stream(js: JetStreamContext) -> None:
    await streams.ensure_streams(js)
    await js.update_stream(name="KTRDR_EVENTS", subjects=["ktrdr.evt.>"], max_age=60.0)
    await streams.ensure_streams(js)
    assert (await js.stream_info("KTRDR_EVENTS")).config.max_age == 30 * 86_400


async def test_duplicate_command_inside_dedup_window_is_dropped(js: JetStreamContext) -> None:
    await streams.ensure_streams(js)
    command = LoadData(job_id=JOB, symbol="AAPL", timeframe="1h")  # type: ignore[arg-type]
    headers = {"Nats-Msg-Id": JOB}
    first = await js.publish(subjects.CMD_DATA_LOAD, codec.encode(command), headers=headers)
    second = await js.publish(subjects.CMD_DATA_LOAD, codec.encode(command), headers=headers)
    assert not first.duplicate
    assert second.duplicate
    assert (await js.stream_info("KTRDR_COMMANDS")).state.messages == 1


def _status_app(nats_url: str) -> ServiceApp:
    app = ServiceApp(
        name="probe",
        version="1.0.0",
        description="test service",
        settings=Settings.from_env({"KTRDR_NATS_URL": nats_url}),
    )

    @app.endpoint("status", "ktrdr.test.status", StatusRequest)
    async def status(_: StatusRequest) -> IbStatus:
        return IbStatus(connected=True, host="h", port=1, client_id=7)

    @app.endpoint("validate", "ktrdr.test.validate", ValidateSymbol)
    async def validate(request: ValidateSymbol) -> IbStatus:
        if request.symbol == "NOPE":
            raise NotFound(f"no such symbol {request.symbol}", details={"symbol": request.symbol})
        raise ZeroDivisionError("bug")

    return app


async def test_micro_endpoint_answers_garbage_with_400_and_keeps_serving(
    nc: NATS, nats_url: str
) -> None:
    app = _status_app(nats_url)
    await app.start()
    try:
        bad = await nc.request("ktrdr.test.validate", b"\x00\xff{{not json", timeout=2)
        assert bad.headers is not None
        assert bad.headers["Nats-Service-Error-Code"] == "400"
        body = codec.decode(bad.data, ErrorReply)
        assert body.code == "invalid_request"
        assert "ktrdr.test.validate" in body.message and "not valid JSON" in body.message

        wrong_shape = await nc.request("ktrdr.test.validate", b'{"symbol": 5}', timeout=2)
        assert codec.decode(wrong_shape.data, ErrorReply).details["field"] == "symbol"

        not_found = await nc.request("ktrdr.test.validate", b'{"symbol": "nope"}', timeout=2)
        assert not_found.headers is not None
        assert not_found.headers["Nats-Service-Error-Code"] == "404"
        assert codec.decode(not_found.data, ErrorReply).details == {"symbol": "NOPE"}

        crash = await nc.request("ktrdr.test.validate", b'{"symbol": "AAPL"}', timeout=2)
        assert crash.headers is not None
        assert crash.headers["Nats-Service-Error-Code"] == "500"
        assert "ZeroDivisionError" in codec.decode(crash.data, ErrorReply).message

        good = await nc.request("ktrdr.test.status", b"", timeout=2)
        assert good.headers is None or "Nats-Service-Error-Code" not in good.headers
        assert codec.decode(good.data, IbStatus).client_id == 7

        ping = await nc.request("$SRV.PING.probe", b"", timeout=2)
        assert json.loads(ping.data)["name"] == "probe"
    finally:
        await app.stop()


async def test_connect_retries_until_the_server_comes(nats_server: NatsServer) -> None:
    nats_server.stop()
    settings = Settings.from_env({"KTRDR_NATS_URL": nats_server.url})
    refused: list[Exception] = []
    tried_again = asyncio.Event()

    async def on_error(e: Exception) -> None:  # told of each attempt that failed
        refused.append(e)
        if len(refused) >= 2:
            tried_again.set()

    pending = asyncio.create_task(
        connect(settings, name="late", reconnect_time_wait=0.05, error_cb=on_error)
    )
    await asyncio.wait_for(tried_again.wait(), 10)
    assert not pending.done()  # refused twice, still trying, not given up
    nats_server.start()
    client = await asyncio.wait_for(pending, timeout=10)
    assert client.is_connected
    assert client.options["max_reconnect_attempts"] == -1
    await client.close()


class _Collector:
    def __init__(self) -> None:
        self.seen: asyncio.Queue[bytes] = asyncio.Queue()
        self.terminated: list[tuple[bytes, str]] = []

    async def handle(self, msg: Msg) -> None:
        if msg.data == b"permanent":
            raise PermanentError("cannot ever work")
        if msg.data == b"retry" and msg.metadata.num_delivered < 3:
            raise RetryableError("not yet", delay_s=0.05)
        await self.seen.put(msg.data)

    async def on_permanent(self, msg: Msg, error: KtrdrError) -> None:
        self.terminated.append((msg.data, error.code))


def _consumer(js: JetStreamContext, collector: _Collector) -> PullConsumer:
    return PullConsumer(
        js=js,
        spec=streams.DATA_COMMANDS,
        handler=collector.handle,
        on_permanent=collector.on_permanent,
        fetch_timeout_s=0.5,
        heartbeat_s=0.1,
    )


async def test_pull_consumer_acks_naks_and_terminates(js: JetStreamContext) -> None:
    await streams.ensure_streams(js)
    collector = _Collector()
    stopping = asyncio.Event()
    task = asyncio.create_task(_consumer(js, collector).run(stopping))
    for payload in (b"permanent", b"retry", b"ok"):
        await js.publish(subjects.CMD_DATA_LOAD, payload)
    received = {await asyncio.wait_for(collector.seen.get(), 10) for _ in range(2)}
    stopping.set()
    await asyncio.wait_for(task, 10)
    assert received == {b"retry", b"ok"}
    assert collector.terminated == [(b"permanent", "failed")]
    info = await js.consumer_info("KTRDR_COMMANDS", "data-store-commands")
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_pull_consumer_survives_a_server_restart(
    nats_server: NatsServer, nc: NATS, js: JetStreamContext
) -> None:
    await streams.ensure_streams(js)
    worker_nc = await nats.connect(
        nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    collector = _Collector()
    stopping = asyncio.Event()
    task = asyncio.create_task(_consumer(worker_nc.jetstream(), collector).run(stopping))
    try:
        await js.publish(subjects.CMD_DATA_LOAD, b"before")
        assert await asyncio.wait_for(collector.seen.get(), 10) == b"before"

        nats_server.restart()  # same port, same store

        await _publish_when_back(js, b"after")
        assert await asyncio.wait_for(collector.seen.get(), 30) == b"after"
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await worker_nc.close()


async def _publish_when_back(js: JetStreamContext, payload: bytes) -> None:
    """Publish once JetStream answers again after a restart."""
    for _ in range(200):
        try:
            await js.publish(subjects.CMD_DATA_LOAD, payload, timeout=0.5)
            return
        except (TimeoutError, nats.errors.Error):
            await asyncio.sleep(0.05)
    raise AssertionError("JetStream did not come back after the restart")


async def _streams(js: JetStreamContext):  # type: ignore[no-untyped-def]
    for info in await js.streams_info():
        yield info


def _slow_consumer(name: str, subject: str) -> streams.ConsumerSpec:
    """A work-queue consumer of ``subject`` with a short ack wait, redelivering for ever."""
    config = ConsumerConfig(
        durable_name=name,
        name=name,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_deliver=-1,
    )
    return streams.ConsumerSpec(stream="KTRDR_COMMANDS", config=config)


ACK_WAIT_S = 1.5
BEAT_S = 0.05  # thirty beats per ack wait: only a stall of the whole 1.45 s would miss one


async def test_keep_alive_holds_a_message_past_its_ack_wait(js: JetStreamContext) -> None:
    """A message kept alive is held past its ack wait while an unmarked one beside it is
    redelivered. The test waits on the server's own clock (the control's redeliveries), not on
    sleeps: when the control, delivered after the held message, has come back twice, the held
    message's ack wait has passed twice too."""
    await streams.ensure_streams(js)
    held_spec = _slow_consumer("slow-worker", "ktrdr.cmd.test.held")
    control_spec = _slow_consumer("unmarked", "ktrdr.cmd.test.control")
    await streams.ensure_consumer(js, control_spec)
    calls: list[int] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def slow(msg: Msg) -> None:
        calls.append(msg.metadata.num_delivered)
        beat = await keep_alive(msg, every_s=BEAT_S)
        holding.set()
        try:
            await release.wait()  # the work ends when the test says so
        finally:
            beat.cancel()

    stopping = asyncio.Event()
    # Two slots: while one holds the message, the other keeps a pull open, so the server
    # would hand the message out again the moment its ack wait ran out.
    consumer = PullConsumer(
        js=js, spec=held_spec, handler=slow, concurrency=2, fetch_timeout_s=0.5, heartbeat_s=0.1
    )
    task = asyncio.create_task(consumer.run(stopping))
    control = await js.pull_subscribe_bind(control_spec.durable, stream=control_spec.stream)
    try:
        await js.publish("ktrdr.cmd.test.held", b"work")
        await asyncio.wait_for(holding.wait(), 30)
        await js.publish("ktrdr.cmd.test.control", b"never acked")
        for delivery in (1, 2, 3):  # the first delivery, then one redelivery per ack wait
            [msg] = await control.fetch(1, timeout=30)
            assert msg.metadata.num_delivered == delivery
        held = await js.consumer_info("KTRDR_COMMANDS", "slow-worker")
        assert calls == [1]  # the held message was not redelivered meanwhile
        assert held.delivered.consumer_seq == 1 and held.num_ack_pending == 1
        release.set()
    finally:
        release.set()
        stopping.set()
        await asyncio.wait_for(task, 10)  # run returns once the batch in hand is settled
        await control.unsubscribe()
    info = await asyncio.wait_for(_acked_through(js, "slow-worker", 1), 10)  # acked when done
    assert calls == [1]  # never redelivered while in progress
    assert info.delivered.consumer_seq == 1 and info.num_redelivered == 0
    assert info.num_ack_pending == 0


async def _acked_through(js: JetStreamContext, durable: str, stream_seq: int) -> ConsumerInfo:
    """Return the consumer's info once the server has applied its acks up to ``stream_seq``
    (nats-server queues acks: an info request right after an ack may not show it yet)."""
    while True:
        info = await js.consumer_info("KTRDR_COMMANDS", durable)
        if info.ack_floor.stream_seq >= stream_seq:
            return info
        await asyncio.sleep(0.01)
