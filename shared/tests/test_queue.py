"""The in-memory delivery: JetStream's metadata for the consumer's helpers, its fate recorded."""

from __future__ import annotations

from unittest.mock import Mock

import pytest
from ktrdr_shared import streams, subjects
from ktrdr_shared.consumer import PullConsumer, deliveries, derived_job_id
from ktrdr_shared.errors import InvalidRequest, RetryableError
from ktrdr_shared.messages import CancelRequested
from ktrdr_shared.testing.queue import MemoryCommand

pytestmark = pytest.mark.unit

JOB = "ab" * 16


def delivery(stream_seq: int = 7) -> MemoryCommand:
    return MemoryCommand.of(CancelRequested(job_id=JOB), subjects.CMD_TRAIN_START, stream_seq)


def test_redeliveries_count_up_and_keep_the_derived_job_id() -> None:
    first = delivery()
    third = first.redelivered().redelivered()
    assert (deliveries(first), deliveries(third)) == (1, 3)
    assert derived_job_id(first) == derived_job_id(third) != derived_job_id(delivery(8))
    assert third.metadata.stream == streams.COMMANDS.name


@pytest.mark.parametrize(
    ("raised", "settled"),
    [
        (None, ["ack"]),
        (RetryableError("later", delay_s=2.5), ["nak 2.5"]),
        (InvalidRequest("never"), ["term"]),
    ],
    ids=["returns", "retryable", "permanent"],
)
async def test_dispatch_settles_it_as_it_settles_a_jetstream_message(
    raised: Exception | None, settled: list[str]
) -> None:
    async def handler(msg: MemoryCommand) -> None:
        await msg.in_progress()
        if raised is not None:
            raise raised

    msg = delivery()
    consumer = PullConsumer(js=Mock(), spec=streams.TRAIN_COMMANDS, handler=handler)  # type: ignore[arg-type]
    await consumer.dispatch(msg)  # type: ignore[arg-type]
    assert msg.settled == ["in_progress", *settled]
    assert msg.outcome == settled[-1]
