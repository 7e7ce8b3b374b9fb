"""Start, stop and inspect the ktrdr stack of ``just up`` / ``just down``.

    python infra/scripts/stack.py up [--secure] [--timeout S]
    python infra/scripts/stack.py down [--timeout S]
    python infra/scripts/stack.py status
    python infra/scripts/stack.py secrets

The background front end of the launcher, ``ktrdr_shared.stack`` (the tests and
``just demo`` are its foreground one). ``up`` starts a supervisor in the
background (this script's ``_serve``, in a session of its own) that starts
nats-server, the IB Gateway simulator unless ``KTRDR_IB_HOST`` names a real
gateway, and the four services; ``up`` waits until NATS and every service
answer ``$SRV.PING``, and prints where everything is; if one does not come up
it names it, shows the end of its log and stops the rest. ``down`` asks the
supervisor to stop: the services first (SIGTERM, then waits: they finish and
acknowledge what they hold), then the simulator, then NATS. ``--secure`` runs
NATS with ``infra/nats/auth.conf``: one user per service with least-privilege
permissions, TLS with a client certificate per user, and no monitoring port
unless ``--monitor-port`` asks for one; passwords, a private CA and the
certificates are generated into ``data/secrets/`` on first use
(``KTRDR_NATS_TLS_HOSTS`` adds names and addresses to the server certificate)
and passwords are never printed.

Everything the stack writes lives under ``KTRDR_DATA_DIR`` (default
``./data``): ``bars/`` (Parquet), ``nats/``, ``logs/<process>.log``, ``run/``
(pid files, exit statuses, ``stack.json``) and ``secrets/``; the supervisor's
own log is ``logs/stack.log``. Ports come from the usual settings:
``KTRDR_NATS_URL`` (default 4222; NATS monitoring on its port + 4000, 8222),
``KTRDR_IB_PORT`` (4002; the simulator's control port is the next, 4003),
``KTRDR_API_PORT`` (8000).

``up`` also records the running stack's data directory in this checkout's
registry (``.run/stacks/``, or ``STACK_REGISTRY_DIR``), so that ``down`` and
``status`` find it whatever ``KTRDR_DATA_DIR`` says when they run: with no
stack under ``KTRDR_DATA_DIR`` they act on the one recorded, and say which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats.errors
from ktrdr_shared.certs import parse_hosts
from ktrdr_shared.config import Settings
from ktrdr_shared.declare import declare
from ktrdr_shared.nats_errors import NatsRefused
from ktrdr_shared.stack import (
    SERVICES,
    STOP_ORDER,
    ChildProcess,
    Readiness,
    ensure_secrets,
    log_tail,
    nats_command,
    nats_server_env,
    port_busy,
    service_command,
    sim_command,
    stop_in_order,
    user_env,
    user_settings,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]
NATS_CONF = {False: ROOT / "infra/nats/nats.conf", True: ROOT / "infra/nats/nats-secure.conf"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
LOG_TAIL_LINES = 20
REGISTRY = ROOT / ".run" / "stacks"  # ignored by git: one entry per running stack
SUPERVISOR = "stack"  # the supervisor's name: logs/stack.log
STOP_TIMEOUT = "stop-timeout"  # in run/: how long `down` gives each group to stop, seconds
STOPPED = "stopped.json"  # in run/: what stopping had to force, written by the supervisor


class StackError(Exception):
    """Something the user must fix before the stack can start; the message says what."""


@dataclass(frozen=True)
class Layout:
    """Where the stack keeps its state, under one directory."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def state_file(self) -> Path:
        return self.run / "stack.json"

    def pid(self, name: str) -> int | None:
        """Return the recorded process id of ``name`` (None when none is recorded)."""
        return _read_int(self.run / f"{name}.pid")

    def exit_status(self, name: str) -> int | None:
        """Return ``name``'s exit status once it has ended, else None."""
        return _read_int(self.run / f"{name}.exit")

    def running(self) -> bool:
        """Return True while the supervisor or any process of the stack recorded here is alive."""
        names = [n for group in STOP_ORDER for n in group]
        return _alive(_supervisor_pid(self)) or any(_alive(self.pid(n)) for n in names)


