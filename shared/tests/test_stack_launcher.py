"""The launcher's pure parts: command lines, secure mode's environment and secrets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ktrdr_shared.stack import (
    MODULES,
    SERVICES,
    USERS,
    ensure_secrets,
    exit_status,
    hash_variable,
    nats_command,
    nats_server_env,
    service_command,
    sim_command,
    user_env,
    user_settings,
)
from ktrdr_shared.tls import TlsFiles

pytestmark = pytest.mark.unit


def test_nats_command_listens_only_where_asked_with_jetstream(tmp_path: Path) -> None:
    argv = nats_command(4222, tmp_path / "js")
    assert Path(argv[0]).name == "nats-server"
    assert argv[1:] == ["-a", "127.0.0.1", "-p", "4222", "-js", "-sd", str(tmp_path / "js")]


def test_nats_command_puts_the_config_first_and_the_flags_after_it(tmp_path: Path) -> None:
    files = TlsFiles(tmp_path)
    conf = tmp_path / "secure.conf"
    argv = nats_command(
        5000, tmp_path, config=conf, host="10.0.0.5", monitor_port=0, tls=files, extra=["-DV"]
    )
    assert argv[1:3] == ["-c", str(conf)]
    assert argv[argv.index("-a") + 1] == "10.0.0.5"
    assert argv[argv.index("-m") + 1] == "0"  # no monitoring, whatever the config says
    assert argv[argv.index("--tlscert") + 1] == str(files.server_cert)
    assert argv[argv.index("--tlscacert") + 1] == str(files.ca_cert)
    assert "--tlsverify" in argv
    assert argv[-1] == "-DV"


def test_the_simulator_freezes_its_clock_only_when_asked() -> None:
    argv = sim_command(4002, 4003, "0.01")
    assert argv[:3] == [sys.executable, "-m", "ktrdr_ib_sim"]
    assert argv[3:] == ["--port", "4002", "--control-port", "4003", "--time-scale", "0.01"]
    frozen = sim_command(1, 2, 1.0, now="2024-06-28T22:00:00+00:00", soft_delay_ms=0)
    assert frozen[-4:] == ["--soft-delay-ms", "0", "--now", "2024-06-28T22:00:00+00:00"]


def test_each_service_runs_as_its_module() -> None:
    assert list(MODULES) == list(SERVICES)
    assert [service_command(s) for s in SERVICES] == [
        [sys.executable, "-m", MODULES[s]] for s in SERVICES
    ]
    assert (*SERVICES, "admin") == USERS


def test_hash_variables_are_what_auth_conf_reads() -> None:
    assert hash_variable("data-store") == "NATS_HASH_DATA_STORE"
    assert hash_variable("admin") == "NATS_HASH_ADMIN"
    auth = (Path(__file__).resolve().parents[2] / "infra/nats/auth.conf").read_text()
    for user in USERS:
        assert f"password: ${hash_variable(user)}\n" in auth


@pytest.mark.parametrize(("returncode", "status"), [(0, 0), (2, 2), (-15, 143), (-9, 137)])
def test_a_signal_reads_as_a_shells_exit_status(returncode: int, status: int) -> None:
    assert exit_status(returncode) == status


def test_secrets_give_nats_server_the_hashes_and_each_user_its_files(tmp_path: Path) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    pytest.importorskip("cryptography")
    secrets = tmp_path / "secrets"
    ensure_secrets(secrets, rounds=4)
    passwords = {u: (secrets / f"{u}.password").read_text().strip() for u in USERS}
    assert all((secrets / f"{u}.password").stat().st_mode & 0o077 == 0 for u in USERS)

    env = nats_server_env(secrets)
    for user, password in passwords.items():
        quoted = env[hash_variable(user)]
        assert quoted.startswith('"') and quoted.endswith('"')  # for the NATS config parser
        assert bcrypt.checkpw(password.encode(), quoted.strip('"').encode())
    assert env["NATS_TLS_CA"] == f'"{secrets / "ca.pem"}"'

    assert user_env(secrets, "trainer") == {
        "KTRDR_NATS_USER": "trainer",
        "KTRDR_NATS_PASSWORD_FILE": str(secrets / "trainer.password"),
        **TlsFiles(secrets).client_env("trainer"),
    }
    admin = user_settings("nats://127.0.0.1:4222", secrets)
    assert admin.nats_user == "admin"
    assert admin.nats_password is not None
    assert admin.nats_password.reveal() == passwords["admin"]

    ensure_secrets(secrets, rounds=4)  # a second run keeps every password
    assert {u: (secrets / f"{u}.password").read_text().strip() for u in USERS} == passwords


def test_open_mode_connects_as_no_user() -> None:
    settings = user_settings("nats://127.0.0.1:4222", None)
    assert settings.nats_url == ("nats://127.0.0.1:4222",)
    assert settings.nats_user is None
