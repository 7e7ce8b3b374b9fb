"""A full disk (or an object store that does not answer) is named as such, never a raw
``OSError``: both are waited out, never quarantined."""

from __future__ import annotations

import errno
from pathlib import Path

from ktrdr_shared.errors import StorageFull
from ktrdr_shared.store.remote import StoreUnreachable

FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_full(error: BaseException) -> bool:
    """Return whether ``error`` says the file system has no space (or quota) left."""
    return isinstance(error, OSError) and error.errno in FULL


def is_unavailable(error: BaseException) -> bool:
    """Return whether nothing can be written for now: a full disk, or an object store that
    does not answer. Both are waited out (bars stay on the bus), never quarantined."""
    return is_full(error) or isinstance(error, StoreUnreachable)


def unavailable(data_dir: Path | str, error: OSError) -> StorageFull:
    """Return the problem of ``is_unavailable``'s ``error``, in words."""
    if isinstance(error, StoreUnreachable):
        return StorageFull(
            f"{error}; nothing was half-written: bars wait on the bus and loads resume once "
            "the object store answers again",
            details={"data_dir": str(data_dir)},
        )
    return storage_full(data_dir, error)


def storage_full(data_dir: Path | str, error: OSError) -> StorageFull:
    """Return the ``storage_full`` problem for ``error``, naming the data directory."""
    why = error.strerror or str(error)
    return StorageFull(
        f"the data directory {data_dir} has no space left ({why}); nothing was half-written: "
        "bars wait on the bus and loads resume once space is freed there",
        details={"data_dir": str(data_dir)},
    )
