"""Typed, frozen settings loaded once from ``KTRDR_*`` environment variables.

Each service subclasses ``Settings`` with its own fields; a field ``foo_bar``
reads ``KTRDR_FOO_BAR``. Values are converted to the field's type with clear
errors, secrets are masked in ``repr`` and may come from ``KTRDR_<NAME>_FILE``,
and a ``KTRDR_*`` variable that no ktrdr service knows is an error (with a
"did you mean" hint), because a typo in a setting must not become a silent
default.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import msgspec

from ktrdr_shared.codec import split_validation
from ktrdr_shared.errors import ConfigError

PREFIX = "KTRDR_"


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value (only where it is handed to a library)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Every KTRDR_* variable any ktrdr process reads. A variable outside this set
# (and outside the loading class's own fields) is rejected as a likely typo.
KNOWN_VARIABLES: set[str] = {
    "KTRDR_NATS_URL", "KTRDR_NATS_CREDS", "KTRDR_NATS_USER", "KTRDR_NATS_PASSWORD",
    "KTRDR_LOG_LEVEL", "KTRDR_IB_HOST", "KTRDR_IB_PORT", "KTRDR_IB_CLIENT_ID",
    "KTRDR_DATA_DIR", "KTRDR_API_HOST", "KTRDR_API_PORT", "KTRDR_API_KEY",
    # Copies of each stream and bucket (streams.configured_replicas): 3 on a 3-node cluster.
    "KTRDR_NATS_REPLICAS",
    # TLS client files (Settings) and the server certificate's extra names (stack.py secrets).
    "KTRDR_NATS_TLS_CA", "KTRDR_NATS_TLS_CERT", "KTRDR_NATS_TLS_KEY", "KTRDR_NATS_TLS_HOSTS",
    # ib-connector tuning (see services/ib-connector/README.md).
    "KTRDR_IB_REQUEST_TIMEOUT_S", "KTRDR_IB_CONNECT_TIMEOUT_S", "KTRDR_IB_SOFT_CONCURRENCY",
    "KTRDR_IB_TIME_SCALE", "KTRDR_IB_RETRY_DELAY_S", "KTRDR_IB_SEGMENTS_IN_FLIGHT",
    "KTRDR_IB_GATEWAY_ID", "KTRDR_LOAD_PIECE_MAX_REQUESTS",
    # the store on object storage (see services/data-store/README.md).
    "KTRDR_STORE_URL", "KTRDR_S3_ENDPOINT", "KTRDR_S3_ACCESS_KEY", "KTRDR_S3_SECRET_KEY",
    "KTRDR_S3_REGION",
    # api tuning, and the ktrdr CLI's base URL (see services/api/README.md).
    "KTRDR_API_WORKERS", "KTRDR_API_REQUEST_TIMEOUT_S", "KTRDR_API_WAIT_MAX_S",
    "KTRDR_API_JOB_START_WAIT_S", "KTRDR_API_URL", "KTRDR_API_ALLOWED_HOSTS",
    "KTRDR_API_TRAINING_MAX_BYTES",
    # data-store loads and gap filler (see services/data-store/README.md).
    "KTRDR_LOAD_PLAN_TIMEOUT_S", "KTRDR_LOAD_STALL_TIMEOUT_S", "KTRDR_LOAD_PROGRESS_INTERVAL_S",
    "KTRDR_GAP_FILL_INTERVAL_S", "KTRDR_LOAD_CANCEL_WAIT_S", "KTRDR_LOAD_SEGMENTS_IN_FLIGHT",
    "KTRDR_INGEST_RETRY_DELAY_S", "KTRDR_INGEST_RETRY_MAX_DELAY_S", "KTRDR_INGEST_WRITE_ATTEMPTS",
    "KTRDR_QUARANTINE_MAX_AGE_DAYS", "KTRDR_QUARANTINE_MAX_BYTES",
    # trainer (see services/trainer/README.md).
    "KTRDR_TRAINER_STORE_DIR", "KTRDR_TRAINER_QUERY_TIMEOUT_S", "KTRDR_TRAINER_THREADS",
    "KTRDR_TRAINER_MAX_TRAINING_BYTES",
    # Test and tooling switches (read by the test harness and scripts, not services).
    "KTRDR_TEST_NATS",
}  # fmt: skip


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings every ktrdr process has: how to reach NATS and how loud to log.

    Attributes:
        nats_url: one or more servers, comma-separated in the environment.
        nats_creds: path to a NATS ``.creds`` file, when the server uses JWT auth.
        nats_user: user name, when the server uses user/password auth.
        nats_password: password for ``nats_user``.
        nats_tls_ca: CA file (PEM) that verifies the server; with it the connection uses TLS.
        nats_tls_cert: client certificate (PEM) to present; needs ``nats_tls_key``.
        nats_tls_key: the client certificate's private key (PEM).
        nats_declare: declare the streams, consumers and buckets this process uses at
            start (true), or only verify that the NATS admin did (false). Unset: declare
            on an open server (no user, no creds), verify where there are users.
        nats_declare_wait_s: how long a verifying service waits for what is missing.
        log_level: Python logging level name.
    """

    nats_url: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    nats_creds: str | None = None
    nats_user: str | None = None
    nats_password: Secret | None = None
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
    nats_declare: bool | None = None
    nats_declare_wait_s: float = 60.0
    log_level: str = "INFO"

    @property
    def declares(self) -> bool:
        """Return whether this process declares JetStream objects (see ``nats_declare``)."""
        if self.nats_declare is not None:
            return self.nats_declare
        return not (self.nats_user or self.nats_creds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Load the settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigError: an unknown ``KTRDR_*`` variable, a value that does not
                convert to its field's type, or a TLS file that cannot be read;
                the message names the variable.
        """
        env = os.environ if environ is None else environ
        fields = _field_types(cls)
        _reject_unknown(env, fields)
        raw: dict[str, Any] = {}
        for name, hint in fields.items():
            value = _read_variable(env, name, hint)
            if value is not None:
                raw[name] = _split_if_sequence(value, hint)
        try:
            settings = msgspec.convert(raw, type=cls, strict=False, dec_hook=_decode_secret)
        except msgspec.ValidationError as e:
            raise ConfigError(_explain(str(e), raw, fields), details={"error": str(e)}) from e
        settings.check_tls_files()
        return settings

    def check_tls_files(self) -> None:
        """Check that each TLS file set can be read, and that cert and key come together.

        Raises:
            ConfigError: naming the variable and the path.
        """
        if bool(self.nats_tls_cert) != bool(self.nats_tls_key):
            missing = "KTRDR_NATS_TLS_KEY" if self.nats_tls_cert else "KTRDR_NATS_TLS_CERT"
            raise ConfigError(
                f"{missing} is not set: KTRDR_NATS_TLS_CERT and KTRDR_NATS_TLS_KEY go together",
                details={"variable": missing},
            )
        for field in ("nats_tls_ca", "nats_tls_cert", "nats_tls_key"):
            path = getattr(self, field)
            if path is None:
                continue
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as e:
                name = variable_name(field)
                raise ConfigError(
                    f"{name}={path}: cannot read it: {e.strerror}",
                    details={"variable": name, "path": path},
                ) from e

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__struct_fields__)
        return f"{type(self).__name__}({fields})"


def variable_name(field: str) -> str:
    """Return the environment variable of a settings field: ``nats_url`` -> ``KTRDR_NATS_URL``."""
    return PREFIX + field.upper()


def _field_types(cls: type[Settings]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in cls.__struct_fields__}


def _reject_unknown(env: Mapping[str, str], fields: Mapping[str, Any]) -> None:
    own = {variable_name(f) for f in fields}
    known = KNOWN_VARIABLES | own | {v + "_FILE" for v in own | KNOWN_VARIABLES}
    for key in env:
        if key.startswith(PREFIX) and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown setting {key}{hint}", details={"variable": key})


def _read_variable(env: Mapping[str, str], field: str, hint: Any) -> str | None:
    """Return the field's raw text from the environment, or from ``<VAR>_FILE``."""
    name = variable_name(field)
    if name in env:
        return env[name]
    file_name = name + "_FILE"
    if file_name in env:
        path = Path(env[file_name])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"{file_name}: cannot read {path}: {e.strerror}") from e
    return None


def _split_if_sequence(value: str, hint: Any) -> Any:
    """Split comma-separated text for tuple/list fields."""
    origin = typing.get_origin(hint)
    candidates = typing.get_args(hint) if origin is typing.Union else (hint,)
    if any(typing.get_origin(c) in (tuple, list) for c in candidates):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _decode_secret(kind: type, value: Any) -> Any:
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    raise NotImplementedError(f"cannot convert {value!r} to {kind.__name__}")


def _explain(error: str, raw: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    """Rewrite msgspec's ``- at `$.field``` into the variable's name and value."""
    head, path = split_validation(error)
    if not path:
        return f"invalid settings: {error}"
    field = path.split("[")[0].split(".")[0]
    secret = Secret in (fields.get(field), *typing.get_args(fields.get(field)))
    shown = "'********'" if secret else repr(raw.get(field))
    return f"{variable_name(field)}={shown}: {head}"
