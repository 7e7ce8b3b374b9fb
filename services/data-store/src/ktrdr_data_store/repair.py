"""Repair a damaged dataset: move its unreadable files aside, forget their range, reload it.

An unreadable year file or answered ledger is moved, never deleted, to
``<data_dir>/damaged/<UTC stamp>/<same relative path>`` (a rename within the data directory,
with every directory touched fsynced), so the operator can still look at it. The answered
ranges inside the moved year files' span (a year file holds one UTC calendar year) are dropped
from the ledger, so gap planning asks IB for them again; a moved ledger forgets every range.
``reload_command`` is the ``LoadData`` that fetches what was lost: the answered ranges forgotten,
so the dataset comes back as it was.

File I/O only (safe in a worker thread); the endpoint in ``app.py`` publishes the command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ktrdr_shared.errors import DatasetDamaged, NotFound
from ktrdr_shared.messages import DatasetRepaired, LoadData, TimeRange
from ktrdr_shared.store.atomic import fsync_dir
from ktrdr_shared.types import LoadMode, Timeframe, from_unix_nanos, to_unix_nanos

from ktrdr_data_store.damage import file_name
from ktrdr_data_store.ledger import AnsweredLedger, Range, merge_ranges
from ktrdr_data_store.store import ParquetBarStore

DAMAGED_DIR = "damaged"


@dataclass(frozen=True)
class Repair:
    """What a repair did: files moved (relative to the data directory) and ranges forgotten.

    ``reload`` is the range to load again (see ``_reload``), or None when no year file was
    moved. When the ledger itself was moved (``ledger_moved``) every answered range is gone, so
    the reload is the whole history whatever ``reload`` says.
    """

    moved: list[str]
    forgotten: list[Range]
    reload: tuple[int, int | None] | None
    ledger_moved: bool


def year_span(path: Path) -> Range:
    """Return the nanosecond span ``[Jan 1, next Jan 1)`` UTC of a year file (``2024.parquet``)."""
    year = int(path.stem)
    start = datetime(year, 1, 1, tzinfo=UTC)
    return to_unix_nanos(start), to_unix_nanos(start.replace(year=year + 1))


def stamp(now: datetime) -> str:
    """Return the name of one repair's directory under ``damaged/``: ``YYYYmmddTHHMMSSZ``."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def move_aside(root: Path, path: Path, now: datetime) -> str:
    """Move ``path`` to ``<root>/damaged/<stamp>/<its path relative to root>``; return the name.

    The rename stays within the data directory, so it is atomic; both directories and every
    directory created on the way are fsynced. A name already taken gets ``.1``, ``.2``, ...
    """
    name = file_name(root, path)
    target = root / DAMAGED_DIR / stamp(now) / name
    _make_dirs(root, target.parent)
    n = 0
    while target.exists():
        n += 1
        target = target.with_name(f"{Path(name).name}.{n}")
    os.rename(path, target)
    fsync_dir(target.parent)
    fsync_dir(path.parent)
    return name


def repair_dataset(
    store: ParquetBarStore, ledger: AnsweredLedger, symbol: str, timeframe: Timeframe, now: datetime
) -> Repair:
    """Move the dataset's unreadable files aside and forget the answered ranges they held.

    Raises:
        NotFound: the dataset has neither a bar directory nor a ledger.
    """
    ledger_file = ledger.path_of(symbol, timeframe)
    if not store.dataset_dir(symbol, timeframe).is_dir() and not ledger_file.exists():
        raise NotFound(
            f"no dataset {symbol} {Timeframe(timeframe).value} in the store; list "
            "them with `ktrdr data ls` (GET /api/v1/data)"
        )
    bad_years = store.unreadable_files(symbol, timeframe)
    spans = merge_ranges([year_span(path) for path in bad_years])
    # The ledger first: a repair cut short (a full disk fails the ledger's rewrite) has moved
    # nothing yet, so running it again finds the same files; a move cut short leaves a file
    # that the next run finds and moves, its ranges already forgotten.
    try:
        forgotten = ledger.forget(symbol, timeframe, spans)
        ledger_moved = False
    except DatasetDamaged:
        forgotten, ledger_moved = [], True
    moved = [move_aside(store.root, path, now) for path in bad_years]
    if ledger_moved:
        moved.append(move_aside(store.root, ledger_file, now))
    return Repair(
        moved, forgotten, _reload(store, symbol, timeframe, bad_years, forgotten), ledger_moved
    )


def _reload(
    store: ParquetBarStore,
    symbol: str,
    timeframe: Timeframe,
    bad_years: list[Path],
    forgotten: list[Range],
) -> tuple[int, int | None] | None:
    """Return the range to load again: what the ledger knew was answered in the moved years.

    That brings back exactly what the files held. Bars without answered ranges (a CSV import)
    leave only the years themselves to go by: their span, open-ended (up to IB's clock) when
    no later year is stored.
    """
    if not bad_years:
        return None
    if forgotten:
        return forgotten[0][0], forgotten[-1][1]
    spans = merge_ranges([year_span(path) for path in bad_years])
    later = [p for p in store.year_files(symbol, timeframe) if int(p.stem) > _last(bad_years)]
    return spans[0][0], spans[-1][1] if later else None


def reload_command(
    symbol: str, timeframe: Timeframe, repair: Repair, job_id: str
) -> LoadData | None:
    """Return the ``LoadData`` (mode ``full``) that fetches what the repair lost, if anything."""
    if repair.ledger_moved:  # nothing is known to be answered: the whole history
        return LoadData(job_id=job_id, symbol=symbol, timeframe=timeframe, mode=LoadMode.FULL)
    if repair.reload is None:
        return None
    start, end = repair.reload
    return LoadData(
        job_id=job_id,
        symbol=symbol,
        timeframe=timeframe,
        mode=LoadMode.FULL,
        start=from_unix_nanos(start),
        end=None if end is None else from_unix_nanos(end),
    )


def repaired(
    symbol: str, timeframe: Timeframe, repair: Repair, job_id: str | None
) -> DatasetRepaired:
    """Return the wire reply of a repair."""
    return DatasetRepaired(
        symbol=symbol,
        timeframe=timeframe,
        moved=repair.moved,
        forgotten=[
            TimeRange(start=from_unix_nanos(a), end=from_unix_nanos(b)) for a, b in repair.forgotten
        ],
        job_id=job_id,
    )


def _last(year_files: list[Path]) -> int:
    return max(int(p.stem) for p in year_files)


def _make_dirs(root: Path, directory: Path) -> None:
    """Create ``directory`` (under ``root``) and fsync the parent of each one created."""
    missing = []
    at = directory
    while not at.exists() and at != root:
        missing.append(at)
        at = at.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)
