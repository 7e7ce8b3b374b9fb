"""Bar-batch wire format: columnar msgpack vs a list of row structs.

Figures: bytes per bar, and decode throughput (bars/s, with validation) of
the columnar ``BarBatch`` against row structs holding the same bars, decoded
in the same run.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from ktrdr_shared import codec
from ktrdr_shared.messages import BarBatch
from ktrdr_shared.types import Price, UnixNanos, Volume


class RowBar(msgspec.Struct, frozen=True):
    """The row-oriented alternative: one struct per bar, same constraints."""

    ts: UnixNanos
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume
    wap: Price
    count: int


class RowBatch(msgspec.Struct, frozen=True):
    symbol: str
    timeframe: str
    bars: list[RowBar]


class TupleBar(RowBar, frozen=True, array_like=True):
    """Rows as msgpack arrays: the row layout's best case."""


class TupleBatch(msgspec.Struct, frozen=True):
    symbol: str
    timeframe: str
    bars: list[TupleBar]


def _batch(n: int) -> BarBatch:
    ts0 = 1_704_205_800_000_000_000
    closes = [100.0 + (i % 97) * 0.01 for i in range(n)]
    return BarBatch(
        symbol="AAPL",
        timeframe="1m",
        start=ts0,
        end=ts0 + n * 60_000_000_000,  # type: ignore[arg-type]
        ts=[ts0 + i * 60_000_000_000 for i in range(n)],
        open=closes,
        high=[c + 0.05 for c in closes],
        low=[c - 0.05 for c in closes],
        close=closes,
        volume=[float(1000 + i % 500) for i in range(n)],
        wap=closes,
        count=[10 + i % 50 for i in range(n)],
    )


def _rate(decode: Any, data: bytes, bars: int, min_s: float) -> float:
    loops, started = 0, time.perf_counter()
    while True:
        decode(data)
        loops += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_s:
            return loops * bars / elapsed


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure size and decode rate of the columnar layout against row layouts."""
    n, min_s = 5_000, (0.3 if quick else 2.0)
    batch = _batch(n)
    columnar = codec.encode(batch, content_type=codec.MSGPACK)
    values = list(
        zip(
            batch.ts,
            batch.open,
            batch.high,
            batch.low,
            batch.close,
            batch.volume,
            batch.wap or [],
            batch.count or [],
            strict=True,
        )
    )
    rows = msgspec.msgpack.encode(RowBatch("AAPL", "1m", [RowBar(*v) for v in values]))
    tuples = msgspec.msgpack.encode(TupleBatch("AAPL", "1m", [TupleBar(*v) for v in values]))
    headers = codec.headers_for(codec.MSGPACK)
    col_rate = _rate(lambda d: codec.decode(d, BarBatch, headers=headers), columnar, n, min_s)
    row_rate = _rate(msgspec.msgpack.Decoder(RowBatch).decode, rows, n, min_s)
    tuple_rate = _rate(msgspec.msgpack.Decoder(TupleBatch).decode, tuples, n, min_s)
    base = "row structs (msgpack maps, same constraints)"
    return [
        {
            "name": "bar_batch.bytes_per_bar",
            "value": len(columnar) / n,
            "baseline": len(rows) / n,
            "ratio": len(columnar) / len(rows),
            "unit": "B/bar",
            "baseline_name": base,
            "target": "< 1",
        },
        {
            "name": "bar_batch.decode_bars_per_s",
            "value": col_rate,
            "baseline": row_rate,
            "ratio": col_rate / row_rate,
            "unit": "bars/s",
            "baseline_name": base,
            "target": "> 1",
        },
        {
            "name": "bar_batch.decode_vs_row_tuples",
            "value": col_rate,
            "baseline": tuple_rate,
            "ratio": col_rate / tuple_rate,
            "unit": "bars/s",
            "baseline_name": "row structs as msgpack arrays (rows' best case)",
        },
    ]
