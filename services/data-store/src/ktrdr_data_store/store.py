"""The bar store: Parquet files that are sorted, unique on ``ts`` and replaced atomically.

The layout (``<root>/bars/<SYMBOL_KEY>/<timeframe>/<year>.parquet``), the schema, the reader
and the atomic writer are ``ktrdr_shared.store.bars``'s, which the trainer reads through too.
A year file keeps range reads to a file or two and a merge to one rewrite of at most a year of
bars (~380 k one-minute forex bars, ~0.2 s); daily and weekly years are tiny. Each file is
plain Parquet that pandas, polars and duckdb read directly (checked with duckdb 2.0 and
polars 2.1).

Invariants:

* rows are sorted by ``ts`` and unique on it; merging the same bars twice
  changes nothing, and for a timestamp seen twice the newer bar wins;
* every write goes to a temporary file in the same directory, is fsynced,
  then renamed over the old file (and the directory fsynced), so a crash at
  any point leaves either the old file or the new one, never a torn one.

``BarStore`` is the interface; ``ParquetBarStore`` and ``MemoryBarStore``
implement it and share one contract test suite.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ktrdr_shared import bar_checks
from ktrdr_shared.errors import DatasetDamaged
from ktrdr_shared.messages import BarBatch
from ktrdr_shared.store import bars as on_disk
from ktrdr_shared.store.bars import READ_ERRORS, SCHEMA, UnreadableFile, year_of
from ktrdr_shared.store.bars import write_year as write_atomically
from ktrdr_shared.types import Timeframe, is_timeframe, symbol_key

from ktrdr_data_store.damage import damaged_error

__all__ = [
    "SCHEMA",
    "BarStore",
    "DatasetStats",
    "MemoryBarStore",
    "MergeResult",
    "ParquetBarStore",
    "merge_by_year",
    "merge_tables",
    "table_from_arrays",
    "table_from_batch",
    "write_atomically",
    "year_of",
]


@dataclass(frozen=True)
class DatasetStats:
    """What is stored for one symbol and timeframe."""

    symbol_key: str
    timeframe: Timeframe
    rows: int
    first_ns: int | None
    last_ns: int | None
    damaged: str | None = None  # "<file>: <problem>" of a file that cannot be read
    bytes: int = 0  # the size of its files on disk, readable or not (0 in memory)


@dataclass(frozen=True)
class MergeResult:
    """What one merge changed: rows that were not there before, and the range written."""

    new_rows: int
    first_ns: int | None
    last_ns: int | None


def table_from_batch(batch: BarBatch) -> pa.Table:
    """Return a ``BarBatch``'s bars as a table in the store's schema.

    Raises:
        OverflowError: a stamp or count does not fit in int64.
    """
    arrays = bar_checks.batch_arrays(batch)
    if isinstance(arrays, bar_checks.BarProblem):
        raise OverflowError(arrays.message)
    return table_from_arrays(arrays)


def table_from_arrays(arrays: dict[str, np.ndarray]) -> pa.Table:
    """Return a batch's columns (``bar_checks.batch_arrays``) as a table, without copying them."""
    n = len(arrays["ts"])

    def column(name: str, kind: pa.DataType) -> pa.Array:
        return pa.array(arrays[name], kind) if name in arrays else pa.nulls(n, kind)

    return pa.Table.from_arrays(
        [
            pa.array(arrays["ts"], pa.int64()).view(SCHEMA.field("ts").type),  # same bits
            *(column(name, pa.float64()) for name in ("open", "high", "low", "close", "volume")),
            column("wap", pa.float64()),
            column("count", pa.int64()),
        ],
        schema=SCHEMA,
    )


def merge_tables(old: pa.Table | None, new: pa.Table) -> pa.Table:
    """Return ``old`` + ``new`` sorted by ``ts``, one row per ``ts``, the newer row winning."""
    both = new if old is None or old.num_rows == 0 else pa.concat_tables([old, new])
    ts = both.column("ts").cast(pa.int64()).to_numpy()
    order = np.argsort(ts, kind="stable")  # equal stamps keep old-then-new order
    ordered = ts[order]
    last_of_run = np.ones(len(ordered), dtype=bool)
    last_of_run[:-1] = ordered[1:] != ordered[:-1]
    return both.take(pa.array(order[last_of_run]))


def merge_by_year(
    bars: pa.Table,
    old: Callable[[int], pa.Table | None],
    write: Callable[[int, pa.Table], None],
) -> MergeResult:
    """Merge ``bars`` into each UTC year they touch: ``old(year)`` (None: no such year yet)
    merged with the year's new bars, then ``write(year, merged)``; return what was new."""
    bars = bars.cast(SCHEMA)
    years = year_of(bars.column("ts").cast(pa.int64()).to_numpy())
    new_rows = 0
    for year in np.unique(years):
        before = old(int(year))
        merged = merge_tables(before, bars.filter(pa.array(years == year)))
        new_rows += merged.num_rows - (before.num_rows if before is not None else 0)
        write(int(year), merged)
    ts = bars.column("ts").cast(pa.int64())
    return MergeResult(new_rows, int(pc.min(ts).as_py()), int(pc.max(ts).as_py()))


