"""The overview's live feed: one shared poller per gateway process, fanned out to every client.

However many browsers watch the console's Overview, the gateway gathers the snapshot once
per interval (one NATS round, ``snapshot.NatsSnapshot``) and hands the same snapshot to
each. The poller starts with the first subscriber and stops when the last one leaves; a
change the source announces (an IB connection event) makes it gather again at once instead
of at the next tick. Each client has a one-slot mailbox (``Feed``): a client that reads
slowly finds only the newest snapshot there, the ones it missed are dropped (only the newest
matters), and nobody else waits for it.

This module knows nothing of NATS or HTTP: the source is a port, tested here with an
in-memory one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

INTERVAL_S = 2.0  # a snapshot at least this often while anyone watches
MIN_GAP_S = 0.1  # announced changes (a flapping connection) gather at most this often


class SnapshotSource(Protocol[T_co]):
    """Where snapshots come from, and how the source announces that one is out of date."""

    async def snapshot(self) -> T_co:
        """Gather one snapshot (what failed is said inside it, not raised)."""
        ...

    def changes(self, poke: Callable[[], None]) -> AbstractAsyncContextManager[None]:
        """Call ``poke`` on every change worth a new snapshot, while the context is open."""
        ...


class Feed(Generic[T]):
    """One client's mailbox: it holds the newest snapshot not yet read, and nothing else."""

    def __init__(self) -> None:
        self._newest: T | None = None
        self._ready = asyncio.Event()
        self.dropped = 0  # snapshots replaced before the client read them

    def offer(self, snapshot: T) -> None:
        """Put ``snapshot`` in the mailbox, replacing an unread older one (never waits)."""
        if self._ready.is_set():
            self.dropped += 1
        self._newest = snapshot
        self._ready.set()

    async def next(self, timeout_s: float | None) -> T | None:
        """Return the newest snapshot, waiting for one at most ``timeout_s`` (None: no news)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return None
        self._ready.clear()
        snapshot, self._newest = self._newest, None
        return snapshot


class OverviewHub(Generic[T]):
    """Gather snapshots from ``source`` while anyone subscribes; give each subscriber the newest.

    Args:
        source: what gathers a snapshot and announces changes.
        interval_s: the longest a subscriber waits for a fresh snapshot when nothing changes.
        min_gap_s: the shortest time between two gatherings (announced changes coalesce).
    """

    def __init__(
        self,
        source: SnapshotSource[T],
        *,
        interval_s: float = INTERVAL_S,
        min_gap_s: float = MIN_GAP_S,
    ) -> None:
        self.source = source
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.polls = 0  # snapshots gathered, for the tests and the curious
        self._feeds: set[Feed[T]] = set()
        self._latest: T | None = None
        self._poked = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()  # cancelled, still letting go

    @property
    def running(self) -> bool:
        """Return True while the poller runs (someone subscribes)."""
        return self._poller is not None

    @property
    def latest(self) -> T | None:
        """Return the newest snapshot of the running poller (None when it is not running)."""
        return self._latest

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Feed[T]]:
        """Yield a feed of snapshots: the newest at once (if the poller has one), then each new.

        The first subscriber starts the poller; the last one to leave stops it.
        """
        feed: Feed[T] = Feed()
        if self._latest is not None:
            feed.offer(self._latest)
        self._feeds.add(feed)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_while_watched(), name="overview")
        try:
            yield feed
        finally:
            self._feeds.discard(feed)
            if not self._feeds:
                self._stop()

    async def current(self) -> T:
        """Return the running poller's newest snapshot, or gather one now when none is."""
        return self._latest if self._latest is not None else await self.source.snapshot()

    def poke(self) -> None:
        """Gather a new snapshot now (or as soon as the one being gathered is done)."""
        self._poked.set()

    async def close(self) -> None:
        """Stop the poller and wait until every poller has let go of the source."""
        self._stop()
        for poller in list(self._stopping):
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    def _stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._stopping.add(self._poller)
            self._poller.add_done_callback(self._stopping.discard)
        self._poller, self._latest = None, None

    async def _poll_while_watched(self) -> None:
        loop = asyncio.get_running_loop()
        async with self.source.changes(self.poke):
            while True:
                self._poked.clear()  # a change announced while gathering gathers again
                started = loop.time()
                await self._gather()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._poked.wait(), started + self.interval_s - loop.time()
                    )
                await asyncio.sleep(max(0.0, started + self.min_gap_s - loop.time()))

    async def _gather(self) -> None:
        try:
            snapshot = await self.source.snapshot()
        except Exception:
            # The source says what failed inside the snapshot; an exception is a bug. Keep
            # it (with its traceback) in the log and try again at the next tick rather than
            # leave every subscriber with keep-alives only.
            log.exception("gathering the overview failed; trying again in %g s", self.interval_s)
            return
        self.polls += 1
        self._latest = snapshot
        for feed in self._feeds:
            feed.offer(snapshot)
