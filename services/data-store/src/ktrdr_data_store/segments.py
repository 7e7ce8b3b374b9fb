"""Which segments this data-store dispatched: the only windows a bar batch may answer.

"IB answered this window" is a fact the store records, not a claim anyone can publish on
``ktrdr.bars.*``: a batch is merged only when it carries the job and segment id of a segment
the data-store planned and dispatched for that dataset, and its window lies inside that
segment. The book is folded from the job events (``planned`` gives the windows and the
instrument, ``segments_dispatched`` the ids sent), so a restarted store knows it again once
its replay of the log is complete; until then ``ready`` is false and ingest waits.

Finished jobs are kept (a redelivered chunk of a completed load is still its own), the
oldest let go beyond ``max_jobs``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ktrdr_shared.messages import BarBatch, JobPlanned, LoadData
from ktrdr_shared.types import Timeframe, WhatToShow, symbol_key, to_unix_nanos

UNKNOWN_SEGMENT = "unknown_segment"  # the BatchRejected code


@dataclass(frozen=True)
class SegmentWindow:
    """One dispatched segment: its dataset, what it shows and its window ``[start, end)``."""

    key: str
    timeframe: Timeframe
    what_to_show: WhatToShow | None
    start_ns: int
    end_ns: int


class SegmentBook:
    """The segments dispatched per job, as the job events say (see the module docstring)."""

    def __init__(self, max_jobs: int = 20_000) -> None:
        self.ready = False
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, dict[str, SegmentWindow]] = OrderedDict()

    def record(self, command: LoadData, planned: JobPlanned, segment_ids: list[str]) -> None:
        """Note that the segments ``segment_ids`` of a planned load were dispatched."""
        windows = {s.segment_id: s for s in planned.segments}
        book = self._jobs.setdefault(planned.job_id, {})
        self._jobs.move_to_end(planned.job_id)
        for segment_id in segment_ids:
            segment = windows.get(segment_id)
            if segment is not None:
                book[segment_id] = SegmentWindow(
                    key=symbol_key(command.symbol),
                    timeframe=command.timeframe,
                    what_to_show=planned.what_to_show or command.what_to_show,
                    start_ns=to_unix_nanos(segment.start),
                    end_ns=to_unix_nanos(segment.end),
                )
        while len(self._jobs) > self.max_jobs:
            self._jobs.popitem(last=False)

    def problem(self, batch: BarBatch) -> str | None:
        """Return why ``batch`` answers no dispatched segment (None: it answers one)."""
        if batch.job_id is None or batch.segment_id is None:
            return (
                "it names no job and segment: bars are stored only as the answer to a "
                "segment the data-store dispatched (load them with LoadData, or import "
                "a CSV with ktrdr-store import-csv)"
            )
        book = self._jobs.get(batch.job_id)
        if book is None:
            return f"job {batch.job_id!r} is no load this data-store dispatched segments for"
        window = book.get(batch.segment_id)
        if window is None:
            return (
                f"job {batch.job_id!r} dispatched no segment {batch.segment_id!r} "
                f"(it dispatched {len(book)})"
            )
        dataset = (symbol_key(batch.symbol), batch.timeframe)
        if dataset != (window.key, window.timeframe):
            return (
                f"segment {batch.segment_id!r} of job {batch.job_id!r} is for "
                f"{window.key} {window.timeframe.value}, not {dataset[0]} "
                f"{dataset[1].value}"
            )
        if window.what_to_show is not None and batch.what_to_show is not window.what_to_show:
            return (
                f"segment {batch.segment_id!r} of job {batch.job_id!r} shows "
                f"{window.what_to_show.value}, not {batch.what_to_show.value}"
            )
        if not window.start_ns <= batch.start < batch.end <= window.end_ns:
            return (
                f"window [{batch.start}, {batch.end}) lies outside segment "
                f"{batch.segment_id!r} of job {batch.job_id!r} "
                f"[{window.start_ns}, {window.end_ns})"
            )
        return None
