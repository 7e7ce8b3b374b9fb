"""Every JetStream stream, durable consumer, KV bucket and object store, declared once.

``ensure_all`` is idempotent: it creates what is missing and updates what
drifted, and leaves one correct set behind however often it runs. Who runs it
depends on the server:

* an open development server (no NATS user): each service declares what it
  uses at start, as it always has;
* a server with users (``just up --secure``, the deploy files): declaring is an
  admin step (``python -m ktrdr_shared.declare`` as the NATS admin, run by
  ``just up --secure`` before the services start). Service users have no right
  to create, update, delete or purge a stream, a durable consumer or a bucket;
  at start each one *verifies* that what it needs exists and is configured as
  declared (``verify``), waits a while for what is missing, and exits naming
  the drift and ``DECLARE_COMMAND`` otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from ktrdr_shared import subjects
from ktrdr_shared.errors import ConfigError

log = logging.getLogger(__name__)

DAY_S = 86_400.0

COMMANDS = StreamConfig(
    name="KTRDR_COMMANDS",
    description="ktrdr commands: one durable work-queue consumer per service family",
    subjects=[subjects.COMMANDS_ALL],
    retention=RetentionPolicy.WORK_QUEUE,
    storage=StorageType.FILE,
    discard=DiscardPolicy.OLD,
    duplicate_window=600.0,  # a command's id is its Nats-Msg-Id: resends inside 10 min drop
    max_age=7 * DAY_S,
)

BARS = StreamConfig(
    name="KTRDR_BARS",
    description="ktrdr bar batches (msgpack), one subject per symbol key and timeframe",
    subjects=[subjects.BARS_ALL],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    discard=DiscardPolicy.OLD,
    duplicate_window=600.0,  # batch ids derive from content, so a re-fetch is deduplicated
    max_age=7 * DAY_S,
)

EVENTS = StreamConfig(
    name="KTRDR_EVENTS",
    description="ktrdr event log: jobs, IB connection, store",
    subjects=[subjects.EVENTS_ALL],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    discard=DiscardPolicy.OLD,
    duplicate_window=120.0,
    max_age=30 * DAY_S,
)

STREAMS: tuple[StreamConfig, ...] = (COMMANDS, BARS, EVENTS)


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer: its stream and its configuration."""

    stream: str
    config: ConsumerConfig

    @property
    def durable(self) -> str:
        """Return the consumer's durable name."""
        assert self.config.durable_name is not None
        return self.config.durable_name


def _work_consumer(durable: str, filter_subject: str, *, ack_wait_s: float) -> ConsumerSpec:
    return ConsumerSpec(
        stream=COMMANDS.name or "",
        config=ConsumerConfig(
            durable_name=durable,
            name=durable,
            description=f"{durable}: commands on {filter_subject}",
            filter_subject=filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_s,
            max_deliver=-1,  # retryable work (IB down) must wait, not vanish
            max_ack_pending=1000,
        ),
    )


# Ack waits bound how long a command held by a killed process waits for redelivery; long
# work keeps its message with in_progress (the connector every ack_wait / 4).
DATA_COMMANDS = _work_consumer("data-store-commands", subjects.CMD_DATA_FILTER, ack_wait_s=30.0)
# 5 s for the connector: a standby that took over a dead connector's gateway (its lease lapses
# within 3 s) gets the dead one's segments back within 5 s of the kill.
IB_COMMANDS = _work_consumer("ib-connector-commands", subjects.CMD_IB_FILTER, ack_wait_s=5.0)
TRAIN_COMMANDS = _work_consumer("trainer-commands", subjects.CMD_TRAIN_FILTER, ack_wait_s=300.0)

