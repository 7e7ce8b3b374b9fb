"""The Litestar app: REST in, subjects out.

``create_app(settings)`` builds the app; its lifespan opens the NATS
connection (reconnecting forever, like every ktrdr service), declares (or,
under NATS users, verifies) the streams unless ``serve`` verified them
before its workers started, registers the ``api`` micro service (so ``nats micro ls`` and
``$SRV.PING`` see the gateway) and drains the connection on shutdown. The
controllers get the connection injected as a ``Gateway`` (request/reply and
commands), an ``EventLog`` (job events, and the job index behind the job list) and the
``OverviewHub`` (the overview's one poller, shared by every client of its live feed); the
gateway holds no state of its own beyond that feed's newest snapshot and the job index
(every job's folded state, fed from the event log from the first list request on).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
from ktrdr_shared import streams
from ktrdr_shared.runtime import connect
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, Tag
from nats import micro
from nats.micro.service import ServiceConfig

from ktrdr_api import __version__, console
from ktrdr_api.browser import BrowserGuardMiddleware, allowed_hosts
from ktrdr_api.config import ApiSettings, check_exposure
from ktrdr_api.controllers import CONTROLLERS
from ktrdr_api.errors import EXCEPTION_HANDLERS
from ktrdr_api.event_log import EventLog
from ktrdr_api.gateway import Gateway
from ktrdr_api.openapi import tighten
from ktrdr_api.overview import INTERVAL_S, OverviewHub
from ktrdr_api.overview_schemas import OverviewOut
from ktrdr_api.security import COMPONENTS, REQUIREMENTS, ApiKeyMiddleware
from ktrdr_api.snapshot import NatsSnapshot

SERVICE_NAME = "api"

log = logging.getLogger(__name__)

DESCRIPTION = """\
The ktrdr REST gateway: every answer comes from a service over NATS or from the
event log. Errors are RFC 9457 problem details (`application/problem+json`)
that name the field, the service, and what to do. Timestamps in and out are
RFC 3339; a timestamp without an offset is refused. When the gateway has a
key (`KTRDR_API_KEY`), every route but `/health` requires it.
"""

TAGS = [
    Tag(name="health", description="The gateway, NATS and every service."),
    Tag(name="ib", description="The IB connection and symbol discovery (ib-connector)."),
    Tag(name="data", description="Load jobs, stored datasets and bars (data-store)."),
    Tag(name="jobs", description="Data loads and training runs, folded from the event log."),
    Tag(name="training", description="Training runs (trainer)."),
    Tag(name="models", description="Trained models (trainer, object store ktrdr_models)."),
]


def create_app(
    settings: ApiSettings,
    *,
    verified: bool = False,
    overview_interval_s: float = INTERVAL_S,
    **nats_options: Any,
) -> Litestar:
    """Return the gateway's Litestar app for ``settings``.

    Args:
        settings: where NATS is, the bind address, the key, timeouts.
        verified: the streams and buckets were verified before this app was built (``serve``'s
            pre-flight): its lifespan does not read them again.
        overview_interval_s: how often the overview's live feed gathers a snapshot when
            nothing changes (tests lengthen it to see what a change alone sends).
        **nats_options: overrides for ``nats.connect`` (tests shorten timeouts).

    Raises:
        ConfigError: the bind address is off loopback and no key is set.
    """
    check_exposure(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await connect(settings, name=SERVICE_NAME, **nats_options)
        if not verified:
            await streams.prepare(
                nc.jetstream(),
                buckets=True,
                declare=settings.declares,
                service=SERVICE_NAME,
                wait_s=settings.nats_declare_wait_s,
            )
        service = await micro.add_service(
            nc,
            ServiceConfig(
                name=SERVICE_NAME,
                version=__version__,
                description="the REST gateway: REST in, subjects out",
            ),
        )
        gateway = Gateway(nc, timeout_s=settings.api_request_timeout_s)
        overview = OverviewHub(NatsSnapshot(gateway), interval_s=overview_interval_s)
        app.state.gateway = gateway
        events = EventLog(nc, timeout_s=settings.api_request_timeout_s)
        app.state.events = events
        app.state.overview = overview
        log.info("api %s connected to NATS", __version__)
        try:
            yield
        finally:
            await overview.close()
            await events.close()
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await service.stop()
                await nc.drain()
            log.info("api stopped")

    key = settings.api_key.reveal() if settings.api_key else None
    app = Litestar(
        route_handlers=[*CONTROLLERS, console.index, console.static_router()],
        lifespan=[lifespan],
        dependencies={
            # One of each per app: resolved once, then cached (no per-request DI work).
            "gateway": Provide(_gateway, sync_to_thread=False, use_cache=True),
            "events": Provide(_events, sync_to_thread=False, use_cache=True),
            "overview": Provide(_overview, sync_to_thread=False, use_cache=True),
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            BrowserGuardMiddleware(allowed_hosts(settings.api_host, settings.api_allowed_hosts)),
            *([ApiKeyMiddleware(key)] if key else []),
        ],
        openapi_config=_openapi(secured=key is not None),
        debug=False,
        logging_config=None,
    )
    tighten(app.openapi_schema)
    return app


def _gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


def _events(state: State) -> EventLog:
    events: EventLog = state.events
    return events


def _overview(state: State) -> OverviewHub[OverviewOut]:
    overview: OverviewHub[OverviewOut] = state.overview
    return overview


def _openapi(*, secured: bool) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="ktrdr api",
        version=__version__,
        description=DESCRIPTION,
        path="/schema",
        render_plugins=[
            SwaggerRenderPlugin(  # served from the package: the docs work offline
                path=["/", "/swagger"],
                js_url=f"{console.SWAGGER}/swagger-ui-bundle.js",
                css_url=f"{console.SWAGGER}/swagger-ui.css",
                standalone_preset_js_url=f"{console.SWAGGER}/swagger-ui-standalone-preset.js",
                favicon=console.FAVICON,
            ),
            JsonRenderPlugin(),
            YamlRenderPlugin(),
        ],
        tags=TAGS,
        components=COMPONENTS if secured else Components(),
        security=REQUIREMENTS if secured else None,
        use_handler_docstrings=True,
    )


def main() -> None:
    """Run the gateway under its production ASGI server (see ``serve``)."""
    from ktrdr_api.serve import main as serve_main

    serve_main()
