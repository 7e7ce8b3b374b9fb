"""A durable pull-consumer loop that survives server restarts and bad messages.

The handler decides each message's fate by how it returns:

* returns normally         -> ``ack`` (a handler that acked it itself gets a second ack,
  which the server ignores);
* raises ``RetryableError`` -> ``nak`` with the error's delay (IB down, pacing);
* raises ``PermanentError`` -> ``term`` and ``on_permanent`` is told (it
  publishes the ``*_failed`` event), so a malformed command is reported once
  and never redelivered;
* raises anything else     -> ``nak`` with a delay, and after
  ``max_unexpected`` deliveries it is treated as permanent (a poison message
  must not loop forever).

Long work keeps its message with ``in_progress`` (see ``keep_alive``). Fetches
use short expiries, so a restarted nats-server is
noticed quickly and the loop re-binds to the durable consumer, re-declaring it
if the server lost it.

With ``concurrency`` above 1 each message runs in its own task, up to that many
at once, and the loop only fetches as many messages as there are free slots; on
stop, handlers still running after ``drain_timeout_s`` are cancelled and their
messages nak'ed, so another instance takes them at once instead of after the
ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ktrdr_shared.errors import KtrdrError, PermanentError, RetryableError
from ktrdr_shared.streams import DECLARE_COMMAND, ConsumerSpec, ensure_consumer

log = logging.getLogger(__name__)

MessageHandler = Callable[[Msg], Awaitable[None]]
PermanentHandler = Callable[[Msg, KtrdrError], Awaitable[None]]


@dataclass
class PullConsumer:
    """Fetch from one durable consumer and hand each message to a handler.

    Attributes:
        js: the JetStream context.
        spec: the durable consumer (declared if missing, when ``declare``).
        declare: declare the consumer when it is missing (an open server); False where
            only the NATS admin may (a missing consumer is then reported and waited for).
        handler: called per message (see the module docstring for its contract).
        on_permanent: told of each message terminated for a permanent error.
        batch: how many messages one fetch asks for.
        fetch_timeout_s: expiry of one fetch; also bounds how long stop waits.
        heartbeat_s: server idle heartbeat during a fetch; 0 (the default) sends none.
            nats-py 2.16 keeps the heartbeat when it shortens a fetch's expiry or drops
            it, and the server then refuses the pull ("heartbeat value too large")
            while messages it already delivered sit unacked until their ack wait.
        retry_delay_s: nak delay after an unexpected error.
        max_unexpected: deliveries after which an unexpected error is permanent.
        concurrency: handlers running at once; 1 (the default) handles each
            batch in order, inside the fetch loop.
        drain_timeout_s: with ``concurrency`` above 1, how long stop lets running
            handlers finish before it cancels them and naks their messages.
    """

    js: JetStreamContext
    spec: ConsumerSpec
    handler: MessageHandler
    on_permanent: PermanentHandler | None = None
    batch: int = 16
    fetch_timeout_s: float = 2.0
    heartbeat_s: float = 0.0
    retry_delay_s: float = 2.0
    max_unexpected: int = 5
    concurrency: int = 1
    drain_timeout_s: float = 20.0
    declare: bool = True

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set; finish the batch in hand, then return."""
        if self.concurrency > 1:
            await self._run_concurrently(stopping)
            return
        async for messages in fetch_batches(
            self.js,
            self.spec,
            stopping,
            self.batch,
            self.fetch_timeout_s,
            self.heartbeat_s,
            declare=self.declare,
        ):
            for msg in messages:
                await self.dispatch(msg)

    async def _run_concurrently(self, stopping: asyncio.Event) -> None:
        """Keep up to ``concurrency`` handlers running; fetch only for free slots."""
        running = _Running()
        try:
            async for messages in fetch_batches(
                self.js,
                self.spec,
                stopping,
                self.batch,
                self.fetch_timeout_s,
                self.heartbeat_s,
                want=lambda: min(self.batch, self.concurrency - len(running)),
                declare=self.declare,
            ):
                for msg in messages:
                    if len(running) < self.concurrency:
                        delivery = _Delivery(msg)
                        running.start(delivery, self._dispatch(delivery))
                    else:  # a late delivery of an earlier pull: give it back
                        await _settle(msg.nak())
                await running.wait_below(self.concurrency, stopping)
            await running.wait_all(self.drain_timeout_s)
        finally:
            await running.abandon()

    async def dispatch(self, msg: Msg) -> None:
        """Run the handler on one message and settle it (ack / nak / term)."""
        await self._dispatch(_Delivery(msg))

    async def _dispatch(self, delivery: _Delivery) -> None:
        msg = delivery.msg
        try:
            await self.handler(msg)
        except RetryableError as e:
            log.info("%s: retry in %.1fs: %s", msg.subject, e.delay_s, e.message)
            await delivery.settle(msg.nak(delay=e.delay_s))
            return
        except PermanentError as e:
            await self._terminate(delivery, e)
            return
        except Exception as e:
            count = deliveries(msg)
            if count >= self.max_unexpected:
                log.exception("%s: giving up after %d deliveries", msg.subject, count)
                await self._terminate(delivery, PermanentError(f"failed {count} times: {e!r}"))
            else:
                log.exception("%s: unexpected error (delivery %d)", msg.subject, count)
                await delivery.settle(msg.nak(delay=self.retry_delay_s))
            return
        await delivery.settle(msg.ack())

    async def _terminate(self, delivery: _Delivery, error: KtrdrError) -> None:
        msg = delivery.msg
        log.warning("%s: rejected (%s): %s", msg.subject, error.code, error.message)
        await delivery.settle(msg.term())
        if self.on_permanent is not None:
            await self.on_permanent(msg, error)


