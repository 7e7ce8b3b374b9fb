"""POST /api/v1/data/{symbol}/{timeframe}/repair and ``ktrdr data repair`` on the real data-store.

A dataset with a truncated year file: the repair moves it under ``damaged/``, forgets its
answered range, sends the reload (a ``LoadData`` caught on the wire) and answers 202 with the
job's links; a sound dataset answers with nothing done, an unknown one 404.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import LoadData
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import LoadMode, Timeframe
from nats.aio.client import Client as NATS

pytestmark = pytest.mark.integration

HOUR = 3600 * 10**9
T0 = 1_718_607_600 * 10**9  # 2024-06-17 07:00 UTC
BAD = "bars/AAPL/1h/2024.parquet"


def seed(data_dir: Path) -> None:
    """Store ten hourly bars of AAPL and MSFT, answered, then truncate AAPL's year file."""
    table = pa.Table.from_pylist(
        [
            {"ts": T0 + i * HOUR, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
            for i in range(10)
        ],
        schema=SCHEMA,
    )
    store, ledger = ParquetBarStore(data_dir), AnsweredLedger(data_dir)
    for symbol in ("AAPL", "MSFT"):
        store.merge(symbol, Timeframe.H1, table)
        ledger.add(symbol, Timeframe.H1, [(T0, T0 + 10 * HOUR)])
    bad = data_dir / BAD
    bad.write_bytes(bad.read_bytes()[:64])


async def ktrdr(api_url: str, *args: str) -> tuple[int, str, str]:
    """Run ``ktrdr --url <api> ARGS`` as a real process, to its end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")} | {"COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_api.cli",
        "--url",
        api_url,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_repair_moves_forgets_and_starts_the_reload(
    data_dir: Path, data_store: ServiceApp, http: httpx.AsyncClient, nc: NATS
) -> None:
    seed(data_dir)
    damaged = await http.get("/api/v1/data/AAPL/1h")
    assert damaged.status_code == 409
    assert "`ktrdr data repair AAPL 1h`" in damaged.json()["detail"]
    commands = await nc.subscribe(subjects.CMD_DATA_LOAD)

    response = await http.post("/api/v1/data/AAPL/1h/repair")
    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["job_id"]
    assert body == {
        "symbol": "AAPL",
        "timeframe": "1h",
        "moved": [BAD],
        "forgotten": [{"start": "2024-06-17T07:00:00Z", "end": "2024-06-17T17:00:00Z"}],
        "job_id": job_id,
        "links": {
            "self": f"/api/v1/jobs/{job_id}",
            "events": f"/api/v1/jobs/{job_id}/events",
            "cancel": f"/api/v1/jobs/{job_id}/cancel",
        },
    }
    assert response.headers["location"] == f"/api/v1/jobs/{job_id}"
    [kept] = (data_dir / "damaged").glob(f"*/{BAD}")
    assert not (data_dir / BAD).exists() and kept.stat().st_size == 64
    msg = await commands.next_msg(timeout=10)
    command = codec.decode(msg.data, LoadData, headers=msg.headers)
    assert (command.job_id, command.symbol, command.mode) == (job_id, "AAPL", LoadMode.FULL)
    # it reads again: no longer damaged, and empty (its only year moved) until the reload runs
    emptied = await http.get("/api/v1/data/AAPL/1h")
    assert emptied.status_code == 404, emptied.text
    assert emptied.json()["detail"] == "nothing is stored for AAPL 1h"

    nothing = await http.post("/api/v1/data/MSFT/1h/repair")
    assert nothing.status_code == 202
    assert nothing.json() == {
        "symbol": "MSFT",
        "timeframe": "1h",
        "moved": [],
        "forgotten": [],
        "job_id": None,
        "links": None,
    }
    unknown = await http.post("/api/v1/data/NOPE/1h/repair")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"


async def test_ktrdr_data_repair_prints_what_it_did(
    data_dir: Path, data_store: ServiceApp, api_url: str
) -> None:
    seed(data_dir)
    code, out, err = await ktrdr(api_url, "data", "repair", "AAPL", "1h", "--detach")
    assert code == 0, err
    assert f"moved {BAD}" in out
    assert "forgot answered 2024-06-17T07:00:00Z .. 2024-06-17T17:00:00Z" in out
    assert "reload job " in out
    code, out, err = await ktrdr(api_url, "data", "repair", "AAPL", "1h", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "symbol": "AAPL",
        "timeframe": "1h",
        "moved": [],
        "forgotten": [],
        "job_id": None,
        "links": None,
    }
    code, out, err = await ktrdr(api_url, "data", "repair", "NOPE", "1h")
    assert code != 0 and "NOPE" in err