@dataclass(frozen=True)
class Registry:
    """The stacks this checkout's ``up`` started and ``down`` has not stopped yet.

    One small file per data directory, so that ``down`` finds a stack started
    with another ``KTRDR_DATA_DIR`` than the one it runs with.
    """

    directory: Path

    def _entry(self, data_dir: Path) -> Path:
        return self.directory / (hashlib.sha256(str(data_dir).encode()).hexdigest()[:16] + ".json")

    def record(self, layout: Layout, supervisor_pid: int) -> None:
        """Note that a stack runs from ``layout``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = {"data_dir": str(layout.root), "pid": supervisor_pid}
        self._entry(layout.root).write_text(json.dumps(entry) + "\n", encoding="utf-8")

    def forget(self, layout: Layout) -> None:
        """Note that the stack of ``layout`` is stopped."""
        self._entry(layout.root).unlink(missing_ok=True)

    def running(self) -> list[Layout]:
        """Return the recorded stacks that still run, forgetting those that do not."""
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                layout = Layout(Path(json.loads(path.read_text(encoding="utf-8"))["data_dir"]))
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if layout.running():
                found.append(layout)
            else:
                path.unlink(missing_ok=True)
        return found


def locate(requested: Layout, registry: Registry) -> tuple[Layout, str | None]:
    """Return the stack ``down`` and ``status`` act on, and a note when it is not ``requested``.

    ``requested`` (from ``KTRDR_DATA_DIR``) when its stack runs or none is recorded;
    otherwise the one recorded stack.

    Raises:
        StackError: ``requested`` runs nothing and several recorded stacks run.
    """
    if requested.running():
        return requested, None
    others = [layout for layout in registry.running() if layout.root != requested.root]
    if not others:
        return requested, None
    if len(others) > 1:
        raise StackError(
            f"no stack runs from KTRDR_DATA_DIR={requested.root}, but {len(others)} others do: "
            + ", ".join(str(o.root) for o in others)
            + "; set KTRDR_DATA_DIR to the one you mean"
        )
    return others[0], (
        f"no stack runs from KTRDR_DATA_DIR={requested.root}; "
        f"using the one started from {others[0].root}"
    )


@dataclass(frozen=True)
class StackConfig:
    """What ``up`` starts, from the environment and the command line."""

    data_dir: Path
    secure: bool
    nats_port: int
    monitor_port: int | None  # None: no monitoring (secure mode's default)
    ib_host: str | None  # None: run the simulator
    ib_port: int
    sim_control_port: int
    sim_time_scale: str
    api_host: str
    api_port: int
    tls_hosts: tuple[str, ...] = ()  # the server certificate's names beyond loopback

    @property
    def processes(self) -> list[str]:
        """Return the names of the processes to run, in the order they start."""
        return ["nats", *([] if self.ib_host else ["sim"]), *SERVICES]

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"


def load_config(
    env: Mapping[str, str], secure: bool, monitor_port: int | None, sim_control_port: int | None
) -> StackConfig:
    """Read ports and paths from the ``KTRDR_*`` settings the services read too.

    Raises:
        StackError: ``KTRDR_NATS_URL`` points off this machine, or a port is not a number.
    """
    url = urlsplit(env.get("KTRDR_NATS_URL", "nats://127.0.0.1:4222").split(",")[0].strip())
    if url.hostname not in LOOPBACK:
        raise StackError(
            f"KTRDR_NATS_URL={env['KTRDR_NATS_URL']}: `just up` runs its own nats-server "
            "on this machine; unset it or use nats://127.0.0.1:<port>"
        )
    nats_port = url.port or 4222
    ib_port = _port(env, "KTRDR_IB_PORT", 4002)
    if monitor_port is None and not secure:
        monitor_port = nats_port + 4000
    return StackConfig(
        data_dir=Path(env.get("KTRDR_DATA_DIR", "data")).resolve(),
        secure=secure,
        nats_port=nats_port,
        monitor_port=monitor_port or None,
        ib_host=env.get("KTRDR_IB_HOST") or None,
        ib_port=ib_port,
        sim_control_port=sim_control_port if sim_control_port is not None else ib_port + 1,
        sim_time_scale=env.get("KTRDR_IB_TIME_SCALE", "1"),
        api_host=env.get("KTRDR_API_HOST", "127.0.0.1"),
        api_port=_port(env, "KTRDR_API_PORT", 8000),
        tls_hosts=tuple(tls_hosts(env)),
    )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{name}={raw!r}: not a TCP port (1-65535)")
    return int(raw)


# -- secrets ------------------------------------------------------------------------------


def tls_hosts(env: Mapping[str, str]) -> list[str]:
    """Return the server certificate's extra names and addresses (``KTRDR_NATS_TLS_HOSTS``).

    Raises:
        StackError: an entry is neither an IP address nor a DNS name.
    """
    try:
        return parse_hosts(env.get("KTRDR_NATS_TLS_HOSTS", ""))
    except ValueError as e:
        raise StackError(f"KTRDR_NATS_TLS_HOSTS: {e}") from e


def admin_settings(config: StackConfig, layout: Layout) -> Settings:
    """Return the settings ``up`` uses to check readiness (admin in secure mode)."""
    return user_settings(config.nats_url, layout.secrets if config.secure else None)


def config_from_json(text: str) -> StackConfig:
    """Return the configuration ``up`` hands its supervisor (``json.dumps(asdict(...))``)."""
    fields: dict[str, Any] = json.loads(text)
    fields["data_dir"] = Path(fields["data_dir"])
    fields["tls_hosts"] = tuple(fields["tls_hosts"])
    return StackConfig(**fields)


# -- up -----------------------------------------------------------------------------------


def up(config: StackConfig, timeout_s: float, registry: Registry) -> int:
    """Start the stack in the background and wait until it serves; return the exit status."""
    layout = Layout(config.data_dir)
    if _alive(_supervisor_pid(layout)):
        print(f"ktrdr: the stack is already running ({layout.state_file}); `just down` stops it")
        return 0
    _check_ports_free(config, registry.running())
    for directory in (layout.logs, layout.run, config.data_dir / "nats"):
        directory.mkdir(parents=True, exist_ok=True)
    if config.secure:
        ensure_secrets(layout.secrets, config.tls_hosts)
    _clear_run_files(layout, config.processes)
    _rotate_logs(layout, [SUPERVISOR, *config.processes])
    started = time.monotonic()
    supervisor = _start_supervisor(config, layout)
    _write_state(layout, config, supervisor.pid)
    registry.record(layout, supervisor.pid)
    if config.secure and not _declared(admin_settings(config, layout), timeout_s):
        down(layout, timeout_s=15.0, registry=registry, quiet=True)
        return 1
    result = asyncio.run(
        wait_ready(
            admin_settings(config, layout),
            SERVICES,
            timeout_s,
            lambda name: _gone(layout, supervisor, name),
        )
    )
    if not result.ok:
        _report_failure(layout, result)
        down(layout, timeout_s=15.0, registry=registry, quiet=True)
        return 1
    _print_summary(config, layout, result, time.monotonic() - started)
    return 0


def _declared(settings: Settings, timeout_s: float) -> bool:
    """Declare the streams, consumers and buckets as the admin, once NATS accepts connections.

    In secure mode the service users may not (see ktrdr_shared.streams); they wait
    for this at start.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = asyncio.run(declare(settings, check=False))
        except NatsRefused as e:  # a wrong password does not start to work
            print(f"ktrdr: could not declare the JetStream streams as admin: {e}")
            return False
        except (nats.errors.Error, OSError, TimeoutError) as e:
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            print(f"ktrdr: could not declare the JetStream streams as admin: {e!r}")
            return False
        if status != 0:
            print("ktrdr: the JetStream streams are not as declared (see above)")
        return status == 0