async def fetch_batches(
    js: JetStreamContext,
    spec: ConsumerSpec,
    stopping: asyncio.Event,
    batch: int = 16,
    fetch_timeout_s: float = 2.0,
    heartbeat_s: float = 0.0,
    want: Callable[[], int] | None = None,
    declare: bool = True,
) -> AsyncIterator[list[Msg]]:
    """Yield batches from a durable consumer until ``stopping`` is set.

    Survives disconnects and server restarts: fetch errors back off and
    retry, and a consumer the server no longer knows is declared again.
    Messages are the caller's to ack (for micro-batching writers).

    Args:
        want: asked before each fetch how many messages to ask for (at least 1
            is asked); ``batch`` when not given.
        declare: declare the consumer when missing; otherwise only check that it
            exists, and while it does not, log the fix (``DECLARE_COMMAND``) and wait.
    """
    sub: JetStreamContext.PullSubscription | None = None
    backoff = _Backoff()
    heartbeat_s = min(heartbeat_s, fetch_timeout_s / 4)  # the server wants it well below expiry
    while not stopping.is_set():
        try:
            if sub is None:
                if declare:
                    await ensure_consumer(js, spec)
                else:
                    await js.consumer_info(spec.stream, spec.durable)
                sub = await js.pull_subscribe_bind(spec.durable, stream=spec.stream)
            size = max(1, want()) if want is not None else batch
            messages = await sub.fetch(size, timeout=fetch_timeout_s, heartbeat=heartbeat_s or None)
        except (TimeoutError, nats.errors.TimeoutError):
            backoff.reset()
            continue
        except nats.js.errors.NotFoundError:
            if declare:
                log.warning("%s: consumer or stream missing; declaring it again", spec.durable)
            else:
                log.error(
                    "%s: consumer or stream missing; waiting for the NATS admin to run %s",
                    spec.durable,
                    DECLARE_COMMAND,
                )
            await _drop(sub)
            sub = None
            await backoff.wait(stopping)
            continue
        except (nats.errors.Error, OSError) as e:
            log.warning("%s: fetch failed (%s); retrying", spec.durable, e or type(e).__name__)
            if isinstance(e, nats.errors.ConnectionClosedError):
                return
            await backoff.wait(stopping)
            continue
        backoff.reset()
        if messages:
            yield messages
    await _drop(sub)


class InProgress(Protocol):
    """A message that can be marked in progress: a JetStream ``Msg``, or a test's fake."""

    def in_progress(self) -> Awaitable[None]: ...


