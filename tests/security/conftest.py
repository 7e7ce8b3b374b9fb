"""Secure-mode fixtures: nats-server with infra/nats/auth.conf and TLS, and its users.

A test module that needs the server elsewhere than loopback (the network-namespace test)
overrides ``secure_host``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ktrdr_shared import streams
from ktrdr_shared.runtime import connect
from ktrdr_shared.testing.auth import ConnectAs, TestUsers, Violations
from ktrdr_shared.testing.nats_server import NatsServer, free_port
from nats.aio.client import Client as NATS

SECURE_CONF = Path(__file__).resolve().parents[2] / "infra/nats/nats-secure.conf"
LOOPBACK = "127.0.0.1"


@pytest.fixture
def secure_host() -> str:
    """The address the secure server listens on (and its certificate names)."""
    return LOOPBACK


@pytest.fixture
def users(tmp_path: Path, secure_host: str) -> TestUsers:
    """Fresh users; certificates shared per test process unless the host is not loopback."""
    if secure_host == LOOPBACK:
        return TestUsers()
    return TestUsers(tls_dir=tmp_path / "tls", tls_hosts=(secure_host,))


@pytest.fixture
def server(tmp_path: Path, users: TestUsers, secure_host: str) -> Iterator[NatsServer]:
    """nats-server as `just up --secure` runs it: users, permissions, TLS with client certs."""
    secure = NatsServer(
        store_dir=tmp_path / "jetstream",
        config_file=SECURE_CONF,
        extra_args=["-m", str(free_port())],
        env=users.server_env(),
        host=secure_host,
    )
    secure.start()
    try:
        yield secure
    finally:
        secure.stop()


@pytest.fixture
async def connect_as(server: NatsServer, users: TestUsers) -> AsyncIterator[ConnectAs]:
    """Return ``connect(user) -> (connection, violations)``; close them all after the test."""
    opened: list[NATS] = []

    async def open_as(user: str) -> tuple[NATS, Violations]:
        violations = Violations()
        nc = await connect(
            users.settings(user, server.url), name=f"test-{user}", error_cb=violations.record
        )
        opened.append(nc)
        return nc, violations

    yield open_as
    for nc in opened:
        if not nc.is_closed:
            await nc.close()


@pytest.fixture
async def declared(connect_as: ConnectAs) -> None:
    """Declare every stream, consumer and bucket (as admin, like a first `just up`)."""
    nc, _ = await connect_as("admin")
    await streams.ensure_all(nc.jetstream())
