"""IB error classification, by code and text, from the texts IB really sends."""

from __future__ import annotations

import pytest
from ktrdr_ib_connector.errors import FailureKind, RetryPolicy, classify, timed_out

pytestmark = pytest.mark.unit

HMDS = "Historical Market Data Service error message:"


@pytest.mark.parametrize(
    ("code", "text", "kind", "retryable"),
    [
        (162, HMDS + "Historical data request pacing violation", FailureKind.PACING, True),
        (162, HMDS + "HMDS query returned no data: AAPL@SMART Trades", FailureKind.NO_DATA, False),
        (162, HMDS + "API historical data query cancelled: 12", FailureKind.CANCELLED, False),
        (162, HMDS + "Time length exceed max.", FailureKind.INVALID_REQUEST, False),
        (162, HMDS + "invalid step: 3", FailureKind.INVALID_REQUEST, False),
        (162, HMDS + "No market data permissions for NYSE STK", FailureKind.NOT_SUBSCRIBED, False),
        (162, HMDS + "Trading TWS session is connected from a different IP address",
         FailureKind.COMPETING_SESSION, True),
        (200, "No security definition has been found for the request",
         FailureKind.UNKNOWN_SYMBOL, False),
        (166, "HMDS Expired Contract Violation", FailureKind.EXPIRED_CONTRACT, False),
        (322, "Error processing request:-'bS' : cause - Only 50 simultaneous API historical "
              "data requests allowed.", FailureKind.TOO_MANY_OPEN, True),
        (321, "Error validating request.-'bM' : cause - Historical data requested duration is "
              "invalid.", FailureKind.INVALID_REQUEST, False),
        (10314, "End Date/Time: The date, time, or time-zone entered is invalid.",
         FailureKind.INVALID_REQUEST, False),
        (1100, "Connectivity between IB and TWS has been lost.", FailureKind.IB_UNAVAILABLE, True),
        (2105, "HMDS data farm connection is broken:ushmds", FailureKind.FARM_DOWN, True),
        (99999, "something new", FailureKind.UNKNOWN, True),
    ],
)  # fmt: skip
def test_classify(code: int, text: str, kind: FailureKind, retryable: bool) -> None:
    result = classify(code, text)
    assert result.kind is kind
    assert result.retryable is retryable
    assert result.ib_code == code


def test_forex_trades_fails_fast_and_says_use_midpoint() -> None:
    # The text a real gateway sends (issue 14, from public reports).
    result = classify(162, HMDS + "No historical market data for EUR/CASH@FXSUBPIP Last 1d")
    assert result.kind is FailureKind.INVALID_REQUEST
    assert not result.retryable
    assert RetryPolicy().next_delay(result, 1) is None
    assert "no TRADES data for forex" in result.message
    assert "use MIDPOINT" in result.message
    assert "EUR/CASH@FXSUBPIP" in result.message  # IB's own words are kept


def test_other_missing_kinds_of_data_fail_fast_too() -> None:
    result = classify(162, HMDS + "No historical market data for XYZ/STK@SMART Bid 1 min")
    assert result.kind is FailureKind.INVALID_REQUEST
    assert not result.retryable
    assert "BID" in result.message


def test_no_data_is_an_answer_and_timeout_is_not() -> None:
    assert classify(162, HMDS + "HMDS query returned no data: x").is_empty_answer
    assert not timed_out(60).is_empty_answer
    assert timed_out(60).kind is FailureKind.TIMEOUT


def test_retry_policy_bounds_attempts_but_not_pacing_or_disconnects() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=1, factor=2, cap_s=10)
    timeout = timed_out(5)
    assert [policy.next_delay(timeout, n) for n in (1, 2, 3)] == [5.0, 5.0, None]
    unknown = classify(99999, "x")
    assert [policy.next_delay(unknown, n) for n in (1, 2)] == [10.0, 10.0]
    pacing = classify(162, HMDS + "Historical data request pacing violation")
    assert policy.next_delay(pacing, 50) == 15.0
    assert policy.next_delay(classify(200, "No security definition"), 1) is None