class CommandMessage(InProgress, Protocol):
    """A command off a work queue, as its handler sees it: a JetStream ``Msg``, or an
    in-memory one (``ktrdr_shared.testing.queue.MemoryCommand``) in a fast test."""

    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, str] | None: ...
    @property
    def metadata(self) -> Msg.Metadata: ...
    def ack(self) -> Awaitable[None]: ...
    def nak(self, delay: float | None = None) -> Awaitable[None]: ...
    def term(self) -> Awaitable[None]: ...


async def keep_alive(msg: InProgress, every_s: float) -> asyncio.Task[None]:
    """Start a task that marks ``msg`` in progress every ``every_s`` until cancelled."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            await _settle(msg.in_progress())

    return asyncio.create_task(beat())


@dataclass
class _Delivery:
    """A message in ``dispatch`` and whether dispatch has settled it yet (ack, nak or term).

    The consumer keeps this itself rather than reading the client library's private state.
    """

    msg: Msg
    settled: bool = False

    async def settle(self, action: Awaitable[None]) -> None:
        """Settle the message with ``action`` (``msg.ack()``, ``msg.nak(...)``, ``msg.term()``)."""
        self.settled = True  # once sent, a later nak would contradict it: count it as settled
        await _settle(action)


class _Running:
    """The handler tasks of a concurrent consumer and the deliveries they hold."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[None], _Delivery] = {}
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, delivery: _Delivery, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks[task] = delivery
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._changed.set()

    async def wait_below(self, limit: int, stopping: asyncio.Event) -> None:
        """Return once fewer than ``limit`` run, or ``stopping`` is set."""
        while len(self._tasks) >= limit and not stopping.is_set():
            self._changed.clear()
            stop = asyncio.ensure_future(stopping.wait())
            change = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({stop, change}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                change.cancel()

    async def wait_all(self, timeout_s: float) -> None:
        """Let the running handlers finish, for at most ``timeout_s``."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    async def abandon(self) -> None:
        """Cancel what still runs and nak its unsettled messages (redelivered at once)."""
        held = dict(self._tasks)
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        for delivery in held.values():
            if not delivery.settled:
                await _settle(delivery.msg.nak())


class _Backoff:
    """Capped exponential backoff that a stop request interrupts."""

    def __init__(self, first_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.first_s, self.cap_s, self.next_s = first_s, cap_s, first_s

    def reset(self) -> None:
        self.next_s = self.first_s

    async def wait(self, stopping: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=self.next_s)
        self.next_s = min(self.cap_s, self.next_s * 2)


async def _drop(sub: JetStreamContext.PullSubscription | None) -> None:
    if sub is not None:
        with contextlib.suppress(nats.errors.Error, OSError):
            await sub.unsubscribe()


async def _settle(action: Awaitable[None]) -> None:
    """Ack/nak/term; a lost connection only means the server redelivers later."""
    try:
        await action
    except nats.errors.MsgAlreadyAckdError:
        pass
    except (nats.errors.Error, OSError) as e:
        log.warning("could not settle message (%s); the server will redeliver it", e)


def deliveries(msg: CommandMessage) -> int:
    """Return how often JetStream has delivered ``msg`` (1 for a core message)."""
    try:
        return int(msg.metadata.num_delivered)
    except (nats.errors.NotJSMessageError, TypeError, ValueError):
        return 1


def derived_job_id(msg: CommandMessage) -> str:
    """Return the job id of a command published without one: the same on every redelivery.

    It is made of the message's stream position and time, so a hand-published command
    (``nats pub ktrdr.cmd.data.load '{...}'``) maps to one job however often it is delivered.
    """
    meta = msg.metadata
    seed = f"{meta.stream}:{meta.sequence.stream}:{meta.timestamp.isoformat()}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def salvage_job_id(data: bytes) -> str | None:
    """Return the ``job_id`` of a JSON payload that did not decode, if it carries a valid one.

    A command rejected as malformed is reported on its job's subject when it names one.
    """
    raw = salvage_fields(data)
    job = raw.get("job_id") if raw is not None else None
    valid = isinstance(job, str) and len(job) == 32 and all(c in "0123456789abcdef" for c in job)
    return job if valid else None


def salvage_fields(data: bytes) -> dict[str, Any] | None:
    """Return a payload's top-level JSON object, or None when it is not one."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return raw if isinstance(raw, dict) else None
