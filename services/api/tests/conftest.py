"""Fixtures: the gateway over real HTTP on a real nats-server, and the real services behind it.

``connector`` is the real ib-connector against the TWS-protocol simulator (compressed time,
frozen "now"); ``data_store`` is the real data-store on a temporary directory (gap filler
off). Services that do not exist in a test answer nothing, as in production. The nats-server,
simulator, connector and data-store fixtures come from ``ktrdr_data_store.testing``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from ktrdr_api.testing import api_settings, serve_api
from ktrdr_data_store.testing import *  # noqa: F403 - the plugin's fixtures
from ktrdr_data_store.testing import StartStore
from ktrdr_shared import streams
from ktrdr_shared.runtime import ServiceApp
from nats.js import JetStreamContext


@pytest.fixture
async def api_url(nats_url: str, js: JetStreamContext) -> AsyncIterator[str]:
    """Serve the gateway against the test's nats-server; yield its base URL."""
    await streams.ensure_streams(js)
    async with serve_api(api_settings(nats_url)) as url:
        yield url


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Yield an HTTP client of the running gateway."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def data_store_env() -> dict[str, str]:
    """Return extra data-store settings (a test module overrides this fixture to change them)."""
    return {}


@pytest.fixture
async def data_store(start_store: StartStore, data_store_env: dict[str, str]) -> ServiceApp:
    """Run the real data-store on ``data_dir`` (gap filler off)."""
    return await start_store(**data_store_env)
