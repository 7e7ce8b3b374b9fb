"""Answers to ``ktrdr.store.query`` and ``ktrdr.store.datasets`` (no NATS imports).

A query returns one page of bars in ``[start, end)`` and a cursor for the
next page. Pages are sized to stay under the NATS max payload: the row count
is capped by an estimate of bytes per row for the format asked.

A dataset that was never loaded (no bar stored, no range IB answered) is ``not_found``, with
the command that loads it (``require_loaded``), for queries and coverage alike; a dataset that
holds bars answers an empty page for a range with none in it.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
from collections.abc import Mapping
from dataclasses import replace

import pyarrow as pa
from ktrdr_shared.errors import InvalidRequest, NotFound
from ktrdr_shared.messages import BarsPage, DatasetInfo, DatasetList, QueryBars, QueryFormat
from ktrdr_shared.types import Timeframe, from_unix_nanos, to_unix_nanos

from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.profiles import ProfileBook
from ktrdr_data_store.store import BarStore, DatasetStats

# Encoded size of one bar with headroom: a page of 5,000 bars with wap and count
# measured 85 B/bar as JSON and 64 B/bar as Arrow; test_queries checks pages fit.
BYTES_PER_ROW = {QueryFormat.JSON: 160, QueryFormat.ARROW: 72}
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def encode_cursor(next_ts: int) -> str:
    """Return an opaque cursor that resumes a query at ``next_ts``."""
    return base64.urlsafe_b64encode(str(next_ts).encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Return the timestamp a cursor resumes at.

    Raises:
        InvalidRequest: for a cursor this service did not issue.
    """
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest(
            f"invalid cursor {cursor!r}: pass back the next_cursor of a page",
            details={"field": "cursor"},
        ) from e


def page_rows(query: QueryBars, max_payload: int) -> int:
    """Return how many rows one page may hold for this query and payload limit."""
    return max(1, min(query.limit, (max_payload - 4096) // BYTES_PER_ROW[query.format]))


def never_loaded(symbol: str, timeframe: Timeframe) -> NotFound:
    """Return the ``not_found`` of a dataset with nothing stored, saying how to load it.

    The message ends with the hint, which ``details["hint"]`` repeats on its own (the REST
    gateway answers it apart from the detail).
    """
    tf = Timeframe(timeframe).value
    body = json.dumps({"symbol": symbol, "timeframe": tf})
    hint = (
        f"load it: `ktrdr data load {shlex.quote(symbol)} {tf}` or POST /api/v1/data/load "
        f"{body} (LoadData on ktrdr.cmd.data.load)"
    )
    return NotFound(
        f"nothing is stored for {symbol} {tf}; {hint}",
        details={"symbol": symbol, "timeframe": tf, "hint": hint},
    )


def require_loaded(
    store: BarStore, ledger: AnsweredLedger, symbol: str, timeframe: Timeframe
) -> None:
    """Refuse a dataset that was never loaded: no bar stored and no range IB answered.

    A dataset IB answered empty (a symbol with no history there yet) was loaded: it is no
    error to ask for it.

    Raises:
        NotFound: ``never_loaded``.
        DatasetDamaged: a file of the dataset cannot be read.
    """
    if store.stats(symbol, timeframe).rows == 0 and not ledger.ranges(symbol, timeframe):
        raise never_loaded(symbol, timeframe)


def query_page(
    store: BarStore, query: QueryBars, max_payload: int, ledger: AnsweredLedger | None = None
) -> tuple[pa.Table, str | None]:
    """Return one page of bars and the cursor of the next page (None at the end).

    Raises:
        NotFound: the first page is empty and the dataset was never loaded (checked when
            ``ledger`` is given; see ``require_loaded``).
    """
    start = (
        decode_cursor(query.cursor)
        if query.cursor
        else (to_unix_nanos(query.start) if query.start else None)
    )
    end = to_unix_nanos(query.end) if query.end else None
    rows = page_rows(query, max_payload)
    table = store.read(query.symbol, query.timeframe, start, end, limit=rows + 1)
    if table.num_rows == 0 and query.cursor is None and ledger is not None:
        require_loaded(store, ledger, query.symbol, query.timeframe)
    if table.num_rows <= rows:
        return table, None
    next_ts = int(table.column("ts").cast(pa.int64())[rows].as_py())
    return table.slice(0, rows), encode_cursor(next_ts)


def json_page(query: QueryBars, table: pa.Table, cursor: str | None) -> BarsPage:
    """Return a page as the JSON reply."""
    has_trades = table.column("wap").null_count < table.num_rows
    return BarsPage(
        symbol=query.symbol,
        timeframe=query.timeframe,
        ts=table.column("ts").cast(pa.int64()).to_pylist(),
        open=table.column("open").to_pylist(),
        high=table.column("high").to_pylist(),
        low=table.column("low").to_pylist(),
        close=table.column("close").to_pylist(),
        volume=table.column("volume").to_pylist(),
        wap=table.column("wap").to_pylist() if has_trades else None,
        count=table.column("count").to_pylist() if has_trades else None,
        next_cursor=cursor,
    )


def arrow_page(table: pa.Table, cursor: str | None) -> bytes:
    """Return a page as an Arrow IPC stream; the cursor travels in the schema metadata."""
    meta = {b"next_cursor": (cursor or "").encode()}
    table = table.replace_schema_metadata(meta)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def dataset_list(
    store: BarStore,
    ledger: AnsweredLedger | None = None,
    *,
    profiles: ProfileBook | None = None,
    quarantined: Mapping[tuple[str, Timeframe], int] | None = None,
) -> DatasetList:
    """Return every stored dataset with its first and last bar, size, hours and rejects.

    A dataset with an unreadable year file or answered ledger is listed with ``damaged``
    naming the file and the problem; every other dataset is listed as usual.

    Args:
        store: where the bars are.
        ledger: the answered ranges, whose unreadable files are listed as damage.
        profiles: each dataset's profile, for ``use_rth`` (None: not told).
        quarantined: how many quarantined batches each (symbol key, timeframe) has.
    """
    listed = {(d.symbol_key, d.timeframe): d for d in store.datasets()}
    ledger_damage = ledger.damaged() if ledger is not None else {}
    for key, damage in ledger_damage.items():
        known = listed.get(key) or DatasetStats(key[0], key[1], 0, None, None)
        listed[key] = replace(known, damaged=known.damaged or damage)
    rejects = quarantined or {}
    return DatasetList(
        datasets=[
            DatasetInfo(
                symbol=d.symbol_key,
                timeframe=d.timeframe,
                rows=d.rows,
                first=from_unix_nanos(d.first_ns) if d.first_ns is not None else None,
                last=from_unix_nanos(d.last_ns) if d.last_ns is not None else None,
                damaged=d.damaged,
                bytes=d.bytes,
                use_rth=profiles.get(*key).use_rth if profiles is not None else None,
                quarantined=rejects.get(key, 0),
            )
            for key, d in sorted(listed.items())
        ]
    )
