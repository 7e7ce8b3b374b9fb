"""The launcher's processes for real: stopping in order, exit statuses, what a crash leaves."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from ktrdr_shared.stack import ChildProcess, stop_in_order

pytestmark = pytest.mark.integration

# A stand-in for a process of the stack: says it is ready, and on SIGTERM notes its name
# in a shared file and exits 0 (a service that drains).
DRAINS = """
import pathlib, signal, sys, time
name, notes, ready = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
def stop(*_):
    with notes.open("a") as f:
        f.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
ready.write_text("ready")
while True:
    time.sleep(60)
"""

# A process that forks a child into its own process group, says so, and waits.
FORKS = """
import pathlib, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pathlib.Path(sys.argv[1]).write_text(str(child.pid))
while True:
    time.sleep(60)
"""


def wait_for(path: Path, timeout_s: float = 30.0) -> str:
    """Return ``path``'s text once a child wrote it (it runs in another process)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} was not written in {timeout_s} s"
        time.sleep(0.01)
    return path.read_text()


def alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie no init has reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_services_stop_before_the_simulator_and_nats_last(tmp_path: Path) -> None:
    notes = tmp_path / "stopped"
    children = {}
    for name in ("nats", "sim", "data-store", "api"):
        ready = tmp_path / f"{name}.ready"
        argv = [sys.executable, "-c", DRAINS, name, str(notes), str(ready)]
        child = ChildProcess(
            name, argv, dict(os.environ), tmp_path / f"{name}.log", run_dir=tmp_path
        )
        child.start()
        children[name] = (child, ready)
    for child, ready in children.values():
        wait_for(ready)
        assert (tmp_path / f"{child.name}.pid").read_text().strip() == str(child.proc.pid)  # type: ignore[union-attr]

    codes = stop_in_order({name: child for name, (child, _) in children.items()}, timeout_s=20)

    assert codes == {"data-store": 0, "api": 0, "sim": 0, "nats": 0}
    order = notes.read_text().split()
    assert sorted(order[:2]) == ["api", "data-store"]
    assert order[2:] == ["sim", "nats"]
    for name in children:
        assert (tmp_path / f"{name}.exit").read_text().strip() == "0"
        assert not (tmp_path / f"{name}.pid").exists()
        assert f"ktrdr: {name} exited with status 0" in (tmp_path / f"{name}.log").read_text()
    assert all(not child.problems for child, _ in children.values())


def test_a_killed_process_reads_137_and_what_it_left_behind_is_killed(tmp_path: Path) -> None:
    forked = tmp_path / "forked"
    argv = [sys.executable, "-c", FORKS, str(forked)]
    child = ChildProcess("api", argv, dict(os.environ), tmp_path / "api.log", run_dir=tmp_path)
    child.start()
    orphan = int(wait_for(forked))
    assert child.proc is not None
    os.kill(child.proc.pid, signal.SIGKILL)  # a crash: its child is orphaned in its group

    assert child.stop(timeout_s=10) == -signal.SIGKILL
    assert (tmp_path / "api.exit").read_text().strip() == "137"
    assert child.gone() == "api exited with status 137"
    assert child.problems == ["api left processes behind (process group): killed"]
    deadline = time.monotonic() + 10
    while alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.01)  # SIGKILLed; init reaps it
    assert not alive(orphan)


def test_a_restart_records_the_new_pid_and_no_stale_exit(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    argv = [sys.executable, "-c", DRAINS, "sim", str(tmp_path / "stopped"), str(ready)]
    child = ChildProcess("sim", argv, dict(os.environ), tmp_path / "sim.log", run_dir=tmp_path)
    child.start()
    wait_for(ready)
    ready.unlink()
    child.restart()  # SIGKILL: its status is recorded before the new start
    wait_for(ready)
    assert child.proc is not None and child.starts == 2
    assert (tmp_path / "sim.pid").read_text().strip() == str(child.proc.pid)
    assert not (tmp_path / "sim.exit").exists()
    assert "ktrdr: sim exited with status 137" in (tmp_path / "sim.log").read_text()
    assert child.stop(timeout_s=10) == 0
    assert (tmp_path / "sim.exit").read_text().strip() == "0"
