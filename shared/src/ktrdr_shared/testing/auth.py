"""NATS users for tests that run the secure configuration (``infra/nats/auth.conf``).

``auth.conf`` reads each user's bcrypt hash from nats-server's environment
(``NATS_HASH_<USER>``, the value quoted for the NATS config parser);
``TestUsers`` makes fresh passwords, that environment, and the ``Settings`` a
ktrdr process uses to connect as one of the users. Tests hash with bcrypt's
cheapest cost: the server checks a hash of any cost the same way.

Like ``stack.py secrets`` it also makes a private CA, nats-server's certificate
and one client certificate per user (``ktrdr_shared.certs``), so that a test
runs secure mode as `just up --secure` does: with TLS, the server's
``NATS_TLS_*`` in ``server_env`` and each user's ``KTRDR_NATS_TLS_*`` in its
settings and environment. ``TestUsers(tls=False)`` leaves TLS out.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS

from ktrdr_shared.config import Secret, Settings
from ktrdr_shared.stack import USERS, hash_env, hash_variable
from ktrdr_shared.tls import TlsFiles

__all__ = ["USERS", "ConnectAs", "TestUsers", "Violations", "hash_variable"]


@functools.cache
def _process_tls_dir() -> Path:
    """Return a directory for this process's certificates, removed when it exits.

    Not tied to one ``TestUsers``: a server started with ``TestUsers().server_env()``
    outlives the object.
    """
    directory = Path(tempfile.mkdtemp(prefix="ktrdr-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@dataclass
class TestUsers:
    """One fresh password per ktrdr NATS user."""

    __test__ = False  # a helper, not a pytest test class

    passwords: dict[str, str] = field(
        default_factory=lambda: {user: secrets.token_urlsafe(16) for user in USERS}
    )
    tls: bool = True
    tls_dir: Path | None = None  # where the certificates go; one per test process when None
    tls_hosts: tuple[str, ...] = ()  # the server certificate's names beyond the defaults
    _files: TlsFiles | None = field(default=None, init=False, repr=False)

    @property
    def tls_files(self) -> TlsFiles:
        """Return the CA, server and client files, making them on first use."""
        if self._files is None:
            from ktrdr_shared.certs import ensure_certificates  # needs `cryptography`

            if self.tls_dir is None:
                self.tls_dir = _process_tls_dir()
            ensure_certificates(self.tls_dir, USERS, self.tls_hosts)
            self._files = TlsFiles(self.tls_dir)
        return self._files

    def server_env(self, rounds: int = 4) -> dict[str, str]:
        """Return ``NATS_HASH_<USER>`` for every user, ready for nats-server's environment."""
        env = hash_env(self.passwords, rounds)
        if self.tls:
            env.update(self.tls_files.server_env())
        return env

    def settings(self, user: str, *urls: str) -> Settings:
        """Return the settings that connect to ``urls`` as ``user`` (with its certificate)."""
        password = Secret(self.passwords[user])
        if not self.tls:
            return Settings(nats_url=urls, nats_user=user, nats_password=password)
        files = self.tls_files
        return Settings(
            nats_url=urls,
            nats_user=user,
            nats_password=password,
            nats_tls_ca=str(files.ca_cert),
            nats_tls_cert=str(files.client_cert(user)),
            nats_tls_key=str(files.client_key(user)),
        )

    def env(self, user: str) -> dict[str, str]:
        """Return the ``KTRDR_NATS_*`` of ``user``: password and TLS files (a child's env)."""
        env = {"KTRDR_NATS_USER": user, "KTRDR_NATS_PASSWORD": self.passwords[user]}
        if self.tls:
            env.update(self.tls_files.client_env(user))
        return env


class Violations:
    """The asynchronous errors NATS sent one connection (its ``error_cb``)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._changed = asyncio.Event()

    async def record(self, error: Exception) -> None:
        """The connection's ``error_cb``."""
        self.errors.append(str(error))
        self._changed.set()

    def about(self, subject: str) -> list[str]:
        """Return the permission violations naming ``subject`` (the server lower-cases it)."""
        quoted = f'"{subject}"'.lower()
        return [e for e in self.errors if "permissions violation" in e and quoted in e.lower()]

    async def wait_for(self, subject: str, timeout_s: float = 10.0) -> list[str]:
        """Wait until the server reported a violation naming ``subject``; return them."""
        async with asyncio.timeout(timeout_s):
            while not self.about(subject):
                self._changed.clear()
                await self._changed.wait()
        return self.about(subject)


ConnectAs = Callable[[str], Awaitable[tuple[NATS, Violations]]]
