"""`just demo` end to end: the README's "run the system" command, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_loads_three_markets_trains_and_stops_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    done = subprocess.run(
        [sys.executable, "infra/scripts/demo.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    for symbol in ("AAPL", "EURUSD", "ES"):
        assert f"load {symbol}: completed" in out, out[-3000:]
    assert "test accuracy" in out
    assert "stopped everything (cleanly)" in out
    assert (ROOT / "data" / "demo" / "report.png").stat().st_size > 0
    assert list((ROOT / "data" / "demo" / "data" / "bars").glob("*/1h/*.parquet"))
