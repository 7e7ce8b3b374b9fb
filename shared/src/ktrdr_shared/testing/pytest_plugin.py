"""pytest fixtures for ktrdr: a real nats-server per test and a client on it.

* ``nats_server`` - a fresh local nats-server (JetStream, temp store) per test;
  it supports ``restart()``/``kill()``.
* ``nats_url`` - the URL of the server under test: the local one, or a
  testcontainers NATS when ``KTRDR_TEST_NATS=docker`` and Docker answers.
* ``nc`` / ``js`` - a connected client and its JetStream context, closed after.

A test directory opts in from its conftest: ``from ktrdr_shared.testing.pytest_plugin import *``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_shared.testing.nats_server import NatsServer, docker_nats, wants_docker

__all__ = ["js", "nats_server", "nats_url", "nc"]  # a conftest takes them with ``import *``


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """Start a local nats-server with JetStream for one test."""
    server = NatsServer(store_dir=tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Yield the URL of a NATS server for this test (Docker when asked and available)."""
    if wants_docker():
        with docker_nats() as url:
            yield url
        return
    server: NatsServer = request.getfixturevalue("nats_server")
    yield server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    """Yield a client connected to the test's server; close it after."""
    client = await nats.connect(
        nats_url, name="pytest", max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    try:
        yield client
    finally:
        if not client.is_closed:
            await client.close()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    """Return the JetStream context of ``nc``."""
    return nc.jetstream()
