"""Every service starts on its own, registers its micro service, answers $SRV.PING,
and on SIGTERM drains and exits 0 (invariant 5 of the architecture)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from ktrdr_shared.testing.nats_server import free_port
from nats.aio.client import Client as NATS

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SERVICES = [
    ("ktrdr_ib_connector", "ib-connector"),
    ("ktrdr_data_store", "data-store"),
    ("ktrdr_trainer", "trainer"),
    ("ktrdr_api", "api"),
]


def _service_env(nats_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env.update(
        KTRDR_NATS_URL=nats_url,
        KTRDR_DATA_DIR=str(tmp_path / "data"),
        KTRDR_API_PORT=str(free_port()),
    )  # the api binds; never on a shared port
    return env


async def _ping(nc: NATS, name: str, timeout_s: float = 20.0) -> dict[str, object]:
    """Wait until the service answers $SRV.PING.<name> (it is starting up)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            reply = await nc.request(f"$SRV.PING.{name}", b"", timeout=0.5)
            return dict(json.loads(reply.data))
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(("package", "name"), SERVICES, ids=[s[1] for s in SERVICES])
async def test_service_starts_serves_and_stops_on_sigterm(
    package: str, name: str, nc: NATS, nats_url: str, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        package,
        env=_service_env(nats_url, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        ping = await _ping(nc, name)
        assert ping["name"] == name
        assert ping["type"] == "io.nats.micro.v1.ping_response"
        info = json.loads((await nc.request(f"$SRV.INFO.{name}", b"", timeout=2)).data)
        assert info["version"] == "0.1.0"
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, output.decode()
        assert b"Traceback" not in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_unknown_setting_stops_a_service_with_a_clear_message(
    nats_url: str, tmp_path: Path
) -> None:
    env = _service_env(nats_url, tmp_path) | {"KTRDR_IB_PROT": "4001"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_ib_connector",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"unknown setting KTRDR_IB_PROT; did you mean KTRDR_IB_PORT?" in output
    assert b"Traceback" not in output


@pytest.mark.parametrize(("package", "name"), SERVICES[:3], ids=[s[1] for s in SERVICES[:3]])
async def test_sigterm_while_nats_is_unreachable_still_stops_the_service(
    package: str, name: str, tmp_path: Path
) -> None:
    # nothing listens on this port: the first connect retries forever, SIGTERM must win
    env = _service_env(f"nats://127.0.0.1:{free_port()}", tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        package,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        seen = b""
        async with asyncio.timeout(30):  # wait until it is retrying its first connect
            while b"Connect call failed" not in seen:
                seen += await process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        output = seen + rest
        assert process.returncode == 0, output.decode()
        assert b"stopped before it finished starting" in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
