"""`just up` / `just down` for real: infra/scripts/stack.py over the launcher ktrdr_shared.stack.

Each test brings the whole stack up on free loopback ports with its state in a
temporary KTRDR_DATA_DIR, uses it the way a person does (ping, REST, NATS),
and brings it down again: every service must have exited 0 and left nothing
running. The secure run loads and trains through the REST API with one NATS
user per service, which proves the permissions of infra/nats/auth.conf are
enough for the real processes, not only restrictive.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.config import Secret, Settings
from ktrdr_shared.messages import JobCompleted, TrainingResult
from ktrdr_shared.runtime import connect
from ktrdr_shared.testing.nats_server import free_port
from ktrdr_shared.tls import TlsFiles, client_context

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra/scripts/stack.py"
SERVICES = ("ib-connector", "data-store", "trainer", "api")
PROCESSES = ("nats", "sim", *SERVICES)
# nats-server's own log line for a refused publish or subscribe (the only place the
# server reports what it refused to another user's connection).
SERVER_VIOLATION = "Violation"


@dataclass
class Stack:
    """A stack started by stack.py: its environment, ports and state directory."""

    env: dict[str, str]
    data_dir: Path
    monitor_port: int
    sim_control_port: int

    @property
    def nats_url(self) -> str:
        return self.env["KTRDR_NATS_URL"]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['KTRDR_API_PORT']}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``stack.py <args>`` the way `just up` / `just down` do."""
        if args[0] == "up":
            args = (
                *args,
                "--monitor-port",
                str(self.monitor_port),
                "--sim-control-port",
                str(self.sim_control_port),
            )
        return subprocess.run(
            [sys.executable, str(STACK), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def pid(self, name: str) -> int | None:
        path = self.data_dir / "run" / f"{name}.pid"
        return int(path.read_text()) if path.exists() else None

    def exit_status(self, name: str) -> int | None:
        path = self.data_dir / "run" / f"{name}.exit"
        return int(path.read_text()) if path.exists() else None

    def log(self, name: str) -> str:
        return (self.data_dir / "logs" / f"{name}.log").read_text(errors="replace")

    def admin(self) -> Settings:
        password = (self.data_dir / "secrets" / "admin.password").read_text().strip()
        files = TlsFiles(self.data_dir / "secrets")
        return Settings(
            nats_url=(self.nats_url,),
            nats_user="admin",
            nats_password=Secret(password),
            nats_tls_ca=str(files.ca_cert),
            nats_tls_cert=str(files.client_cert("admin")),
            nats_tls_key=str(files.client_key("admin")),
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    # KTRDR_IB_TIME_SCALE reaches both the simulator and the connector (compressed pacing).
    env.update(
        KTRDR_DATA_DIR=str(tmp_path / "data"),
        KTRDR_NATS_URL=f"nats://127.0.0.1:{free_port()}",
        KTRDR_IB_PORT=str(free_port()),
        KTRDR_API_PORT=str(free_port()),
        KTRDR_IB_TIME_SCALE="0.01",
        STACK_REGISTRY_DIR=str(tmp_path / "registry"),
    )  # not the checkout's
    started = Stack(env, tmp_path / "data", free_port(), free_port())
    try:
        yield started
    finally:
        started.run("down")  # whatever the test did, leave nothing running


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def ping_all(settings: Settings) -> dict[str, dict[str, Any]]:
    nc = await connect(settings, name="test-stack")
    try:
        replies = {s: await nc.request(f"$SRV.PING.{s}", b"", timeout=5) for s in SERVICES}
    finally:
        await nc.close()
    return {s: json.loads(r.data) for s, r in replies.items()}


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, response.read()


async def _ignore(_: Exception) -> None:
    return None


def assert_stopped_cleanly(stack: Stack, pids: dict[str, int | None]) -> None:
    for name, pid in pids.items():
        assert not alive(pid), f"{name} (pid {pid}) still runs after `down`"
        assert stack.exit_status(name) == 0, f"{name}: {stack.log(name)[-2000:]}"
    assert not (stack.data_dir / "run" / "stack.json").exists()


def test_up_starts_everything_and_down_stops_it_in_order(stack: Stack) -> None:
    up = stack.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((stack.data_dir / "run" / "stack.json").read_text())
    assert state["processes"] == list(PROCESSES)  # the simulator: KTRDR_IB_HOST is unset
    pings = asyncio.run(ping_all(Settings(nats_url=(stack.nats_url,))))
    assert {name: p["name"] for name, p in pings.items()} == {s: s for s in SERVICES}
    status, body = http("GET", f"{stack.api_url}/health")
    assert status == 200, body
    pids = {name: stack.pid(name) for name in PROCESSES}
    assert all(alive(pid) for pid in pids.values()), pids

    down = stack.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert_stopped_cleanly(stack, pids)
    assert stack.run("down").returncode == 0  # stopping a stopped stack is fine


def test_down_and_status_find_the_stack_whatever_ktrdr_data_dir_says(
    stack: Stack, tmp_path: Path
) -> None:
    up = stack.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    pids = {name: stack.pid(name) for name in PROCESSES}
    stack.env["KTRDR_DATA_DIR"] = str(tmp_path / "elsewhere")  # another shell, another setting

    status = stack.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert str(stack.data_dir) in status.stdout  # which stack it looked at
    down = stack.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert str(stack.data_dir) in down.stdout  # which stack it stopped
    assert "not running" not in down.stdout
    assert_stopped_cleanly(stack, pids)
    assert list((tmp_path / "registry").glob("*.json")) == []  # forgotten once stopped


def test_down_leaves_nothing_behind_after_a_service_was_killed(stack: Stack) -> None:
    up = stack.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    api = stack.pid("api")
    assert api is not None
    group = os.getpgid(api)  # its own process group: the api and its workers
    os.kill(api, signal.SIGKILL)  # a crash: workers it spawned are orphaned
    deadline = time.monotonic() + 30
    while stack.exit_status("api") is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the supervisor records the exit as soon as it sees it
    assert stack.exit_status("api") == 128 + signal.SIGKILL

    down = stack.run("down")
    assert down.returncode == 1  # a service did not stop cleanly: said, not hidden
    assert "api" in down.stderr
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)  # nothing of the api is left
    assert not any(alive(stack.pid(name)) for name in PROCESSES)


def test_a_service_that_cannot_start_is_named_with_its_log(stack: Stack) -> None:
    stack.env["KTRDR_IB_CLIENT_ID"] = "-1"  # the connector refuses it and exits 2
    up = stack.run("up")
    assert up.returncode == 1
    assert "ib-connector" in up.stderr
    assert "KTRDR_IB_CLIENT_ID" in up.stderr  # its log's last lines are shown
    assert stack.exit_status("ib-connector") == 2
    assert not (stack.data_dir / "run" / "stack.json").exists()  # the rest was stopped
    assert not any(alive(stack.pid(name)) for name in PROCESSES)


async def test_secure_stack_loads_and_trains_with_one_user_per_service(stack: Stack) -> None:
    up = await asyncio.to_thread(stack.run, "up", "--secure")
    assert up.returncode == 0, up.stdout + up.stderr
    secrets = stack.data_dir / "secrets"
    assert all(
        (secrets / f"{u}.password").stat().st_mode & 0o077 == 0 for u in (*SERVICES, "admin")
    )
    assert all(
        stack.data_dir.joinpath("secrets", f"{u}.password").read_text().strip()
        not in up.stdout + up.stderr
        for u in (*SERVICES, "admin")
    )  # never printed
    assert "--tlscert" in up.stdout  # how to connect by hand
    files = TlsFiles(secrets)
    assert files.client_key("admin").stat().st_mode & 0o077 == 0
    with pytest.raises((nats.errors.Error, OSError)):  # no TLS certificate: refused
        await nats.connect(
            stack.nats_url,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            connect_timeout=2,
            error_cb=_ignore,
        )
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):  # a certificate only
        await nats.connect(
            stack.nats_url,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            tls=client_context(
                str(files.ca_cert), str(files.client_cert("api")), str(files.client_key("api"))
            ),
            error_cb=_ignore,
        )
    pings = await ping_all(stack.admin())
    assert set(pings) == set(SERVICES)

    window = {"start": "2024-01-02T00:00:00Z", "end": "2024-04-01T00:00:00Z"}
    status, body = await asyncio.to_thread(
        http,
        "POST",
        f"{stack.api_url}/api/v1/data/load?wait=true",
        {"symbol": "AAPL", "timeframe": "1h", **window},
    )
    load = json.loads(body)
    assert (status, load["status"]) == (200, "completed"), load
    assert load["fetched_bars"] > 0
    status, body = await asyncio.to_thread(
        http,
        "POST",
        f"{stack.api_url}/api/v1/training/runs",
        {"symbols": ["AAPL"], "timeframe": "1h", "epochs": 1, **window},
    )
    assert status == 202, body
    client = KtrdrClient(await connect(stack.admin(), name="test-stack"), timeout_s=10)
    try:
        events = [e async for e in client.job_events(json.loads(body)["job_id"])]
    finally:
        await client.close()
    assert isinstance(events[-1], JobCompleted), events[-1]
    assert isinstance(events[-1].result, TrainingResult)
    model_id = events[-1].result.model_id
    status, artifact = await asyncio.to_thread(
        http, "GET", f"{stack.api_url}/api/v1/models/{model_id}/download"
    )
    assert status == 200
    assert len(artifact) > 0

    pids = {name: stack.pid(name) for name in PROCESSES}
    down = await asyncio.to_thread(stack.run, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert_stopped_cleanly(stack, pids)
    violations = [line for line in stack.log("nats").splitlines() if SERVER_VIOLATION in line]
    assert violations == []  # every service had every permission it used
