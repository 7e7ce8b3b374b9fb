"""/api/v1/data against the real data-store (real Parquet files) and, for loads, the real
connector and simulator: a load through the API end to end, bar pages as JSON, CSV and Arrow
with cursors, coverage, and the 400/406/503 answers."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa
import pytest
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.integration

MIN = 60 * 10**9
T0 = 1_704_205_800 * 10**9  # 2024-01-02T14:30:00Z
ROWS = 2_500
EXTENDED_HOURS = (
    "use_rth not set: 1h bars include extended hours (pre- and post-market); set "
    "use_rth (ktrdr data load --rth) for regular trading hours only"
)


def seed(data_dir: Path, rows: int = ROWS) -> None:
    """Write ``rows`` one-minute AAPL bars straight into the store's Parquet files."""
    ts = [T0 + i * MIN for i in range(rows)]
    close = [100.0 + (i % 50) for i in range(rows)]
    table = pa.table(
        {
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": [1.0] * rows,
            "wap": close,
            "count": [3] * rows,
        },
        schema=SCHEMA,
    )
    ParquetBarStore(data_dir).merge("AAPL", Timeframe.M1, table)


@pytest.fixture
async def seeded(data_dir: Path, data_store: ServiceApp) -> ServiceApp:
    seed(data_dir)
    return data_store


