"""The real ``BarsSource`` adapters: pages of ``ktrdr.store.query``, the store's files, or its
bucket."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ktrdr_shared.messages import StartTraining
from ktrdr_shared.store.remote import Bucket

from ktrdr_trainer.data import Bars, QueryFn, fetch_bars, read_bucket_bars, read_parquet_bars


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


@dataclass(frozen=True)
class BucketBars:
    """Bars read from the data-store's bucket (``KTRDR_STORE_URL``): a trainer on another host
    that can reach the bucket reads the year files there, not pages over NATS."""

    bucket: Bucket

    async def load(self, spec: StartTraining) -> list[Bars]:
        """Return each symbol's bars in ``[spec.start, spec.end)`` (read off the event loop)."""
        return [
            await asyncio.to_thread(
                read_bucket_bars, self.bucket, symbol, spec.timeframe, spec.start, spec.end
            )
            for symbol in spec.symbols
        ]