def _check_ports_free(config: StackConfig, running: Sequence[Layout] = ()) -> None:
    wanted = [
        ("127.0.0.1", config.nats_port, "NATS (KTRDR_NATS_URL)"),
        (config.api_host, config.api_port, "the api (KTRDR_API_PORT)"),
    ]
    if config.monitor_port is not None:
        wanted.append(("127.0.0.1", config.monitor_port, "NATS monitoring"))
    if not config.ib_host:
        wanted += [
            ("127.0.0.1", config.ib_port, "the IB Gateway simulator (KTRDR_IB_PORT)"),
            ("127.0.0.1", config.sim_control_port, "the simulator's control port"),
        ]
    busy = [f"{host}:{port} ({what})" for host, port, what in wanted if port_busy(host, port)]
    if busy:
        hint = (
            f"a stack started from {running[0].root} runs: `just down` stops it"
            if running
            else "is another stack running (`just down`)?"
        )
        raise StackError(
            "ports already in use: " + ", ".join(busy) + f"; {hint} Otherwise set the "
            "port's variable (KTRDR_NATS_URL, KTRDR_IB_PORT, KTRDR_API_PORT) or flag "
            "(--monitor-port, --sim-control-port) to a free one"
        )


def _clear_run_files(layout: Layout, names: Iterable[str]) -> None:
    for name in names:
        for suffix in (".pid", ".exit"):
            (layout.run / f"{name}{suffix}").unlink(missing_ok=True)
    for name in (STOP_TIMEOUT, STOPPED):
        (layout.run / name).unlink(missing_ok=True)


