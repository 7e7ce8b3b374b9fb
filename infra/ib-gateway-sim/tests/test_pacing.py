"""The pacing ledger on its own: exact thresholds, with a hand-driven clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_ib_sim.pacing import PacedRequest, PacingLedger, PacingRule

pytestmark = pytest.mark.unit


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(n: int, series: str = "AAPL", what: str = "TRADES") -> PacedRequest:
    """Return the n-th distinct request for one contract/exchange/whatToShow."""
    return PacedRequest.of((series, what, n), (series, what), what)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_identical_request_is_refused_inside_15_s_and_admitted_at_15_s(clock: FakeClock) -> None:
    ledger = PacingLedger(clock)
    assert ledger.admit(request(1)) is None
    clock.now += 14.999
    assert ledger.admit(request(1)) is PacingRule.IDENTICAL
    clock.now += 0.001
    assert ledger.admit(request(1)) is None


def test_five_per_series_in_2_s_pass_and_the_sixth_fails(clock: FakeClock) -> None:
    ledger = PacingLedger(clock)
    for n in range(5):
        assert ledger.admit(request(n)) is None
    assert ledger.admit(request(5)) is PacingRule.BURST
    assert ledger.admit(request(5, series="MSFT")) is None  # another contract is not affected
    clock.now += 2.0
    assert ledger.admit(request(6)) is None


def test_bid_ask_counts_twice(clock: FakeClock) -> None:
    ledger = PacingLedger(clock)
    for n in range(2):
        assert ledger.admit(request(n, what="BID_ASK")) is None  # weight 4 so far
    assert ledger.admit(request(2, what="BID_ASK")) is PacingRule.BURST  # would make 6
    assert ledger.admit(request(3, what="BID_ASK", series="MSFT")) is None


def test_sixty_in_ten_minutes_pass_and_the_sixty_first_fails(clock: FakeClock) -> None:
    ledger = PacingLedger(clock)
    for n in range(60):
        assert ledger.admit(request(n, series=f"S{n % 20}")) is None
        clock.now += 2.0 / 3  # 60 requests spread over 40 s: no burst violation
    assert ledger.in_window() == 60
    assert ledger.admit(request(60, series="NEW")) is PacingRule.LONG_WINDOW
    clock.now = 1000.0 + 600.0  # the first request leaves the window
    assert ledger.admit(request(61, series="NEW")) is None


def test_time_scale_compresses_every_window(clock: FakeClock) -> None:
    ledger = PacingLedger(clock, time_scale=0.01)
    assert ledger.admit(request(1)) is None
    clock.now += 0.14  # 14 s of IB time
    assert ledger.admit(request(1)) is PacingRule.IDENTICAL
    clock.now += 0.02  # 16 s of IB time
    assert ledger.admit(request(1)) is None


def test_refused_requests_are_not_remembered(clock: FakeClock) -> None:
    ledger = PacingLedger(clock)
    for n in range(5):
        ledger.admit(request(n))
    for _ in range(10):
        assert ledger.admit(request(99)) is PacingRule.BURST
    assert ledger.in_window() == 5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=5.0),
            st.integers(0, 3),
            st.sampled_from(["TRADES", "BID_ASK"]),
            st.integers(0, 3),
        ),
        max_size=150,
    )
)
def test_admitted_requests_never_break_a_rule(
    events: list[tuple[float, int, str, int]],
) -> None:
    clock = FakeClock()
    ledger = PacingLedger(clock)
    admitted: list[tuple[float, PacedRequest]] = []
    for gap, series, what, variant in events:
        clock.now += gap
        req = PacedRequest.of((series, what, variant), (series, what), what)
        if ledger.admit(req) is None:
            admitted.append((clock.now, req))
    for i, (t, req) in enumerate(admitted):
        earlier = admitted[:i]
        assert not any(r.identity == req.identity and t - u < 15 for u, r in earlier)
        burst = sum(r.weight for u, r in earlier if r.series == req.series and t - u < 2)
        assert burst + req.weight <= 5
        assert sum(r.weight for u, r in earlier if t - u < 600) + req.weight <= 60
