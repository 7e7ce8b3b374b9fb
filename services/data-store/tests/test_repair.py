"""Repair: a damaged dataset's unreadable files move aside, their ranges are forgotten, reloaded.

The pure parts on real files (which files, where they go, which ranges the ledger drops, which
``LoadData`` follows), then the endpoint over a real nats-server: once with the command caught
on the wire, once end to end with the simulator behind the connector, where the reload brings
the dataset back to exactly what it held.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from ktrdr_data_store.damage import dataset_of, remedy
from ktrdr_data_store.ledger import AnsweredLedger, merge_ranges, subtract_ranges
from ktrdr_data_store.repair import (
    Repair,
    move_aside,
    reload_command,
    repair_dataset,
    stamp,
    year_span,
)
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.errors import NotFound
from ktrdr_shared.messages import (
    Coverage,
    CoverageRequest,
    DatasetRepaired,
    JobCompleted,
    LoadData,
    RepairDataset,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.types import LoadMode, Timeframe, to_unix_nanos
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

UTC = dt.UTC
HOUR = 3600 * 10**9
H1 = Timeframe.H1
NOW = dt.datetime(2024, 7, 1, 12, 30, 5, tzinfo=UTC)
Y2023 = year_span(Path("2023.parquet"))
Y2024 = year_span(Path("2024.parquet"))
T2023 = 1_688_108_400 * 10**9  # 2023-06-30 07:00 UTC
T2024 = 1_718_607_600 * 10**9  # 2024-06-17 07:00 UTC
StartStore = Callable[..., Awaitable[ServiceApp]]
Pair = tuple[int, int]


def ns(*args: int) -> int:
    return to_unix_nanos(dt.datetime(*args, tzinfo=UTC))  # type: ignore[misc]


def bars(first_ns: int, n: int) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "ts": first_ns + i * HOUR,
                "open": 1.0,
                "high": 2.0,
                "low": 0.5,
                "close": 1.5,
                "volume": 10.0,
            }
            for i in range(n)
        ],
        schema=SCHEMA,
    )


def fill(root: Path) -> None:
    """AAPL and MSFT 1h: five bars in 2023 and five in 2024, answered from 2023 to 2024."""
    store, ledger = ParquetBarStore(root), AnsweredLedger(root)
    for symbol in ("AAPL", "MSFT"):
        store.merge(symbol, H1, bars(T2023, 5))
        store.merge(symbol, H1, bars(T2024, 5))
        ledger.add(symbol, H1, [(T2023, T2024 + 5 * HOUR)])


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- pure parts


@pytest.mark.unit
@pytest.mark.parametrize(("ranges", "spans", "kept", "dropped"), [
    ([(0, 10)], [], [(0, 10)], []),
    ([(0, 10)], [(3, 5)], [(0, 3), (5, 10)], [(3, 5)]),
    ([(0, 10)], [(0, 10)], [], [(0, 10)]),
    ([(0, 4), (6, 10)], [(3, 7)], [(0, 3), (7, 10)], [(3, 4), (6, 7)]),
    ([(0, 4)], [(4, 8)], [(0, 4)], []),  # half-open: touching is not overlapping
    ([(2, 4)], [(0, 1), (5, 9)], [(2, 4)], []),
    ([(0, 10), (20, 30)], [(5, 25)], [(0, 5), (25, 30)], [(5, 10), (20, 25)]),
])  # fmt: skip
def test_subtract_ranges(
    ranges: list[Pair], spans: list[Pair], kept: list[Pair], dropped: list[Pair]
) -> None:
    assert subtract_ranges(ranges, spans) == (kept, dropped)


@pytest.mark.unit
def test_merge_ranges() -> None:
    assert merge_ranges([(5, 7), (1, 3), (3, 4), (10, 10), (6, 9)]) == [(1, 4), (5, 9)]


@pytest.mark.unit
def test_a_year_file_spans_its_utc_calendar_year() -> None:
    assert (ns(2024, 1, 1), ns(2025, 1, 1)) == Y2024
    assert (
        stamp(dt.datetime(2024, 7, 1, 14, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))))
        == "20240701T123005Z"
    )


@pytest.mark.unit
@pytest.mark.parametrize(("name", "dataset"), [
    ("bars/AAPL/1h/2024.parquet", ("AAPL", "1h")),
    ("bars/BRK_B/1d/2024.parquet", ("BRK_B", "1d")),
    ("answered/EURUSD.5m.json", ("EURUSD", "5m")),
    ("answered/EUR.USD.1d.json", ("EUR.USD", "1d")),
    ("instruments.json", None),
    ("bars/AAPL/2h/2024.parquet", None),
])  # fmt: skip
def test_a_damaged_file_names_its_dataset_s_repair(
    name: str, dataset: tuple[str, str] | None
) -> None:
    assert dataset_of(name) == dataset
    if dataset is None:
        assert "repair" not in remedy(name)
    else:
        key, tf = dataset
        assert f"`ktrdr data repair {key} {tf}`" in remedy(name)
        assert f"POST /api/v1/data/{key}/{tf}/repair" in remedy(name)


@pytest.mark.unit
def test_move_aside_keeps_the_file_under_damaged_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bars/AAPL/1h/2024.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"torn")
    assert move_aside(tmp_path, bad, NOW) == "bars/AAPL/1h/2024.parquet"
    assert not bad.exists()
    kept = tmp_path / "damaged/20240701T123005Z/bars/AAPL/1h/2024.parquet"
    assert kept.read_bytes() == b"torn"
    bad.write_bytes(b"torn again")  # the same name twice within a second is not overwritten
    move_aside(tmp_path, bad, NOW)
    assert kept.read_bytes() == b"torn"
    assert kept.with_name("2024.parquet.1").read_bytes() == b"torn again"


@pytest.mark.unit
def test_repair_moves_a_torn_year_file_and_forgets_only_its_year(tmp_path: Path) -> None:
    fill(tmp_path)
    truncate(tmp_path / "bars/AAPL/1h/2024.parquet")
    before = files(tmp_path)
    store, ledger = ParquetBarStore(tmp_path), AnsweredLedger(tmp_path)
    done = repair_dataset(store, ledger, "AAPL", H1, NOW)
    assert done.moved == ["bars/AAPL/1h/2024.parquet"]
    assert done.forgotten == [(Y2024[0], T2024 + 5 * HOUR)]
    assert done.reload == (Y2024[0], T2024 + 5 * HOUR) and not done.ledger_moved  # as answered
    assert ledger.ranges("AAPL", H1) == [(T2023, Y2024[0])]
    after = files(tmp_path)
    moved = "damaged/20240701T123005Z/bars/AAPL/1h/2024.parquet"
    assert after[moved] == before["bars/AAPL/1h/2024.parquet"]  # kept byte for byte
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {moved, "answered/AAPL.1h.json"}  # MSFT and AAPL's 2023 untouched
    assert store.stats("AAPL", H1).rows == 5  # the dataset reads again

    command = reload_command("AAPL", H1, done, "a" * 32)
    assert command == LoadData(
        job_id="a" * 32,
        symbol="AAPL",
        timeframe=H1,
        mode=LoadMode.FULL,
        start=dt.datetime(2024, 1, 1, tzinfo=UTC),
        end=dt.datetime(2024, 6, 17, 12, tzinfo=UTC),
    )


@pytest.mark.unit
@pytest.mark.parametrize(("torn", "reload"), [
    ("2024", (Y2024[0], None)),  # the last year: open-ended, up to IB's clock
    ("2023", Y2023),  # a later year is stored: the year itself
])  # fmt: skip
def test_without_answered_ranges_the_reload_is_the_year(
    tmp_path: Path, torn: str, reload: tuple[int, int | None]
) -> None:
    fill(tmp_path)
    (tmp_path / "answered/AAPL.1h.json").unlink()  # bars imported from CSV: nothing answered
    truncate(tmp_path / f"bars/AAPL/1h/{torn}.parquet")
    done = repair_dataset(ParquetBarStore(tmp_path), AnsweredLedger(tmp_path), "AAPL", H1, NOW)
    assert (done.moved, done.forgotten, done.reload) == (
        [f"bars/AAPL/1h/{torn}.parquet"],
        [],
        reload,
    )


@pytest.mark.unit
def test_a_torn_year_before_a_sound_one_reloads_its_year_only(tmp_path: Path) -> None:
    fill(tmp_path)
    truncate(tmp_path / "bars/AAPL/1h/2023.parquet")
    ledger = AnsweredLedger(tmp_path)
    done = repair_dataset(ParquetBarStore(tmp_path), ledger, "AAPL", H1, NOW)
    assert done.moved == ["bars/AAPL/1h/2023.parquet"]
    assert done.forgotten == [(T2023, Y2023[1])]
    assert ledger.ranges("AAPL", H1) == [(Y2024[0], T2024 + 5 * HOUR)]
    command = reload_command("AAPL", H1, done, "d" * 32)
    assert command is not None
    assert (command.start, command.end) == (
        dt.datetime(2023, 6, 30, 7, tzinfo=UTC),
        dt.datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.mark.unit
def test_repair_of_a_garbled_ledger_forgets_everything_and_reloads_the_history(
    tmp_path: Path,
) -> None:
    fill(tmp_path)
    (tmp_path / "answered/AAPL.1h.json").write_bytes(b"[[1, ")
    store, ledger = ParquetBarStore(tmp_path), AnsweredLedger(tmp_path)
    done = repair_dataset(store, ledger, "AAPL", H1, NOW)
    assert done == Repair(
        moved=["answered/AAPL.1h.json"], forgotten=[], reload=None, ledger_moved=True
    )
    assert (tmp_path / "damaged/20240701T123005Z/answered/AAPL.1h.json").read_bytes() == b"[[1, "
    assert ledger.ranges("AAPL", H1) == []
    command = reload_command("AAPL", H1, done, "b" * 32)
    assert command is not None
    assert (command.mode, command.start, command.end) == (LoadMode.FULL, None, None)


@pytest.mark.unit
def test_repair_of_a_sound_dataset_moves_nothing_and_reloads_nothing(tmp_path: Path) -> None:
    fill(tmp_path)
    before = files(tmp_path)
    done = repair_dataset(ParquetBarStore(tmp_path), AnsweredLedger(tmp_path), "MSFT", H1, NOW)
    assert done == Repair(moved=[], forgotten=[], reload=None, ledger_moved=False)
    assert reload_command("MSFT", H1, done, "c" * 32) is None
    assert files(tmp_path) == before


@pytest.mark.unit
def test_repair_of_an_unknown_dataset_is_not_found(tmp_path: Path) -> None:
    fill(tmp_path)
    with pytest.raises(NotFound, match="no dataset NOPE 1h"):
        repair_dataset(ParquetBarStore(tmp_path), AnsweredLedger(tmp_path), "NOPE", H1, NOW)


# ---------------------------------------------------------------- over NATS


@pytest.mark.integration
async def test_the_endpoint_moves_forgets_and_sends_the_reload(
    start_store: StartStore, nc: NATS, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    fill(data_dir)
    truncate(data_dir / "bars/AAPL/1h/2024.parquet")
    commands = await nc.subscribe(subjects.CMD_DATA_LOAD)
    await start_store()
    client = KtrdrClient(nc)

    reply = await client.request(
        subjects.STORE_REPAIR, RepairDataset(symbol="aapl", timeframe=H1), DatasetRepaired
    )
    assert (reply.symbol, reply.moved) == ("AAPL", ["bars/AAPL/1h/2024.parquet"])
    assert [(r.start, to_unix_nanos(r.end)) for r in reply.forgotten] == [
        (dt.datetime(2024, 1, 1, tzinfo=UTC), T2024 + 5 * HOUR)
    ]
    [stamped] = (data_dir / "damaged").iterdir()
    assert (stamped / "bars/AAPL/1h/2024.parquet").is_file()
    assert json.loads((data_dir / "answered/AAPL.1h.json").read_bytes()) == [[T2023, Y2024[0]]]

    msg = await commands.next_msg(timeout=10)
    command = codec.decode(msg.data, LoadData, headers=msg.headers)
    assert reply.job_id is not None and command.job_id == reply.job_id
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == reply.job_id
    assert (command.symbol, command.timeframe, command.mode) == ("AAPL", H1, LoadMode.FULL)
    assert command.start == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert command.end is not None and to_unix_nanos(command.end) == T2024 + 5 * HOUR

    again = await client.request(
        subjects.STORE_REPAIR, RepairDataset(symbol="AAPL", timeframe=H1), DatasetRepaired
    )
    assert (again.moved, again.forgotten, again.job_id) == ([], [], None)
    with pytest.raises(NotFound):
        await client.request(
            subjects.STORE_REPAIR, RepairDataset(symbol="NOPE", timeframe=H1), DatasetRepaired
        )


@pytest.mark.integration
async def test_repair_reloads_the_lost_year_from_ib(
    connector: ServiceApp,
    start_store: StartStore,
    js: JetStreamContext,
    nc: NATS,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    client = KtrdrClient(nc)
    await start_store()
    june = dt.datetime(2024, 6, 3, tzinfo=UTC)
    first = await client.load_data("AAPL", "1d", mode="full", start=june)
    done = await wait_for_job_event(js, first, {"completed", "failed"}, timeout_s=90)
    assert isinstance(done, JobCompleted), done
    before = ParquetBarStore(data_dir).read("AAPL", Timeframe.D1)
    truncate(data_dir / "bars/AAPL/1d/2024.parquet")

    reply = await client.request(
        subjects.STORE_REPAIR, RepairDataset(symbol="AAPL", timeframe=Timeframe.D1), DatasetRepaired
    )
    assert reply.moved == ["bars/AAPL/1d/2024.parquet"] and reply.job_id is not None
    reloaded = await wait_for_job_event(js, reply.job_id, {"completed", "failed"}, timeout_s=90)
    assert isinstance(reloaded, JobCompleted), reloaded
    stored = ParquetBarStore(data_dir).read("AAPL", Timeframe.D1)
    got = stored.column("ts").cast("int64").to_numpy()
    # what the torn file held, exactly IB's bars again
    np.testing.assert_array_equal(got, expected_stamps("AAPL", "STK", "1 day", june))
    assert stored.equals(before)
    coverage = await client.request(
        subjects.STORE_COVERAGE, CoverageRequest(symbol="AAPL", timeframe=Timeframe.D1), Coverage
    )
    assert coverage.rows == len(got)
