"""What each dataset's bars are of: the contract its loads named and the hours they asked for.

A dataset (symbol, timeframe) holds one contract's bars, all with regular trading hours only or
all with extended hours: a load asking for another contract (a currency, listing, futures
month or conId) or other hours would mix two kinds of bars in one set (an RTH hourly bar
stamped 09:30 beside extended-hours bars at 09:00 and 10:00). A load records its profile; a
later load with a different one is refused, naming both, while the dataset holds bars. Datasets
loaded before profiles existed count as loaded with the defaults. Coverage and the gap filler
read the profile too, so they plan the same hours and ask for the same contract.

One small JSON file, replaced atomically. Like the instrument book it is a cache of what the
loads said: an unreadable file is logged (once) and taken as empty. It is decoded again only
when it changed on disk (its inode, size or modification time), so listing every dataset's
hours reads it once, not once per dataset.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import msgspec
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import ContractSpec
from ktrdr_shared.store.atomic import write_bytes_atomically
from ktrdr_shared.types import Timeframe, symbol_key

log = logging.getLogger(__name__)


class DatasetProfile(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The contract spec and trading hours a dataset's loads asked for."""

    contract: ContractSpec | None = None
    use_rth: bool = False

    def describe(self) -> str:
        hours = "regular trading hours only" if self.use_rth else "extended hours"
        spec = "the default contract" if self.contract is None else self.contract.describe()
        return f"{spec}, {hours}"


DEFAULT = DatasetProfile()


class ProfileBook:
    """The profiles of every dataset, by ``"<symbol key>.<timeframe>"``."""

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root) / "profiles.json"
        self._lock = threading.Lock()
        self._reported = False
        self._read: tuple[tuple[int, int, int], dict[str, DatasetProfile]] | None = None

    def get(self, symbol: str, timeframe: Timeframe) -> DatasetProfile:
        """Return the dataset's profile (the defaults when none was recorded)."""
        return self._all().get(_key(symbol, timeframe), DEFAULT)

    def claim(
        self, symbol: str, timeframe: Timeframe, profile: DatasetProfile, *, has_bars: bool
    ) -> None:
        """Record ``profile`` for the dataset, or refuse it when the dataset holds other bars.

        Raises:
            InvalidRequest: the dataset was loaded with another profile (or, holding bars
                from before profiles, with the defaults).
        """
        key = _key(symbol, timeframe)
        with self._lock:
            known = dict(self._all())  # a copy: the decoded file is shared with readers
            held = known.get(key, DEFAULT) if has_bars else None  # no bars: nothing to mix
            if held is not None and held != profile:
                raise InvalidRequest(
                    f"{key.replace('.', ' ')} holds bars of {held.describe()}; this load asks "
                    f"for {profile.describe()}, which would mix two kinds of bars in one "
                    "dataset; load it with the same contract and hours, or as another "
                    "timeframe",
                    details={
                        "symbol": symbol,
                        "timeframe": Timeframe(timeframe).value,
                        "held": msgspec.to_builtins(held),
                        "asked": msgspec.to_builtins(profile),
                    },
                )
            if known.get(key) != profile:
                known[key] = profile
                data = {k: msgspec.to_builtins(v) for k, v in sorted(known.items())}
                write_bytes_atomically(self.path, json.dumps(data).encode())

    def _all(self) -> dict[str, DatasetProfile]:
        """Return every profile (not to be changed: it is kept until the file changes)."""
        try:
            with self.path.open("rb") as f:
                on_disk = os.fstat(f.fileno())
                identity = (on_disk.st_ino, on_disk.st_size, on_disk.st_mtime_ns)
                read = self._read
                if read is not None and read[0] == identity:
                    return read[1]
                raw = f.read()
        except FileNotFoundError:
            return {}
        try:
            found = msgspec.json.decode(raw, type=dict[str, DatasetProfile])
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            if not self._reported:
                self._reported = True
                log.warning(
                    "%s is unreadable (%s): taken as empty; loads record their profiles again",
                    self.path,
                    e,
                )
            return {}
        self._read = (identity, found)
        return found


def _key(symbol: str, timeframe: Timeframe) -> str:
    return f"{symbol_key(symbol)}.{Timeframe(timeframe).value}"