def _rotate_logs(layout: Layout, names: Iterable[str]) -> None:
    """Keep the previous run's log of each process as ``<name>.log.1``."""
    for name in names:
        log = layout.logs / f"{name}.log"
        if log.exists():
            log.replace(log.with_suffix(".log.1"))


def _start_supervisor(config: StackConfig, layout: Layout) -> subprocess.Popen[bytes]:
    """Start ``stack.py _serve`` in the background: it starts and holds the processes."""
    command = [sys.executable, str(Path(__file__).resolve()), "_serve", config_json(config)]
    with (layout.logs / f"{SUPERVISOR}.log").open("ab") as log:
        # A session of its own: Ctrl-C in the terminal that ran `just up` does not reach it.
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def config_json(config: StackConfig) -> str:
    """Return ``config`` as JSON (``config_from_json`` reads it back)."""
    fields = asdict(config)
    fields["data_dir"] = str(config.data_dir)
    return json.dumps(fields)


# -- the supervisor ---------------------------------------------------------------------------


def serve(config: StackConfig) -> int:
    """Start every process of the stack, hold them, and stop them in order on SIGTERM.

    Each process gets its log (``logs/<name>.log``), its pid file and, once it ends,
    its exit status (``run/<name>.pid``, ``run/<name>.exit``); one that exits on its
    own is left exited, so that ``up`` can name it and ``down`` stops the rest. On
    SIGTERM (``down``) it stops the services, then the simulator, then NATS, each
    group within the timeout ``down`` wrote to ``run/stop-timeout``, and writes what it
    had to force to ``run/stopped.json``.
    """
    layout = Layout(config.data_dir)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.set())
    children = {
        name: ChildProcess(name, argv, env, layout.logs / f"{name}.log", run_dir=layout.run)
        for name, (argv, env) in processes(config, layout, os.environ).items()
    }
    for child in children.values():
        child.start()
    print(f"ktrdr: started {', '.join(children)}", flush=True)
    while not stopping.wait(1.0):
        pass
    timeout_s = _read_float(layout.run / STOP_TIMEOUT) or 60.0
    print(f"ktrdr: stopping (services, then the simulator, then NATS; {timeout_s:.0f} s each)")
    stop_in_order(children, timeout_s)
    problems = [problem for child in children.values() for problem in child.problems]
    (layout.run / STOPPED).write_text(json.dumps(problems) + "\n", encoding="utf-8")
    print("ktrdr: stopped", flush=True)
    return 0


