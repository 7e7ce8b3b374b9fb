"""Named types: symbol keys, timeframes, UTC nanoseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ktrdr_shared.types import Timeframe, from_unix_nanos, is_timeframe, symbol_key, to_unix_nanos

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("symbol", "key"),
    [
        ("AAPL", "AAPL"),
        ("BRK B", "BRK_B"),
        ("EUR.USD", "EUR_USD"),
        ("brk.b", "BRK_B"),
        ("A  - B", "A_B"),
        (" SPY ", "SPY"),
        ("ES", "ES"),
    ],
)
def test_symbol_key(symbol: str, key: str) -> None:
    assert symbol_key(symbol) == key


def test_symbol_key_rejects_symbols_without_letters_or_digits() -> None:
    with pytest.raises(ValueError, match="no letters or digits"):
        symbol_key(" .. ")


@given(st.text(min_size=1, max_size=20))
def test_symbol_keys_are_subject_tokens(symbol: str) -> None:
    try:
        key = symbol_key(symbol)
    except ValueError:
        return
    assert key and all(c.isascii() and (c.isalnum() or c == "_") for c in key)
    assert key == key.upper()
    assert symbol_key(key) == key  # idempotent


def test_timeframe_lengths() -> None:
    assert [tf.value for tf in Timeframe] == [
        "1s",
        "5s",
        "15s",
        "30s",
        "1m",
        "5m",
        "15m",
        "30m",
        "1h",
        "4h",
        "1d",
        "1w",
    ]
    assert Timeframe.M5.seconds == 300
    assert Timeframe.H4.duration == timedelta(hours=4)
    assert Timeframe.D1.nanos == 86_400 * 10**9
    assert Timeframe.H4.is_intraday and not Timeframe.D1.is_intraday


def test_unix_nanos_round_trip_and_offsets() -> None:
    moment = datetime(2024, 3, 10, 7, 0, 0, 123456, tzinfo=UTC)
    assert from_unix_nanos(to_unix_nanos(moment)) == moment
    eastern = datetime(2024, 3, 10, 2, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    assert to_unix_nanos(eastern) == to_unix_nanos(moment)
    assert to_unix_nanos(datetime(1970, 1, 1, tzinfo=UTC)) == 0


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_unix_nanos(datetime(2024, 1, 1))


@given(st.integers(min_value=0, max_value=4_000_000_000_000_000_000))
def test_nanos_survive_to_the_microsecond(nanos: int) -> None:
    assert to_unix_nanos(from_unix_nanos(nanos)) == nanos - nanos % 1_000


@pytest.mark.unit
def test_is_timeframe_names_exactly_the_timeframes() -> None:
    assert all(is_timeframe(t.value) for t in Timeframe)
    assert not any(is_timeframe(v) for v in ("2h", "1H", "", "M1", "1h "))
