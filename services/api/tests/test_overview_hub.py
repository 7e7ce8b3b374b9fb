"""The overview's fan-out: one poller for every subscriber, started by the first and stopped
by the last, gathering at once on a change, and a slow subscriber holding nobody up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from ktrdr_api.overview import Feed, OverviewHub
from ktrdr_api.snapshot import pacing_out

pytestmark = pytest.mark.unit

FOREVER = 3600.0  # an interval no test waits for: what arrives came from a change


class CountingSource:
    """Snapshots numbered 1, 2, 3 ...; ``announce`` stands for an IB connection event."""

    def __init__(self) -> None:
        self.gathered = 0
        self.watching = 0  # open ``changes`` contexts
        self.fail_next = False
        self.pokes: list[Callable[[], None]] = []

    async def snapshot(self) -> int:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bug in the source")
        self.gathered += 1
        return self.gathered

    @contextlib.asynccontextmanager
    async def changes(self, poke: Callable[[], None]) -> AsyncIterator[None]:
        self.watching += 1
        self.pokes.append(poke)
        try:
            yield
        finally:
            self.watching -= 1
            self.pokes.remove(poke)

    def announce(self) -> None:
        for poke in self.pokes:
            poke()


async def next_of(feed: Feed[int]) -> int:
    snapshot = await feed.next(5.0)
    assert snapshot is not None, "no snapshot within 5 s"
    return snapshot


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_the_first_subscriber_gets_a_snapshot_at_once_and_the_second_shares_it() -> None:
    source = CountingSource()
    hub = OverviewHub(source, interval_s=FOREVER)
    with hub.subscribe() as first:
        assert await next_of(first) == 1
        with hub.subscribe() as second:
            assert await next_of(second) == 1  # the newest, without gathering again
            source.announce()
            assert (await next_of(first), await next_of(second)) == (2, 2)
    assert source.gathered == 2 and hub.polls == 2


async def test_a_change_gathers_at_once_and_the_interval_gathers_otherwise() -> None:
    source = CountingSource()
    hub = OverviewHub(source, interval_s=FOREVER, min_gap_s=0.0)
    with hub.subscribe() as feed:
        assert await next_of(feed) == 1
        source.announce()
        assert await next_of(feed) == 2
    ticking = OverviewHub(CountingSource(), interval_s=0.01, min_gap_s=0.0)
    with ticking.subscribe() as feed:
        assert [await next_of(feed) for _ in range(3)] == [1, 2, 3]  # nothing announced


async def test_changes_announced_while_gathering_coalesce_into_one_more_snapshot() -> None:
    source = CountingSource()
    hub = OverviewHub(source, interval_s=FOREVER, min_gap_s=0.0)
    with hub.subscribe() as feed:
        assert await next_of(feed) == 1
        for _ in range(5):
            source.announce()  # a burst, before the poller runs again
        assert await next_of(feed) == 2
        await settle()
        assert await feed.next(0.05) is None  # five pokes, one snapshot
    assert source.gathered == 2


async def test_the_last_subscriber_leaving_stops_the_poller_and_the_next_starts_afresh() -> None:
    source = CountingSource()
    hub = OverviewHub(source, interval_s=FOREVER)
    with hub.subscribe() as feed:
        assert await next_of(feed) == 1
        assert source.watching == 1 and hub.running
    assert not hub.running and hub.latest is None
    await settle()
    assert source.watching == 0  # it let go of the source's change feed
    with hub.subscribe() as feed:
        assert await next_of(feed) == 2  # gathered now, not the stale one
    await hub.close()
    assert source.watching == 0


async def test_a_slow_subscriber_gets_only_the_newest_and_holds_nobody_up() -> None:
    source = CountingSource()
    hub = OverviewHub(source, interval_s=FOREVER, min_gap_s=0.0)
    with hub.subscribe() as slow, hub.subscribe() as quick:
        assert await next_of(quick) == 1
        for expected in (2, 3, 4):
            source.announce()
            assert await next_of(quick) == expected
        assert await next_of(slow) == 4  # 1, 2 and 3 were replaced, unread
        assert slow.dropped == 3 and quick.dropped == 0


async def test_a_failing_gathering_is_logged_and_the_next_change_gathers_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = CountingSource()
    source.fail_next = True
    hub = OverviewHub(source, interval_s=FOREVER, min_gap_s=0.0)
    with hub.subscribe() as feed:
        await settle()
        assert hub.running and hub.polls == 0
        assert caplog.records and caplog.records[0].exc_info is not None  # the cause is kept
        source.announce()
        assert await next_of(feed) == 1


async def test_current_is_the_running_pollers_newest_or_gathered_now() -> None:
    source = CountingSource()
    hub = OverviewHub(source, interval_s=FOREVER)
    assert await hub.current() == 1  # nobody watches: gathered for the caller
    with hub.subscribe() as feed:
        assert await next_of(feed) == 2
        assert await hub.current() == 2  # the feed's newest, not a third gathering
    assert source.gathered == 2


async def test_a_feed_without_news_answers_none_after_its_timeout() -> None:
    feed: Feed[int] = Feed()
    assert await feed.next(0.01) is None
    feed.offer(7)
    assert await feed.next(0.01) == 7
    assert await feed.next(0.01) is None  # read once


@pytest.mark.parametrize(
    ("pacing", "expected"),
    [
        (
            {"hard_requests_in_window": 60.0, "window_max": 60.0, "window_s": 6.0,
             "next_free_in_s": 2.5, "waiting_requests": 3.0, "open_requests": 1.0,
             "soft_delay_s": 0.25, "requests_sent": 75.0},
            {"requests_in_window": 60, "window_max": 60, "window_s": 6.0, "next_free_s": 2.5,
             "waiting_requests": 3, "open_requests": 1, "soft_delay_s": 0.25},
        ),
        (  # a connector that does not say its window yet
            {"hard_requests_in_window": 2.0, "window_max": 60.0},
            {"requests_in_window": 2, "window_max": 60, "window_s": None, "next_free_s": None,
             "waiting_requests": 0, "open_requests": 0, "soft_delay_s": 0.0},
        ),
    ],
    ids=["full window", "older connector"],
)  # fmt: skip
def test_pacing_is_said_in_a_readers_words(
    pacing: dict[str, float], expected: dict[str, object]
) -> None:
    out = pacing_out(pacing)
    assert {f: getattr(out, f) for f in expected} == expected
