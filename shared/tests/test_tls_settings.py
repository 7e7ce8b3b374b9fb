"""KTRDR_NATS_TLS_CA|CERT|KEY: read like every setting, checked before anything connects."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from ktrdr_shared.certs import ensure_certificates, parse_hosts, server_hosts
from ktrdr_shared.config import Secret, Settings
from ktrdr_shared.errors import ConfigError
from ktrdr_shared.runtime import auth_options
from ktrdr_shared.tls import TlsFiles

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    ensure_certificates(directory, ["api"])
    return TlsFiles(directory)


def test_the_tls_files_are_read_from_the_environment(files: TlsFiles) -> None:
    settings = Settings.from_env(files.client_env("api"))
    assert settings.nats_tls_ca == str(files.ca_cert)
    assert settings.nats_tls_cert == str(files.client_cert("api"))
    assert settings.nats_tls_key == str(files.client_key("api"))


@pytest.mark.parametrize(
    "variable", ["KTRDR_NATS_TLS_CA", "KTRDR_NATS_TLS_CERT", "KTRDR_NATS_TLS_KEY"]
)
def test_a_missing_tls_file_is_a_config_error_naming_the_variable_and_path(
    files: TlsFiles, tmp_path: Path, variable: str
) -> None:
    missing = tmp_path / "nowhere.pem"
    env = {**files.client_env("api"), variable: str(missing)}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert variable in raised.value.message and str(missing) in raised.value.message


def test_a_client_certificate_without_its_key_is_a_config_error(files: TlsFiles) -> None:
    env = {
        "KTRDR_NATS_TLS_CA": str(files.ca_cert),
        "KTRDR_NATS_TLS_CERT": str(files.client_cert("api")),
    }
    with pytest.raises(ConfigError, match="KTRDR_NATS_TLS_KEY"):
        Settings.from_env(env)


def test_connect_options_carry_tls_and_the_users_inbox_prefix(files: TlsFiles) -> None:
    settings = Settings(
        nats_user="api",
        nats_password=Secret("pw"),
        nats_tls_ca=str(files.ca_cert),
        nats_tls_cert=str(files.client_cert("api")),
        nats_tls_key=str(files.client_key("api")),
    )
    options = auth_options(settings)
    assert options["inbox_prefix"] == "_INBOX.api"
    context = options["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_open_server_gets_neither_tls_nor_an_inbox_prefix() -> None:
    assert auth_options(Settings()) == {}


def test_a_file_that_is_not_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="KTRDR_NATS_TLS_CA"):
        auth_options(Settings(nats_tls_ca=str(junk)))


def test_extra_server_names_are_checked_and_added_after_the_defaults() -> None:
    assert server_hosts(parse_hosts(" 10.0.0.1, nats.lan ,")) == [
        "127.0.0.1",
        "::1",
        "localhost",
        "nats",
        "10.0.0.1",
        "nats.lan",
    ]
    with pytest.raises(ValueError, match="neither"):
        parse_hosts("nats lan")
