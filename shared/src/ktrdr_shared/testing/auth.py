"""NATS users for tests that run the secure configuration (``infra/nats/auth.conf``).

``auth.conf`` reads each user's bcrypt hash from nats-server's environment
(``NATS_HASH_<USER>``, the value quoted for the NATS config parser);
``TestUsers`` makes fresh passwords, that environment, and the ``Settings`` a
ktrdr process uses to connect as one of the users. Tests hash with bcrypt's
cheapest cost: the server checks a hash of any cost the same way.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import bcrypt

from ktrdr_shared.config import Secret, Settings

USERS = ("ib-connector", "data-store", "trainer", "api", "admin")


def hash_variable(user: str) -> str:
    """Return the nats-server variable of ``user``'s hash: ``NATS_HASH_DATA_STORE``."""
    return "NATS_HASH_" + user.upper().replace("-", "_")


@dataclass
class TestUsers:
    """One fresh password per ktrdr NATS user."""

    __test__ = False  # a helper, not a pytest test class

    passwords: dict[str, str] = field(
        default_factory=lambda: {user: secrets.token_urlsafe(16) for user in USERS}
    )

    def server_env(self, rounds: int = 4) -> dict[str, str]:
        """Return ``NATS_HASH_<USER>`` for every user, ready for nats-server's environment."""
        env = {}
        for user, password in self.passwords.items():
            digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
            env[hash_variable(user)] = f'"{digest}"'
        return env

    def settings(self, user: str, *urls: str) -> Settings:
        """Return the settings that connect to ``urls`` as ``user``."""
        return Settings(nats_url=urls, nats_user=user, nats_password=Secret(self.passwords[user]))

    def env(self, user: str) -> dict[str, str]:
        """Return ``KTRDR_NATS_USER`` and ``KTRDR_NATS_PASSWORD`` of ``user`` (a child's env)."""
        return {"KTRDR_NATS_USER": user, "KTRDR_NATS_PASSWORD": self.passwords[user]}
