"""Bars on S3-compatible object storage: the same layout, format and reader, in a bucket.

``KTRDR_STORE_URL=s3://<bucket>/<prefix>`` puts the Parquet year files under
``<prefix>/bars/<SYMBOL_KEY>/<timeframe>/<year>.parquet`` in the bucket, in the format the
local store writes (``ktrdr_shared.store.bars``), through pyarrow's S3 filesystem. The same
code runs on SeaweedFS (the tests), MinIO and AWS S3: only ``KTRDR_S3_ENDPOINT`` (empty for
AWS), the keys and the region change.

Atomicity without a rename: S3 has none, but a PUT (single or multipart) makes an object
visible only once it is complete, and replaces the old one whole. A year file is written by
one PUT of the whole file under its own key, so a reader gets the old year or the new one,
never part of either, and a writer killed mid-upload leaves the old object as it was (an
unfinished multipart upload is invisible; the bucket's lifecycle rule, or nothing, removes it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ktrdr_shared.errors import ConfigError
from ktrdr_shared.store.bars import (
    BARS_DIR,
    READ_ERRORS,
    SCHEMA,
    WRITE_OPTIONS,
    concat_limited,
    range_filter,
    year_of_ns,
)
from ktrdr_shared.types import Timeframe, symbol_key

T = TypeVar("T")


# What pyarrow's S3 client says when the server, not the object, is the problem (after its own
# retries): the store is unreachable for now, and nothing about the data is known.
_UNREACHABLE = (
    "NETWORK_CONNECTION", "SERVICE_UNAVAILABLE", "SLOW_DOWN", "INTERNAL_FAILURE",
    "REQUEST_TIMEOUT", "THROTTLING", "curlCode",
)  # fmt: skip


class StoreUnreachable(OSError):
    """The object store did not answer (down, restarting, unreachable): try again later."""


def unreachable(error: BaseException) -> bool:
    """Return whether ``error`` is the object store not answering (not a bad object)."""
    text = str(error)
    return isinstance(error, OSError) and any(mark in text for mark in _UNREACHABLE)


def _reachable(call: Callable[[], T]) -> T:
    """Run ``call``; an unreachable store is raised as ``StoreUnreachable``."""
    try:
        return call()
    except OSError as e:
        if unreachable(e) and not isinstance(e, StoreUnreachable):
            raise StoreUnreachable(f"the object store did not answer: {e}") from e
        raise


class UnreadableObject(Exception):
    """A year object cannot be read: its ``key`` and pyarrow's ``problem``."""

    def __init__(self, key: str, problem: BaseException) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Bucket:
    """Where the store's objects live: a filesystem and the root ``<bucket>/<prefix>``."""

    fs: pafs.FileSystem
    root: str

    def key(self, *parts: str) -> str:
        """Return the object key of ``parts`` under the root."""
        return "/".join([self.root, *parts])


def open_bucket(
    url: str,
    *,
    endpoint: str = "",
    access_key: str = "",
    secret_key: str = "",
    region: str = "us-east-1",
) -> Bucket:
    """Return the bucket named by ``s3://<bucket>[/<prefix>]``.

    Args:
        url: the store's URL.
        endpoint: ``http://host:port`` of an S3-compatible server (SeaweedFS, MinIO);
            empty for AWS S3.
        access_key, secret_key: the S3 keys (empty: pyarrow's default credential chain).
        region: the bucket's region.

    Raises:
        ConfigError: the URL is not ``s3://<bucket>...``, or the endpoint has no scheme.
    """
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(
            f"KTRDR_STORE_URL={url!r}: give s3://<bucket>/<prefix> (or leave it unset for "
            "the local data directory)",
            details={"variable": "KTRDR_STORE_URL"},
        )
    options: dict[str, object] = {"region": region}
    if endpoint:
        where = urlparse(endpoint)
        if where.scheme not in ("http", "https") or not where.netloc:
            raise ConfigError(
                f"KTRDR_S3_ENDPOINT={endpoint!r}: give http(s)://host:port",
                details={"variable": "KTRDR_S3_ENDPOINT"},
            )
        options |= {"endpoint_override": where.netloc, "scheme": where.scheme}
    if access_key or secret_key:
        options |= {"access_key": access_key, "secret_key": secret_key}
    fs = pafs.S3FileSystem(**options)
    root = "/".join(p for p in (parsed.netloc, parsed.path.strip("/")) if p)
    return Bucket(fs, root)