def processes(
    config: StackConfig, layout: Layout, environ: Mapping[str, str]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Return each process's command line and environment, in the order they start.

    The services read the usual ``KTRDR_*`` settings of ``environ``, with this stack's
    NATS URL, gateway port and data directory; in secure mode each connects as its own
    NATS user, and nats-server gets the users' hashes and its TLS files.
    """
    base = {
        **environ,
        "KTRDR_NATS_URL": config.nats_url,
        "KTRDR_IB_PORT": str(config.ib_port),
        "KTRDR_DATA_DIR": str(config.data_dir),
        "PYTHONUNBUFFERED": "1",
    }
    nats = nats_command(
        config.nats_port,
        config.data_dir / "nats",
        config=NATS_CONF[config.secure],
        monitor_port=config.monitor_port or 0,  # -m 0: no monitoring
    )
    found = {"nats": (nats, {**base, **_secure(config, layout, "nats")})}
    if not config.ib_host:
        sim = sim_command(config.ib_port, config.sim_control_port, config.sim_time_scale)
        found["sim"] = (sim, base)
    for name in SERVICES:
        found[name] = (service_command(name), {**base, **_secure(config, layout, name)})
    return found


def _secure(config: StackConfig, layout: Layout, name: str) -> dict[str, str]:
    """Return what secure mode adds to ``name``'s environment (nothing in open mode)."""
    if not config.secure:
        return {}
    if name == "nats":
        return nats_server_env(layout.secrets)
    return user_env(layout.secrets, name)


def _write_state(layout: Layout, config: StackConfig, supervisor_pid: int) -> None:
    state = {
        "pid": supervisor_pid,
        "processes": config.processes,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nats_url": config.nats_url,
        **asdict(config),
    }
    state["data_dir"] = str(config.data_dir)
    layout.state_file.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def _gone(layout: Layout, supervisor: subprocess.Popen[bytes], name: str) -> str | None:
    status = layout.exit_status(name)
    if status is not None:
        return f"{name} exited with status {status}"
    if supervisor.poll() is not None:
        return (
            f"the stack's supervisor exited with status {supervisor.returncode} "
            f"(see {layout.logs}/{SUPERVISOR}.log)"
        )
    return None


def _report_failure(layout: Layout, result: Readiness) -> None:
    for name, why in result.missing.items():
        print(f"ktrdr: {name} is NOT UP: {why}", file=sys.stderr)
        log = layout.logs / f"{name}.log"
        tail = log_tail(log, LOG_TAIL_LINES) or "(no log)"
        print(f"---- last lines of {log} ----\n{tail}\n----", file=sys.stderr)
    print("ktrdr: stopping what did start; the logs stay in " + str(layout.logs), file=sys.stderr)


def _print_summary(
    config: StackConfig, layout: Layout, result: Readiness, elapsed_s: float
) -> None:
    mode = "secure: one NATS user per service, TLS" if config.secure else "open NATS on loopback"
    monitoring = (
        f"monitoring http://127.0.0.1:{config.monitor_port}"
        if config.monitor_port
        else "no monitoring port: --monitor-port N turns it on"
    )
    if config.ib_host:
        gateway = f"real IB Gateway/TWS at {config.ib_host}:{config.ib_port} (KTRDR_IB_HOST)"
    else:
        gateway = (
            f"IB Gateway simulator on 127.0.0.1:{config.ib_port} "
            f"(control http://127.0.0.1:{config.sim_control_port})"
        )
    versions = ", ".join(f"{n} {p.get('version', '?')}" for n, p in result.answered.items())
    api = f"http://{config.api_host}:{config.api_port}"
    lines = [
        f"ktrdr: the stack is up in {elapsed_s:.1f} s ({mode})",
        f"  NATS      {config.nats_url}  ({monitoring})",
        f"  gateway   {gateway}",
        f"  api       {api}  (OpenAPI docs {api}/schema)",
        f"  services  {versions}: each answers $SRV.PING",
        f"  data      {config.data_dir / 'bars'} (Parquet), {config.data_dir / 'nats'} (JetStream)",
        f"  logs      {layout.logs}/<process>.log",
        f"  state     {layout.state_file}",
    ]
    if config.secure:
        s = layout.secrets
        lines += [
            f"  secrets   {s}/ (passwords, CA, certificates)",
            f"  as admin  export KTRDR_NATS_USER=admin KTRDR_NATS_PASSWORD_FILE={s}/admin.password"
            f" KTRDR_NATS_TLS_CA={s}/ca.pem KTRDR_NATS_TLS_CERT={s}/admin.pem"
            f" KTRDR_NATS_TLS_KEY={s}/admin-key.pem",
            f'  nats CLI  nats -s {config.nats_url} --user admin --password "$(cat '
            f'{s}/admin.password)" --tlsca {s}/ca.pem --tlscert {s}/admin.pem'
            f" --tlskey {s}/admin-key.pem ...",
        ]
    lines.append("  stop      just down")
    print("\n".join(lines))


# -- down ---------------------------------------------------------------------------------


def down(layout: Layout, timeout_s: float, registry: Registry, quiet: bool = False) -> int:
    """Stop services, then the simulator and NATS, then the supervisor; return the exit status.

    The supervisor gives each group SIGTERM and ``timeout_s`` to exit; what is still
    there then is killed and reported, and so is what a process left behind in its
    process group. The status is 1 when anything had to be killed or a service exited
    with an error.
    """
    if not layout.running():
        registry.forget(layout)
        if not quiet:
            print(f"ktrdr: the stack is not running (KTRDR_DATA_DIR={layout.root})")
        return 0
    problems: list[str] = []
    supervisor = _supervisor_pid(layout)
    if _alive(supervisor):
        assert supervisor is not None
        (layout.run / STOP_TIMEOUT).write_text(f"{timeout_s}\n", encoding="utf-8")
        _signal(supervisor, signal.SIGTERM)
        budget = timeout_s * len(STOP_ORDER) + 30.0
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and _alive(supervisor):
            time.sleep(0.05)  # not our child (unless `up` failed): all we can do is look
        if _alive(supervisor):
            _signal(supervisor, signal.SIGKILL)
            problems.append(f"the supervisor (pid {supervisor}) did not stop in {budget:.0f} s")
        problems += _read_problems(layout)
    problems += _kill_orphans(layout)
    statuses = {n: layout.exit_status(n) for group in STOP_ORDER for n in group}
    problems += [f"{n} exited with status {s}" for n, s in statuses.items() if s not in (None, 0)]
    layout.state_file.unlink(missing_ok=True)
    registry.forget(layout)
    if not quiet:
        stopped = ", ".join(f"{n} ({s})" for n, s in statuses.items() if s is not None)
        print(f"ktrdr: stopped {stopped}" if stopped else "ktrdr: stopped")
    for problem in problems:
        print(f"ktrdr: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _read_problems(layout: Layout) -> list[str]:
    try:
        found = json.loads((layout.run / STOPPED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(problem) for problem in found] if isinstance(found, list) else []


def _kill_orphans(layout: Layout) -> list[str]:
    """SIGKILL the process group of each process still running without its supervisor."""
    problems = []
    for name in (n for group in STOP_ORDER for n in group):
        pid = layout.pid(name)
        if not _alive(pid):
            continue
        assert pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        problems.append(f"{name} (pid {pid}) ran without its supervisor: killed")
    return problems


# -- status -------------------------------------------------------------------------------


def status(layout: Layout) -> int:
    """Print each process's state; return 0 when the stack runs and all processes are alive."""
    try:
        state = json.loads(layout.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(f"ktrdr: the stack is not running (KTRDR_DATA_DIR={layout.root})")
        return 1
    healthy = _alive(state.get("pid"))
    print(
        f"ktrdr: supervisor pid {state.get('pid')} {'running' if healthy else 'GONE'}, "
        f"started {state.get('started')}, secure={state.get('secure')}"
    )
    for name in state.get("processes", []):
        pid, exit_status = layout.pid(name), layout.exit_status(name)
        if exit_status is not None:
            line, healthy = f"exited with status {exit_status}", False
        elif _alive(pid):
            line = f"running (pid {pid})"
        else:
            line, healthy = "not running", False
        print(f"  {name:<13} {line}")
    return 0 if healthy else 1


# -- helpers ------------------------------------------------------------------------------


def _supervisor_pid(layout: Layout) -> int | None:
    try:
        pid = json.loads(layout.state_file.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError):
        return None
    return int(pid) if pid else None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _read_float(path: Path) -> float | None:
    try:
        return float(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:  # the supervisor is our child when `up` stops what it started: reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command; return its exit status."""
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_cmd = commands.add_parser("up", help="start the stack in the background")
    up_cmd.add_argument("--secure", action="store_true", help="one NATS user per service")
    up_cmd.add_argument("--timeout", type=float, default=90.0, help="readiness wait, seconds")
    up_cmd.add_argument(
        "--monitor-port",
        type=int,
        help="NATS monitoring on 127.0.0.1 (default: NATS + 4000; with "
        "--secure: off unless given; 0: off)",
    )
    up_cmd.add_argument("--sim-control-port", type=int, help="default: KTRDR_IB_PORT + 1")
    down_cmd = commands.add_parser("down", help="stop the stack (services first)")
    down_cmd.add_argument("--timeout", type=float, default=60.0, help="per group, seconds")
    commands.add_parser("status", help="show each process")
    commands.add_parser("secrets", help="create data/secrets (passwords, nats.env)")
    serve_cmd = commands.add_parser("_serve", help="(up's background supervisor)")
    serve_cmd.add_argument("config", help="the stack's configuration, as JSON")
    args = parser.parse_args(argv)
    if args.command == "_serve":
        return serve(config_from_json(args.config))
    env = os.environ
    layout = Layout(Path(env.get("KTRDR_DATA_DIR", "data")).resolve())
    registry = Registry(Path(env.get("STACK_REGISTRY_DIR") or REGISTRY))
    try:
        if args.command == "up":
            config = load_config(env, args.secure, args.monitor_port, args.sim_control_port)
            return up(config, args.timeout, registry)
        if args.command in ("down", "status"):
            layout, note = locate(layout, registry)
            if note:
                print(f"ktrdr: {note}")
            if args.command == "down":
                return down(layout, args.timeout, registry)
            return status(layout)
        ensure_secrets(layout.secrets, tls_hosts(env))
        print(f"ktrdr: secrets in {layout.secrets} (passwords are not printed)")
        return 0
    except StackError as e:
        print(f"ktrdr: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
