"""A damaged dataset through the gateway: listed with ``damaged``, its bars and coverage 409.

The real data-store on real Parquet files, one of which is truncated on disk; every other
dataset answers as usual, through REST and through ``ktrdr data ls``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.integration

HOUR = 3600 * 10**9
T0 = 1_718_607_600 * 10**9  # 2024-06-17 07:00 UTC
BAD = "bars/AAPL/1h/2024.parquet"


def seed(data_dir: Path) -> None:
    """Store ten hourly bars of AAPL and of MSFT, then truncate AAPL's year file."""
    table = pa.Table.from_pylist(
        [
            {"ts": T0 + i * HOUR, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
            for i in range(10)
        ],
        schema=SCHEMA,
    )
    store = ParquetBarStore(data_dir)
    for symbol in ("AAPL", "MSFT"):
        store.merge(symbol, Timeframe.H1, table)
    bad = data_dir / BAD
    bad.write_bytes(bad.read_bytes()[:64])


@pytest.fixture
async def damaged(data_dir: Path, data_store: ServiceApp) -> ServiceApp:
    seed(data_dir)
    return data_store


async def test_the_listing_marks_only_the_damaged_dataset(
    damaged: ServiceApp, http: httpx.AsyncClient
) -> None:
    for params in ({}, {"coverage": "true"}):
        response = await http.get("/api/v1/data", params=params)
        assert response.status_code == 200, response.text
        listed = {d["symbol"]: d for d in response.json()["datasets"]}
        assert set(listed) == {"AAPL", "MSFT"}
        assert listed["AAPL"]["damaged"].startswith(f"{BAD}: ")
        assert listed["MSFT"].get("damaged") is None
        assert listed["MSFT"]["rows"] == 10
    assert listed["MSFT"]["coverage"]["rows"] == 10
    assert listed["AAPL"].get("coverage") is None


@pytest.mark.parametrize("path", ["/api/v1/data/AAPL/1h", "/api/v1/data/AAPL/1h/coverage"])
async def test_bars_and_coverage_of_the_damaged_dataset_are_409_naming_the_file(
    damaged: ServiceApp, http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "dataset_damaged"
    assert BAD in problem["detail"]
    assert "move the file aside" in problem["detail"]
    assert (await http.get(path.replace("AAPL", "MSFT"))).status_code == 200


async def test_ktrdr_data_ls_shows_the_damage(damaged: ServiceApp, api_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")} | {"COLUMNS": "300"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_api.cli",
        "--url",
        api_url,
        "data",
        "ls",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert "damaged" in lines[1]
    assert any("AAPL" in line and BAD in line for line in lines)
    assert all(BAD not in line for line in lines if "MSFT" in line)
