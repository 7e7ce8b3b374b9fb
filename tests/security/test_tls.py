"""TLS in secure mode: every NATS connection is encrypted and shows a certificate of ours.

A real nats-server runs ``infra/nats/nats-secure.conf`` (what `just up --secure`
runs; the ``server`` and ``users`` fixtures of this folder's conftest) with the files
``TestUsers`` makes the way ``stack.py secrets`` does: a
client with the CA and its own certificate connects and works; one that speaks
plaintext, shows no certificate, or one signed by another CA is refused; the
server's certificate verifies for the loopback names only (and what
``KTRDR_NATS_TLS_HOSTS`` adds). ``stack.py secrets`` makes the files private and
keeps them; the secure configuration has no monitoring port unless asked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import nats
import nats.errors
import pytest
from ktrdr_shared.certs import ensure_certificates, subject_alternative_names
from ktrdr_shared.runtime import connect, flush_subscriptions
from ktrdr_shared.testing.auth import USERS, TestUsers
from ktrdr_shared.testing.nats_server import NatsServer, free_port
from ktrdr_shared.tls import TlsFiles, client_context

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECURE_CONF = ROOT / "infra/nats/nats-secure.conf"
STACK = ROOT / "infra/scripts/stack.py"


def secure_server(tmp_path: Path, users: TestUsers, *extra_args: str) -> NatsServer:
    """The secure server as `just up --secure` starts it without --monitor-port (``-m 0``);
    the tests above use conftest's ``server`` (the same configuration, monitored)."""
    return NatsServer(
        store_dir=tmp_path / "jetstream",
        config_file=SECURE_CONF,
        extra_args=["-m", "0", *extra_args],
        env=users.server_env(),
    )


async def _quiet(_: Exception) -> None:
    return None


async def refused(
    url: str, context: ssl.SSLContext | None, users: TestUsers, user: str = "api", **options: object
) -> BaseException:
    """Connect once as ``user`` with ``context``; return why it failed (fail if it did not)."""
    try:
        nc = await nats.connect(
            url,
            user=user,
            password=users.passwords[user],
            tls=context,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            connect_timeout=2,
            error_cb=_quiet,
            **options,
        )  # type: ignore[arg-type]
    except (nats.errors.Error, OSError, TimeoutError) as e:
        return e
    await nc.close()
    raise AssertionError(f"{user} connected to {url} without being refused")


def own_tls(users: TestUsers, user: str) -> ssl.SSLContext:
    files = users.tls_files
    return client_context(
        str(files.ca_cert), str(files.client_cert(user)), str(files.client_key(user))
    )


async def test_a_client_with_the_ca_and_its_certificate_connects_and_works(
    server: NatsServer, users: TestUsers
) -> None:
    admin = await connect(users.settings("admin", server.url), name="test-admin")
    api = await connect(users.settings("api", f"tls://127.0.0.1:{server.port}"), name="test-api")
    try:
        replies: list[str] = []

        async def answer(msg: nats.aio.msg.Msg) -> None:
            replies.append(msg.reply)
            await msg.respond(b"pong")

        await admin.subscribe("ktrdr.store.query", cb=answer)
        await flush_subscriptions(admin)  # flush() alone may beat the SUB to the server
        reply = await api.request("ktrdr.store.query", b"ping", timeout=5)
        assert reply.data == b"pong"  # over TLS: the server takes nothing else
        # Each user's replies come under its own inbox prefix (auth.conf can then give each
        # user `_INBOX.<user>.>` alone).
        assert replies[0].startswith("_INBOX.api.")
    finally:
        await api.close()
        await admin.close()


async def test_a_plaintext_client_is_refused(server: NatsServer, users: TestUsers) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        stream = raw.makefile("rwb")
        info = json.loads(stream.readline().removeprefix(b"INFO "))
        assert info["tls_required"] is True and info["tls_verify"] is True
        connect_op = {"user": "api", "pass": users.passwords["api"], "verbose": False}
        stream.write(b"CONNECT " + json.dumps(connect_op).encode() + b"\r\nPING\r\n")
        stream.flush()
        answer = stream.read()  # until the server hangs up
    assert b"PONG" not in answer and b"+OK" not in answer, answer
    assert "TLS handshake error" in server.log_file.read_text()


