"""Rejected messages kept whole, with their reason: nothing ingest refuses is dropped.

Each entry is a directory ``<data_dir>/quarantine/<id>/`` holding ``payload`` (the message
body, byte for byte) and ``meta.json`` (subject, headers, code, check message, job id, when it
was received). ``<id>`` is a prefix of the payload's sha256 plus the subject's, so a redelivered
message lands on the entry it already has instead of making a second one. Both files go
through the store's atomic writer, and ``meta.json`` is written last: an entry without it is
an interrupted put and is ignored (the next put of the same message completes it).

The quarantine is bounded: each put removes the entries older than ``max_age_days`` and then,
oldest first, those beyond ``max_bytes`` of payload (never the entry just put), one log line
each. Releasing an entry first renames it out of sight (``.release.<id>``), so a batch that
ingest rejects again while it is being republished makes a fresh entry instead of landing on
the one about to be deleted.

The listing names each entry's dataset by its bar subject (``ktrdr.bars.<symbol key>.<tf>``)
and, where the payload decodes as far as that, the window ``[start, end)`` its ``BarBatch``
covered; the bars themselves are not decoded, so a batch rejected for its bars still tells.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
from ktrdr_shared import codec, subjects
from ktrdr_shared.errors import MessageDecodeError
from ktrdr_shared.messages import QuarantinedBatch, QuarantineList
from ktrdr_shared.store.atomic import fsync_dir, write_bytes_atomically
from ktrdr_shared.types import Timeframe, UnixNanos, from_unix_nanos, utc_now

log = logging.getLogger(__name__)

PAYLOAD = "payload"
META = "meta.json"
MAX_BYTES = 1 << 30  # 1 GiB of payload (KTRDR_QUARANTINE_MAX_BYTES)
MAX_AGE_DAYS = 30.0  # KTRDR_QUARANTINE_MAX_AGE_DAYS
_ID = re.compile(r"^[0-9a-f]{24}$")
_HELD = ".release."
_INT64_END = 1 << 63

Range = tuple[int, int]


class QuarantineMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about a quarantined message besides its bytes."""

    subject: str
    code: str
    message: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    job_id: str | None = None
    received: datetime


@dataclass(frozen=True)
class QuarantinedEntry:
    """One quarantined message: its id, its metadata and the size of its payload."""

    id: str
    meta: QuarantineMeta
    bytes: int


def quarantine_id(subject: str, payload: bytes) -> str:
    """Return the id of a message: the same subject and bytes always give the same id."""
    digest = hashlib.sha256(subject.encode() + b"\0" + payload).hexdigest()
    return digest[:24]


@dataclass(frozen=True)
class HeldEntry:
    """An entry taken out of the listing while it is released (see ``Quarantine.hold``)."""

    id: str
    meta: QuarantineMeta
    payload: bytes
    path: Path


class _BatchWindow(msgspec.Struct, frozen=True):
    """The window of a ``BarBatch`` payload; its other fields are skipped, not checked."""

    start: UnixNanos
    end: UnixNanos


def batch_window(subject: str, payload: bytes, headers: Mapping[str, str]) -> Range | None:
    """Return the window ``[start, end)`` a kept ``BarBatch`` covered, None if it does not say."""
    try:
        window = codec.decode(payload, _BatchWindow, subject=subject, headers=headers)
    except MessageDecodeError:
        return None
    return (window.start, window.end) if window.start < window.end < _INT64_END else None


def dataset_of(subject: str) -> subjects.BarsSubject | None:
    """Return the (symbol key, timeframe) of a bar subject, None for any other subject."""
    try:
        return subjects.parse_bars(subject)
    except subjects.SubjectError:
        return None


def quarantined_per_dataset(entries: list[QuarantinedEntry]) -> Counter[tuple[str, Timeframe]]:
    """Return how many entries came on each dataset's bar subject."""
    return Counter(key for e in entries if (key := dataset_of(e.meta.subject)) is not None)


@dataclass(frozen=True)
class Quarantine:
    """The quarantine directory of one store (pure file I/O; safe to call from a thread)."""

    root: Path
    max_bytes: int = MAX_BYTES
    max_age_days: float = MAX_AGE_DAYS
    # Each listed entry's batch window, by id: an id names its bytes, so it never changes.
    _windows: dict[str, Range | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def under(
        cls, data_dir: str | Path, *, max_bytes: int = MAX_BYTES, max_age_days: float = MAX_AGE_DAYS
    ) -> Quarantine:
        """Return the quarantine of the store rooted at ``data_dir``."""
        return cls(Path(data_dir) / "quarantine", max_bytes, max_age_days)

    def put(
        self,
        *,
        subject: str,
        payload: bytes,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        job_id: str | None = None,
        received: datetime | None = None,
    ) -> str:
        """Keep a rejected message and return its id (an existing entry is kept as it is).

        Raises:
            OSError: when the entry cannot be written (the caller keeps the message).
        """
        entry_id = quarantine_id(subject, payload)
        entry = self.root / entry_id
        if (entry / META).is_file():
            return entry_id  # a redelivery: the first put already kept it
        new_dir = not entry.exists()
        entry.mkdir(parents=True, exist_ok=True)
        if new_dir:
            fsync_dir(entry.parent)
        meta = QuarantineMeta(
            subject=subject,
            code=code,
            message=message,
            headers=dict(headers or {}),
            job_id=job_id,
            received=received or utc_now(),
        )
        write_bytes_atomically(entry / PAYLOAD, payload)
        write_bytes_atomically(entry / META, msgspec.json.encode(meta))
        try:  # the put's own time is the clock: an entry given an old ``received`` stays
            self.prune(keep=entry_id, now=meta.received)
        except OSError as e:  # the entry is kept: the next put prunes again
            log.warning("quarantine: pruning %s failed: %s", self.root, e)
        return entry_id

    def prune(self, *, keep: str | None = None, now: datetime | None = None) -> list[str]:
        """Remove entries past the age bound, then the oldest beyond the size bound.

        Args:
            keep: an entry never removed (the one just put).
            now: the moment ages are measured from (default: now).

        Returns:
            The ids removed, each logged once with its subject and code.
        """
        oldest_kept = (now or utc_now()) - timedelta(days=self.max_age_days)
        listed = self.list()
        total = sum(e.bytes for e in listed)
        entries = [e for e in reversed(listed) if e.id != keep]  # oldest first
        removed = []
        for e in entries:
            if e.meta.received < oldest_kept:
                reason = f"older than {self.max_age_days:g} days"
            elif total > self.max_bytes:
                reason = f"the quarantine holds more than {self.max_bytes} bytes"
            else:
                continue
            if self.delete(e.id):
                removed.append(e.id)
                total -= e.bytes
                log.warning(
                    "quarantine: removed %s (subject %s, code %s, received %s): %s",
                    e.id,
                    e.meta.subject,
                    e.meta.code,
                    e.meta.received.isoformat(),
                    reason,
                )
        return removed

    def list(self) -> builtins.list[QuarantinedEntry]:
        """Return every complete entry, newest first (by received time, then id)."""
        if not self.root.is_dir():
            return []
        entries = [e for p in self.root.iterdir() if (e := self.get(p.name)) is not None]
        return sorted(entries, key=lambda e: (e.meta.received, e.id), reverse=True)

    def get(self, entry_id: str) -> QuarantinedEntry | None:
        """Return one entry, or None when there is none with this id (or it is incomplete)."""
        entry = self._dir(entry_id)
        if entry is None:
            return None
        try:
            meta = msgspec.json.decode((entry / META).read_bytes(), type=QuarantineMeta)
            size = (entry / PAYLOAD).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        return QuarantinedEntry(id=entry_id, meta=meta, bytes=size)

    def windows(self, entries: builtins.list[QuarantinedEntry]) -> dict[str, Range | None]:
        """Return the batch window of each entry (``batch_window``), each payload read once."""
        known = {
            e.id: self._windows[e.id] if e.id in self._windows else self._window_of(e)
            for e in entries
        }
        self._windows.clear()  # forget the entries gone since
        self._windows.update(known)
        return known

    def _window_of(self, entry: QuarantinedEntry) -> Range | None:
        payload = self.payload(entry.id)
        if payload is None:  # deleted meanwhile
            return None
        return batch_window(entry.meta.subject, payload, entry.meta.headers)

    def payload(self, entry_id: str) -> bytes | None:
        """Return the raw bytes of one entry, or None when there is no such entry."""
        entry = self._dir(entry_id)
        if entry is None or not (entry / META).is_file():
            return None
        return (entry / PAYLOAD).read_bytes()

    def delete(self, entry_id: str) -> bool:
        """Remove one entry; return whether there was one."""
        entry = self._dir(entry_id)
        if entry is None or not entry.is_dir():
            return False
        shutil.rmtree(entry)
        fsync_dir(self.root)
        return True

    def hold(self, entry_id: str, now_ns: int) -> HeldEntry | None:
        """Take one entry out of the listing for release; None when there is no such entry.

        Follow with ``discard`` once the payload is republished, or ``restore`` if it was not.
        """
        entry = self._dir(entry_id)
        if entry is None or not (entry / META).is_file():
            return None
        held = self.root / f"{_HELD}{entry_id}.{now_ns}"
        try:
            os.rename(entry, held)
        except FileNotFoundError:  # deleted or released meanwhile
            return None
        fsync_dir(self.root)
        meta = msgspec.json.decode((held / META).read_bytes(), type=QuarantineMeta)
        return HeldEntry(id=entry_id, meta=meta, payload=(held / PAYLOAD).read_bytes(), path=held)

    def discard(self, held: HeldEntry) -> None:
        """Delete a held entry for good (its payload was republished)."""
        shutil.rmtree(held.path)
        fsync_dir(self.root)

    def restore(self, held: HeldEntry) -> None:
        """Put a held entry back (its release failed); a newer entry of the same id wins."""
        try:
            os.rename(held.path, self.root / held.id)
        except OSError:  # ingest rejected the same bytes again meanwhile: that entry stays
            shutil.rmtree(held.path)
        fsync_dir(self.root)

    def _dir(self, entry_id: str) -> Path | None:
        # Only ids of our own shape: an id from a request never names a path outside the root.
        return self.root / entry_id if _ID.match(entry_id) else None


def release_headers(held: HeldEntry, now_ms: int) -> dict[str, str]:
    """Return the headers to republish a held entry with: its own, with a fresh message id.

    JetStream's duplicate window would swallow the original ``Nats-Msg-Id``.
    """
    headers = {k: v for k, v in held.meta.headers.items() if k.lower() != "nats-msg-id"}
    return headers | {"Nats-Msg-Id": f"release.{held.id}.{now_ms}"}


def quarantine_list(quarantine: Quarantine) -> QuarantineList:
    """Return the wire reply listing every entry, newest first, with its dataset and window."""
    entries = quarantine.list()
    windows = quarantine.windows(entries)
    return QuarantineList(entries=[_listed(e, windows[e.id]) for e in entries])


def _listed(entry: QuarantinedEntry, window: Range | None) -> QuarantinedBatch:
    dataset = dataset_of(entry.meta.subject)
    return QuarantinedBatch(
        id=entry.id,
        subject=entry.meta.subject,
        code=entry.meta.code,
        message=entry.meta.message,
        job_id=entry.meta.job_id,
        received=entry.meta.received,
        bytes=entry.bytes,
        symbol=dataset.symbol_key if dataset else None,
        timeframe=dataset.timeframe if dataset else None,
        start=from_unix_nanos(window[0]) if window else None,
        end=from_unix_nanos(window[1]) if window else None,
    )
