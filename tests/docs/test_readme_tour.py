"""The README's "five-minute tour", typed as written against a real `just up` stack.

Every ```bash and ```python block of the tour runs, in order, against the stack
`infra/scripts/stack.py up` starts (the simulator as the gateway) on free ports
with its data in a temporary directory. The only rewrites are the ones a
reader makes: the API's port (``localhost:8000``) and the ``<job_id>`` the
first load printed. A README command that stops working, or prints something a
newcomer would misread (a traceback, an error status, an empty value, ``None``,
a CLI line wider than 80 columns), fails the build.

The `nats` lines run through ``natscli.py`` (a stand-in put on PATH as
``nats``): the real CLI is a Go binary that cannot be installed here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ktrdr_shared.testing.nats_server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
STACK = ROOT / "infra/scripts/stack.py"
VENV_BIN = Path(sys.executable).parent
STREAMING = ("nats sub", "/events")  # lines that follow live traffic: run for a while, then stop
CLI_WIDTH = 80


def tour_blocks(readme: str) -> list[tuple[str, str]]:
    """Return the tour's fenced blocks as (language, code), in order."""
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(bash|python)\n(.*?)```", section, re.S)


def shell_commands(block: str) -> list[str]:
    """Split a bash block into commands (continuation lines joined, blank lines dropped)."""
    joined = re.sub(r"\s*\\\n\s*", " ", block)
    lines = [line for line in joined.splitlines() if line.strip()]
    return [line for line in lines if not line.lstrip().startswith("#")]


@dataclass
class Tour:
    """A running stack and what the tour learnt on the way (the job id it will need)."""

    env: dict[str, str]
    workdir: Path
    api_port: str
    job_id: str | None = None
    ran: list[str] = field(default_factory=list)

    def prepare(self, command: str) -> str:
        """Rewrite what a reader would: the API's port and the job id printed earlier."""
        command = command.replace("localhost:8000", f"localhost:{self.api_port}")
        if "<job_id>" in command:
            assert self.job_id, f"no job id printed before {command!r}"
            command = command.replace("<job_id>", self.job_id)
        return command

    def learn(self, output: str) -> None:
        found = re.search(r'"job_id"\s*:\s*"([0-9a-f]{32})"', output)
        if found and self.job_id is None:
            self.job_id = found.group(1)


def free_with(offset: int) -> int:
    """Return a free port whose companion ``port + offset`` is free too (`up` takes both)."""
    while True:
        port = free_port()
        if port + offset < 65536 and _free(port + offset):
            return port


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def tour(tmp_path: Path) -> Iterator[Tour]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nats = bin_dir / "nats"
    nats.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "natscli.py").read_text())
    nats.chmod(0o755)
    nats_url = f"nats://127.0.0.1:{free_with(4000)}"  # monitoring: its port + 4000
    api_port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env.update(
        KTRDR_DATA_DIR=str(tmp_path / "data"),
        KTRDR_NATS_URL=nats_url,
        KTRDR_IB_PORT=str(free_with(1)),
        KTRDR_API_PORT=api_port,
        KTRDR_API_URL=f"http://127.0.0.1:{api_port}",
        NATS_URL=nats_url,
        PATH=f"{bin_dir}:{VENV_BIN}:{env['PATH']}",
        COLUMNS=str(CLI_WIDTH),
    )
    up = subprocess.run(
        [sys.executable, str(STACK), "up"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield Tour(env=env, workdir=tmp_path, api_port=api_port)
    finally:
        subprocess.run(
            [sys.executable, str(STACK), "down"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )


def misreadings(command: str, out: str, err: str) -> list[str]:
    """Return what in a command's output a newcomer would misread or stumble on."""
    found = []
    text = out + err
    if "Traceback" in text:
        found.append("a traceback")
    if re.search(r"\bNone\b", text):
        found.append("'None' printed")
    if command.startswith("curl"):
        try:
            body = json.loads(out)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("status"), int) and body["status"] >= 400:
            found.append(f"an error answer: {body}")
    if command.startswith("ktrdr"):
        for line in out.splitlines():
            if len(line) > CLI_WIDTH:
                found.append(f"a line wider than {CLI_WIDTH} columns: {line!r}")
            if re.fullmatch(r"\s*[A-Za-z_][\w ]*:\s*", line):
                found.append(f"a label with no value: {line!r}")
            if '{"' in line:
                found.append(f"raw JSON where a person reads (--json is for that): {line!r}")
    return found


def run_shell(tour: Tour, command: str) -> str | None:
    prepared = tour.prepare(command)
    tour.ran.append(prepared)
    if any(marker in prepared for marker in STREAMING):
        process = subprocess.Popen(
            ["bash", "-c", prepared],
            env=tour.env,
            cwd=tour.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = process.communicate(timeout=4)
            if process.returncode != 0:
                return f"{prepared}\nexit {process.returncode}\n{out}\n{err}"
        except subprocess.TimeoutExpired:  # still following, as it should
            process.kill()
            out, err = process.communicate()
        if not out.strip():
            return f"{prepared}: printed nothing while it followed\n{err}"
    else:
        done = subprocess.run(
            ["bash", "-c", prepared],
            env=tour.env,
            cwd=tour.workdir,
            capture_output=True,
            text=True,
            timeout=240,
        )
        out, err = done.stdout, done.stderr
        if done.returncode != 0:
            return f"{prepared}\nexit {done.returncode}\n{out}\n{err}"
    tour.learn(out)
    problems = misreadings(prepared, out, err)
    if problems:
        return f"{prepared}\n{problems}\n--- stdout\n{out}\n--- stderr\n{err}"
    return None


def run_python(tour: Tour, code: str) -> str | None:
    if "await " in code:  # the tour shows the body of a coroutine: run it as one
        code = "import asyncio\n\nasync def _tour() -> None:\n" + textwrap.indent(code, "    ")
        code += "\n    globals().update(locals())\n\nasyncio.run(_tour())\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=tour.env,
        cwd=tour.workdir,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0 or "Traceback" in done.stderr:
        return f"{code}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return None


def test_the_readme_tour_runs_as_written(tour: Tour) -> None:
    blocks = tour_blocks(README.read_text())
    assert [lang for lang, _ in blocks].count("bash") >= 3  # REST, CLI, NATS by hand
    failures = []  # every command runs, so one report names every broken line
    for lang, code in blocks:
        if lang == "bash":
            failures += [run_shell(tour, command) for command in shell_commands(code)]
        else:
            failures.append(run_python(tour, code))
    broken = [f for f in failures if f]
    assert not broken, "\n\n=====\n".join(broken)
    assert any(c.startswith("ktrdr ") for c in tour.ran)
    assert any(c.startswith("nats ") for c in tour.ran)


def test_the_tour_parser_sees_every_command() -> None:
    blocks = tour_blocks(
        textwrap.dedent("""
        ## A five-minute tour
        ```bash
        curl -s a \\
             -d b          # comment
        # a whole-line comment

        ktrdr status
        ```
        ```python
        print(1)
        ```
        ## Architecture
        ```bash
        not in the tour
        ```
    """)
    )
    assert [lang for lang, _ in blocks] == ["bash", "python"]
    assert shell_commands(blocks[0][1]) == ["curl -s a -d b          # comment", "ktrdr status"]
