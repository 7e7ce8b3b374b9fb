"""Fixtures: the gateway over real HTTP on a real nats-server, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from ktrdr_api.testing import api_settings, serve_api
from ktrdr_shared import streams
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
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        yield client
