"""The bar store in an S3-compatible bucket: ``BarStore`` over ``ktrdr_shared.store.remote``.

Same layout, schema, invariants and contract tests as ``ParquetBarStore``; only where the
year files live differs, and how one is replaced (one PUT: see ``remote``'s docstring). The
data-store's own books (the answered ledger, the quarantine, profiles and instruments) stay
in its local data directory.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs
from ktrdr_shared.errors import DatasetDamaged
from ktrdr_shared.store import remote
from ktrdr_shared.store.bars import BARS_DIR, READ_ERRORS
from ktrdr_shared.types import Timeframe, is_timeframe, symbol_key

from ktrdr_data_store.damage import damaged_error
from ktrdr_data_store.store import DatasetStats, MergeResult, _ts_bounds, merge_by_year


class ObjectBarStore:
    """``BarStore`` on a bucket (see the module docstring)."""

    def __init__(self, bucket: remote.Bucket) -> None:
        self.bucket = bucket

    @property
    def fs(self) -> pafs.FileSystem:
        """Return the bucket's filesystem."""
        return self.bucket.fs

    def merge(self, symbol: str, timeframe: Timeframe, bars: pa.Table) -> MergeResult:
        """Merge bars into their year objects, each replaced by one PUT."""
        if bars.num_rows == 0:
            return MergeResult(0, None, None)
        prefix = remote.dataset_prefix(self.bucket, symbol, timeframe)
        present = set(remote.year_keys(self.fs, prefix))

        def old(year: int) -> pa.Table | None:
            key = remote.year_key(prefix, year)
            return self._read(key) if key in present else None

        def write(year: int, merged: pa.Table) -> None:
            remote.write_year(self.fs, remote.year_key(prefix, year), merged)

        return merge_by_year(bars, old, write)

    def read(
        self,
        symbol: str,
        timeframe: Timeframe,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Read only the year objects that overlap the range.

        Raises:
            DatasetDamaged: naming a year object in the range that cannot be read.
        """
        prefix = remote.dataset_prefix(self.bucket, symbol, timeframe)
        try:
            return remote.read_range(self.fs, prefix, start_ns, end_ns, limit)
        except remote.UnreadableObject as e:
            raise self._damaged(e.key, e.problem) from e

    def stats(self, symbol: str, timeframe: Timeframe) -> DatasetStats:
        """Return counts and bounds from the year objects' footers.

        Raises:
            DatasetDamaged: naming the first year object that cannot be read.
        """
        stats, damage = self._scan(symbol_key(symbol), Timeframe(timeframe))
        if damage is not None:
            raise damage
        return stats

    def datasets(self) -> list[DatasetStats]:
        """Return every dataset with at least one bar or an unreadable year object."""
        root = self.bucket.key(BARS_DIR)
        infos = self.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        found = []
        for key_dir in sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory):
            tf_infos = self.fs.get_file_info(pafs.FileSelector(f"{root}/{key_dir}"))
            for timeframe in sorted(i.base_name for i in tf_infos):
                if is_timeframe(timeframe):
                    stats, _ = self._scan(key_dir, Timeframe(timeframe))
                    if stats.rows or stats.damaged:
                        found.append(stats)
        return found

    def _scan(self, key: str, timeframe: Timeframe) -> tuple[DatasetStats, DatasetDamaged | None]:
        prefix = remote.dataset_prefix(self.bucket, key, timeframe)
        rows, first, last, damage, size = 0, None, None, None, 0
        for year, bytes_ in remote.year_objects(self.fs, prefix).items():
            size += bytes_
            try:
                meta = remote.footer(self.fs, year)
                bounds = _ts_bounds(meta)
            except remote.StoreUnreachable:
                raise
            except READ_ERRORS as e:
                damage = damage or self._damaged(year, e)
                continue
            rows += meta.num_rows
            if bounds is not None:
                first = bounds[0] if first is None else min(first, bounds[0])
                last = bounds[1] if last is None else max(last, bounds[1])
        problem = damage.details["damaged"] if damage else None
        return DatasetStats(key, timeframe, rows, first, last, problem, size), damage

    def _read(self, key: str) -> pa.Table:
        try:
            return remote.read_year(self.fs, key)
        except remote.UnreadableObject as e:
            raise self._damaged(e.key, e.problem) from e

    def _damaged(self, key: str, problem: BaseException) -> DatasetDamaged:
        return damaged_error(PurePosixPath(self.bucket.root), PurePosixPath(key), problem)


__all__ = ["ObjectBarStore"]
