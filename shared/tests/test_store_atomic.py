"""The one atomic writer: a crash leaves the old file or the new one, and both the file and its
directory are fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from ktrdr_shared.store import atomic
from ktrdr_shared.testing.disk import count_fsyncs

pytestmark = pytest.mark.unit


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_fsyncs(monkeypatch)


def test_a_write_fsyncs_the_file_then_its_directory(tmp_path: Path, fsynced: list[int]) -> None:
    path = tmp_path / "f.json"
    atomic.write_bytes_atomically(path, b"new")
    assert len(fsynced) == 2
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    atomic.write_bytes_atomically(path, b"old")

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.replace_atomically(path, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
    assert path.read_bytes() == b"old"


def test_a_crash_before_the_rename_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.json"
    atomic.write_bytes_atomically(path, b"old")

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic.write_bytes_atomically(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_the_file_gets_the_mode_asked_for(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key.pem"
    atomic.write_bytes_atomically(path, b"secret", mode)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_the_certificate_issuer_writes_through_it(tmp_path: Path, fsynced: list[int]) -> None:
    pytest.importorskip("cryptography")
    from ktrdr_shared.certs import ensure_certificates

    ensure_certificates(tmp_path, ["api"])
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written and len(fsynced) == 2 * len(written)  # each file, then its directory
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    assert not [p for p in written if p.name.endswith(".tmp")]
