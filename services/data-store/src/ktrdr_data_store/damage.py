"""A stored file that cannot be read damages its own dataset, and nothing else.

A truncated year file or a garbled ledger is reported as ``DatasetDamaged`` naming the file
(relative to the data directory), the problem and what to do, so every other dataset keeps
answering and the operator knows which file to move aside.
"""

from __future__ import annotations

from pathlib import Path

from ktrdr_shared.errors import DatasetDamaged

REMEDY = "move the file aside and load the range again"


def describe(root: Path, path: Path, problem: object) -> str:
    """Return ``"<file relative to root>: <problem>"``, as ``DatasetInfo.damaged`` shows it."""
    name = file_name(root, path)
    text = str(problem).strip() or type(problem).__name__
    # pyarrow prefixes the absolute path: the name relative to the data directory says it
    text = text.replace(f"Could not open Parquet input source '{path}': ", "")
    return f"{name}: {text.replace(str(path), name).rstrip('.')}"


def damaged_error(root: Path, path: Path, problem: object) -> DatasetDamaged:
    """Return the error that reports ``path`` (under ``root``) unreadable because of ``problem``."""
    damage = describe(root, path, problem)
    return DatasetDamaged(f"{damage}; {REMEDY}",
                          details={"file": file_name(root, path), "damaged": damage})  # fmt: skip


def file_name(root: Path, path: Path) -> str:
    """Return ``path`` relative to the data directory ``root`` (as is when outside it)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
