"""The whole ktrdr stack as real processes, for system and fault tests.

A nats-server (``NatsServer``), the IB Gateway simulator and each service run as child
processes on loopback ports, each with its own log file, so a test can ``kill -9`` any of
them, restart it, and read what it said. Nothing here imports a service: they are started
with ``python -m <package>`` exactly as an operator starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nats.errors
from nats.aio.client import Client as NATS

from ktrdr_shared.testing.nats_server import free_port

SIM_NOW = "2024-06-28T22:00:00+00:00"  # a Friday after the US close, inside the calendars
SIM_TIME_SCALE = 0.01  # IB's 10-minute pacing window lasts 6 s

MODULES = {
    "ib-connector": "ktrdr_ib_connector",
    "data-store": "ktrdr_data_store",
    "trainer": "ktrdr_trainer",
    "api": "ktrdr_api",
}


@dataclass
class ChildProcess:
    """One child process with a log file; start, kill -9, stop (SIGTERM) and restart it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        """Start the process (appending to its log)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            # its own process group: a kill reaches the workers it forks (the api's granian)
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def running(self) -> bool:
        """Return whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and everything in its group, and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the process, wait, SIGKILL it if it will not go; return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # anything it left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def restart(self) -> None:
        """Kill the process if it runs, then start it again."""
        self.kill()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of the process's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    """The simulator and the services on one nats-server; ``up``/``down`` around a test."""

    nats_url: str
    root: Path
    services: tuple[str, ...] = ("ib-connector", "data-store")
    extra_env: dict[str, str] = field(default_factory=dict)
    # The simulator's frozen "now" (None: the wall clock); ignored with a real gateway.
    sim_now: str | None = SIM_NOW
    # A real gateway (host, port): no simulator is started and IB's windows are not scaled.
    gateway: tuple[str, int] | None = None
    sim_port: int = field(default_factory=free_port)
    sim_control_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    children: dict[str, ChildProcess] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        """Return the data dir every service shares."""
        return self.root / "data"

    @property
    def api_url(self) -> str:
        """Return the API's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sim_control_url(self) -> str:
        """Return the simulator's HTTP control base URL."""
        return f"http://127.0.0.1:{self.sim_control_port}"

    def env(self) -> dict[str, str]:
        """Return the environment of the services."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
        if self.gateway is None:
            ib = {
                "KTRDR_IB_HOST": "127.0.0.1",
                "KTRDR_IB_PORT": str(self.sim_port),
                "KTRDR_IB_TIME_SCALE": str(SIM_TIME_SCALE),
                "KTRDR_IB_RETRY_DELAY_S": "0.2",
                "KTRDR_IB_CONNECT_TIMEOUT_S": "3",
                "KTRDR_IB_REQUEST_TIMEOUT_S": "10",
            }
        else:
            ib = {"KTRDR_IB_HOST": self.gateway[0], "KTRDR_IB_PORT": str(self.gateway[1])}
        return {
            **base,
            **ib,
            "KTRDR_NATS_URL": self.nats_url,
            "KTRDR_DATA_DIR": str(self.data_dir),
            "KTRDR_GAP_FILL_INTERVAL_S": "0",
            "KTRDR_API_PORT": str(self.api_port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def _child(self, name: str, argv: list[str]) -> ChildProcess:
        child = ChildProcess(name, argv, self.env(), self.root / "logs" / f"{name}.log")
        self.children[name] = child
        return child

    def start_sim(self) -> ChildProcess:
        """Start the simulator with its clock frozen at ``SIM_NOW``."""
        argv = [
            sys.executable,
            "-m",
            "ktrdr_ib_sim",
            "--port",
            str(self.sim_port),
            "--control-port",
            str(self.sim_control_port),
            "--time-scale",
            str(SIM_TIME_SCALE),
            "--soft-delay-ms",
            "0",
        ]
        if self.sim_now is not None:
            argv += ["--now", self.sim_now]
        child = self._child("sim", argv)
        child.start()
        return child

    def start_service(self, name: str) -> ChildProcess:
        """Start one service (``ib-connector``, ``data-store``, ``trainer``, ``api``)."""
        child = self._child(name, [sys.executable, "-m", MODULES[name]])
        child.start()
        return child

    async def up(self, nc: NATS, timeout_s: float = 60.0) -> None:
        """Start the simulator (unless a gateway is set) and the services; wait for them."""
        if self.gateway is None:
            self.start_sim()
        for name in self.services:
            self.start_service(name)
        await self.wait_ready(nc, self.services, timeout_s)

    async def wait_ready(
        self, nc: NATS, names: tuple[str, ...] | list[str], timeout_s: float = 60.0
    ) -> None:
        """Wait until each named service answers ``$SRV.PING`` (the api: ``GET /health``)."""
        try:
            async with asyncio.timeout(timeout_s):
                for name in names:
                    await self._ready(nc, name)
        except TimeoutError:
            tails = "\n".join(
                f"== {n}\n{self.children[n].log_tail()}" for n in names if n in self.children
            )
            raise AssertionError(f"not ready within {timeout_s}s:\n{tails}") from None

    async def _ready(self, nc: NATS, name: str) -> None:
        while True:
            if name == "api":
                if await _http_ok(f"{self.api_url}/health"):
                    return
            else:
                with contextlib.suppress(nats.errors.Error):
                    await nc.request(f"$SRV.PING.{name}", b"", timeout=1)
                    return
            await asyncio.sleep(0.1)

    def down(self) -> dict[str, int | None]:
        """Stop the services (SIGTERM), then the simulator; return each exit code."""
        codes = {name: child.stop() for name, child in self.children.items() if name != "sim"}
        if "sim" in self.children:
            self.children["sim"].stop()
        return codes


async def _http_ok(url: str) -> bool:
    """Return whether ``GET url`` answers at all (any status: the process serves)."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        return line.startswith(b"HTTP/1.1")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
