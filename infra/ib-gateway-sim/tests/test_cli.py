"""``python -m ktrdr_ib_sim`` serves ib_async and its control port, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import pytest
from ib_async import IB, Stock

pytestmark = pytest.mark.integration


async def test_cli_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_ib_sim",
        "--port",
        "0",
        "--control-port",
        "0",
        "--now",
        "2024-07-01T16:00:00Z",
        "--time-scale",
        "0.01",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+), control on http://[\d.]+:(\d+)", line)
        assert match, line
        ib = IB()
        await ib.connectAsync("127.0.0.1", int(match.group(1)), clientId=3, timeout=5)
        bars = await ib.reqHistoricalDataAsync(
            Stock("AAPL", "SMART", "USD"), "20240628-20:00:00", "1 D", "1 day", "TRADES", True
        )
        ib.disconnect()
        assert len(bars) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


def test_bad_flags_are_refused_with_a_reason(capsys) -> None:
    from ktrdr_ib_sim.__main__ import main

    with pytest.raises(SystemExit) as caught:
        main(["--bar-tz", "Mars/Olympus"])
    assert "bar_tz" in str(caught.value)
