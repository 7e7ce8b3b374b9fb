"""Test helpers: the gateway served over real HTTP in the test's own event loop.

``serve_api`` runs ``create_app(settings)`` under uvicorn on a free loopback
port, as a task of the running loop, so a test can drive it over TCP while
the services it talks to (in-process ``ServiceApp``s, small micro responders)
run in the same loop. ``Responder`` is such a small micro service: scripted
handlers on a few subjects, for services that do not exist yet; ``take_command``
and ``load_events`` stand in for a service's side of a job (take its command
off the queue, publish a scripted event sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ktrdr_shared import codec, streams
from ktrdr_shared.config import Settings
from ktrdr_shared.messages import (
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobKind,
    JobPlanned,
    JobProgress,
    LoadResult,
    PlannedSegment,
    SegmentFetched,
)
from ktrdr_shared.runtime import ServiceApp, publish_event
from ktrdr_shared.streams import ConsumerSpec
from ktrdr_shared.testing.nats_server import free_port
from nats.js import JetStreamContext

from ktrdr_api.app import create_app
from ktrdr_api.config import ApiSettings

C = TypeVar("C")


def api_settings(nats_url: str, **extra: str) -> ApiSettings:
    """Return settings for a test gateway (short timeouts; overrides as KTRDR_* keywords)."""
    env = {
        "KTRDR_NATS_URL": nats_url,
        "KTRDR_API_REQUEST_TIMEOUT_S": "2",
        "KTRDR_API_JOB_START_WAIT_S": "1",
        "KTRDR_LOG_LEVEL": "WARNING",
        **extra,
    }
    return ApiSettings.from_env(env)


@contextlib.asynccontextmanager
async def serve_api(settings: ApiSettings, app: Any = None) -> AsyncIterator[str]:
    """Serve the gateway (or ``app``, e.g. a wrapped one) over HTTP; yield its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app or create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server._serve())  # serve() would take over the test's signals
    while not server.started:
        if task.done():
            task.result()  # raise why it could not start
            raise RuntimeError("the test gateway stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


Handler = Callable[[Any], Awaitable[Any]]


class Responder:
    """A small real micro service answering scripted replies on chosen subjects.

    Example::

        async with Responder(nats_url, "trainer") as trainer:
            trainer.on("status", subjects.TRAIN_STATUS, StatusRequest, handler)
    """

    def __init__(self, nats_url: str, name: str) -> None:
        self.app = ServiceApp(
            name=name,
            version="0.0.0",
            description=f"test {name}",
            settings=Settings.from_env({"KTRDR_NATS_URL": nats_url}),
        )

    def on(self, name: str, subject: str, request_type: Any, handler: Handler) -> None:
        """Answer ``subject`` with ``handler(request)`` (register before entering)."""
        self.app.endpoint(name, subject, request_type)(handler)

    async def __aenter__(self) -> Responder:
        await self.app.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app.stop()


async def take_command(
    js: JetStreamContext, spec: ConsumerSpec, message_type: type[C], timeout_s: float = 10.0
) -> C:
    """Take one command off its work queue (as the service would), ack it and return it."""
    await streams.ensure_consumer(js, spec)
    sub = await js.pull_subscribe_bind(spec.durable, stream=spec.stream)
    try:
        [msg] = await sub.fetch(1, timeout=timeout_s)
        await msg.ack()
        return codec.decode(msg.data, message_type, subject=msg.subject)
    finally:
        await sub.unsubscribe()


def load_events(
    job_id: str, *, segments: int = 2, bars: int = 100, ts: datetime | None = None
) -> list[JobEvent]:
    """Return a data load's events from ``accepted`` to ``completed``, as the data-store emits."""
    t = ts or datetime(2024, 6, 28, 22, 0, tzinfo=UTC)
    planned = [
        PlannedSegment(
            segment_id=f"s{i}", start=t - timedelta(days=i + 1), end=t - timedelta(days=i)
        )
        for i in range(segments)
    ]
    events: list[JobEvent] = [
        JobAccepted(
            job_id=job_id,
            ts=t,
            kind=JobKind.DATA_LOAD,
            params={"symbol": "AAPL", "timeframe": "1h"},
        ),
        JobPlanned(job_id=job_id, ts=t, gaps_analyzed=segments, cached_before=7, segments=planned),
    ]
    for i, segment in enumerate(planned):
        events.append(
            SegmentFetched(
                job_id=job_id,
                ts=t + timedelta(seconds=i + 1),
                segment_id=segment.segment_id,
                chunks=1,
                bars=bars,
                ib_requests=1,
            )
        )
        events.append(
            JobProgress(
                job_id=job_id,
                ts=t + timedelta(seconds=i + 1),
                done=i + 1,
                total=segments,
                unit="segments",
            )
        )
    result = LoadResult(
        fetched_bars=bars * segments,
        cached_before=7,
        gaps_analyzed=segments,
        segments_fetched=segments,
        ib_requests_made=segments,
    )
    events.append(
        JobCompleted(job_id=job_id, ts=t + timedelta(seconds=segments + 1), result=result)
    )
    return events


async def publish_all(
    js: JetStreamContext, events: list[JobEvent], kind: JobKind = JobKind.DATA_LOAD
) -> None:
    """Append ``events``, of jobs of one ``kind``, to the event log in order."""
    for event in events:
        await publish_event(js, event, kind=kind)


@dataclass
class CliRun:
    """What one ``ktrdr`` process did: its exit status and its output."""

    code: int
    out: str
    err: str


def cli_env() -> dict[str, str]:
    """Return this environment without ``KTRDR_*`` settings, 200 columns wide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    return env | {"COLUMNS": "200"}


async def ktrdr(api_url: str | None, *args: str, env: dict[str, str] | None = None) -> CliRun:
    """Run ``ktrdr [--url <api>] ARGS`` as a real process, to its end."""
    url = ["--url", api_url] if api_url else []
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_api.cli",
        *url,
        *args,
        env=env or cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return CliRun(process.returncode, out.decode(), err.decode())
