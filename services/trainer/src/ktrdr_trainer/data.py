"""Bars for training: paged out of the data-store as Arrow, or read from its Parquet files.

Either way a symbol's bars end up as one contiguous ``[n, 5]`` float64 tensor
(open, high, low, close, volume) plus an int64 array of open times, built
column-wise: no Python runs per row. No NATS here: the caller hands in the
function that sends one ``QueryBars`` and returns the Arrow reply's bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from ktrdr_shared.errors import NotFound, PermanentError
from ktrdr_shared.messages import QueryBars, QueryFormat
from ktrdr_shared.store import bars as on_disk
from ktrdr_shared.store import remote
from ktrdr_shared.types import Timeframe, from_unix_nanos, to_unix_nanos

COLUMNS = ("open", "high", "low", "close", "volume")
OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)
PAGE_LIMIT = 100_000  # the most QueryBars allows; the store caps pages by payload anyway

QueryFn = Callable[[QueryBars], Awaitable[bytes]]


@dataclass(frozen=True)
class Bars:
    """One symbol's bars: open times (ns) and an ``[n, 5]`` OHLCV tensor on the CPU."""

    symbol: str
    timeframe: Timeframe
    ts: np.ndarray
    values: torch.Tensor

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def close(self) -> torch.Tensor:
        """Return the close column."""
        return self.values[:, CLOSE]


def bars_from_table(symbol: str, timeframe: Timeframe, table: pa.Table) -> Bars:
    """Return a store-schema table as ``Bars`` (sorted and unique on ``ts``)."""
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    columns = [table.column(name).cast(pa.float64()).to_numpy() for name in COLUMNS]
    values = np.ascontiguousarray(np.column_stack(columns)) if ts.size else np.empty((0, 5))
    if ts.size > 1 and not np.all(ts[1:] > ts[:-1]):  # the store guarantees it; check cheaply
        ts, first = np.unique(ts, return_index=True)
        values = values[first]
    return Bars(symbol, Timeframe(timeframe), ts.astype(np.int64), torch.from_numpy(values))


def read_arrow_stream(data: bytes) -> tuple[pa.Table, str | None]:
    """Return one Arrow page of ``ktrdr.store.query`` and its next cursor (None at the end)."""
    table = pa.ipc.open_stream(data).read_all()
    cursor = (table.schema.metadata or {}).get(b"next_cursor", b"").decode()
    return table, cursor or None


async def fetch_bars(
    query: QueryFn, symbol: str, timeframe: Timeframe, start: datetime | None, end: datetime | None
) -> Bars:
    """Page one symbol's bars in ``[start, end)`` out of the data-store.

    Args:
        query: sends one ``QueryBars`` to ``ktrdr.store.query`` and returns the reply bytes.
        symbol: the symbol as the user wrote it.
        timeframe: the bar size.
        start: first bar included (None: from the first stored bar).
        end: bars at or after it are excluded (None: to the last stored bar).

    Raises:
        NotFound: the store holds no bars for the symbol in that range.
    """
    pages: list[pa.Table] = []
    cursor: str | None = None
    while True:
        request = QueryBars(
            symbol=symbol,
            timeframe=timeframe,
            start=start,
            end=end,
            limit=PAGE_LIMIT,
            cursor=cursor,
            format=QueryFormat.ARROW,
        )
        table, cursor = read_arrow_stream(await query(request))
        pages.append(table)
        if cursor is None:
            break
    bars = bars_from_table(symbol, timeframe, pa.concat_tables(pages))
    return _require_bars(bars, start, end)


def read_parquet_bars(
    store_dir: Path | str,
    symbol: str,
    timeframe: Timeframe,
    start: datetime | None,
    end: datetime | None,
) -> Bars:
    """Read one symbol's bars straight from the data-store's Parquet files.

    The layout and the reader are the store's own (``ktrdr_shared.store.bars``).

    Raises:
        NotFound: no file holds bars for the symbol in that range.
        UnreadableFile: a year file in the range cannot be read.
    """
    directory = on_disk.dataset_dir(store_dir, symbol, timeframe)
    start_ns = to_unix_nanos(start) if start else None
    end_ns = to_unix_nanos(end) if end else None
    table = on_disk.read_range(directory, start_ns, end_ns, columns=["ts", *COLUMNS])
    return _require_bars(bars_from_table(symbol, timeframe, table), start, end)


def read_bucket_bars(
    bucket: remote.Bucket,
    symbol: str,
    timeframe: Timeframe,
    start: datetime | None,
    end: datetime | None,
) -> Bars:
    """Read one symbol's bars straight from the data-store's bucket (``KTRDR_STORE_URL``).

    The same year files as ``read_parquet_bars``, through ``ktrdr_shared.store.remote``.

    Raises:
        NotFound: no object holds bars for the symbol in that range.
        UnreadableObject: a year object in the range cannot be read.
        StoreUnreachable: the object store did not answer.
    """
    prefix = remote.dataset_prefix(bucket, symbol, timeframe)
    start_ns = to_unix_nanos(start) if start else None
    end_ns = to_unix_nanos(end) if end else None
    table = remote.read_range(bucket.fs, prefix, start_ns, end_ns, columns=["ts", *COLUMNS])
    return _require_bars(bars_from_table(symbol, timeframe, table), start, end)


@dataclass(frozen=True)
class DataFingerprint:
    """What a model was trained on: enough to find the same bars again and prove it."""

    symbols: list[str]
    timeframe: str
    start: datetime | None
    end: datetime | None
    first: datetime
    last: datetime
    rows: int
    rows_per_symbol: dict[str, int]
    sha256: str


def fingerprint(
    bars: Sequence[Bars], start: datetime | None, end: datetime | None
) -> DataFingerprint:
    """Return the fingerprint of the bars of a run (a hash over every value, in order)."""
    digest = hashlib.sha256()
    for b in bars:
        digest.update(f"{b.symbol}|{b.timeframe.value}|{len(b)}|".encode())
        digest.update(np.ascontiguousarray(b.ts, dtype="<i8").tobytes())
        digest.update(np.ascontiguousarray(b.values.numpy(), dtype="<f8").tobytes())
    return DataFingerprint(
        symbols=[b.symbol for b in bars],
        timeframe=bars[0].timeframe.value,
        start=start,
        end=end,
        first=from_unix_nanos(int(min(b.ts[0] for b in bars))),
        last=from_unix_nanos(int(max(b.ts[-1] for b in bars))),
        rows=sum(len(b) for b in bars),
        rows_per_symbol={b.symbol: len(b) for b in bars},
        sha256=digest.hexdigest(),
    )


def _require_bars(bars: Bars, start: datetime | None, end: datetime | None) -> Bars:
    if len(bars) == 0:
        span = (
            f"{start.isoformat() if start else 'the first bar'} to "
            f"{end.isoformat() if end else 'the last bar'}"
        )
        raise NotFound(
            f"no bars for {bars.symbol} {bars.timeframe.value} in range ({span}): load them first",
            details={"symbol": bars.symbol, "timeframe": bars.timeframe.value},
        )
    if not bool(torch.isfinite(bars.values).all()):
        raise PermanentError(
            f"bars of {bars.symbol} {bars.timeframe.value} hold non-finite "
            "prices or volumes; reload them",
            details={"symbol": bars.symbol},
        )
    return bars