STORE_BARS = ConsumerSpec(
    stream=BARS.name or "",
    config=ConsumerConfig(
        durable_name="data-store-bars",
        name="data-store-bars",
        description="data-store ingest of every bar batch",
        filter_subject=subjects.BARS_ALL,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        # a micro-batch is merged in well under a second; a killed store's batches come
        # back this soon (a slow merge repeated is harmless: merges are idempotent)
        ack_wait=15.0,
        max_deliver=-1,
        max_ack_pending=20_000,
    ),
)

CONSUMERS: tuple[ConsumerSpec, ...] = (DATA_COMMANDS, IB_COMMANDS, TRAIN_COMMANDS, STORE_BARS)

SYMBOLS_BUCKET = "ktrdr_symbols"
SYMBOLS_TTL_S = 7 * DAY_S  # a symbol's contract details and head timestamp are asked again weekly
SYMBOLS_HISTORY = 1
MODELS_BUCKET = "ktrdr_models"
# One key per IB gateway: the lease of the connector active on it (ktrdr_ib_connector.lease).
# An entry lapses this long after its holder last renewed it.
GATEWAYS_BUCKET = "ktrdr_gateways"
GATEWAYS_TTL_S = 3.0


@dataclass(frozen=True)
class KvBucket:
    """A KV bucket ktrdr declares: its name, what it is for, history and entry lifetime."""

    name: str
    description: str
    history: int
    ttl_s: float


KV_BUCKETS = (
    KvBucket(
        SYMBOLS_BUCKET,
        "IB symbol discovery cache (contract details, head timestamps)",
        SYMBOLS_HISTORY,
        SYMBOLS_TTL_S,
    ),
    KvBucket(
        GATEWAYS_BUCKET,
        "IB gateway leases: the one ib-connector active on each gateway",
        1,
        GATEWAYS_TTL_S,
    ),
)

REPLICAS_VARIABLE = "KTRDR_NATS_REPLICAS"
MAX_REPLICAS = 5  # JetStream's limit


