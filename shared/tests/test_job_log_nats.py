"""Job events' message ids against a real nats-server: a repeat appends nothing."""

from __future__ import annotations

import pytest
from ktrdr_shared import streams
from ktrdr_shared.messages import JobKind, JobProgress, SegmentFetched
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.testing.examples import JOB
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration


async def _events_stored(js: JetStreamContext) -> int:
    info = await js.stream_info(streams.EVENTS.name or "")
    return info.state.messages


async def test_a_segment_reported_twice_is_stored_once(js: JetStreamContext) -> None:
    await streams.ensure_streams(js)
    report = SegmentFetched(job_id=JOB, segment_id="s0000", chunks=2, bars=100, ib_requests=2)
    await publish_event(js, report)
    again = SegmentFetched(job_id=JOB, segment_id="s0000", chunks=2, bars=100, ib_requests=3)
    await publish_event(js, again)  # the segment run again after a redelivery
    assert await _events_stored(js) == 1


async def test_a_progress_emission_is_stored_once_and_the_next_one_too(
    js: JetStreamContext,
) -> None:
    await streams.ensure_streams(js)
    kind = JobKind.DATA_LOAD
    first = JobProgress(job_id=JOB, done=10, total=100, unit="percent")
    await publish_event(js, first, kind=kind)
    await publish_event(js, first, kind=kind)  # a retried publish of the same emission
    assert await _events_stored(js) == 1
    await publish_event(js, JobProgress(job_id=JOB, done=20, total=100, unit="percent"), kind=kind)
    assert await _events_stored(js) == 2
