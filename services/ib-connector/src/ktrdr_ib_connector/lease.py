"""One active connector per gateway: a lease in the ``ktrdr_gateways`` KV bucket.

IB paces historical requests per gateway session, and the pacing gate lives in each
connector's process, so two connectors sending to one gateway would together break IB's
limits. Each connector therefore holds a lease on its gateway before it connects to IB:

* the lease is the bucket's key for the gateway (``ib_gateway_id``, by default
  ``<host>_<port>``), created only if absent (``create``) and renewed three times per TTL
  by a compare-and-set on its revision (``update(last=...)``);
* the bucket's entries expire ``streams.GATEWAYS_TTL_S`` (3 s) after their last write, so the
  lease of a connector that died (kill -9, a lost host) lapses on its own;
* a second connector for the same gateway is a **standby**: it waits in ``acquire``, trying
  six times per TTL, and becomes active within half a second of the lapse;
* an active connector that cannot renew for 60 % of the TTL (NATS unreachable) no longer
  knows it is alone: ``on_unsure`` stops its IB traffic until a renewal succeeds
  (``on_regained``); one that finds the lease held by another (``on_lost``) stops for good;
* a connector that stops cleanly deletes its lease once it has left IB (``release``), so the
  standby takes over at once, not after the TTL.

Why a lease and not a gate shared through NATS: the gate decides every request within
microseconds from its own clock; a shared one would add a NATS round trip to each decision
and still need the same fencing when NATS is unreachable. A lease costs one KV write a second
and leaves the gate as it is (README, "A pool of gateways").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from ktrdr_shared.errors import IbUnavailable
from ktrdr_shared.streams import GATEWAYS_TTL_S
from ktrdr_shared.types import utc_now
from nats.js.kv import KeyValue

from ktrdr_ib_connector.pacing import GateHistory, PacingGate

log = logging.getLogger(__name__)
T = TypeVar("T")

# As fractions of the TTL: renew three times per TTL, poll six times, stop trusting the
# lease once 60 % of it passed without a renewal (well before it can have lapsed).
RENEW_EVERY = 1 / 3
POLL = 1 / 6
UNSURE_AFTER = 0.6

_KEY_CHARS = re.compile(r"[^-_=A-Za-z0-9]")


class Holder(msgspec.Struct, frozen=True):
    """Who holds a gateway's lease: the value of its key.

    ``renewed`` (wall-clock seconds) and ``gate`` (its pacing gate's history) are written at
    every renewal, so a standby that takes over counts the requests IB still remembers.
    """

    holder: str
    host: str
    port: int
    client_id: int
    since: str
    renewed: float = 0.0
    gate: GateHistory | None = None


class Taken(Exception):
    """The key exists (create) or has moved on (update): another holder wrote it."""


class Unreachable(Exception):
    """NATS did not answer: whether the lease still holds is not known."""


class LeaseKV(Protocol):
    """The bucket, as the lease uses it (``NatsLeaseKV``, or a dict in tests)."""

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` if absent; return its revision (``Taken`` if present)."""
        ...

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``key`` if its revision is ``last``; return the new one (``Taken`` if not)."""
        ...

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """Return ``key``'s value and revision, or None when absent (lapsed, deleted)."""
        ...

    async def delete(self, key: str, last: int) -> None:
        """Delete ``key`` if its revision is still ``last``."""
        ...


def gateway_key(host: str, port: int, gateway_id: str = "") -> str:
    """Return the lease key of a gateway: ``gateway_id`` or ``<host>_<port>``, KV-safe."""
    raw = gateway_id or f"{host}_{port}"
    return _KEY_CHARS.sub("_", raw)


def new_holder_id() -> str:
    """Return this process's holder id: host, pid and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class GatewayLease:
    """The lease of one gateway, held (or waited for) by this connector."""

    kv: LeaseKV
    key: str
    me: Holder
    clock: Callable[[], float] = time.monotonic
    ttl_s: float = GATEWAYS_TTL_S  # the bucket's; shorter only in tests of an in-memory one
    revision: int | None = None
    lost_to: str | None = None  # set once another holder took the lease from us
    snapshot: Callable[[], GateHistory] | None = None  # the gate's history, for a successor
    predecessor: Holder | None = None  # the last holder seen while standing by
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _lost: Callable[[str], None] | None = None

    @property
    def value(self) -> bytes:
        """Return what this connector writes under the key (now: its gate as it is)."""
        gate = self.snapshot() if self.snapshot is not None else None
        return msgspec.json.encode(msgspec.structs.replace(self.me, renewed=time.time(), gate=gate))

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait until this connector holds the lease (False: stopping came first)."""
        waiting_for: str | None = None
        while not stopping.is_set():
            try:
                self.revision = await self.kv.create(self.key, self.value)
            except Taken:
                holder = await self._holder()
                if holder is not None and holder.holder == self.me.holder:
                    continue  # our own write whose answer was lost: take it again
                if holder is not None:
                    self.predecessor = holder
                name = holder.holder if holder else "another connector"
                if name != waiting_for:
                    waiting_for = name
                    since = f" since {holder.since}" if holder else ""
                    log.warning(
                        "standby: gateway %s is held by %s%s; taking over within %.1f s of "
                        "its lease lapsing (%.0f s after its last renewal)",
                        self.key,
                        name,
                        since,
                        self.ttl_s * POLL,
                        self.ttl_s,
                    )
            except Unreachable as e:
                log.warning("lease on gateway %s: NATS did not answer (%s)", self.key, e)
            else:
                log.info("active: this connector holds gateway %s", self.key)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.ttl_s * POLL)
        return False

    async def keep(
        self,
        stopping: asyncio.Event,
        *,
        on_unsure: Callable[[], None],
        on_regained: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> None:
        """Renew the lease until ``stopping`` is set or another holder has it (see module)."""
        self._lost = on_lost
        confirmed = self.clock()
        unsure = False
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.ttl_s * RENEW_EVERY)
            if stopping.is_set():
                return
            try:
                holder = await self._renew()
            except Unreachable as e:
                if not unsure and self.clock() - confirmed > self.ttl_s * UNSURE_AFTER:
                    unsure = True
                    log.warning(
                        "lease on gateway %s not renewed for %.1f s (%s): IB paused until it is",
                        self.key,
                        self.clock() - confirmed,
                        e,
                    )
                    on_unsure()
                continue
            if holder is not None or self.lost_to is not None:
                if self.lost_to is None:  # (a write-ahead may have found it first)
                    self.lost_to = holder
                    on_lost(holder or "another connector")
                log.error("lease on gateway %s was taken by %s: leaving IB", self.key, self.lost_to)
                return
            confirmed = self.clock()
            if unsure:
                unsure = False
                log.info("lease on gateway %s renewed: IB resumed", self.key)
                on_regained()

    async def release(self) -> None:
        """Delete the lease (only if still ours), so a standby need not wait for the TTL."""
        if self.revision is None or self.lost_to is not None:
            return
        with contextlib.suppress(Taken, Unreachable):
            await self.kv.delete(self.key, self.revision)
            log.info("released gateway %s", self.key)
        self.revision = None

    async def write_ahead(self) -> None:
        """Write the gate's history now, before a hard request goes to IB (the gate's hook).

        A successor then knows every request this connector sent. A write that fails keeps
        the request back: it waits in the queue as for a lost connection.

        Raises:
            IbUnavailable: NATS did not answer, or another connector holds the lease.
        """
        if self.lost_to is not None:
            raise IbUnavailable(f"gateway {self.key} is now held by {self.lost_to}")
        try:
            holder = await self._renew()
        except Unreachable as e:
            raise IbUnavailable(
                f"gateway lease {self.key} not confirmed: {e}", delay_s=self.ttl_s
            ) from e
        if holder is not None:
            self.lost_to = holder
            if self._lost is not None:
                self._lost(holder)
            raise IbUnavailable(f"gateway {self.key} is now held by {holder}")

    async def _renew(self) -> str | None:
        """Renew; return None when held, or who holds it instead."""
        async with self._writing:  # renewals and write-aheads take turns on the revision
            return await self._renew_once()

    async def _renew_once(self) -> str | None:
        assert self.revision is not None
        try:
            self.revision = await self.kv.update(self.key, self.value, self.revision)
            return None
        except Taken:
            pass
        holder = await self._holder()
        if holder is not None and holder.holder != self.me.holder:
            return holder.holder
        if holder is not None:  # our own renewal whose answer was lost: carry on from it
            found = await self.kv.get(self.key)
            if found is not None:
                self.revision = found[1]
                return None
        try:  # lapsed while NATS was away, and nobody took it: take it again
            self.revision = await self.kv.create(self.key, self.value)
            return None
        except Taken:
            taken = await self._holder()
            return taken.holder if taken else "another connector"

    async def _holder(self) -> Holder | None:
        found = await self.kv.get(self.key)
        if found is None:
            return None
        try:
            return msgspec.json.decode(found[0], type=Holder)
        except msgspec.DecodeError:
            return Holder(holder="an unreadable holder", host="", port=0, client_id=0, since="")


