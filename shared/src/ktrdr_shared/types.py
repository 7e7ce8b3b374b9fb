"""Named value types, each constraint written once.

Every message field that carries a symbol, a timeframe, a time or a price uses
one of these, so the constraint shows in every JSON schema and every decode
error names the field that broke it.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from msgspec import Meta

# Every pattern ends ``$(?!\n)``: Python's ``$`` also matches before a final newline (so
# ``"AAPL\n"`` passed ``...$``), and ``\Z`` means something else in the ECMA regexes of the
# JSON Schema these patterns are published in; ``$(?!\n)`` is the end in both.
# A symbol as the user wrote it (no leading or trailing space). Messages upper-case it
# after decoding (see ``messages.base``), so a hand-typed ``aapl`` is carried as ``AAPL``.
Symbol = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9 ._/&-]*[A-Za-z0-9._/&-])?$(?!\n)",
        description="Instrument symbol as IB knows it (e.g. AAPL, BRK B, EURUSD); upper-cased.",
        examples=["AAPL", "BRK B", "EURUSD"],
    ),
]

# The subject/path form of a symbol; see ``symbol_key``.
SymbolKey = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Z0-9_]+$(?!\n)")]

# Any datetime that carries an offset. A naive datetime is rejected at decode.
UtcDatetime = Annotated[
    datetime,
    Meta(tz=True, description="RFC 3339 timestamp with an offset; UTC is the convention."),
]

# A calendar date (a session's date in coverage), as JSON writes it.
IsoDate = Annotated[
    str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$(?!\n)", description="A date, YYYY-MM-DD.")
]

# Nanoseconds since the Unix epoch (UTC), the bar's *open* time.
UnixNanos = Annotated[int, Meta(ge=0, description="Nanoseconds since 1970-01-01T00:00:00Z.")]

PositiveFloat = Annotated[float, Meta(gt=0)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]
PositiveInt = Annotated[int, Meta(gt=0)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
Fraction = Annotated[float, Meta(gt=0, lt=1)]

# Real prices go below zero: the May 2020 WTI crude future (CL) settled at -37.63 USD on
# 2020-04-20, and calendar spreads and some power and gas contracts quote negative. Whether a
# price is finite and a bar consistent is checked where bars enter (the bar validation), not
# by this type.
Price = Annotated[float, Meta(description="Price in the instrument's currency (may be < 0).")]
Volume = Annotated[float, Meta(ge=0, description="Traded volume; 0 where IB reports none.")]

# 32 lowercase hex characters (uuid4().hex); also the command's Nats-Msg-Id.
JobId = Annotated[
    str,
    Meta(
        pattern=r"^[0-9a-f]{32}$(?!\n)",
        description="32-character hex uuid4",
        examples=["0" * 32],
    ),
]
SegmentId = Annotated[str, Meta(pattern=r"^[0-9A-Za-z_-]{1,64}$(?!\n)")]
ModelId = Annotated[str, Meta(pattern=r"^[0-9A-Za-z_-]{1,64}$(?!\n)")]


class Timeframe(enum.StrEnum):
    """A bar size ktrdr stores. The connector alone maps these to IB bar sizes."""

    S1 = "1s"
    S5 = "5s"
    S15 = "15s"
    S30 = "30s"
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"
    W1 = "1w"

    @property
    def seconds(self) -> int:
        """Return the nominal length of one bar in seconds."""
        return _TIMEFRAME_SECONDS[self.value]

    @property
    def duration(self) -> timedelta:
        """Return the nominal length of one bar."""
        return timedelta(seconds=self.seconds)

    @property
    def nanos(self) -> int:
        """Return the nominal length of one bar in nanoseconds."""
        return self.seconds * 1_000_000_000

    @property
    def is_intraday(self) -> bool:
        """Return True for bars shorter than a day."""
        return self.seconds < 86_400


_TIMEFRAME_SECONDS = {
    "1s": 1, "5s": 5, "15s": 15, "30s": 30,
    "1m": 60, "5m": 300, "15m": 900, "30m": 1800,
    "1h": 3600, "4h": 14_400, "1d": 86_400, "1w": 604_800,
}  # fmt: skip


def is_timeframe(value: str) -> bool:
    """Return True if ``value`` names a timeframe (``"1h"``), e.g. a directory of the store."""
    return value in _TIMEFRAME_SECONDS


class InstrumentType(enum.StrEnum):
    """IB security types ktrdr knows (IB's ``secType``)."""

    STK = "STK"
    CASH = "CASH"
    FUT = "FUT"
    IND = "IND"


class WhatToShow(enum.StrEnum):
    """IB's ``whatToShow`` for historical bars."""

    TRADES = "TRADES"
    MIDPOINT = "MIDPOINT"
    BID = "BID"
    ASK = "ASK"
    BID_ASK = "BID_ASK"


def default_what_to_show(instrument_type: InstrumentType) -> WhatToShow:
    """Return IB's sensible whatToShow: MIDPOINT for forex (no trades), TRADES otherwise."""
    return WhatToShow.MIDPOINT if instrument_type is InstrumentType.CASH else WhatToShow.TRADES


class LoadMode(enum.StrEnum):
    """How a load picks its range: after the last bar, before the first, or both plus gaps."""

    TAIL = "tail"
    BACKFILL = "backfill"
    FULL = "full"


_NON_KEY_RUN = re.compile(r"[^A-Z0-9]+")


def symbol_key(symbol: str) -> str:
    """Return the subject/path key of a symbol.

    Upper-cases it and replaces every run of characters outside ``A-Z0-9``
    with one ``_``: ``BRK B`` -> ``BRK_B``, ``EUR.USD`` -> ``EUR_USD``.

    Raises:
        ValueError: if nothing of the symbol survives (e.g. ``"..."``).
    """
    key = _NON_KEY_RUN.sub("_", symbol.strip().upper()).strip("_")
    if not key:
        raise ValueError(f"symbol {symbol!r} has no letters or digits to form a key")
    return key


def to_unix_nanos(moment: datetime) -> int:
    """Return nanoseconds since the epoch for an aware datetime.

    Raises:
        ValueError: for a naive datetime, whose instant is unknowable.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no offset; give it one (UTC)")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_unix_nanos(nanos: int) -> datetime:
    """Return the UTC datetime of nanoseconds since the epoch (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=nanos // 1_000)


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
