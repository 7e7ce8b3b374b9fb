"""The ib-connector's lifecycle: connect to NATS and IB, declare, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ktrdr_shared import streams, subjects
from ktrdr_shared.consumer import PullConsumer
from ktrdr_shared.messages import (
    HeadTimestampRequest,
    JobKind,
    StatusRequest,
    ValidateSymbol,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.runtime import ServiceApp, publish_event, run_main
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_ib_connector import __version__
from ktrdr_ib_connector.boundary import IbBoundary
from ktrdr_ib_connector.client import ConnectionOptions, IbConnection
from ktrdr_ib_connector.config import IbConnectorSettings
from ktrdr_ib_connector.errors import RetryPolicy
from ktrdr_ib_connector.eventlog import JetStreamLog
from ktrdr_ib_connector.fetcher import Fetcher
from ktrdr_ib_connector.handlers import ENDING_EVENTS, Connector
from ktrdr_ib_connector.lease import (
    GatewayLease,
    NatsLeaseKV,
    gateway_key,
    holder_now,
    seed_gate,
)
from ktrdr_ib_connector.pacing import PacingGate, PacingRules

SERVICE_NAME = "ib-connector"
# A pull's expiry bounds how long a stop waits for the consumer (a pull is not cut short,
# so nothing delivered to it is lost): half a second, not the default 2 s, costs two idle
# pulls a second and lets SIGTERM (and every test's teardown) end 1.5 s sooner.
FETCH_EXPIRY_S = 0.5
# The exit status of a connector whose gateway lease another connector took (a supervisor
# restarts it, and it waits as the standby).
LEASE_LOST_STATUS = 3

log = logging.getLogger(__name__)


def build_connection(settings: IbConnectorSettings, js: JetStreamContext) -> IbConnection:
    """Return the IB connection (not connected yet) that publishes its events on ``js``."""

    async def publish(event: Event) -> None:
        await publish_event(js, event)

    return IbConnection(
        ConnectionOptions(
            host=settings.ib_host,
            port=settings.ib_port,
            client_id=settings.ib_client_id,
            connect_timeout_s=settings.ib_connect_timeout_s,
        ),
        publish,
    )


def build_connector(
    settings: IbConnectorSettings, js: JetStreamContext, connection: IbConnection
) -> Connector:
    """Return the connector's core (IB boundary, gate, fetcher) over ``connection`` and ``js``."""
    scale = settings.ib_time_scale
    gate = PacingGate(PacingRules(time_scale=scale, soft_max_open=settings.ib_soft_concurrency))
    boundary = IbBoundary(connection, gate, request_timeout_s=settings.ib_request_timeout_s)
    fetcher = Fetcher(
        boundary,
        gate,
        RetryPolicy(),
        time_scale=scale,
        reconnect_wait_s=settings.ib_retry_delay_s,
    )
    ack_wait_s = streams.IB_COMMANDS.config.ack_wait or 5.0
    return Connector(
        connection=connection,
        fetcher=fetcher,
        events=JetStreamLog(js),
        keep_alive_s=max(0.5, ack_wait_s / 4),
    )


def build_app(settings: IbConnectorSettings) -> ServiceApp:
    """Return the ib-connector service, ready to start."""
    app = ServiceApp(
        name=SERVICE_NAME,
        version=__version__,
        settings=settings,
        description="the one IB connection: pacing, chunking, bar batches and connection events",
    )

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await app.prepare(js, streams.IB_COMMANDS, buckets=True)
        lease = GatewayLease(
            NatsLeaseKV(await js.key_value(streams.GATEWAYS_BUCKET)),
            gateway_key(settings.ib_host, settings.ib_port, settings.ib_gateway_id),
            holder_now(settings.ib_host, settings.ib_port, settings.ib_client_id),
        )
        await lease.acquire(app.stopping)  # a standby waits here, serving nothing
        connection = build_connection(settings, js)
        connector = build_connector(settings, js, connection)
        gate = connector.fetcher.gate
        taken = seed_gate(gate, lease.predecessor)
        if taken:
            log.warning("gateway %s: %s", lease.key, taken)
        lease.snapshot = gate.history
        gate.before_hard_send = lease.write_ahead
        connector.symbols = await js.key_value(streams.SYMBOLS_BUCKET)
        app.endpoint("status", subjects.IB_STATUS, StatusRequest)(connector.status)
        app.endpoint("validate", subjects.IB_VALIDATE, ValidateSymbol)(connector.validate)
        app.endpoint("head_timestamp", subjects.IB_HEAD_TIMESTAMP, HeadTimestampRequest)(
            connector.head_timestamp
        )
        consumer = PullConsumer(
            js=js,
            spec=streams.IB_COMMANDS,
            handler=connector.handle_fetch,
            on_permanent=connector.on_rejected,
            batch=1,
            concurrency=settings.ib_segments_in_flight,
            declare=settings.declares,
            fetch_timeout_s=FETCH_EXPIRY_S,
        )

        async def follow_cancels(stopping: asyncio.Event) -> None:
            words = ENDING_EVENTS["cancel_requested"]  # a segment's message says 'was cancelled'
            await connector.cancels.follow(nc, JobKind.DATA_LOAD, stopping, lambda _: words)

        async def keep_lease(stopping: asyncio.Event) -> None:
            def lost(holder: str) -> None:
                connection.hold(f"gateway {lease.key} is now held by {holder}")
                app.exit_status = LEASE_LOST_STATUS
                app.stopping.set()

            await lease.keep(
                stopping,
                on_unsure=lambda: connection.hold(f"lease on gateway {lease.key} in doubt"),
                on_regained=connection.resume,
                on_lost=lost,
            )
            with contextlib.suppress(TimeoutError):  # release only once off IB
                await asyncio.wait_for(connection.closed.wait(), timeout=10.0)
            await lease.release()

        app.background(keep_lease)
        app.background(connection.run)
        app.background(follow_cancels)
        app.background(consumer.run)
        app.background(connector.progress.run)

    app.setup = setup
    return app


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(IbConnectorSettings.from_env()))
