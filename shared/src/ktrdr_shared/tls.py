"""TLS for NATS connections: where the files are, and the client side of the handshake.

Secure mode (``just up --secure``) runs nats-server with a private CA: the
server presents ``server.pem`` and requires every client to present a
certificate signed by the same CA (``verify: true``), on top of its user and
password. ``stack.py secrets`` makes the files (``ktrdr_shared.certs``, which
needs the ``cryptography`` package); this module needs only the standard
library, so every ktrdr process can load them.

A directory of TLS files (``data/secrets/``)::

    ca.pem            the CA certificate: clients verify the server with it
    ca-key.pem        the CA's key (stays on the machine that issues certificates)
    server.pem        nats-server's certificate (loopback, "nats", KTRDR_NATS_TLS_HOSTS)
    server-key.pem    nats-server's key
    <user>.pem        one client certificate per NATS user (CN = the user)
    <user>-key.pem    its key
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

# nats-server's variables for the files of its ``tls {}`` block (nats-secure.conf,
# docker.conf, cluster/node-*.conf).
SERVER_TLS_VARIABLES = ("NATS_TLS_CERT", "NATS_TLS_KEY", "NATS_TLS_CA")


@dataclass(frozen=True)
class TlsFiles:
    """The TLS files of one directory (see the module's docstring for the names)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    def client_cert(self, user: str) -> Path:
        """Return the certificate of NATS user ``user``."""
        return self.directory / f"{user}.pem"

    def client_key(self, user: str) -> Path:
        """Return the private key of NATS user ``user``."""
        return self.directory / f"{user}-key.pem"

    def server_env(self) -> dict[str, str]:
        """Return ``NATS_TLS_CERT|KEY|CA`` for nats-server's environment.

        Each value is quoted for the NATS config parser, which reads a variable's
        value as it would read the text of the configuration.
        """
        paths = (self.server_cert, self.server_key, self.ca_cert)
        return {name: f'"{path}"' for name, path in zip(SERVER_TLS_VARIABLES, paths, strict=True)}

    def client_env(self, user: str) -> dict[str, str]:
        """Return ``KTRDR_NATS_TLS_CA|CERT|KEY`` of ``user`` (a ktrdr process's environment)."""
        return {
            "KTRDR_NATS_TLS_CA": str(self.ca_cert),
            "KTRDR_NATS_TLS_CERT": str(self.client_cert(user)),
            "KTRDR_NATS_TLS_KEY": str(self.client_key(user)),
        }


def client_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """Return a client context: verify the server against ``ca``, present ``cert``/``key``.

    Without ``ca`` the system's trust store verifies the server (a public CA).

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: a file is not a certificate or key, or the key does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context
