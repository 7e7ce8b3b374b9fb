"""Read what the services wrote to JetStream, for tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.messages import (
    BarBatch,
    JobAccepted,
    JobEvent,
    JobKind,
    JobPlanned,
    LoadData,
    PlannedSegment,
    SegmentsDispatched,
)
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow, from_unix_nanos


async def wait_for_job_event(
    js: JetStreamContext,
    job_id: str,
    types: set[str],
    timeout_s: float = 60,
    *,
    kind: JobKind | None = None,
) -> Any:
    """Return the first event of ``job_id`` (history included) whose type is in ``types``.

    ``kind`` narrows the read to that kind's subjects (default: the job's, whatever it is).
    """
    sub = await js.subscribe(
        subjects.job_events(job_id, kind),
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await sub.next_msg(timeout=None)
                if msg.subject.rsplit(".", 1)[-1] in types:
                    return codec.decode(msg.data, JobEvent, subject=msg.subject)
    finally:
        await sub.unsubscribe()


async def read_all(
    js: JetStreamContext, subject: str, message_type: Any = BarBatch, idle_s: float = 0.3
) -> list[Any]:
    """Return every message stored on ``subject`` (stops after ``idle_s`` of silence)."""
    sub = await js.subscribe(
        subject, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    found: list[Any] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except nats.errors.TimeoutError:
                return found
            found.append(
                codec.decode(msg.data, message_type, subject=msg.subject, headers=msg.headers)
            )
    finally:
        await sub.unsubscribe()


async def dispatch_by_hand(
    js: JetStreamContext,
    job_id: str,
    symbol: str,
    timeframe: Timeframe,
    start_ns: int,
    end_ns: int,
    *,
    what_to_show: WhatToShow = WhatToShow.TRADES,
) -> str:
    """Write the events of a load that dispatched one segment ``[start_ns, end_ns)``; return
    its id (``s0000``).

    The data-store merges only bar batches answering a segment it dispatched; a test that
    publishes batches by hand first writes, with this, the events the data-store would have
    written for such a load. Call it before the data-store starts: it folds them while it
    replays the log, so it neither plans the job itself nor sees a batch before its segment.
    """
    await streams.ensure_streams(js)  # the data-store may not have declared them yet
    segment_id = "s0000"
    start, end = from_unix_nanos(start_ns), from_unix_nanos(end_ns)
    command = LoadData(
        job_id=job_id,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        instrument_type=InstrumentType.STK,
        what_to_show=what_to_show,
    )
    await publish_event(
        js, JobAccepted(job_id=job_id, kind=JobKind.DATA_LOAD, params=msgspec.to_builtins(command))
    )
    await publish_event(
        js,
        JobPlanned(
            job_id=job_id,
            gaps_analyzed=1,
            cached_before=0,
            start=start,
            end=end,
            segments=[PlannedSegment(segment_id=segment_id, start=start, end=end)],
            instrument_type=InstrumentType.STK,
            exchange="SMART",
            what_to_show=what_to_show,
        ),
    )
    await publish_event(js, SegmentsDispatched(job_id=job_id, segment_ids=[segment_id]))
    return segment_id