class BarStore(Protocol):
    """Where bars live. Both implementations pass the same contract tests."""

    def merge(self, symbol: str, timeframe: Timeframe, bars: pa.Table) -> MergeResult:
        """Merge bars in (idempotent); return what was new."""
        ...

    def read(
        self,
        symbol: str,
        timeframe: Timeframe,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Return bars with ``start_ns <= ts < end_ns``, oldest first, at most ``limit``."""
        ...

    def stats(self, symbol: str, timeframe: Timeframe) -> DatasetStats:
        """Return rows and first/last bar of one dataset (zeros when empty)."""
        ...

    def datasets(self) -> list[DatasetStats]:
        """Return every non-empty dataset."""
        ...


class ParquetBarStore:
    """The Parquet implementation of ``BarStore`` (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.bars_dir = self.root / on_disk.BARS_DIR
        self.bars_dir.mkdir(parents=True, exist_ok=True)
        self._footers: dict[Path, _Footer] = {}  # what each year file's footer said

    def dataset_dir(self, symbol: str, timeframe: Timeframe) -> Path:
        """Return the directory of one dataset."""
        return on_disk.dataset_dir(self.root, symbol, timeframe)

    def merge(self, symbol: str, timeframe: Timeframe, bars: pa.Table) -> MergeResult:
        """Merge bars into their year files, each replaced atomically."""
        if bars.num_rows == 0:
            return MergeResult(0, None, None)
        directory = self.dataset_dir(symbol, timeframe)
        directory.mkdir(parents=True, exist_ok=True)

        def old(year: int) -> pa.Table | None:
            path = on_disk.year_path(directory, year)
            return self._read_year(path) if path.exists() else None

        def write(year: int, merged: pa.Table) -> None:
            write_atomically(merged, on_disk.year_path(directory, year))

        return merge_by_year(bars, old, write)

    def read(
        self,
        symbol: str,
        timeframe: Timeframe,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Read only the year files that overlap the range, filtered by row group stats.

        Raises:
            DatasetDamaged: naming a year file in the range that cannot be read.
        """
        directory = self.dataset_dir(symbol, timeframe)
        try:
            return on_disk.read_range(directory, start_ns, end_ns, limit)
        except UnreadableFile as e:
            raise damaged_error(self.root, e.path, e.problem) from e

    def stats(self, symbol: str, timeframe: Timeframe) -> DatasetStats:
        """Return counts and bounds from Parquet footers alone (no data pages read).

        Raises:
            DatasetDamaged: naming the first year file that cannot be read.
        """
        stats, damage = self._scan(symbol, timeframe)
        if damage is not None:
            raise damage
        return stats

    def year_files(self, symbol: str, timeframe: Timeframe) -> list[Path]:
        """Return the year files of one dataset, oldest first."""
        return self._year_files(symbol, timeframe, None, None)

    def unreadable_files(self, symbol: str, timeframe: Timeframe) -> list[Path]:
        """Return the year files of one dataset that cannot be read in full, oldest first."""
        bad = []
        for path in self._year_files(symbol, timeframe, None, None):
            try:
                self._read_year(path)  # every page, not only the footer
            except DatasetDamaged:
                bad.append(path)
        return bad

    def datasets(self) -> list[DatasetStats]:
        """Return every dataset with at least one bar or an unreadable year file (``damaged``).

        Each year file's footer is read once: a later listing finds the file unchanged on
        disk (same inode, size and modification time; the atomic writer's rename changes
        the inode) and takes what its footer said then, so it reads only the directories.
        """
        found = []
        listed: set[Path] = set()
        for key in _subdirectories(self.bars_dir):
            for timeframe in _subdirectories(self.bars_dir / key):
                if is_timeframe(timeframe):
                    stats, _ = self._scan(key, Timeframe(timeframe), listed)
                    if stats.rows or stats.damaged:
                        found.append(stats)
        for path in list(self._footers):  # a copy: a stats() in another thread may add one
            if path not in listed:  # removed since
                self._footers.pop(path, None)
        return found

    def _scan(
        self, symbol: str, timeframe: Timeframe, listed: set[Path] | None = None
    ) -> tuple[DatasetStats, DatasetDamaged | None]:
        """Return the stats of the readable year files, and the first unreadable one's error.

        ``listed`` collects the year files looked at.
        """
        rows, first, last, damage, size = 0, None, None, None, 0
        for path in self._year_files(symbol, timeframe, None, None):
            if listed is not None:
                listed.add(path)
            try:
                on_disk_now = path.stat()
                size += on_disk_now.st_size
                footer = self._footer(path, on_disk_now)
            except READ_ERRORS as e:
                damage = damage or damaged_error(self.root, path, e)
                continue
            rows += footer.rows
            if footer.bounds is not None:
                first = footer.bounds[0] if first is None else min(first, footer.bounds[0])
                last = footer.bounds[1] if last is None else max(last, footer.bounds[1])
        stats = DatasetStats(
            symbol_key(symbol),
            Timeframe(timeframe),
            rows,
            first,
            last,
            damage.details["damaged"] if damage else None,
            size,
        )
        return stats, damage

    def _read_year(self, path: Path) -> pa.Table:
        """Return one year file's bars.

        Raises:
            DatasetDamaged: naming the file, when it cannot be read.
        """
        try:
            return on_disk.read_year(path)
        except UnreadableFile as e:
            raise damaged_error(self.root, e.path, e.problem) from e

    def _year_files(
        self, symbol: str, timeframe: Timeframe, start_ns: int | None, end_ns: int | None
    ) -> list[Path]:
        return on_disk.year_files(self.dataset_dir(symbol, timeframe), start_ns, end_ns)

    def _footer(self, path: Path, on_disk_now: os.stat_result) -> _Footer:
        """Return what the year file's footer says, read again only when the file changed.

        Raises:
            OSError, pyarrow.ArrowException, ValueError: (``READ_ERRORS``) the footer cannot
                be read, or has no ``ts`` statistics.
        """
        identity = (on_disk_now.st_ino, on_disk_now.st_size, on_disk_now.st_mtime_ns)
        known = self._footers.get(path)
        if known is not None and known.identity == identity:
            return known
        meta = pq.ParquetFile(path).metadata
        footer = _Footer(identity, meta.num_rows, _ts_bounds(meta))
        self._footers[path] = footer
        return footer


class MemoryBarStore:
    """An in-memory ``BarStore`` for tests and for services that need no disk."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, Timeframe], pa.Table] = {}

    def merge(self, symbol: str, timeframe: Timeframe, bars: pa.Table) -> MergeResult:
        """Merge bars in memory."""
        if bars.num_rows == 0:
            return MergeResult(0, None, None)
        key = (symbol_key(symbol), Timeframe(timeframe))
        old = self._tables.get(key)
        merged = merge_tables(old, bars.cast(SCHEMA))
        self._tables[key] = merged
        ts = bars.column("ts").cast(pa.int64())
        new = merged.num_rows - (old.num_rows if old is not None else 0)
        return MergeResult(new, int(pc.min(ts).as_py()), int(pc.max(ts).as_py()))

    def read(
        self,
        symbol: str,
        timeframe: Timeframe,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Return a slice of the in-memory table."""
        table = self._tables.get((symbol_key(symbol), Timeframe(timeframe)))
        if table is None:
            return SCHEMA.empty_table()
        ts = table.column("ts").cast(pa.int64()).to_numpy()
        lo = 0 if start_ns is None else int(np.searchsorted(ts, start_ns, side="left"))
        hi = len(ts) if end_ns is None else int(np.searchsorted(ts, end_ns, side="left"))
        if limit is not None:
            hi = min(hi, lo + limit)
        return table.slice(lo, max(0, hi - lo))

    def stats(self, symbol: str, timeframe: Timeframe) -> DatasetStats:
        """Return counts and bounds of one dataset."""
        key = (symbol_key(symbol), Timeframe(timeframe))
        table = self._tables.get(key)
        if table is None or table.num_rows == 0:
            return DatasetStats(key[0], key[1], 0, None, None)
        ts = table.column("ts").cast(pa.int64())
        return DatasetStats(key[0], key[1], table.num_rows, int(ts[0].as_py()), int(ts[-1].as_py()))

    def datasets(self) -> list[DatasetStats]:
        """Return every non-empty dataset."""
        return [self.stats(k, tf) for (k, tf), t in sorted(self._tables.items()) if t.num_rows]


@dataclass(frozen=True)
class _Footer:
    """What a year file's footer says, and the file's identity on disk when it was read."""

    identity: tuple[int, int, int]  # inode, size, modification time (ns)
    rows: int
    bounds: tuple[int, int] | None  # the first and last ``ts``


def _subdirectories(directory: Path) -> list[str]:
    """Return the names of the directories in ``directory``, sorted (no stat per entry)."""
    with os.scandir(directory) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def _ts_bounds(meta: pq.FileMetaData) -> tuple[int, int] | None:
    lows, highs = [], []
    for i in range(meta.num_row_groups):
        if meta.row_group(i).num_rows == 0:
            continue
        stats = meta.row_group(i).column(0).statistics
        if stats is None or not stats.has_min_max:
            raise ValueError("no min/max statistics for 'ts' (not written by this store)")
        lows.append(int(stats.min_raw))  # raw int64 nanoseconds, no precision lost
        highs.append(int(stats.max_raw))
    return (min(lows), max(highs)) if lows else None