def dataset_prefix(bucket: Bucket, symbol: str, timeframe: Timeframe) -> str:
    """Return the key prefix of one dataset's year objects."""
    return bucket.key(BARS_DIR, symbol_key(symbol), Timeframe(timeframe).value)


def year_key(prefix: str, year: int) -> str:
    """Return the key of one year of a dataset's bars."""
    return f"{prefix}/{int(year)}.parquet"


def year_objects(
    fs: pafs.FileSystem, prefix: str, start_ns: int | None = None, end_ns: int | None = None
) -> dict[str, int]:
    """Return the year objects of a dataset that overlap ``[start_ns, end_ns)`` and their sizes
    (bytes), oldest first, from one listing.

    Raises:
        StoreUnreachable: the store did not answer.
    """
    selector = pafs.FileSelector(prefix, allow_not_found=True)
    infos = _reachable(lambda: fs.get_file_info(selector))
    lo = year_of_ns(start_ns) if start_ns is not None else -1
    hi = year_of_ns(end_ns - 1) if end_ns is not None else 10_000
    years: dict[int, int] = {}
    for info in infos:
        stem = info.base_name.removesuffix(".parquet")
        is_year = info.type == pafs.FileType.File and info.base_name != stem and stem.isdigit()
        if is_year and lo <= int(stem) <= hi:
            years[int(stem)] = info.size or 0
    return {year_key(prefix, y): years[y] for y in sorted(years)}


def year_keys(
    fs: pafs.FileSystem, prefix: str, start_ns: int | None = None, end_ns: int | None = None
) -> list[str]:
    """Return the year objects of a dataset that overlap ``[start_ns, end_ns)``, oldest first."""
    return list(year_objects(fs, prefix, start_ns, end_ns))


def read_year(
    fs: pafs.FileSystem,
    key: str,
    filters: list[tuple[str, str, object]] | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Return one year object's bars in the store's schema.

    Raises:
        UnreadableObject: the object cannot be read.
        StoreUnreachable: the store did not answer.
    """
    try:
        return _reachable(
            lambda: pq.read_table(
                key, filesystem=fs, schema=SCHEMA, filters=filters, columns=columns
            )
        )
    except StoreUnreachable:
        raise
    except READ_ERRORS as e:
        raise UnreadableObject(key, e) from e


def read_range(
    fs: pafs.FileSystem,
    prefix: str,
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Return a dataset's bars with ``start_ns <= ts < end_ns`` (``bars.read_range``'s twin).

    Raises:
        UnreadableObject: naming the first year object in the range that cannot be read.
        StoreUnreachable: the store did not answer.
    """
    filters = range_filter(start_ns, end_ns)
    years = (read_year(fs, k, filters, columns) for k in year_keys(fs, prefix, start_ns, end_ns))
    return concat_limited(years, limit, columns)


def write_year(fs: pafs.FileSystem, key: str, table: pa.Table) -> None:
    """Write ``table`` (store schema, sorted, unique on ``ts``) as the object ``key``: one PUT,
    visible only once complete (see the module docstring)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **WRITE_OPTIONS)
    data = sink.getvalue()

    def put() -> None:
        with fs.open_output_stream(key) as out:
            out.write(data)

    _reachable(put)


def footer(fs: pafs.FileSystem, key: str) -> pq.FileMetaData:
    """Return a year object's Parquet footer (two ranged GETs, no data pages).

    Raises:
        StoreUnreachable: the store did not answer.
        OSError, pyarrow.ArrowException, ValueError: the object cannot be read.
    """

    def read() -> pq.FileMetaData:
        with fs.open_input_file(key) as source:
            return pq.ParquetFile(source).metadata

    return _reachable(read)


__all__ = [
    "Bucket",
    "StoreUnreachable",
    "UnreadableObject",
    "dataset_prefix",
    "footer",
    "open_bucket",
    "read_range",
    "read_year",
    "unreachable",
    "write_year",
    "year_key",
    "year_keys",
]
