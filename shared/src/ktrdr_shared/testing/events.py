"""Read what the services wrote to JetStream, for tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import BarBatch, JobEvent


async def wait_for_job_event(js: JetStreamContext, job_id: str, types: set[str],
                             timeout_s: float = 60) -> Any:  # fmt: skip
    """Return the first event of ``job_id`` (history included) whose type is in ``types``."""
    sub = await js.subscribe(subjects.job_events(job_id), ordered_consumer=True,
                             config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await sub.next_msg(timeout=None)
                if msg.subject.rsplit(".", 1)[-1] in types:
                    return codec.decode(msg.data, JobEvent, subject=msg.subject)
    finally:
        await sub.unsubscribe()


async def read_all(js: JetStreamContext, subject: str, message_type: Any = BarBatch,
                   idle_s: float = 0.3) -> list[Any]:  # fmt: skip
    """Return every message stored on ``subject`` (stops after ``idle_s`` of silence)."""
    sub = await js.subscribe(subject, ordered_consumer=True,
                             config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))  # fmt: skip
    found: list[Any] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except nats.errors.TimeoutError:
                return found
            found.append(codec.decode(msg.data, message_type, subject=msg.subject,
                                      headers=msg.headers))  # fmt: skip
    finally:
        await sub.unsubscribe()
