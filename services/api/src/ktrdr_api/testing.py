"""Test helpers: the gateway served over real HTTP in the test's own event loop.

``serve_api`` runs ``create_app(settings)`` under uvicorn on a free loopback
port, as a task of the running loop, so a test can drive it over TCP while
the services it talks to (in-process ``ServiceApp``s, small micro responders)
run in the same loop. ``Responder`` is such a small micro service: scripted
handlers on a few subjects, for services that do not exist yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ktrdr_shared.config import Settings
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.nats_server import free_port

from ktrdr_api.app import create_app
from ktrdr_api.config import ApiSettings


def api_settings(nats_url: str, **extra: str) -> ApiSettings:
    """Return settings for a test gateway (short timeouts; overrides as KTRDR_* keywords)."""
    env = {"KTRDR_NATS_URL": nats_url, "KTRDR_API_REQUEST_TIMEOUT_S": "2",
           "KTRDR_API_JOB_START_WAIT_S": "1", "KTRDR_LOG_LEVEL": "WARNING", **extra}  # fmt: skip
    return ApiSettings.from_env(env)


@contextlib.asynccontextmanager
async def serve_api(settings: ApiSettings, app: Any = None) -> AsyncIterator[str]:
    """Serve the gateway (or ``app``, e.g. a wrapped one) over HTTP; yield its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app or create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=2)  # fmt: skip
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
        self.app = ServiceApp(name=name, version="0.0.0", description=f"test {name}",
                              settings=Settings.from_env({"KTRDR_NATS_URL": nats_url}))  # fmt: skip

    def on(self, name: str, subject: str, request_type: Any, handler: Handler) -> None:
        """Answer ``subject`` with ``handler(request)`` (register before entering)."""
        self.app.endpoint(name, subject, request_type)(handler)

    async def __aenter__(self) -> Responder:
        await self.app.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app.stop()
