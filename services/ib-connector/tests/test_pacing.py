"""The pacing gate against a brute-force model of IB's rules."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_ib_connector.pacing import HistoricalRequest, PacingGate, PacingRules

pytestmark = pytest.mark.unit

EXACT = PacingRules(margin_s=0.0)


def violations(schedule: list[tuple[float, HistoricalRequest]], rules: PacingRules) -> list[str]:
    """Check every rule over every request of a schedule, the slow obvious way."""
    found, eps = [], 1e-9  # float rounding at exact window edges is not a violation
    for i, (t, req) in enumerate(schedule):
        if not req.hard:
            continue
        earlier = [(u, q) for u, q in schedule[: i + 1] if q.hard]
        if any(q == req and t - u < rules.identical_window_s - eps for u, q in earlier[:-1]):
            found.append(f"identical request {i} within {rules.identical_window_s}s")
        same = [(u, q) for u, q in earlier if q.burst_key == req.burst_key]
        burst = sum(q.weight for u, q in same if u > t - rules.burst_window_s + eps)
        if burst > rules.burst_max:
            found.append(f"request {i}: {burst} for one contract within {rules.burst_window_s}s")
        total = sum(q.weight for u, q in earlier if u > t - rules.window_s + eps)
        if total > rules.window_max:
            found.append(f"request {i}: {total} within {rules.window_s}s")
    return found


def plan(gate: PacingGate, arrivals: list[tuple[float, HistoricalRequest]]) -> list[float]:
    """Schedule requests arriving at given times, in order, with the gate's pure core."""
    times, now = [], 0.0
    for arrival, req in arrivals:
        now = max(now, arrival)
        at = gate.earliest(req, now)
        gate.record(req, at)
        times.append(at)
        now = at
    return times


requests = st.builds(
    HistoricalRequest,
    contract=st.sampled_from(["AAPL", "MSFT", "EURUSD"]),
    exchange=st.just("SMART"),
    what_to_show=st.sampled_from(["TRADES", "MIDPOINT", "BID_ASK"]),
    bar_size=st.sampled_from(["1 secs", "30 secs"]),
    duration=st.sampled_from(["1800 S", "3600 S"]),
    end=st.sampled_from(["20240102-15:00:00", "20240102-16:00:00", "20240103-15:00:00"]),
    hard=st.booleans(),
)
arrival_gaps = st.floats(min_value=0, max_value=30, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(arrival_gaps, requests), min_size=1, max_size=150))
def test_gate_schedules_never_break_a_rule_and_never_wait_needlessly(
    items: list[tuple[float, HistoricalRequest]],
) -> None:
    arrivals, t = [], 0.0
    for gap, req in items:
        t += gap
        arrivals.append((t, req))
    gate = PacingGate(EXACT, clock=lambda: 0.0)
    times = plan(gate, arrivals)
    schedule = list(zip(times, [r for _, r in arrivals], strict=True))
    assert violations(schedule, EXACT) == []
    # Minimal: any request that waited could not have gone a moment sooner.
    previous = 0.0
    for i, ((arrival, req), at) in enumerate(zip(arrivals, times, strict=True)):
        ready = max(arrival, previous)
        if at > ready + 1e-9:
            sooner = [*schedule[:i], (at - 1e-6, req)]
            assert violations(sooner, EXACT), f"request {i} waited {at - ready:.3f}s needlessly"
        previous = at


def test_thresholds_exactly() -> None:
    gate = PacingGate(EXACT, clock=lambda: 0.0)
    req = HistoricalRequest("AAPL", "SMART", "TRADES", "1 secs", "1800 S", "20240102-15:00:00")
    gate.record(req, 0.0)
    assert gate.earliest(req, 1.0) == 15.0  # identical: 15 s later
    other_ends = [HistoricalRequest("AAPL", "SMART", "TRADES", "1 secs", "1800 S", f"e{i}")
                  for i in range(4)]  # fmt: skip
    for i, r in enumerate(other_ends):
        assert gate.earliest(r, 0.1 * (i + 1)) == pytest.approx(0.1 * (i + 1))
        gate.record(r, 0.1 * (i + 1))
    sixth = HistoricalRequest("AAPL", "SMART", "TRADES", "1 secs", "1800 S", "e-sixth")
    assert gate.earliest(sixth, 0.5) == pytest.approx(2.0)  # 5 sent since t=0: wait for the first
    other_contract = HistoricalRequest("MSFT", "SMART", "TRADES", "1 secs", "1800 S", "x")
    assert gate.earliest(other_contract, 0.5) == 0.5


