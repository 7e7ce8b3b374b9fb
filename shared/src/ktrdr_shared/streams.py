"""Every JetStream stream, durable consumer, KV bucket and object store, declared once.

``ensure_all`` is idempotent: run it at every service start. It creates what
is missing and updates what drifted, and leaves one correct set behind however
often it runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

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
IB_COMMANDS = _work_consumer("ib-connector-commands", subjects.CMD_IB_FILTER, ack_wait_s=10.0)
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
MODELS_BUCKET = "ktrdr_models"

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
    """Create the symbol KV bucket and the model object store when missing.

    Args:
        js: the JetStream context.
        replicas: copies of each bucket; default ``configured_replicas()``.
    """
    copies = replicas or configured_replicas()
    try:
        await js.key_value(SYMBOLS_BUCKET)
    except BucketNotFoundError:
        await js.create_key_value(
            bucket=SYMBOLS_BUCKET,
            description="IB symbol discovery cache (contract details, head timestamps)",
            history=1,
            ttl=7 * DAY_S,
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
