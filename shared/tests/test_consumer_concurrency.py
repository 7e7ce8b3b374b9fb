"""``PullConsumer(concurrency=n)`` against a real nats-server: n handlers at once, no more
messages taken than there are free slots, and a stop that gives unfinished work back."""

from __future__ import annotations

import asyncio

import pytest
from ktrdr_shared import streams
from ktrdr_shared.consumer import PullConsumer
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

pytestmark = pytest.mark.integration

SPEC = streams.ConsumerSpec(
    stream="KTRDR_COMMANDS",
    config=ConsumerConfig(
        durable_name="parallel-worker",
        name="parallel-worker",
        filter_subject="ktrdr.cmd.test.>",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        max_deliver=-1,
    ),
)


class _Gate:
    """A handler that holds every message until released, counting how many it holds."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = 0
        self.most = 0
        self.started: list[bytes] = []
        self.done: list[bytes] = []
        self.changed = asyncio.Event()

    async def handle(self, msg: Msg) -> None:
        self.holding += 1
        self.most = max(self.most, self.holding)
        self.started.append(msg.data)
        self.changed.set()
        try:
            await self.release.wait()
            self.done.append(msg.data)
        finally:
            self.holding -= 1
            self.changed.set()

    async def wait_for(self, predicate: object, timeout_s: float = 10) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


def _consumer(js: JetStreamContext, gate: _Gate, concurrency: int) -> PullConsumer:
    return PullConsumer(
        js=js,
        spec=SPEC,
        handler=gate.handle,
        batch=10,
        fetch_timeout_s=0.5,
        concurrency=concurrency,
        drain_timeout_s=0.2,
    )


async def test_runs_up_to_concurrency_handlers_and_fetches_only_for_free_slots(
    js: JetStreamContext,
) -> None:
    await streams.ensure_streams(js)
    for i in range(5):
        await js.publish("ktrdr.cmd.test.work", str(i).encode())
    gate, stopping = _Gate(), asyncio.Event()
    task = asyncio.create_task(_consumer(js, gate, 3).run(stopping))
    try:
        await gate.wait_for(lambda: gate.holding == 3)
        info = await js.consumer_info("KTRDR_COMMANDS", "parallel-worker")
        assert info.num_ack_pending == 3  # the other two were never taken off the queue
        assert info.num_pending == 2
        gate.release.set()
        await gate.wait_for(lambda: len(gate.done) == 5)
        assert gate.most == 3
        assert sorted(gate.done) == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
    info = await js.consumer_info("KTRDR_COMMANDS", "parallel-worker")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_stop_naks_what_its_handlers_could_not_finish(js: JetStreamContext) -> None:
    await streams.ensure_streams(js)
    for i in range(2):
        await js.publish("ktrdr.cmd.test.work", str(i).encode())
    gate, stopping = _Gate(), asyncio.Event()
    task = asyncio.create_task(_consumer(js, gate, 4).run(stopping))
    await gate.wait_for(lambda: gate.holding == 2)
    stopping.set()
    await asyncio.wait_for(task, 10)
    assert gate.done == []  # both were cancelled after the drain timeout
    again, stopping = _Gate(), asyncio.Event()
    again.release.set()
    task = asyncio.create_task(_consumer(js, again, 4).run(stopping))
    try:
        # nak'ed, so the next worker has them at once, well inside the 30 s ack wait
        await again.wait_for(lambda: len(again.done) == 2, timeout_s=10)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