def configured_replicas(environ: Mapping[str, str] | None = None) -> int:
    """Return how many copies of each stream and bucket to keep (``KTRDR_NATS_REPLICAS``).

    1 (the default) for a single nats-server; 3 on a 3-node cluster, so a node
    can die without losing a message. Every process that declares streams
    should see the same value; the last one to declare wins.

    Raises:
        ConfigError: the value is not a whole number from 1 to 5.
    """
    env = os.environ if environ is None else environ
    raw = env.get(REPLICAS_VARIABLE, "1").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
        raise ConfigError(
            f"{REPLICAS_VARIABLE}={raw!r}: must be a whole number from 1 to {MAX_REPLICAS} "
            "(1 on a single nats-server, 3 on a 3-node cluster)",
            details={"variable": REPLICAS_VARIABLE},
        )
    return int(raw)


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a stream, or update it to ``config`` when it exists."""
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s", config.name)
        return
    await js.update_stream(config)


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create or update every ktrdr stream, kept on ``replicas`` servers.

    Args:
        js: the JetStream context.
        replicas: copies of each stream; default ``configured_replicas()``.
    """
    copies = replicas or configured_replicas()
    for config in STREAMS:
        await ensure_stream(js, config.evolve(num_replicas=copies))


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create a durable consumer, or update its configuration when it exists.

    The server's create-or-update keeps the consumer's position, so running
    this on every start neither replays nor loses messages.
    """
    await js.add_consumer(spec.stream, spec.config)


async def ensure_consumers(js: JetStreamContext, *specs: ConsumerSpec) -> None:
    """Create or update the given consumers (all of them when none is named)."""
    for spec in specs or CONSUMERS:
        await ensure_consumer(js, spec)


async def ensure_buckets(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create the symbol and gateway KV buckets and the model object store when missing.

    Args:
        js: the JetStream context.
        replicas: copies of each bucket; default ``configured_replicas()``.
    """
    copies = replicas or configured_replicas()
    for kv in KV_BUCKETS:
        try:
            await js.key_value(kv.name)
        except BucketNotFoundError:
            await js.create_key_value(
                bucket=kv.name,
                description=kv.description,
                history=kv.history,
                ttl=kv.ttl_s,
                replicas=copies,
            )
    try:
        await js.object_store(MODELS_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        await js.create_object_store(
            bucket=MODELS_BUCKET, description="trained model artifacts", replicas=copies
        )


async def ensure_all(js: JetStreamContext, replicas: int | None = None) -> None:
    """Declare every stream, durable consumer and bucket ktrdr uses."""
    await ensure_streams(js, replicas)
    await ensure_consumers(js)
    await ensure_buckets(js, replicas)


DECLARE_COMMAND = "python -m ktrdr_shared.declare (as the NATS admin; `just declare`)"

# Settings a stream must not have gained, whatever it declares: each one lets a
# writer of the stream lose or inject messages (limits, sources, republish, seals).
_STREAM_GUARDS: dict[str, Any] = {
    "max_msgs": -1, "max_bytes": -1, "max_msg_size": -1, "max_consumers": -1,
    "sealed": False, "deny_delete": False, "deny_purge": False,
    "mirror": None, "sources": None, "republish": None, "subject_transform": None,
}  # fmt: skip
_STREAM_DECLARED = (
    "subjects",
    "retention",
    "storage",
    "discard",
    "max_age",
    "duplicate_window",
    "max_msgs_per_subject",
    "allow_rollup_hdrs",
)
_CONSUMER_DECLARED = (
    "filter_subject",
    "ack_policy",
    "deliver_policy",
    "ack_wait",
    "max_deliver",
    "max_ack_pending",
)


@dataclass(frozen=True)
class Problem:
    """One way the server's JetStream objects differ from what ktrdr declares."""

    what: str  # "stream KTRDR_EVENTS", "consumer KTRDR_COMMANDS > trainer-commands"
    detail: str  # "is missing", "max_msgs is 1, declared -1"
    missing: bool = False

    def __str__(self) -> str:
        return f"{self.what} {self.detail}"


def _same(declared: Any, actual: Any) -> bool:
    if isinstance(declared, float) or isinstance(actual, float):
        return abs(float(declared or 0) - float(actual or 0)) < 1e-3
    if declared in (None, [], ()) and actual in (None, [], ()):
        return True
    if isinstance(declared, list) and isinstance(actual, list):
        return sorted(map(str, declared)) == sorted(map(str, actual))
    return bool(declared == actual)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _show(value: Any) -> str:
    return str(getattr(value, "value", value))


def stream_drift(declared: StreamConfig, actual: StreamConfig, replicas: int) -> list[str]:
    """Return each setting of ``actual`` that differs from ``declared`` (empty: none).

    Compares what ktrdr declares, the replica count, and the settings no ktrdr
    stream has (message limits, sources, mirrors, republish rules, seals).
    """
    drift = []
    expected = {name: getattr(declared, name) for name in _STREAM_DECLARED}
    expected["max_msgs_per_subject"] = declared.max_msgs_per_subject or -1
    expected["allow_rollup_hdrs"] = bool(declared.allow_rollup_hdrs)
    expected["num_replicas"] = replicas
    guards = {name: _or(getattr(declared, name), dflt) for name, dflt in _STREAM_GUARDS.items()}
    for name, value in {**guards, **expected}.items():
        if not _same(value, getattr(actual, name)):
            drift.append(f"{name} is {_show(getattr(actual, name))}, declared {_show(value)}")
    return drift


def consumer_drift(declared: ConsumerConfig, actual: ConsumerConfig) -> list[str]:
    """Return each declared setting of a durable consumer that ``actual`` does not have."""
    return [
        f"{name} is {_show(getattr(actual, name))}, declared {_show(getattr(declared, name))}"
        for name in _CONSUMER_DECLARED
        if not _same(getattr(declared, name), getattr(actual, name))
    ]


async def _stream_problems(
    js: JetStreamContext, declared: StreamConfig, replicas: int, label: str | None = None
) -> list[Problem]:
    what = label or f"stream {declared.name}"
    try:
        info = await js.stream_info(declared.name or "")
    except NotFoundError:
        return [Problem(what, "is missing", missing=True)]
    return [Problem(what, d) for d in stream_drift(declared, info.config, replicas)]


def _bucket_streams() -> list[tuple[str, StreamConfig]]:
    """The streams behind the buckets, as ``ensure_buckets`` (nats-py) creates them."""
    kvs = [
        (
            f"KV bucket {kv.name}",
            StreamConfig(
                name=f"KV_{kv.name}",
                subjects=[f"$KV.{kv.name}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.NEW,
                max_age=kv.ttl_s,
                max_msgs_per_subject=kv.history,
                allow_rollup_hdrs=True,
                duplicate_window=min(kv.ttl_s, 120.0),
                deny_delete=True,
            ),
        )
        for kv in KV_BUCKETS
    ]
    obj = StreamConfig(
        name=f"OBJ_{MODELS_BUCKET}",
        subjects=[f"$O.{MODELS_BUCKET}.C.>", f"$O.{MODELS_BUCKET}.M.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_age=0.0,
        allow_rollup_hdrs=True,
        duplicate_window=120.0,
    )
    return [*kvs, (f"object store {MODELS_BUCKET}", obj)]


async def verify(
    js: JetStreamContext,
    consumers: Sequence[ConsumerSpec] = (),
    *,
    buckets: bool = False,
    replicas: int | None = None,
) -> list[Problem]:
    """Return how the server differs from what ktrdr declares (empty: as declared).

    Reads only (``STREAM.INFO``, ``CONSUMER.INFO``): what a service user may do.

    Args:
        consumers: the durable consumers the caller needs.
        buckets: also check the symbol KV bucket and the model object store.
        replicas: copies expected; default ``configured_replicas()``.
    """
    copies = replicas or configured_replicas()
    problems: list[Problem] = []
    for config in STREAMS:
        problems += await _stream_problems(js, config, copies)
    for spec in consumers:
        what = f"consumer {spec.stream} > {spec.durable}"
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            problems.append(Problem(what, "is missing", missing=True))
            continue
        problems += [Problem(what, d) for d in consumer_drift(spec.config, info.config)]
    if buckets:
        for label, config in _bucket_streams():
            problems += await _stream_problems(js, config, copies, label)
    return problems


def drift_error(problems: Sequence[Problem], service: str) -> ConfigError:
    """Return the error a service exits with: every problem, and the command that fixes it."""
    lines = "; ".join(str(p) for p in problems)
    return ConfigError(
        f"{service}: JetStream is not as declared: {lines}. Fix: {DECLARE_COMMAND}",
        details={"problems": [str(p) for p in problems], "fix": DECLARE_COMMAND},
    )


async def prepare(
    js: JetStreamContext,
    *consumers: ConsumerSpec,
    buckets: bool = False,
    declare: bool,
    service: str,
    wait_s: float = 60.0,
) -> None:
    """Declare what a service needs, or verify that the admin did (see the module doc).

    Verifying waits up to ``wait_s`` for missing objects (``just up --secure``
    declares while the services start); a setting that differs fails at once.

    Raises:
        ConfigError: something is missing after ``wait_s``, or is configured
            otherwise than declared; the message names each problem and the fix.
    """
    if declare:
        await ensure_streams(js)
        if consumers:
            await ensure_consumers(js, *consumers)
        if buckets:
            await ensure_buckets(js)
        return
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        problems = await verify(js, consumers, buckets=buckets)
        if not problems:
            return
        drifted = [p for p in problems if not p.missing]
        if drifted or time.monotonic() >= deadline:
            raise drift_error(problems, service)
        if not told:
            log.warning(
                "%s: waiting for the NATS admin to declare: %s",
                service,
                "; ".join(map(str, problems)),
            )
            told = True
        await asyncio.sleep(0.5)
