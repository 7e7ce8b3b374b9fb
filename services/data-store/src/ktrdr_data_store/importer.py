"""Import the old system's ``SYMBOL_TIMEFRAME.csv`` files into the bar store (no NATS imports).

A file is named after its dataset (``AAPL_1h.csv``, ``EURUSD_1d.csv``, ``BRK_B_1d.csv``: the
symbol, an underscore, a timeframe ``Timeframe`` knows). Its first column, or the one named
``timestamp``/``date``/``datetime``/``time`` in any case, holds the bar's open as an ISO
timestamp: ``+00:00`` and ``Z`` are UTC, another offset is converted to UTC, and a naive
timestamp is read as UTC (the old system wrote UTC). ``open``, ``high``, ``low`` and ``close``
are required and ``volume`` is optional, in any case.

Parsing is vectorised (pandas); each row that cannot be a bar is rejected with a reason:
an unparseable timestamp, a missing, non-numeric or infinite price, a high below the low, or
an open or close outside low..high. Negative prices are data (CL settled at -37.63 on
2020-04-20), as in ``BarBatch``. A volume that is missing or negative (IB reports -1 where it
has none) is stored as 0, as ``BarBatch`` does, and counted.

The import only adds: a bar whose timestamp is already in the store is left as it is (counted
as a duplicate, like a timestamp repeated in the file, where the last row wins), so importing
twice changes nothing and an import never overwrites bars fetched from IB. Nothing is written
when nothing is new.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from ktrdr_shared.types import Timeframe, is_timeframe, symbol_key

from ktrdr_data_store.store import SCHEMA, BarStore, merge_tables

TIMESTAMP_NAMES = ("timestamp", "date", "datetime", "time")
PRICE_COLUMNS = ("open", "high", "low", "close")
_FILE_NAME = re.compile(r"^(?P<symbol>[A-Za-z0-9][A-Za-z0-9._-]*)_(?P<timeframe>[^_]+)\.csv$")

# Why a row is rejected, checked in this order; a row counts under its first reason only.
UNPARSEABLE_TIMESTAMP = "unparseable timestamp"
BAD_PRICE = "missing, non-numeric or infinite price"
OUTSIDE_HIGH_LOW = "open or close outside [low, high]"
HIGH_BELOW_LOW = "high below low"


class SkipFile(Exception):
    """A file that cannot be imported at all; the message says why."""


@dataclass
class Rejects:
    """The rows rejected for one reason: how many, and the first one as an example."""

    count: int
    first_line: int
    example: str


@dataclass
class FileReport:
    """What importing one file did (or, in a dry run, would do)."""

    path: Path
    symbol: str | None = None
    timeframe: Timeframe | None = None
    rows_read: int = 0
    stored: int = 0
    duplicates: int = 0
    volume_zeroed: int = 0
    rejects: dict[str, Rejects] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def rejected(self) -> int:
        """Return how many rows were rejected, all reasons together."""
        return sum(r.count for r in self.rejects.values())


def dataset_of(path: Path) -> tuple[str, Timeframe]:
    """Return the symbol key and timeframe a file's name stands for.

    Raises:
        SkipFile: for a name that is not ``SYMBOL_TIMEFRAME.csv`` or an unknown timeframe.
    """
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise SkipFile(f"file name {path.name!r} is not SYMBOL_TIMEFRAME.csv (e.g. AAPL_1h.csv)")
    timeframe = match["timeframe"]
    if not is_timeframe(timeframe):
        known = " ".join(t.value for t in Timeframe)
        raise SkipFile(f"unknown timeframe {timeframe!r} in the file name; use one of {known}")
    return symbol_key(match["symbol"]), Timeframe(timeframe)


def import_file(store: BarStore, path: Path, *, dry_run: bool = False) -> FileReport:
    """Import one CSV file into ``store`` and report what happened; never raises for bad data."""
    report = FileReport(path)
    try:
        symbol, timeframe = report.symbol, report.timeframe = dataset_of(path)
        frame = _read(path)
    except SkipFile as e:
        report.skipped = str(e)
        return report
    report.rows_read = len(frame)
    bars = _valid_bars(frame, report)
    if report.rows_read and bars.num_rows == 0:
        report.skipped = "every row was rejected"
        return report
    unique = merge_tables(None, bars)  # sorted, one row per timestamp, the last row winning
    new = _not_stored(store, symbol, timeframe, unique)
    report.duplicates = bars.num_rows - new.num_rows
    if dry_run or new.num_rows == 0:
        report.stored = new.num_rows
    else:
        report.stored = store.merge(symbol, timeframe, new).new_rows
    return report


def csv_files(directory: Path) -> list[Path]:
    """Return the ``.csv`` files of a directory (not its subdirectories), sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() == ".csv")


