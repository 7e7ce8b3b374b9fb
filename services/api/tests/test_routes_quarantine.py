"""/api/v1/quarantine and ``ktrdr data quarantine`` against the real data-store's quarantine."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_shared import codec
from ktrdr_shared.messages import BarBatch
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import Timeframe, to_unix_nanos
from nats.aio.client import Client as NATS

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 2, tzinfo=UTC)
# planted entries are received "now": the live store prunes entries older than 30 days on its own
# puts, and a released batch that fails again is such a put (CI lost an entry planted in 2024)
RECEIVED = datetime.now(UTC).replace(microsecond=0)
HOUR = 3_600 * 10**9


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


async def test_list_and_delete(
    data_dir: Path, data_store: ServiceApp, api_url: str, http: httpx.AsyncClient
) -> None:
    entry = Quarantine.under(data_dir).put(
        subject="ktrdr.bars.AAPL.1d",
        payload=b"\x81bad",
        code="invalid_bars",
        message="fails non_finite",
        job_id="0123456789abcdef0123456789abcdef",
        received=RECEIVED,
    )
    listed = await http.get("/api/v1/quarantine")
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["entries"]
    assert item == {
        "id": entry,
        "subject": "ktrdr.bars.AAPL.1d",
        "code": "invalid_bars",
        "message": "fails non_finite",
        "job_id": "0123456789abcdef0123456789abcdef",
        "received": RECEIVED.isoformat().replace("+00:00", "Z"),
        "bytes": 4,
        "symbol": "AAPL",
        "timeframe": "1d",
        "start": None,  # the payload does not decode: its window cannot be told
        "end": None,
        "links": {"self": f"/api/v1/quarantine/{entry}"},
    }
    code, out, err = await ktrdr(api_url, "data", "quarantine", "--json")
    assert code == 0, err
    assert [q["id"] for q in json.loads(out)["entries"]] == [entry]
    code, out, err = await ktrdr(api_url, "data", "quarantine")
    assert code == 0, err
    assert entry in out and "invalid_bars" in out
    gone = await http.delete(f"/api/v1/quarantine/{entry}")
    assert gone.status_code == 204, gone.text
    again = await http.delete(f"/api/v1/quarantine/{entry}")
    assert again.status_code == 404
    assert again.headers["content-type"].startswith("application/problem+json")
    assert (await http.delete("/api/v1/quarantine/..%2Fetc")).status_code in (400, 404)
    assert (await http.get("/api/v1/quarantine")).json() == {"entries": []}


async def test_release_republishes_and_the_cli_releases_and_deletes(
    data_dir: Path, data_store: ServiceApp, api_url: str, http: httpx.AsyncClient, nc: NATS
) -> None:
    quarantine = Quarantine.under(data_dir)
    first = quarantine.put(
        subject="ktrdr.bars.AAPL.1d",
        payload=b"\x81bad",
        code="invalid_bars",
        message="fails non_finite",
        received=RECEIVED,
    )
    bars = await nc.subscribe("ktrdr.bars.>")
    released = await http.post(f"/api/v1/quarantine/{first}/release")
    assert released.status_code == 200, released.text
    assert released.json() == {"id": first, "subject": "ktrdr.bars.AAPL.1d"}
    msg = await bars.next_msg(timeout=10)
    assert (msg.subject, msg.data) == ("ktrdr.bars.AAPL.1d", b"\x81bad")
    missing = await http.post(f"/api/v1/quarantine/{'0' * 24}/release")
    assert missing.status_code == 404

    second = quarantine.put(
        subject="ktrdr.bars.MSFT.1d",
        payload=b"\x81other",
        code="invalid_bars",
        message="fails",
        received=RECEIVED,
    )
    code, out, err = await ktrdr(api_url, "data", "quarantine", "release", second)
    assert code == 0, err
    assert f"released {second} on ktrdr.bars.MSFT.1d" in out
    third = quarantine.put(
        subject="ktrdr.bars.IBM.1d",
        payload=b"\x81third",
        code="invalid_bars",
        message="fails",
        received=RECEIVED,
    )
    code, out, err = await ktrdr(api_url, "data", "quarantine", "delete", third)
    assert code == 0, err
    assert quarantine.get(third) is None
    code, out, err = await ktrdr(api_url, "data", "quarantine", "delete", third)
    assert code != 0 and "no quarantined batch" in err


async def test_each_entry_names_its_dataset_and_window_and_the_list_filters_by_them(
    data_dir: Path, data_store: ServiceApp, http: httpx.AsyncClient
) -> None:
    quarantine = Quarantine.under(data_dir)
    start = to_unix_nanos(T0)
    batch = BarBatch(
        symbol="BRK B", timeframe=Timeframe.H1, start=start, end=start + 2 * HOUR,
        ts=[start], open=[1.0], high=[float("inf")], low=[1.0], close=[1.0], volume=[1.0],
    )  # fmt: skip
    kept = quarantine.put(
        subject="ktrdr.bars.BRK_B.1h",
        payload=codec.encode(batch, content_type=codec.MSGPACK),
        headers={"Content-Type": codec.MSGPACK},
        code="invalid_bars",
        message="fails non_finite",
        received=RECEIVED,
    )
    other = quarantine.put(
        subject="ktrdr.bars.AAPL.1d", payload=b"{}", code="c", message="m", received=RECEIVED
    )
    listed = await http.get("/api/v1/quarantine")
    assert listed.status_code == 200, listed.text
    by_id = {e["id"]: e for e in listed.json()["entries"]}
    assert {k: by_id[kept][k] for k in ("symbol", "timeframe", "start", "end")} == {
        "symbol": "BRK_B",
        "timeframe": "1h",
        "start": "2024-01-02T00:00:00Z",
        "end": "2024-01-02T02:00:00Z",
    }
    assert set(by_id) == {kept, other}
    for params, expected in [
        ({"symbol": "BRK B", "timeframe": "1h"}, [kept]),
        ({"symbol": "brk_b"}, [kept]),
        ({"timeframe": "1d"}, [other]),
        ({"symbol": "AAPL", "timeframe": "1h"}, []),
    ]:
        answer = await http.get("/api/v1/quarantine", params=params)
        assert answer.status_code == 200, answer.text
        assert [e["id"] for e in answer.json()["entries"]] == expected, params
    for bad in ({"timeframe": "2h"}, {"symbol": "..."}):
        answer = await http.get("/api/v1/quarantine", params=bad)
        assert answer.status_code == 400, answer.text