async def test_a_load_through_the_api_end_to_end(
    connector: ServiceApp, data_store: ServiceApp, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/api/v1/data/load",
        params={"wait": "true", "timeout_s": 120},
        json={"symbol": "aapl", "timeframe": "1h", "start": "2024-06-17T00:00:00Z"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["fetched_bars"] > 0
    assert body["segments_fetched"] == body["gaps_analyzed"] >= 1
    assert body["ib_requests_made"] >= 1
    assert body["cached_before"] == 0
    assert body["execution_time_s"] >= 0
    assert body["failed_segments"] == []
    assert body["notes"] == [EXTENDED_HOURS]  # a start was given: only the hours were assumed
    assert response.headers["location"] == f"/api/v1/jobs/{body['job_id']}"

    datasets = (await http.get("/api/v1/data")).json()["datasets"]
    assert [(d["symbol"], d["timeframe"], d["rows"]) for d in datasets] == [
        ("AAPL", "1h", body["fetched_bars"])
    ]
    job = (await http.get(body["links"]["self"])).json()
    assert job["status"] == "completed"
    assert job["result"]["fetched_bars"] == body["fetched_bars"]

    # the same load again finds nothing missing: the old answer's cached_before says why
    again = await http.post(
        "/api/v1/data/load?wait=true", json={"symbol": "AAPL", "timeframe": "1h"}
    )
    assert again.json()["status"] == "completed"
    assert again.json()["ib_requests_made"] == 0
    assert again.json()["notes"][0].startswith(
        "no start given: this tail load starts at the last stored bar, "
    )
    assert again.json()["notes"][0].endswith(
        f"(AAPL 1h holds {body['fetched_bars']:,} bars from 2024-06-17T08:00:00Z)"
    )


async def test_a_load_without_wait_answers_202_with_links(
    data_store: ServiceApp, http: httpx.AsyncClient
) -> None:
    response = await http.post("/api/v1/data/load", json={"symbol": "AAPL", "timeframe": "1d"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert len(body["job_id"]) == 32
    assert body["links"] == {
        "self": f"/api/v1/jobs/{body['job_id']}",
        "events": f"/api/v1/jobs/{body['job_id']}/events",
        "cancel": f"/api/v1/jobs/{body['job_id']}/cancel",
    }


async def test_bar_pages_follow_the_cursor_to_every_bar(
    seeded: ServiceApp, http: httpx.AsyncClient
) -> None:
    seen: list[str] = []
    url: str | None = "/api/v1/data/AAPL/1m?limit=1000"
    while url:
        page = (await http.get(url)).json()
        seen += [bar["ts"] for bar in page["bars"]]
        url = page["links"].get("next")
        assert (url is None) == (page["next_cursor"] is None)
    assert len(seen) == ROWS == len(set(seen))
    assert seen == sorted(seen)
    assert seen[0] == "2024-01-02T14:30:00Z"
    first = (await http.get("/api/v1/data/AAPL/1m", params={"limit": 1})).json()["bars"][0]
    assert first == {
        "ts": "2024-01-02T14:30:00Z",
        "open": 100.0,
        "high": 100.0,
        "low": 100.0,
        "close": 100.0,
        "volume": 1.0,
        "wap": 100.0,
        "count": 3,
    }


async def test_a_range_is_half_open_and_in_utc(seeded: ServiceApp, http: httpx.AsyncClient) -> None:
    # 15:30+01:00 is 14:30Z: the first bar; the end (14:35Z) is excluded
    response = await http.get(
        "/api/v1/data/aapl/1m",
        params={"start": "2024-01-02T15:30:00+01:00", "end": "2024-01-02T14:35:00Z"},
    )
    bars = response.json()["bars"]
    assert [b["ts"] for b in bars] == [f"2024-01-02T14:3{i}:00Z" for i in range(5)]


async def test_csv_and_arrow_by_accept_header(seeded: ServiceApp, http: httpx.AsyncClient) -> None:
    as_csv = await http.get("/api/v1/data/AAPL/1m?limit=100", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == ["ts", "open", "high", "low", "close", "volume", "wap", "count"]
    assert rows[1][:2] == ["2024-01-02T14:30:00Z", "100.0"] and len(rows) == 101
    cursor = as_csv.headers["x-next-cursor"]
    link = as_csv.headers["link"]
    assert link.endswith('>; rel="next"')
    assert parse_qs(urlsplit(link[1:].split(">")[0]).query)["cursor"] == [cursor]

    arrow = await http.get(
        "/api/v1/data/AAPL/1m?limit=100", headers={"Accept": "application/vnd.apache.arrow.stream"}
    )
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.num_rows == 100
    assert table.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
    assert arrow.headers["x-next-cursor"] == cursor  # the same page boundary either way
    rest = await http.get(
        "/api/v1/data/AAPL/1m", params={"cursor": cursor, "format": "arrow", "limit": 100_000}
    )
    assert pa.ipc.open_stream(rest.content).read_all().num_rows == ROWS - 100
    assert "x-next-cursor" not in rest.headers


async def test_datasets_with_coverage_and_the_coverage_route(
    seeded: ServiceApp, http: httpx.AsyncClient
) -> None:
    listed = (await http.get("/api/v1/data", params={"coverage": "true"})).json()["datasets"]
    [aapl] = listed
    assert (aapl["symbol"], aapl["timeframe"], aapl["rows"]) == ("AAPL", "1m", ROWS)
    assert aapl["first"] == "2024-01-02T14:30:00Z"
    assert aapl["coverage"]["rows"] == ROWS
    assert aapl["coverage"]["stored"]
    coverage = (await http.get(aapl["links"]["coverage"])).json()
    assert coverage == aapl["coverage"]
    assert all(r["start"].endswith("Z") for r in coverage["stored"] + coverage["gaps"])


async def test_coverage_by_day_and_each_datasets_size_hours_and_rejects(
    data_dir: Path, seeded: ServiceApp, http: httpx.AsyncClient
) -> None:
    Quarantine.under(data_dir).put(
        subject="ktrdr.bars.AAPL.1m", payload=b"x", code="invalid_bars", message="fails"
    )
    # AAPL trades 09:00-01:00 UTC in winter (extended hours); its bars start 14:30 on the 2nd.
    two_days = {"start": "2024-01-02T00:00:00Z", "end": "2024-01-04T00:00:00Z"}
    by_day = await http.get("/api/v1/data/AAPL/1m/coverage", params={"days": "true", **two_days})
    assert by_day.status_code == 200, by_day.text
    assert by_day.json()["days"] == [
        {"date": "2024-01-02", "state": "partial"},
        {"date": "2024-01-03", "state": "stored"},
    ]
    plain = await http.get("/api/v1/data/AAPL/1m/coverage", params=two_days)
    assert plain.json() == by_day.json() | {"days": None}
    [aapl] = (await http.get("/api/v1/data")).json()["datasets"]
    files = (data_dir / "bars" / "AAPL" / "1m").glob("*.parquet")
    assert aapl["bytes"] == sum(f.stat().st_size for f in files) > 0
    assert (aapl["use_rth"], aapl["quarantined"]) == (False, 1)


@pytest.mark.parametrize("route", ["/api/v1/data/MSFT/1m", "/api/v1/data/MSFT/1m/coverage"])
async def test_a_dataset_never_loaded_is_a_404_with_a_hint_to_load_it(
    seeded: ServiceApp, http: httpx.AsyncClient, route: str
) -> None:
    response = await http.get(route)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["service"]) == ("not_found", "data-store")
    assert problem["detail"] == "nothing is stored for MSFT 1m"
    assert problem["hint"] == (
        "load it: `ktrdr data load MSFT 1m` or POST /api/v1/data/load "
        '{"symbol": "MSFT", "timeframe": "1m"} (LoadData on '
        "ktrdr.cmd.data.load)"
    )


async def test_a_stored_dataset_with_nothing_in_the_range_is_an_empty_page(
    seeded: ServiceApp, http: httpx.AsyncClient
) -> None:
    response = await http.get("/api/v1/data/AAPL/1m", params={"start": "2030-01-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert response.json()["bars"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "words"),
    [
        ("POST", "/api/v1/data/load", {"symbol": "AAPL", "timeframe": "1h",
                                       "start": "2024-01-01T00:00:00"}, "start", "timezone"),
        ("POST", "/api/v1/data/load", {"symbol": "AAPL", "timeframe": "1h", "mode": "all"},
         "mode", "use one of tail backfill full"),
        ("POST", "/api/v1/data/load", {"symbol": "AAPL", "timeframe": "1h",
                                       "start": "2024-02-01T00:00:00Z",
                                       "end": "2024-01-01T00:00:00Z"}, "body", "must be before"),
        ("POST", "/api/v1/data/load", {"timeframe": "1h"}, "symbol", "missing"),
        ("POST", "/api/v1/data/load", {"symbol": "AAPL", "timeframe": "1h", "end": 0}, "end",
         "got 'int'"),
        ("POST", "/api/v1/data/load", None, "body", "this route takes a JSON body"),
        ("GET", "/api/v1/data/AAPL/1m?start=0.5", None, "start", "is not an RFC 3339 timestamp"),
        ("GET", "/api/v1/data/AAPL/1m/coverage?end=0", None, "end", "is not an RFC 3339 timestamp"),
        ("GET", "/api/v1/data/AAPL/1m?start=2024-01-02T14:30:00", None, "start",
         "no timezone; add Z (UTC) or an offset"),
        ("GET", "/api/v1/data/AAPL/1m?end=2024-01-01T00:00:00Z&start=2024-01-02T00:00:00Z",
         None, "end", "must be after"),
        ("GET", "/api/v1/data/AAPL/1m?limit=0", None, "limit", ">= 1"),
        ("GET", "/api/v1/data/AAPL/2m", None, "timeframe", "use one of 1s 5s"),
        ("GET", "/api/v1/data/AAPL/1m?format=xml", None, "format", "use one of json csv arrow"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_400_naming_the_field(
    http: httpx.AsyncClient, method: str, path: str, body: object, field: str, words: str
) -> None:
    response = await http.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    assert words.lower() in problem["detail"].lower()


async def test_a_bad_cursor_is_the_data_stores_400(
    seeded: ServiceApp, http: httpx.AsyncClient
) -> None:
    response = await http.get("/api/v1/data/AAPL/1m", params={"cursor": "not-a-cursor"})
    assert response.status_code == 400
    problem = response.json()
    assert problem["service"] == "data-store"
    assert "invalid cursor" in problem["detail"]


async def test_an_unservable_accept_is_a_406(seeded: ServiceApp, http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/data/AAPL/1m", headers={"Accept": "image/png"})
    assert response.status_code == 406
    assert "text/csv" in response.json()["detail"]


async def test_no_data_store_is_a_503_naming_it(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/data")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("no data-store is running")
