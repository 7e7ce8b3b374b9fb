"""The two real ``BarsSource`` adapters: pages of ``ktrdr.store.query``, or the store's files."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ktrdr_shared.messages import StartTraining

from ktrdr_trainer.data import Bars, QueryFn, fetch_bars, read_parquet_bars


@dataclass(frozen=True)
class StoreBars:
    """Bars paged out of the data-store by ``query`` (one ``QueryBars`` -> its Arrow bytes)."""

    query: QueryFn

    async def load(self, spec: StartTraining) -> list[Bars]:
        """Return each symbol's bars in ``[spec.start, spec.end)``."""
        return [
            await fetch_bars(self.query, symbol, spec.timeframe, spec.start, spec.end)
            for symbol in spec.symbols
        ]


@dataclass(frozen=True)
class ParquetBars:
    """Bars read from the data-store's Parquet files on this machine's disk."""

    store_dir: Path | str

    async def load(self, spec: StartTraining) -> list[Bars]:
        """Return each symbol's bars in ``[spec.start, spec.end)`` (read off the event loop)."""
        return [
            await asyncio.to_thread(
                read_parquet_bars, self.store_dir, symbol, spec.timeframe, spec.start, spec.end
            )
            for symbol in spec.symbols
        ]
