"""A stored file that cannot be read damages its own dataset, and nothing else.

A truncated year file or a garbled ledger is reported as ``DatasetDamaged`` naming the file
(relative to the data directory), the problem and what to do (the repair command of its
dataset), so every other dataset keeps answering and the operator knows how to mend it.
"""

from __future__ import annotations

from pathlib import PurePath

from ktrdr_shared.errors import DatasetDamaged
from ktrdr_shared.types import is_timeframe

REMEDY = "move the file aside and load the range again"


def remedy(name: str) -> str:
    """Return what to do about the unreadable file ``name`` (relative to the data directory).

    A file of a dataset (``bars/<KEY>/<tf>/<year>.parquet``, ``answered/<KEY>.<tf>.json``)
    names that dataset's repair command; any other file the generic remedy.
    """
    dataset = dataset_of(name)
    if dataset is None:
        return REMEDY
    key, timeframe = dataset
    return (
        f"repair it with `ktrdr data repair {key} {timeframe}` (POST /api/v1/data/{key}/"
        f"{timeframe}/repair), to move the file aside (kept under damaged/) and load the "
        "range again"
    )


def dataset_of(name: str) -> tuple[str, str] | None:
    """Return the (symbol key, timeframe) whose file ``name`` is, or None."""
    parts = name.split("/")
    if len(parts) == 4 and parts[0] == "bars" and parts[3].endswith(".parquet"):
        key, timeframe = parts[1], parts[2]
    elif len(parts) == 2 and parts[0] == "answered" and parts[1].endswith(".json"):
        key, _, timeframe = parts[1].removesuffix(".json").rpartition(".")
    else:
        return None
    return (key, timeframe) if key and is_timeframe(timeframe) else None


def describe(root: PurePath, path: PurePath, problem: object) -> str:
    """Return ``"<file relative to root>: <problem>"``, as ``DatasetInfo.damaged`` shows it."""
    name = file_name(root, path)
    text = str(problem).strip() or type(problem).__name__
    # pyarrow prefixes the absolute path: the name relative to the data directory says it
    text = text.replace(f"Could not open Parquet input source '{path}': ", "")
    return f"{name}: {text.replace(str(path), name).rstrip('.')}"


def damaged_error(root: PurePath, path: PurePath, problem: object) -> DatasetDamaged:
    """Return the error that reports ``path`` (under ``root``) unreadable because of ``problem``."""
    damage = describe(root, path, problem)
    return DatasetDamaged(
        f"{damage}; {remedy(file_name(root, path))}",
        details={"file": file_name(root, path), "damaged": damage},
    )


def file_name(root: PurePath, path: PurePath) -> str:
    """Return ``path`` relative to the data directory ``root`` (as is when outside it)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
