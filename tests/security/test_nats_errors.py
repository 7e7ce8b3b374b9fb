"""NATS errors a person can act on, against a real nats-server in secure mode.

A refused connect names the server, the user and the server's reason at once
(nats-py alone says ``no servers available for connection``, or retries a wrong
password forever); a publish or request the user may not make fails at once
with "permission denied" naming the user and the subject, where nats-py alone
lets it time out; a service's log names both too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import msgspec
import pytest
from ktrdr_shared import subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import StatusRequest
from ktrdr_shared.nats_errors import NatsRefused, PermissionDenied
from ktrdr_shared.runtime import connect
from ktrdr_shared.testing.auth import TestUsers
from ktrdr_shared.testing.nats_server import NatsServer

pytestmark = pytest.mark.integration

# Far longer than these tests may take: a call that waited for it would have timed out.
PATIENT_S = 60.0


@pytest.fixture
async def trainer(server: NatsServer, users: TestUsers) -> AsyncIterator[KtrdrClient]:
    client = await KtrdrClient.connect(users.settings("trainer", server.url))
    client.timeout_s = PATIENT_S
    try:
        yield client
    finally:
        await client.nc.close()


# runtime.connect's default retries forever (a refusal must end it); with a few attempts,
# nats-py alone ends with "no servers available for connection".
ATTEMPTS = [{}, {"max_reconnect_attempts": 2, "reconnect_time_wait": 0.1}]


@pytest.mark.parametrize("options", ATTEMPTS, ids=["forever", "two-attempts"])
async def test_an_anonymous_connect_says_the_server_wants_a_user(
    server: NatsServer, users: TestUsers, options: dict[str, float]
) -> None:
    api = users.settings("api", server.url)
    anonymous = msgspec.structs.replace(api, nats_user=None, nats_password=None)
    async with asyncio.timeout(10):
        with pytest.raises(NatsRefused) as refused:
            await connect(anonymous, name="test-anonymous", **options)
    message = str(refused.value)
    assert server.url in message
    assert "no user" in message
    assert "Authorization Violation" in message
    assert "KTRDR_NATS_USER" in message  # what to set


async def test_a_wrong_password_names_the_user_and_the_reason(
    server: NatsServer, users: TestUsers
) -> None:
    users.passwords["api"] = "not-the-password"  # the server keeps the right one's hash
    async with asyncio.timeout(10):
        with pytest.raises(NatsRefused) as refused:
            await KtrdrClient.connect(users.settings("api", server.url))
    message = str(refused.value)
    assert server.url in message
    assert "'api'" in message
    assert "Authorization Violation" in message


async def test_a_command_the_user_may_not_send_is_denied_at_once(trainer: KtrdrClient) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(PermissionDenied) as denied:
            await trainer.load_data("AAPL", "1h")
    assert str(denied.value) == (
        "permission denied: NATS user 'trainer' may not publish to ktrdr.cmd.data.load"
    )
    assert denied.value.details["subject"] == subjects.CMD_DATA_LOAD


async def test_a_request_the_user_may_not_make_is_denied_at_once(trainer: KtrdrClient) -> None:
    subject = subjects.STORE_QUARANTINE_RELEASE
    async with asyncio.timeout(10):
        with pytest.raises(PermissionDenied, match=f"'trainer' may not publish to {subject}$"):
            await trainer.request(subject, StatusRequest(), StatusRequest)
    assert trainer.nc.is_connected  # the refusal was of one subject, not of the connection


class Lines(logging.Handler):
    """The log lines that mention ``needle``; ``found`` is set at the first."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.WARNING)
        self.needle = needle
        self.lines: list[str] = []
        self.found = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.lines.append(record.getMessage())
            self.found.set()


async def test_a_service_logs_the_violation_with_its_user_and_subject(
    server: NatsServer, users: TestUsers
) -> None:
    lines = Lines(subjects.CMD_DATA_LOAD)
    logging.getLogger().addHandler(lines)
    nc = await connect(users.settings("trainer", server.url), name="trainer")
    try:
        await nc.publish(subjects.CMD_DATA_LOAD, b"{}")
        async with asyncio.timeout(10):
            await lines.found.wait()
    finally:
        await nc.close()
        logging.getLogger().removeHandler(lines)
    [line] = lines.lines
    assert "'trainer'" in line
    assert "permission denied" in line
