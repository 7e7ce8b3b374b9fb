"""A newcomer's first hour (issue 16): the justfile, the README's setup and ports, the demo.

Each test here follows one surprise a newcomer hit: `ktrdr` not found after
`just up`, the README's duckdb example failing, `just down` not finding a
stack started with another KTRDR_DATA_DIR, a port `just up` takes but the
README does not list, a `just --list` line cut to its second half, and a demo
summary that showed a Sharpe of 7.4 for a model worse than the baseline.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "infra" / "scripts"
README = ROOT / "README.md"
JUST = shutil.which("just")
needs_just = pytest.mark.skipif(JUST is None, reason="no `just` here (pip install rust-just)")


def load_script(name: str) -> ModuleType:
    """Import ``infra/scripts/<name>.py`` (they import each other as top-level modules)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(f"ktrdr_script_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def readme_section(title: str) -> str:
    """Return the text of the README section ``## <title>``, up to the next one."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def just(*args: str) -> subprocess.CompletedProcess[str]:
    assert JUST is not None
    return subprocess.run([JUST, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


# -- (1) the CLI after `just up` ------------------------------------------------------------


@needs_just
@pytest.mark.integration
def test_just_ktrdr_runs_the_cli_with_its_arguments() -> None:
    done = just("ktrdr", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage: ktrdr" in done.stdout.lower()
    assert "status" in done.stdout


@pytest.mark.unit
def test_the_readme_says_how_to_run_the_cli_where_just_up_is_introduced() -> None:
    section = readme_section("The two commands")
    assert "just ktrdr status" in section
    assert "source .venv/bin/activate" in section


# -- (2) the README's duckdb example ---------------------------------------------------------


@pytest.mark.unit
def test_setup_installs_duckdb_pinned() -> None:
    pins = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert re.search(r"^duckdb==\d", pins, re.MULTILINE), "duckdb: not pinned in requirements-dev"


@pytest.mark.integration
def test_the_readmes_parquet_example_runs(tmp_path: Path) -> None:
    import pandas as pd

    [block] = [
        b
        for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
        if "read_parquet" in b
    ]
    stored = tmp_path / "data/bars/AAPL/1h"
    stored.mkdir(parents=True)
    ts = pd.date_range("2024-06-24 13:30", periods=48, freq="1h", tz="UTC")
    bars = pd.DataFrame(
        {"ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 100.0}
    )
    bars.to_parquet(stored / "2024.parquet", index=False)
    # Run the block as a notebook would, in the directory its paths are relative to, and
    # show its last expression (a duckdb relation runs its query when it is shown).
    program = ast.parse(block)
    last = program.body[-1]
    assert isinstance(last, ast.Expr), "the example ends with the query it shows"
    script = "\n".join(
        [
            ast.unparse(ast.Module(program.body[:-1], [])),
            f"shown = ({ast.unparse(last.value)}).fetchall()",
            "print(len(bars), len(shown), {row[1] for row in shown})",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    count, days, highs = done.stdout.split(" ", 2)
    assert int(count) == 48
    assert 2 <= int(days) <= 3  # 48 hours from 13:30 UTC span three days (two or three local)
    assert highs.strip() == "{2.0}"


# -- (3) `just down` finds the stack; every port `just up` takes is listed ------------------


@pytest.mark.unit
def test_the_readme_lists_every_port_just_up_takes_and_its_variable() -> None:
    stack = load_script("stack")
    config = stack.load_config({}, False, None, None)
    section = readme_section("The two commands")
    ports = {
        config.nats_port,
        config.monitor_port,
        config.ib_port,
        config.sim_control_port,
        config.api_port,
    }
    missing = [port for port in sorted(ports) if str(port) not in section]
    assert missing == [], f"the README's `just up` paragraph omits ports {missing}"
    for variable in (
        "KTRDR_NATS_URL",
        "KTRDR_IB_PORT",
        "KTRDR_API_PORT",
        "--monitor-port",
        "--sim-control-port",
    ):
        assert variable in section


@pytest.mark.unit
def test_down_finds_the_one_stack_running_from_another_data_dir(tmp_path: Path) -> None:
    stack = load_script("stack")
    registry = stack.Registry(tmp_path / "registry")
    running = stack.Layout(tmp_path / "started-here")
    running.run.mkdir(parents=True)
    # This test's own process stands in for the supervisor: alive while the test runs.
    running.state_file.write_text(json.dumps({"pid": os.getpid()}))
    registry.record(running, os.getpid())
    elsewhere = stack.Layout(tmp_path / "data")

    found, note = stack.locate(elsewhere, registry)
    assert found.root == running.root
    assert str(running.root) in note and str(elsewhere.root) in note
    assert stack.locate(running, registry) == (running, None)

    stopped = stack.Layout(tmp_path / "stopped")  # recorded, but nothing runs there
    registry.record(stopped, 2**22 + 1)
    assert [layout.root for layout in registry.running()] == [running.root]

    registry.record(elsewhere, os.getpid())  # the same "supervisor" from two data dirs
    elsewhere.run.mkdir(parents=True)
    elsewhere.state_file.write_text(json.dumps({"pid": os.getpid()}))
    with pytest.raises(stack.StackError, match="KTRDR_DATA_DIR"):
        stack.locate(stack.Layout(tmp_path / "third"), registry)


# -- (4) `just --list` ----------------------------------------------------------------------


def recipe_docs(justfile: str) -> dict[str, list[str]]:
    """Return each public recipe's comment block: the comment lines right above it."""
    docs: dict[str, list[str]] = {}
    comments: list[str] = []
    for line in justfile.splitlines():
        if line.startswith("#"):
            comments.append(line)
            continue
        if line.startswith("["):  # an attribute sits between a recipe and its doc comment
            continue
        match = re.match(r"([a-z][\w-]*)(\s[^:=]*)?:(?!=)", line)
        if match:
            docs[match[1]] = comments
        comments = []
    return docs


@pytest.mark.unit
def test_every_recipe_has_a_one_line_doc_comment() -> None:
    docs = recipe_docs((ROOT / "justfile").read_text(encoding="utf-8"))
    assert {"up", "down", "demo", "ktrdr", "declare"} <= set(docs)
    long = {name: lines for name, lines in docs.items() if len(lines) != 1}
    # `just --list` shows only the last of several lines: the reader gets half a sentence.
    assert long == {}, f"recipes whose doc comment is not exactly one line: {long}"


@needs_just
@pytest.mark.integration
def test_just_list_shows_a_whole_sentence_for_every_recipe() -> None:
    listing = just("--list")
    assert listing.returncode == 0, listing.stderr
    described = dict(re.findall(r"^\s+(\S+)[^#\n]*# (.*)$", listing.stdout, re.MULTILINE))
    assert {"up", "down", "demo", "ktrdr"} <= set(described)
    for recipe, text in described.items():
        assert re.match(r"[A-Z]", text), f"{recipe}: {text!r} does not start a sentence"
        assert text.endswith("."), f"{recipe}: {text!r} is not a whole sentence"
    assert described["demo"].startswith("Start"), described["demo"]  # what it does first


# -- (11) the demo's summary -----------------------------------------------------------------


def model(accuracy: float, baseline: float, sharpe: float) -> dict[str, Any]:
    return {
        "model_id": "m1",
        "device": "cpu",
        "metrics": {
            "accuracy": accuracy,
            "majority_baseline_accuracy": baseline,
            "majority_class": "hold",
            "macro_f1": 0.3,
            "split_samples": {"train": 700, "validation": 150, "test": 150},
            "backtest": {
                "bars": 149,
                "costs": "none (signals only)",
                "strategy": {"total_return": 0.05, "sharpe": sharpe},
                "buy_and_hold": {"total_return": 0.01, "sharpe": 0.4},
            },
        },
    }


@pytest.mark.unit
def test_the_summary_says_when_the_model_does_not_beat_the_baseline() -> None:
    demo = load_script("demo")
    text = "\n".join(demo.model_lines(model(0.40, 0.448, 7.4)))
    assert (
        "the model does not beat always predicting the most common class "
        "(0.400 < 0.448): treat its backtest as noise"
    ) in text
    assert "7.400" in text
    assert "test split" in text and "no costs" in text  # what the Sharpe is computed on


@pytest.mark.unit
def test_the_summary_of_a_model_that_beats_the_baseline_has_no_such_warning() -> None:
    demo = load_script("demo")
    text = "\n".join(demo.model_lines(model(0.52, 0.448, 1.1)))
    assert "does not beat" not in text
    assert "beats always predicting the most common class (0.520 > 0.448)" in text
    assert "test split" in text and "no costs" in text
