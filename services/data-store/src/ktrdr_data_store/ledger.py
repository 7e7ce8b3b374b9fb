"""What IB already answered, per dataset: half-open ns ranges, merged, stored atomically.

A range is "answered" once a bar batch for it is durable, bars or not (an
empty batch for a holiday still says "IB has nothing here"), so gap planning
never asks IB twice for the same range.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from ktrdr_shared.errors import DatasetDamaged
from ktrdr_shared.store.atomic import write_bytes_atomically
from ktrdr_shared.types import InstrumentType, Timeframe, is_timeframe, symbol_key

from ktrdr_data_store.damage import damaged_error

log = logging.getLogger(__name__)

Range = tuple[int, int]


def merge_ranges(ranges: list[Range]) -> list[Range]:
    """Return the union of half-open ranges as sorted, disjoint, non-touching ranges."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract_ranges(ranges: list[Range], spans: list[Range]) -> tuple[list[Range], list[Range]]:
    """Return ``(ranges minus spans, ranges within spans)``, each merged (half-open ranges)."""
    cuts = merge_ranges(spans)
    kept: list[Range] = []
    dropped: list[Range] = []
    for start, end in merge_ranges(ranges):
        at = start
        for lo, hi in cuts:
            if hi <= at or lo >= end:
                continue
            if lo > at:
                kept.append((at, lo))
            dropped.append((max(at, lo), min(end, hi)))
            at = min(end, hi)
        if at < end:
            kept.append((at, end))
    return merge_ranges(kept), merge_ranges(dropped)


class AnsweredLedger:
    """The answered ranges of every dataset, one small JSON file each."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root) / "answered"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, symbol: str, timeframe: Timeframe) -> Path:
        return self.root / f"{symbol_key(symbol)}.{Timeframe(timeframe).value}.json"

    def path_of(self, symbol: str, timeframe: Timeframe) -> Path:
        """Return the file that holds one dataset's answered ranges (it may not exist)."""
        return self._path(symbol, timeframe)

    def ranges(self, symbol: str, timeframe: Timeframe) -> list[Range]:
        """Return the answered ranges of one dataset.

        Raises:
            DatasetDamaged: naming the file, when it cannot be read.
        """
        return self._read(self._path(symbol, timeframe))

    def damaged(self) -> dict[tuple[str, Timeframe], str]:
        """Return ``"<file>: <problem>"`` of every unreadable file, by (symbol key, timeframe)."""
        found: dict[tuple[str, Timeframe], str] = {}
        for path in sorted(self.root.glob("*.json")):
            key, _, timeframe = path.name.removesuffix(".json").rpartition(".")
            if not key or not is_timeframe(timeframe):
                continue
            try:
                self._read(path)
            except DatasetDamaged as e:
                found[(key, Timeframe(timeframe))] = e.details["damaged"]
        return found

    def _read(self, path: Path) -> list[Range]:
        try:
            return [(int(a), int(b)) for a, b in json.loads(path.read_bytes())]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as e:  # bad JSON, or not a list of pairs
            raise damaged_error(self.root.parent, path, e) from e

    def add(self, symbol: str, timeframe: Timeframe, ranges: list[Range]) -> None:
        """Record more answered ranges (merged with what is there), atomically."""
        path = self._path(symbol, timeframe)
        merged = merge_ranges(self.ranges(symbol, timeframe) + ranges)
        write_bytes_atomically(path, json.dumps(merged).encode())

    def forget(self, symbol: str, timeframe: Timeframe, spans: list[Range]) -> list[Range]:
        """Drop what lies inside ``spans`` from the answered ranges; return what was dropped.

        Raises:
            DatasetDamaged: naming the file, when it cannot be read.
        """
        kept, dropped = subtract_ranges(self.ranges(symbol, timeframe), spans)
        if dropped:
            write_bytes_atomically(self._path(symbol, timeframe), json.dumps(kept).encode())
        return dropped


class InstrumentBook:
    """Which instrument each stored symbol is (type and exchange), as its loads resolved it.

    Loads learn it from the connector (``ktrdr.ib.validate``) or from the command; the
    coverage endpoint and the gap filler then read the market's calendar from here instead of
    guessing from the name or asking IB again. One small JSON file, replaced atomically.

    The book is a cache: an unreadable file or entry counts as unknown (logged once, naming
    the file), so the next load asks the connector again and ``put`` rewrites the book.
    """

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root) / "instruments.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # loads plan concurrently, each in a worker thread
        self._reported: set[str] = set()  # problems already logged, so each is logged once

    def _all(self) -> dict[str, list[str]]:
        try:
            known = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
            self._report(f"{e}")
            return {}
        if not isinstance(known, dict):
            self._report(f"a JSON object was expected, found {type(known).__name__}")
            return {}
        return known

    def get(self, symbol: str) -> tuple[InstrumentType, str] | None:
        """Return the symbol's (instrument type, exchange), if a load resolved it."""
        key = symbol_key(symbol)
        entry = self._all().get(key)
        if entry is None:
            return None
        try:
            kind, exchange = entry[:2]
            return InstrumentType(kind), str(exchange)
        except (TypeError, ValueError) as e:
            self._report(f"entry {key!r} is {entry!r} ({e})")
            return None

    def symbol(self, key: str) -> str | None:
        """Return the symbol as its loads named it (``BRK B``) for a store key (``BRK_B``).

        The store's paths and subjects hold keys, which lose spaces and dots; IB needs the
        symbol. None for an entry written before symbols were kept, or none at all.
        """
        entry = self._all().get(symbol_key(key))
        if isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[2], str):
            return entry[2]
        return None

    def put(self, symbol: str, instrument_type: InstrumentType, exchange: str) -> None:
        """Record the symbol's instrument and its name (no write when it is already known)."""
        entry = [InstrumentType(instrument_type).value, exchange, symbol.strip().upper()]
        with self._lock:
            known = self._all()
            if known.get(symbol_key(symbol)) == entry:
                return
            known[symbol_key(symbol)] = entry
            write_bytes_atomically(self.path, json.dumps(known, sort_keys=True).encode())

    def _report(self, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            log.warning(
                "%s is unreadable (%s): taken as unknown; loads resolve the symbols "
                "again and rewrite it",
                self.path,
                problem,
            )
