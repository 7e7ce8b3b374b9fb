"""`just demo` end to end: the README's "run the system" command, as a user runs it.

It runs with ``--keep``: after the summary the stack stays up with the web console's URL
printed; the test opens the console there, then presses Ctrl-C (SIGINT) and requires the
same clean stop as without it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STAYS_UP = re.compile(r"stays up \(--keep\): web console (http://\S+/) ")


def test_the_demo_loads_three_markets_trains_keeps_the_console_up_and_stops_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    demo = subprocess.Popen(
        [sys.executable, "infra/scripts/demo.py", "--keep"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    up = threading.Event()
    console: list[str] = []

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if found := STAYS_UP.search(line):
                console.append(found[1])
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert up.wait(240), "".join(lines)[-3000:]
        with urllib.request.urlopen(console[0], timeout=10) as page:
            assert page.status == 200
            assert "<title>ktrdr console</title>" in page.read().decode()
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
        reader.join(10)
    out = "".join(lines)
    assert code == 0, out[-3000:]
    for symbol in ("AAPL", "EURUSD", "ES"):
        assert f"load {symbol}: completed" in out, out[-3000:]
    assert "test accuracy" in out
    assert "web console: http://127.0.0.1:" in out
    assert "stopped everything (cleanly)" in out, out[-3000:]
    assert (ROOT / "data" / "demo" / "report.png").stat().st_size > 0
    assert list((ROOT / "data" / "demo" / "data" / "bars").glob("*/1h/*.parquet"))