UNSEEN_REQUESTS = 10  # counted in IB's 10-minute window for what a predecessor sent unseen
STANDBY_SLACK_S = 1.0  # a standby's own delays (its poll, its start) and clock skew


def seed_gate(gate: PacingGate, predecessor: Holder | None, ttl_s: float = GATEWAYS_TTL_S) -> str:
    """Count the requests the gateway's previous connector made as ``gate``'s own.

    The predecessor wrote its gate's history before each hard request it sent
    (``write_ahead``) and at every renewal, and the standby read it every poll until the
    lease lapsed, ``ttl_s`` after that last write: so the history seen last is complete, and
    the successor may go on at once. If that history is stale (the standby's reads failed
    meanwhile), what the predecessor sent after it is unknown: no hard request goes until
    IB's identical-request window has passed since it could last have sent, and
    ``UNSEEN_REQUESTS`` more count in the 10-minute window. Returns what was done, in words
    (empty: there was no predecessor's history).
    """
    if predecessor is None or predecessor.gate is None:
        return ""
    rules = gate.rules
    older = max(0.0, time.time() - predecessor.renewed)
    fresh = older <= ttl_s * (1 + 2 * POLL) + STANDBY_SLACK_S
    if fresh:
        quiet, unseen = 0.0, 0
    else:
        unseen_until = ttl_s * UNSURE_AFTER
        identical = rules.scaled(rules.identical_window_s)
        quiet = max(0.0, unseen_until + identical + rules.margin_s - older)
        unseen = UNSEEN_REQUESTS
    gate.seed(predecessor.gate, older_by_s=older, quiet_s=quiet, unseen=unseen)
    return (
        f"took over from {predecessor.holder}: {len(predecessor.gate.sent)} requests of its "
        f"last {older:.1f} s counted"
        + ("" if fresh else f" (a stale history: hard requests held {quiet:.1f} s)")
    )