def _read(path: Path) -> pd.DataFrame:
    """Return a file's rows with columns ``ts`` (text) and the prices and volume (as read)."""
    try:
        header = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError as e:
        raise SkipFile("the file is empty (no header)") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SkipFile(f"not a readable CSV file: {e}") from e
    by_name = {str(c).strip().lower(): str(c) for c in header.columns}
    missing = [c for c in PRICE_COLUMNS if c not in by_name]
    if missing:
        found = ", ".join(str(c) for c in header.columns)
        raise SkipFile(f"missing column(s) {', '.join(missing)}; found {found}")
    ts_column = next((by_name[n] for n in TIMESTAMP_NAMES if n in by_name), str(header.columns[0]))
    if ts_column.strip().lower() in (*PRICE_COLUMNS, "volume"):
        raise SkipFile(f"no timestamp column: name one {'/'.join(TIMESTAMP_NAMES)} or put it first")
    wanted = {
        ts_column: "ts",
        **{by_name[c]: c for c in (*PRICE_COLUMNS, "volume") if c in by_name},
    }
    try:
        frame = pd.read_csv(
            path, usecols=list(wanted), dtype={ts_column: str}, keep_default_na=False
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise SkipFile(f"not a readable CSV file: {e}") from e
    return frame.rename(columns=wanted)


def _outside_high_low(prices: dict[str, np.ndarray]) -> np.ndarray:
    """Return rows whose open or close lies outside their own low..high (prices may be < 0)."""
    o, h, lo, c = prices["open"], prices["high"], prices["low"], prices["close"]
    return np.asarray((lo > np.minimum(o, c)) | (h < np.maximum(o, c)))


def _valid_bars(frame: pd.DataFrame, report: FileReport) -> pa.Table:
    """Return the rows that are bars, in the store's schema; record the others in ``report``."""
    stamps = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce")
    prices = {
        c: pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in PRICE_COLUMNS
    }
    all_prices = np.column_stack(list(prices.values()))
    checks = [
        (UNPARSEABLE_TIMESTAMP, stamps.isna().to_numpy(), "ts"),
        (BAD_PRICE, ~np.isfinite(all_prices).all(axis=1), None),
        (HIGH_BELOW_LOW, prices["high"] < prices["low"], None),
        (OUTSIDE_HIGH_LOW, _outside_high_low(prices), None),
    ]
    bad = np.zeros(len(frame), dtype=bool)
    for reason, failed, column in checks:
        first_time = failed & ~bad
        if first_time.any():
            report.rejects[reason] = _example(frame, first_time, column)
        bad |= failed
    volume = np.zeros(len(frame))
    if "volume" in frame:
        volume = pd.to_numeric(frame["volume"], errors="coerce").to_numpy(np.float64)
        zeroed = ~bad & ~(np.isfinite(volume) & (volume >= 0))
        report.volume_zeroed = int(zeroed.sum())
        volume = np.where(zeroed, 0.0, volume)
    keep = ~bad
    ts = stamps[keep].dt.as_unit("ns").dt.tz_convert(None).to_numpy("datetime64[ns]")
    n = int(keep.sum())
    return pa.table(
        {
            "ts": pa.array(ts.astype(np.int64), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            **{c: pa.array(prices[c][keep], pa.float64()) for c in PRICE_COLUMNS},
            "volume": pa.array(volume[keep], pa.float64()),
            "wap": pa.nulls(n, pa.float64()),
            "count": pa.nulls(n, pa.int64()),
        },
        schema=SCHEMA,
    )


def _example(frame: pd.DataFrame, rows: np.ndarray, column: str | None) -> Rejects:
    """Return the count and the first of ``rows``, with its line number in the file."""
    first = int(np.flatnonzero(rows)[0])
    row = frame.iloc[first]
    shown = (
        repr(str(row[column])) if column else ", ".join(f"{c}={row[c]!s}" for c in PRICE_COLUMNS)
    )
    return Rejects(count=int(rows.sum()), first_line=first + 2, example=shown)  # 1 is the header


def _not_stored(store: BarStore, symbol: str, timeframe: Timeframe, bars: pa.Table) -> pa.Table:
    """Return the bars whose timestamps the store does not hold yet."""
    if bars.num_rows == 0:
        return bars
    ts = bars.column("ts").cast(pa.int64()).to_numpy()
    held = store.read(symbol, timeframe, int(ts[0]), int(ts[-1]) + 1)
    stored_ts = held.column("ts").cast(pa.int64()).to_numpy()
    return bars.filter(pa.array(~np.isin(ts, stored_ts, assume_unique=True)))
