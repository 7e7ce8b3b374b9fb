"""keep_alive marks a message in progress until its task is cancelled; no timer decides the test."""

from __future__ import annotations

import asyncio

import pytest
from ktrdr_shared.consumer import keep_alive

pytestmark = pytest.mark.unit


class _Marked:
    """A message that counts its in-progress marks and says when it has ``wanted`` of them."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.marks = 0
        self.enough = asyncio.Event()

    async def in_progress(self) -> None:
        self.marks += 1
        if self.marks >= self.wanted:
            self.enough.set()


async def test_keep_alive_marks_the_message_again_and_again() -> None:
    msg = _Marked(wanted=3)
    beat = await keep_alive(msg, every_s=0.001)
    try:
        await asyncio.wait_for(msg.enough.wait(), 30)  # the third mark, however slow the box
    finally:
        beat.cancel()
    assert msg.marks >= 3


async def test_a_cancelled_keep_alive_ends_and_marks_no_more() -> None:
    msg = _Marked(wanted=1)
    beat = await keep_alive(msg, every_s=0.001)
    await asyncio.wait_for(msg.enough.wait(), 30)
    beat.cancel()
    with pytest.raises(asyncio.CancelledError):
        await beat
    assert beat.cancelled() and beat.done()  # a finished task marks nothing more