def test_sixty_in_ten_minutes_and_bid_ask_counts_twice() -> None:
    gate = PacingGate(EXACT, clock=lambda: 0.0)
    reqs = [HistoricalRequest(f"C{i % 20}", "SMART", "TRADES", "1 secs", "1800 S", f"e{i}")
            for i in range(59)]  # fmt: skip
    times = plan(gate, [(0.0, r) for r in reqs])
    assert max(times) < 10  # 20 contracts: only the 2-second burst rule spaced them
    bid_ask = HistoricalRequest("NEW", "SMART", "BID_ASK", "1 secs", "1800 S", "z")
    assert gate.earliest(bid_ask, times[-1]) == pytest.approx(times[0] + 600)  # 59 + 2 > 60
    trades = HistoricalRequest("NEW", "SMART", "TRADES", "1 secs", "1800 S", "z")
    assert gate.earliest(trades, times[-1]) == pytest.approx(times[-1])  # 59 + 1 fits


def test_soft_requests_skip_hard_rules_but_honour_the_soft_delay() -> None:
    gate = PacingGate(EXACT, clock=lambda: 0.0)
    big = HistoricalRequest("AAPL", "SMART", "TRADES", "1 min", "1 W", "e", hard=False)
    for _ in range(100):
        gate.record(big, 0.0)
    assert gate.earliest(big, 0.0) == 0.0
    gate.slow_down()
    assert gate.earliest(big, 0.0) == pytest.approx(0.5)
    gate.speed_up()
    assert gate.earliest(big, 0.0) == pytest.approx(0.25)


async def test_async_gate_limits_open_requests_and_keeps_order() -> None:
    rules = PacingRules(max_open=3, soft_max_open=2, margin_s=0.0)
    gate = PacingGate(rules)
    open_now, peak_soft, order = 0, 0, []

    async def fetch(i: int) -> None:
        nonlocal open_now, peak_soft
        req = HistoricalRequest(f"C{i}", "SMART", "TRADES", "1 min", "1 D", "e", hard=False)
        async with gate.slot(req):
            order.append(i)
            open_now += 1
            peak_soft = max(peak_soft, open_now)
            await asyncio.sleep(0.01)
            open_now -= 1

    await asyncio.gather(*(fetch(i) for i in range(10)))
    assert peak_soft == 2
    assert order == list(range(10))
    assert gate.state()["open_requests"] == 0


async def test_soft_delay_spaces_requests_instead_of_blocking_them() -> None:
    # Regression: the soft delay was measured from "now", so once it was above
    # zero no soft request could ever leave the gate.
    gate = PacingGate(PacingRules(margin_s=0.0))
    gate.slow_down(floor_s=0.02)
    big = HistoricalRequest("AAPL", "SMART", "TRADES", "5 mins", "1 W", "e", hard=False)
    for _ in range(3):
        async with asyncio.timeout(5):
            async with gate.slot(big):
                pass
    assert gate.requests_sent == 3


def test_finished_requests_count_from_their_answer() -> None:
    # The gateway stamps a request on arrival, somewhere between our send and
    # its answer; counting from the answer keeps a delayed arrival legal.
    gate = PacingGate(EXACT, clock=lambda: 0.0)
    reqs = [HistoricalRequest(f"C{i}", "SMART", "TRADES", "1 secs", "30 S", "e")
            for i in range(60)]  # fmt: skip
    entries = [gate.record(r, 0.0) for r in reqs]
    late = entries[0]
    assert late is not None
    gate.settle(late, 0.5)  # answered half a second after it was sent
    for entry in entries[1:]:
        assert entry is not None
        gate.settle(entry, 0.01)
    nxt = HistoricalRequest("NEW", "SMART", "TRADES", "1 secs", "30 S", "e")
    assert gate.earliest(nxt, 1.0) == pytest.approx(600.01)  # the oldest leaves at 600.01
    for entry in entries[1:]:
        assert entry is not None
        gate.settle(entry, 0.6)  # now every other one was answered after the late one
    assert gate.earliest(nxt, 1.0) == pytest.approx(600.5)  # the oldest is the late one
