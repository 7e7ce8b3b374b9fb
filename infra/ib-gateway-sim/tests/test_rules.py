"""IB's local validation of historical requests: codes, order, and window arithmetic."""

import datetime as dt

import pytest
from ktrdr_ib_sim.catalogue import build_catalogue
from ktrdr_ib_sim.codes import IBError
from ktrdr_ib_sim.rules import (
    EndTime,
    check_step,
    parse_bar_size,
    parse_duration,
    parse_end,
    validate_historical,
    window_start,
)
from ktrdr_ib_sim.sessions import MarketKind, schedule
from ktrdr_ib_sim.timeframes import BAR_SIZES, Duration, DurationUnit

pytestmark = pytest.mark.unit

JAN5_2100_UTC = int(dt.datetime(2024, 1, 5, 21, 0, tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", EndTime(None)),
        ("20240105-21:00:00", EndTime(JAN5_2100_UTC)),
        ("20240105 16:00:00 US/Eastern", EndTime(JAN5_2100_UTC)),
        ("20240105 16:00:00 America/New_York", EndTime(JAN5_2100_UTC)),
        ("20240105 21:00:00 UTC", EndTime(JAN5_2100_UTC)),
        ("20240105 21:00:00 GMT", EndTime(JAN5_2100_UTC)),
        ("20240105 16:00:00", EndTime(JAN5_2100_UTC, implied_zone=True)),
    ],
)
def test_end_time_forms_ib_accepts(text: str, expected: EndTime) -> None:
    assert parse_end(text, login_tz="US/Eastern") == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-05 16:00:00",
        "20240105",
        "20241305 16:00:00 UTC",
        "20240105 16:00:00 Mars/Base",
        "20240105  16:00:00",
        "yesterday",
    ],
)
def test_other_end_times_get_10314(text: str) -> None:
    with pytest.raises(IBError) as caught:
        parse_end(text, login_tz="US/Eastern")
    assert caught.value.code == 10314


@pytest.mark.parametrize(
    ("text", "count", "unit"),
    [("30 S", 30, "S"), ("86400 S", 86400, "S"), ("365 D", 365, "D"), ("52 W", 52, "W"),
     ("12 M", 12, "M"), ("68 Y", 68, "Y"), ("1 D", 1, "D")],
)  # fmt: skip
def test_durations_within_limits_parse(text: str, count: int, unit: str) -> None:
    assert parse_duration(text) == Duration(count, DurationUnit(unit))


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("", "duration not specified"),
        ("1D", "integer{SPACE}unit"),
        ("1 X", "integer{SPACE}unit"),
        ("0 D", "duration is invalid"),
        ("29 S", "duration is invalid"),
        ("86401 S", "greater than 86400 seconds"),
        ("366 D", "365 days must be made in years"),
        ("53 W", "52 weeks must be made in years"),
        ("13 M", "12 months must be made in years"),
    ],
)
def test_bad_durations_get_321(text: str, cause: str) -> None:
    with pytest.raises(IBError) as caught:
        parse_duration(text)
    assert caught.value.code == 321
    assert cause in caught.value.text


def test_bar_sizes_accept_both_week_and_month_spellings() -> None:
    assert parse_bar_size("1W") is parse_bar_size("1 week")
    assert parse_bar_size("1M") is parse_bar_size("1 month")
    with pytest.raises(IBError) as caught:
        parse_bar_size("1 sec")
    assert caught.value.code == 321


@pytest.mark.parametrize(
    ("bar", "duration", "allowed"),
    [("1 secs", "2000 S", True), ("1 secs", "2001 S", False), ("1 secs", "1 D", False),
     ("5 secs", "1 D", True), ("5 secs", "2 D", False), ("10 secs", "1 W", True),
     ("30 secs", "1 M", True), ("30 secs", "1 Y", False), ("1 min", "1 Y", True),
     ("1 day", "68 Y", True)],
)  # fmt: skip
def test_small_bars_have_a_maximum_duration(bar: str, duration: str, allowed: bool) -> None:
    def check() -> None:
        check_step(BAR_SIZES[bar], parse_duration(duration))

    if allowed:
        check()
    else:
        with pytest.raises(IBError) as caught:
            check()
        assert (caught.value.code, caught.value.text.endswith("Time length exceed max.")) == (
            162,
            True,
        )


def test_validation_reports_the_first_broken_rule_in_ib_order() -> None:
    with pytest.raises(IBError) as caught:
        validate_historical(
            end_text="garbage",
            duration_text="",
            bar_text="1 sec",
            what_to_show="NOPE",
            format_date=3,
            keep_up_to_date=False,
            login_tz="UTC",
        )
    assert caught.value.code == 10314


@pytest.mark.parametrize(
    ("format_date", "keep", "end", "what", "cause"),
    [(3, False, "", "TRADES", "Date formatting selection of 3 rejected."),
     (1, True, "20240105-21:00:00", "TRADES", "End date not supported with live updates"),
     (1, True, "", "BID_ASK", "Source price not supported with live updates"),
     (1, False, "", "PRICES", "whatToShow is invalid")],
)  # fmt: skip
def test_format_and_live_update_rules(
    format_date: int, keep: bool, end: str, what: str, cause: str
) -> None:
    with pytest.raises(IBError) as caught:
        validate_historical(
            end_text=end,
            duration_text="1 D",
            bar_text="1 min",
            what_to_show=what,
            format_date=format_date,
            keep_up_to_date=keep,
            login_tz="UTC",
        )
    assert caught.value.code == 321
    assert cause in caught.value.text


def _aapl_sessions():  # type: ignore[no-untyped-def]
    aapl = build_catalogue(dt.date(2024, 7, 1))[0]
    return schedule(MarketKind.US_EQUITY, True, aapl.zone)


def test_days_count_back_trading_sessions() -> None:
    sessions = _aapl_sessions()
    monday_early = int(dt.datetime(2024, 7, 8, 12, 0, tzinfo=dt.UTC).timestamp())  # 08:00 NY
    friday_open = int(dt.datetime(2024, 7, 5, 13, 30, tzinfo=dt.UTC).timestamp())
    wednesday_open = int(dt.datetime(2024, 7, 3, 13, 30, tzinfo=dt.UTC).timestamp())
    assert window_start(monday_early, Duration(1, DurationUnit.DAYS), sessions) == friday_open
    # July 4th is a holiday: two sessions back from Monday morning is Wednesday.
    assert window_start(monday_early, Duration(2, DurationUnit.DAYS), sessions) == wednesday_open


def test_seconds_weeks_months_years_count_clock_time() -> None:
    sessions = _aapl_sessions()
    end = dt.datetime(2024, 3, 15, 12, tzinfo=dt.UTC)
    end_s = int(end.timestamp())

    def start(count: int, unit: str) -> dt.datetime:
        s = window_start(end_s, Duration(count, DurationUnit(unit)), sessions)
        return dt.datetime.fromtimestamp(s, dt.UTC)

    assert start(3600, "S") == end - dt.timedelta(hours=1)
    assert start(2, "W") == end - dt.timedelta(weeks=2)
    assert start(1, "M") == dt.datetime(2024, 2, 15, 12, tzinfo=dt.UTC)
    assert start(1, "Y") == dt.datetime(2023, 3, 15, 12, tzinfo=dt.UTC)
