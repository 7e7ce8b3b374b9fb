"""``GET /health``: the gateway, NATS, and each service, with an overall status."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ktrdr_shared import subjects
from ktrdr_shared.messages import IbStatus, StatusRequest
from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from ktrdr_api import __version__
from ktrdr_api.deps import GatewayDep, SettingsDep
from ktrdr_api.errors import ApiError
from ktrdr_api.gateway import Gateway
from ktrdr_api.schemas import (
    ComponentState,
    Health,
    HealthSummary,
    NatsHealth,
    OverallState,
    ServiceHealth,
)
from ktrdr_api.security import key_matches

SERVICES = ("ib-connector", "data-store", "trainer")


class HealthController(Controller):
    """Liveness and readiness of the whole system (never requires the API key)."""

    path = "/health"
    tags = ["health"]

    @get(
        operation_id="getHealth",
        summary="Health of the gateway, NATS and every service",
        description="200 while the gateway reaches NATS (``status`` is ``ok`` when every "
        "service answers and IB is connected, else ``degraded``); 503 with the same body "
        "when NATS is unreachable. Services are found with ``$SRV.PING``. When the gateway "
        "has a key, a caller without it sees ``{status}`` alone (no addresses, no versions).",
        security=[{}],  # never requires the key: monitors must see it
        responses={
            503: ResponseSpec(
                Health | HealthSummary,
                description="NATS is unreachable: status down",
                generate_examples=False,
            )
        },
    )
    async def health(
        self, request: Request[Any, Any, Any], gateway: GatewayDep, settings: SettingsDep
    ) -> Response[Health | HealthSummary]:
        """Ping NATS and every service at once; report what answered (to a keyed caller)."""
        report = await _report(gateway)
        key = settings.api_key.reveal() if settings.api_key else None
        body: Health | HealthSummary = report.content
        if not key_matches(request.headers, key):
            body = HealthSummary(status=report.content.status)
        return Response(body, status_code=report.status_code)


async def _report(gateway: Gateway) -> Response[Health]:
    """Return the full report, 503 when NATS is unreachable."""
    nc = gateway.nc
    if not nc.is_connected:
        nats = NatsHealth(status=ComponentState.DOWN)
        body = Health(
            status=OverallState.DOWN,
            version=__version__,
            nats=nats,
            services=[
                ServiceHealth(name=s, status=ComponentState.DOWN, detail="NATS unreachable")
                for s in SERVICES
            ],
        )
        return Response(body, status_code=503)
    started = time.perf_counter()
    await nc.flush(timeout=2)
    rtt_ms = round((time.perf_counter() - started) * 1000, 3)
    server = nc.connected_url.netloc if nc.connected_url else None
    nats = NatsHealth(status=ComponentState.UP, server=server, rtt_ms=rtt_ms)
    services = await asyncio.gather(*(_service(gateway, name) for name in SERVICES))
    overall = (
        OverallState.OK
        if all(s.status is ComponentState.UP for s in services)
        else OverallState.DEGRADED
    )
    return Response(Health(status=overall, version=__version__, nats=nats, services=list(services)))


async def _service(gateway: Gateway, name: str) -> ServiceHealth:
    ping = await gateway.ping(name)
    if ping is None:
        return ServiceHealth(
            name=name, status=ComponentState.DOWN, detail=f"no {name} answers $SRV.PING"
        )
    version = str(ping.get("version")) if ping.get("version") else None
    if name != "ib-connector":
        return ServiceHealth(name=name, status=ComponentState.UP, version=version)
    try:
        status = await gateway.request(subjects.IB_STATUS, StatusRequest(), IbStatus, timeout_s=2.0)
    except ApiError as e:
        return ServiceHealth(
            name=name, status=ComponentState.DEGRADED, version=version, detail=e.detail
        )
    farms = ", ".join(f"{farm} {state}" for farm, state in sorted(status.farms.items()))
    farms = f"; farms: {farms}" if farms else ""
    if not status.connected:
        why = status.last_error or "connecting"
        return ServiceHealth(
            name=name,
            status=ComponentState.DEGRADED,
            version=version,
            detail=f"IB not connected: {why}{farms}",
        )
    if status.last_error:  # connected, but something is wrong now (a farm broken)
        return ServiceHealth(
            name=name,
            status=ComponentState.DEGRADED,
            version=version,
            detail=f"IB connected, but {status.last_error}{farms}",
        )
    return ServiceHealth(
        name=name,
        status=ComponentState.UP,
        version=version,
        detail=f"IB connected at {status.host}:{status.port}{farms}",
    )
