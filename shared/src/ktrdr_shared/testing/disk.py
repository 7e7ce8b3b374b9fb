"""Test helper for files on disk: count the fsyncs a write makes (the atomic writer's two)."""

from __future__ import annotations

import os

import pytest


def count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Return a list that each ``os.fsync`` from now on appends its descriptor to (the fsync
    still happens); the monkeypatch undoes it after the test."""
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls
