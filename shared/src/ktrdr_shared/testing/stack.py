"""The whole ktrdr stack as real processes, for system and fault tests and ``just demo``.

The foreground front end of the launcher (``ktrdr_shared.stack``): the IB Gateway
simulator and each service run as child processes on free loopback ports, each with its
own log file, so a test can ``kill -9`` any of them, restart it, and read what it said.
The nats-server is the test's own (``NatsServer``, the ``nats_server`` fixture), so a test
can restart it under the stack.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS

from ktrdr_shared.stack import (
    MODULES,
    SERVICES,
    ChildProcess,
    free_port,
    ping_services,
    service_command,
    sim_command,
    stop_in_order,
)

__all__ = ["MODULES", "SERVICES", "SIM_NOW", "SIM_TIME_SCALE", "ChildProcess", "Stack"]

SIM_NOW = "2024-06-28T22:00:00+00:00"  # a Friday after the US close, inside the calendars
SIM_TIME_SCALE = 0.01  # IB's 10-minute pacing window lasts 6 s


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
    # IB's windows in the simulators and the connectors' gates (0.01: 10 minutes are 6 s)
    time_scale: float = SIM_TIME_SCALE

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
                "KTRDR_IB_TIME_SCALE": str(self.time_scale),
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
        """Start the simulator with its clock frozen at ``sim_now`` (IB's windows scaled)."""
        argv = sim_command(
            self.sim_port, self.sim_control_port, self.time_scale, now=self.sim_now, soft_delay_ms=0
        )
        child = self._child("sim", argv)
        child.start()
        return child

    def start_service(self, name: str) -> ChildProcess:
        """Start one service (``ib-connector``, ``data-store``, ``trainer``, ``api``)."""
        child = self._child(name, service_command(name))
        child.start()
        return child

    def start_gateway(self, name: str, port: int, control_port: int) -> ChildProcess:
        """Start one more simulator, ``name``, for a pool of gateways (as ``start_sim``)."""
        argv = sim_command(port, control_port, self.time_scale, now=self.sim_now, soft_delay_ms=0)
        child = self._child(name, argv)
        child.start()
        return child

    def start_connector(self, name: str, port: int, **env: str) -> ChildProcess:
        """Start one more ib-connector, ``name``, on the gateway at ``port``; ``env`` adds to
        (or overrides) its ``KTRDR_*`` settings."""
        environ = {**self.env(), "KTRDR_IB_PORT": str(port), **env}
        argv = service_command("ib-connector")
        child = ChildProcess(name, argv, environ, self.root / "logs" / f"{name}.log")
        self.children[name] = child
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
        """Wait until each named service answers ``$SRV.PING`` (the api also ``GET /health``).

        Raises:
            AssertionError: one did not in time, or its process exited; with the end of
                each one's log.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        def gone(name: str) -> str | None:
            child = self.children.get(name)
            return None if child is None else child.gone()

        _, missing = await ping_services(nc, list(names), deadline, gone)
        while not missing and "api" in names and not await _http_ok(f"{self.api_url}/health"):
            if loop.time() >= deadline or gone("api"):
                missing = {"api": gone("api") or "GET /health did not answer"}
            else:
                await asyncio.sleep(0.1)
        if missing:
            tails = "\n".join(
                f"== {n}: {why}\n{self.children[n].log_tail() if n in self.children else ''}"
                for n, why in missing.items()
            )
            raise AssertionError(f"not ready within {timeout_s}s:\n{tails}")

    def down(self) -> dict[str, int | None]:
        """Stop the services (SIGTERM), then the simulator; return each service's exit code."""
        codes = stop_in_order(self.children)
        return {name: code for name, code in codes.items() if name != "sim"}


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