def holder_now(host: str, port: int, client_id: int) -> Holder:
    """Return this process's ``Holder`` for a gateway, since now."""
    return Holder(
        holder=new_holder_id(),
        host=host,
        port=port,
        client_id=client_id,
        since=utc_now().isoformat(),
    )


class NatsLeaseKV:
    """``LeaseKV`` on a JetStream KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def create(self, key: str, value: bytes) -> int:
        """``KeyValue.create``; a present key is ``Taken``."""
        return await self._call(lambda: self.kv.create(key, value))

    async def update(self, key: str, value: bytes, last: int) -> int:
        """``KeyValue.update(last=)``; a moved revision is ``Taken``."""
        return await self._call(lambda: self.kv.update(key, value, last=last))

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """``KeyValue.get``; absent, deleted or lapsed is None."""
        try:
            entry = await asyncio.wait_for(self.kv.get(key), timeout=GATEWAYS_TTL_S * POLL * 2)
        except nats.js.errors.KeyNotFoundError:  # KeyDeletedError is one
            return None
        except (TimeoutError, nats.errors.Error) as e:
            raise Unreachable(str(e) or type(e).__name__) from e
        return (entry.value or b"", entry.revision or 0)

    async def delete(self, key: str, last: int) -> None:
        """``KeyValue.delete(last=)``."""
        await self._call(lambda: self.kv.delete(key, last=last))

    @staticmethod
    async def _call(call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(call(), timeout=GATEWAYS_TTL_S * POLL * 2)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError) as e:
            raise Taken(str(e)) from e
        except (TimeoutError, nats.errors.Error) as e:
            raise Unreachable(str(e) or type(e).__name__) from e


__all__ = [
    "GatewayLease",
    "Holder",
    "LeaseKV",
    "NatsLeaseKV",
    "Taken",
    "Unreachable",
    "gateway_key",
    "holder_now",
    "seed_gate",
]
