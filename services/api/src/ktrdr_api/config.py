"""The api's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

import ipaddress
import math
from typing import Annotated

from ktrdr_shared.config import Secret, Settings
from ktrdr_shared.errors import ConfigError
from ktrdr_shared.training_size import MAX_TRAINING_BYTES, TrainingBytes
from msgspec import Meta


class ApiSettings(Settings, frozen=True, kw_only=True):
    """Settings of the api (NATS settings come from ``Settings``).

    Attributes:
        api_host: the address to bind; anything but loopback requires ``api_key``.
        api_port: the TCP port to bind.
        api_key: when set, every route but ``/health`` requires it
            (``X-API-Key: <key>`` or ``Authorization: Bearer <key>``).
        api_workers: server worker processes (each holds its own NATS connection).
        api_request_timeout_s: how long a request to a service may take before the
            gateway answers 504 naming the service.
        api_wait_max_s: the longest a ``?wait=true`` load may wait for its job to end.
        api_job_start_wait_s: how long the event stream of a job that has no event
            yet waits for its first one (a job just submitted) before answering 404.
        api_allowed_hosts: host names (comma-separated) the gateway answers to besides
            loopback and ``api_host``: the names clients use to reach it off loopback.
            ``*`` answers any ``Host`` (only behind a proxy that checks it).
        api_training_max_bytes: the most memory a training spec's estimate may need
            (``ktrdr_shared.training_size``); a bigger one is a 400 naming the field.
    """

    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    api_key: Secret | None = None
    api_workers: Annotated[int, Meta(ge=1, le=64)] = 1
    api_request_timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    api_wait_max_s: Annotated[float, Meta(gt=0)] = 300.0
    api_job_start_wait_s: Annotated[float, Meta(ge=0)] = 10.0
    api_allowed_hosts: tuple[str, ...] = ()
    api_training_max_bytes: TrainingBytes = MAX_TRAINING_BYTES


def is_loopback(host: str) -> bool:
    """Return True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


MIN_KEY_BITS = 128


def key_bits(key: str) -> float:
    """Return an estimate of a key's entropy: length x log2(size of the classes it uses).

    Lower case, upper case and digits count 26, 26 and 10; anything else 2 (the url-safe
    ``-`` and ``_``), so a random url-safe key needs 22 characters for 128 bits
    (``secrets.token_urlsafe(32)`` gives 43: 256 bits). Repetition is not detected: this
    catches a short or single-class key, not a careless long one.
    """
    classes = [(str.islower, 26), (str.isupper, 26), (str.isdigit, 10)]
    alphabet = sum(size for test, size in classes if any(test(c) for c in key))
    alphabet += 2 if any(not c.isalnum() for c in key) else 0  # url-safe: '-' and '_'

    return len(key) * math.log2(alphabet) if alphabet > 1 else 0.0


def check_exposure(settings: ApiSettings) -> None:
    """Refuse to serve off loopback without a key, or with a weak one.

    Raises:
        ConfigError: ``api_host`` is not a loopback address and ``api_key`` is unset or
            holds fewer than ``MIN_KEY_BITS`` bits.
    """
    if settings.api_key is None and not is_loopback(settings.api_host):
        raise ConfigError(
            f"KTRDR_API_HOST={settings.api_host} is reachable from other machines: set "
            "KTRDR_API_KEY (or KTRDR_API_KEY_FILE) so that every route but /health requires "
            "it, or bind 127.0.0.1",
            details={"variable": "KTRDR_API_KEY"},
        )
    if settings.api_key is not None and not settings.api_key.reveal():
        raise ConfigError(
            "KTRDR_API_KEY is empty: give it a value or unset it",
            details={"variable": "KTRDR_API_KEY"},
        )
    key = settings.api_key.reveal() if settings.api_key else ""
    if key and not is_loopback(settings.api_host) and key_bits(key) < MIN_KEY_BITS:
        raise ConfigError(
            f"KTRDR_API_KEY is too weak for KTRDR_API_HOST={settings.api_host} (about "
            f"{key_bits(key):.0f} bits; at least {MIN_KEY_BITS} bits off loopback): generate "
            "one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            details={"variable": "KTRDR_API_KEY"},
        )
