"""Helpers for tests that drive the simulator through ib_async (no pytest dependency)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ErrorRecorder:
    """Collect ``(reqId, code, text)`` from an ``ib_async.IB``'s ``errorEvent``.

    Attach it before ``connectAsync`` to also see the farm notices sent during the handshake.
    """

    seen: list[tuple[int, int, str]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def attach(cls, ib: Any) -> ErrorRecorder:
        """Subscribe a new recorder to ``ib.errorEvent``."""
        recorder = cls()
        ib.errorEvent += recorder._on_error
        return recorder

    def _on_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        self.seen.append((req_id, code, text))
        self._arrived.set()

    @property
    def codes(self) -> list[int]:
        """Return every code received so far, in order."""
        return [code for _, code, _ in self.seen]

    def for_request(self, req_id: int) -> list[int]:
        """Return the codes received for one reqId."""
        return [code for rid, code, _ in self.seen if rid == req_id]

    async def wait_for(self, code: int, wait_s: float = 10.0) -> None:
        """Wait until ``code`` has been received (raises TimeoutError after ``wait_s``)."""
        async with asyncio.timeout(wait_s):
            while code not in self.codes:
                self._arrived.clear()
                await self._arrived.wait()
