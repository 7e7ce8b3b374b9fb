"""Rejected messages kept whole, with their reason: nothing ingest refuses is dropped.

Each entry is a directory ``<data_dir>/quarantine/<id>/`` holding ``payload`` (the message
body, byte for byte) and ``meta.json`` (subject, headers, code, check message, job id, when it
was received). ``<id>`` is a prefix of the payload's sha256 plus the subject's, so a redelivered
message lands on the entry it already has instead of making a second one. Both files go
through the store's atomic writer, and ``meta.json`` is written last: an entry without it is
an interrupted put and is ignored (the next put of the same message completes it).
"""

from __future__ import annotations

import builtins
import hashlib
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
from ktrdr_shared.messages import QuarantinedBatch, QuarantineList
from ktrdr_shared.types import utc_now

from ktrdr_data_store.atomic import fsync_dir, write_bytes_atomically

PAYLOAD = "payload"
META = "meta.json"
_ID = re.compile(r"^[0-9a-f]{24}$")


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
class Quarantine:
    """The quarantine directory of one store (pure file I/O; safe to call from a thread)."""

    root: Path

    @classmethod
    def under(cls, data_dir: str | Path) -> Quarantine:
        """Return the quarantine of the store rooted at ``data_dir``."""
        return cls(Path(data_dir) / "quarantine")

    def put(self, *, subject: str, payload: bytes, code: str, message: str,
            headers: dict[str, str] | None = None, job_id: str | None = None,
            received: datetime | None = None) -> str:  # fmt: skip
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
        meta = QuarantineMeta(subject=subject, code=code, message=message,
                              headers=dict(headers or {}), job_id=job_id,
                              received=received or utc_now())  # fmt: skip
        write_bytes_atomically(entry / PAYLOAD, payload)
        write_bytes_atomically(entry / META, msgspec.json.encode(meta))
        return entry_id

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

    def _dir(self, entry_id: str) -> Path | None:
        # Only ids of our own shape: an id from a request never names a path outside the root.
        return self.root / entry_id if _ID.match(entry_id) else None


def quarantine_list(entries: list[QuarantinedEntry]) -> QuarantineList:
    """Return the wire reply listing ``entries`` (in the order given)."""
    return QuarantineList(entries=[
        QuarantinedBatch(id=e.id, subject=e.meta.subject, code=e.meta.code,
                         message=e.meta.message, job_id=e.meta.job_id,
                         received=e.meta.received, bytes=e.bytes)
        for e in entries
    ])  # fmt: skip