async def test_a_client_without_a_certificate_is_refused(
    server: NatsServer, users: TestUsers
) -> None:
    ca_only = client_context(str(users.tls_files.ca_cert), None, None)
    await refused(server.url, ca_only, users)


async def test_a_certificate_of_another_ca_is_refused(
    server: NatsServer, users: TestUsers, tmp_path: Path
) -> None:
    other = TlsFiles(tmp_path / "other")
    ensure_certificates(other.directory, ["api"])
    # The right CA for the server, a client certificate from a CA the server does not trust.
    forged = client_context(
        str(users.tls_files.ca_cert), str(other.client_cert("api")), str(other.client_key("api"))
    )
    await refused(server.url, forged, users)
    # And the client refuses a server it cannot verify with its CA.
    wrong_ca = client_context(
        str(other.ca_cert), str(other.client_cert("api")), str(other.client_key("api"))
    )
    why = await refused(server.url, wrong_ca, users)
    assert isinstance(why, ssl.SSLCertVerificationError), repr(why)


async def test_the_server_certificate_verifies_for_loopback_names_only(
    server: NatsServer, users: TestUsers
) -> None:
    for url in (f"tls://127.0.0.1:{server.port}", f"tls://localhost:{server.port}"):
        nc = await nats.connect(
            url,
            user="api",
            password=users.passwords["api"],
            tls=own_tls(users, "api"),
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=_quiet,
        )
        await nc.close()
    names = subject_alternative_names(users.tls_files.server_cert)
    assert names == {"127.0.0.1", "::1", "localhost", "nats"}
    why = await refused(server.url, own_tls(users, "api"), users, tls_hostname="nats.example")
    assert isinstance(why, ssl.SSLCertVerificationError), repr(why)


def test_the_secure_configuration_has_no_monitoring_port_unless_asked(
    tmp_path: Path, users: TestUsers
) -> None:
    default = secure_server(tmp_path, users)
    default.start()
    try:
        log = default.log_file.read_text()
        assert "http monitor" not in log.lower(), log
        assert default.process is not None
        if shutil.which("ss"):
            assert _listening_ports(default.process.pid) == {default.port}
    finally:
        default.stop()
    monitor_port = free_port()
    asked = secure_server(tmp_path, users)
    asked.extra_args = ["-m", str(monitor_port)]
    asked.start()
    try:
        deadline = time.monotonic() + 5
        while f"127.0.0.1:{monitor_port}" not in asked.log_file.read_text():
            assert time.monotonic() < deadline, asked.log_file.read_text()
            time.sleep(0.05)
        assert f"Starting http monitor on 127.0.0.1:{monitor_port}" in asked.log_file.read_text()
    finally:
        asked.stop()


def _listening_ports(pid: int) -> set[int]:
    """Return the TCP ports process ``pid`` listens on (``ss -ltnp``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {
        int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={pid}," in line
    }


def test_stack_secrets_makes_private_files_and_keeps_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env.update(KTRDR_DATA_DIR=str(tmp_path / "data"), KTRDR_NATS_TLS_HOSTS="10.0.0.1,nats.lan")

    def secrets() -> dict[str, bytes]:
        done = subprocess.run(
            [sys.executable, str(STACK), "secrets"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return {p.name: p.read_bytes() for p in directory.iterdir() if p.name != "nats.env"}

    directory = tmp_path / "data" / "secrets"
    first = secrets()
    files = TlsFiles(directory)
    expected = {
        "ca.pem",
        "ca-key.pem",
        "server.pem",
        "server-key.pem",
        *(f"{u}.pem" for u in USERS),
        *(f"{u}-key.pem" for u in USERS),
    }
    assert expected <= set(first)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in first:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    names = subject_alternative_names(files.server_cert)
    assert names == {"127.0.0.1", "::1", "localhost", "nats", "10.0.0.1", "nats.lan"}
    assert secrets() == first  # a second run reuses everything

    (directory / "trainer.pem").unlink()
    env["KTRDR_NATS_TLS_HOSTS"] = "10.0.0.2"
    third = secrets()
    changed = {name for name in first if third[name] != first[name]}
    # the missing certificate comes back, the server's is issued for its new names
    assert changed == {"trainer.pem", "trainer-key.pem", "server.pem", "server-key.pem"}
    assert "10.0.0.2" in subject_alternative_names(files.server_cert)
