"""A full disk is a problem of the data directory, named as such, never a raw ``OSError(28)``."""

from __future__ import annotations

import errno
from pathlib import Path

from ktrdr_shared.errors import StorageFull

FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_full(error: BaseException) -> bool:
    """Return whether ``error`` says the file system has no space (or quota) left."""
    return isinstance(error, OSError) and error.errno in FULL


def storage_full(data_dir: Path | str, error: OSError) -> StorageFull:
    """Return the ``storage_full`` problem for ``error``, naming the data directory."""
    why = error.strerror or str(error)
    return StorageFull(
        f"the data directory {data_dir} has no space left ({why}); nothing was half-written: "
        "bars wait on the bus and loads resume once space is freed there",
        details={"data_dir": str(data_dir)},
    )
