"""Replace a file so that a crash leaves the old file or the new one, never a torn one.

The only atomic writer of the tree: the data-store's Parquet year files, its answered ledger,
instrument and profile books and quarantine entries, and the TLS keys and certificates of
secure mode all go through here. The new content is written to a temporary file in the same
directory (a rename across file systems is not atomic), fsynced, renamed over the old file,
and the directory fsynced, so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: Path, write: Callable[[Path], object], mode: int = 0o600) -> None:
    """Replace ``path`` with what ``write`` writes to the temporary path it is given.

    Args:
        path: the file to replace (its directory must exist).
        write: writes the new content to the path it is called with; any writer will do,
            since the fsync flushes the file whichever descriptor wrote it.
        mode: the new file's permission bits (the temporary file's from the start, so a
            secret is never readable by others, not even for a moment).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, mode)
            write(tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_bytes_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (see ``replace_atomically``)."""
    replace_atomically(path, lambda tmp: tmp.write_bytes(data), mode)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
