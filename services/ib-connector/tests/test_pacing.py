"""The pacing gate against a brute-force model of IB's rules; its scheduler on a virtual clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

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
    other_ends = [
        HistoricalRequest("AAPL", "SMART", "TRADES", "1 secs", "1800 S", f"e{i}") for i in range(4)
    ]
    for i, r in enumerate(other_ends):
        assert gate.earliest(r, 0.1 * (i + 1)) == pytest.approx(0.1 * (i + 1))
        gate.record(r, 0.1 * (i + 1))
    sixth = HistoricalRequest("AAPL", "SMART", "TRADES", "1 secs", "1800 S", "e-sixth")
    assert gate.earliest(sixth, 0.5) == pytest.approx(2.0)  # 5 sent since t=0: wait for the first
    other_contract = HistoricalRequest("MSFT", "SMART", "TRADES", "1 secs", "1800 S", "x")
    assert gate.earliest(other_contract, 0.5) == 0.5


def test_sixty_in_ten_minutes_and_bid_ask_counts_twice() -> None:
    gate = PacingGate(EXACT, clock=lambda: 0.0)
    reqs = [
        HistoricalRequest(f"C{i % 20}", "SMART", "TRADES", "1 secs", "1800 S", f"e{i}")
        for i in range(59)
    ]
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
    reqs = [HistoricalRequest(f"C{i}", "SMART", "TRADES", "1 secs", "30 S", "e") for i in range(60)]
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


# -- the scheduler: several jobs at one gate, on a virtual clock -----------------------


class FakeTime:
    """A virtual clock: ``sleep`` returns when the test moves time past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    def wake_next(self, until: float = math.inf) -> bool:
        """Move time to the next sleeper's deadline and wake it; False if none is due."""
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleeps
            heapq.heappop(self._sleepers)
        if not self._sleepers or self._sleepers[0][0] > until:
            return False
        at, _, woken = heapq.heappop(self._sleepers)
        self.now = max(self.now, at)
        woken.set_result(None)
        return True

    async def run_until(self, until: float = math.inf) -> None:
        """Move time to ``until``, waking each sleeper on the way at its deadline."""
        await settle()
        for _ in range(100_000):
            if not self.wake_next(until):
                break
            await settle()
        else:
            raise AssertionError("the gate keeps waking up without time passing")
        if until < math.inf:
            self.now = max(self.now, until)
        await settle()


async def settle() -> None:
    """Let every task that can run, run (virtual time stands still)."""
    for _ in range(20):
        await asyncio.sleep(0)


def hard(contract: str = "AAPL", end: str = "e", what: str = "TRADES") -> HistoricalRequest:
    return HistoricalRequest(contract, "SMART", what, "1 secs", "1800 S", end)


def soft(contract: str = "AAPL", end: str = "e") -> HistoricalRequest:
    return HistoricalRequest(contract, "SMART", "TRADES", "1 hour", "1 M", end, hard=False)


def fill_window(gate: PacingGate, times: list[float]) -> None:
    """Record hard requests of other contracts, one per instant in ``times``."""
    for i, at in enumerate(times):
        gate.record(hard(f"FILL{i}"), at)


class Recorder:
    """Tasks that each take one slot and note who got it when."""

    def __init__(self, gate: PacingGate, fake: FakeTime) -> None:
        self.gate, self.fake = gate, fake
        self.granted: list[tuple[str, float]] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def arrive(
        self,
        name: str,
        request: HistoricalRequest,
        job: str = "",
        priority: int = 5,
        answered: asyncio.Event | None = None,
    ) -> None:
        async def take() -> None:
            async with self.gate.slot(request, job=job, priority=priority):
                self.granted.append((name, self.fake.now))
                if answered is not None:
                    await answered.wait()

        self.tasks[name] = asyncio.create_task(take())


def gate_on(fake: FakeTime, rules: PacingRules = EXACT) -> PacingGate:
    return PacingGate(rules, clock=fake.clock, sleep=fake.sleep)


BURST = [hard("AAPL", f"b{i}") for i in range(5)]


@pytest.mark.parametrize("same_job", [False, True], ids=["other job", "same job"])
@pytest.mark.parametrize(
    ("history", "blocked", "free", "opens_at"),
    [
        ([(hard(f"FILL{i}"), 0.0) for i in range(60)], hard("AAPL"), soft("MSFT"), 600.0),
        ([(r, 0.0) for r in BURST], hard("AAPL", "x"), hard("MSFT"), 2.0),
        ([(hard("AAPL"), 0.0)], hard("AAPL"), hard("AAPL", "other end"), 15.0),
        ([(hard(f"FILL{i}"), 0.0) for i in range(59)], hard("AAPL", what="BID_ASK"),
         soft("MSFT"), 600.0),
    ],
    ids=["soft behind the window", "other contract behind a burst",
         "other end behind an identical", "soft behind a BID_ASK"],
)  # fmt: skip
async def test_a_request_the_rules_allow_goes_at_once_past_one_they_hold_back(
    history: list[tuple[HistoricalRequest, float]],
    blocked: HistoricalRequest,
    free: HistoricalRequest,
    opens_at: float,
    same_job: bool,
) -> None:
    fake = FakeTime()
    gate = gate_on(fake)
    for request, at in history:
        gate.record(request, at)
    rec = Recorder(gate, fake)
    rec.arrive("blocked", blocked, job="long")
    rec.arrive("free", free, job="long" if same_job else "short")
    await fake.run_until(1.0)
    assert rec.granted == [("free", 0.0)]
    await fake.run_until()
    assert rec.granted == [("free", 0.0), ("blocked", opens_at)]


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        ([("A", 5)] * 3 + [("B", 5)] * 3, ["A", "B", "A", "B", "A", "B"]),
        ([("A", 5)] * 2 + [("B", 5)] + [("C", 5)] * 2, ["A", "B", "C", "A", "C"]),
        ([("back", 5)] * 3 + [("tail", 1)] * 2, ["tail", "tail", "back", "back", "back"]),
        ([("back", 5), ("urgent", 0), ("tail", 1), ("back", 5), ("tail", 1)],
         ["urgent", "tail", "tail", "back", "back"]),
    ],
    ids=["round-robin", "three jobs", "tail before backfill", "three classes"],
)  # fmt: skip
async def test_the_window_reopening_serves_classes_in_order_and_jobs_in_turn(
    arrivals: list[tuple[str, int]], expected: list[str]
) -> None:
    fake = FakeTime()
    gate = gate_on(fake)
    fill_window(gate, [float(i) for i in range(60)])  # one place frees each second from 600
    rec = Recorder(gate, fake)
    for i, (job, priority) in enumerate(arrivals):
        rec.arrive(f"{job}{i}", hard(job, f"e{i}"), job=job, priority=priority)
    await fake.run_until()
    assert [name.rstrip("0123456789") for name, _ in rec.granted] == expected
    assert [at for _, at in rec.granted] == [600.0 + i for i in range(len(expected))]


async def test_a_bid_ask_request_keeps_its_turn_against_single_requests() -> None:
    # BID_ASK weighs two: if single requests took every place the window freed,
    # one at a time, it would never find two free together.
    fake = FakeTime()
    gate = gate_on(fake)
    fill_window(gate, [float(i) for i in range(60)])
    rec = Recorder(gate, fake)
    rec.arrive("quotes", hard("EURUSD", what="BID_ASK"), job="A")
    for i in range(3):
        rec.arrive(f"trades{i}", hard("AAPL", f"e{i}"), job="B")
    await fake.run_until()
    assert rec.granted == [
        ("quotes", 601.0),
        ("trades0", 602.0),
        ("trades1", 603.0),
        ("trades2", 604.0),
    ]


async def test_the_window_reopening_lets_every_waiter_it_has_room_for_go_at_once() -> None:
    fake = FakeTime()
    gate = gate_on(fake)
    fill_window(gate, [0.0] * 3 + [1.0] * 57)
    rec, never = Recorder(gate, fake), asyncio.Event()
    for job in "ABCD":
        rec.arrive(job, hard(job), job=job, answered=never)  # all stay open
    await fake.run_until(700.0)
    assert rec.granted == [("A", 600.0), ("B", 600.0), ("C", 600.0), ("D", 601.0)]
    never.set()
    await settle()


async def test_a_shorter_soft_delay_lets_a_waiting_soft_request_go_sooner() -> None:
    fake = FakeTime()
    gate = gate_on(fake)
    gate.slow_down(floor_s=8.0)
    gate.record(soft("MSFT"), 0.0)
    rec = Recorder(gate, fake)
    rec.arrive("hourly", soft("AAPL"), job="A")
    await fake.run_until(1.0)
    assert gate.next_send_at("A") == 8.0
    gate.speed_up()  # IB answered promptly: the delay halves
    await fake.run_until()
    assert rec.granted == [("hourly", 4.0)]


async def test_a_job_sending_one_request_at_a_time_keeps_its_turn() -> None:
    # Its queue empties at each grant; coming back, it must not count as a job
    # never served (and jump ahead), nor lose its place.
    fake = FakeTime()
    gate = gate_on(fake)
    fill_window(gate, [float(i) for i in range(60)])
    rec = Recorder(gate, fake)

    async def one_at_a_time() -> None:
        for i in range(3):
            async with gate.slot(hard("AAPL", f"a{i}"), job="A"):
                rec.granted.append((f"A{i}", fake.now))

    task = asyncio.create_task(one_at_a_time())
    await settle()
    for i in range(3):
        rec.arrive(f"B{i}", hard("MSFT", f"b{i}"), job="B")
    await fake.run_until()
    await task
    assert [name for name, _ in rec.granted] == ["A0", "B0", "A1", "B1", "A2", "B2"]


async def hold_the_only_slot(gate: PacingGate) -> asyncio.Event:
    """Take the gate's one open slot until the returned event is set."""
    answered = asyncio.Event()

    async def hold() -> None:
        async with gate.slot(hard("HOLD")):
            await answered.wait()

    asyncio.create_task(hold())  # noqa: RUF006 - it ends when the test sets the event
    await settle()
    return answered


@pytest.mark.parametrize("waiting_for", ["window", "slot"])
async def test_a_cancelled_waiter_spends_no_slot_and_the_next_one_gets_it(
    waiting_for: str,
) -> None:
    fake = FakeTime()
    gate = gate_on(fake, PacingRules(margin_s=0.0, max_open=1 if waiting_for == "slot" else 50))
    answered = asyncio.Event()
    if waiting_for == "window":
        fill_window(gate, [0.0] * 60)
    else:
        answered = await hold_the_only_slot(gate)
    sent_before = gate.requests_sent
    rec = Recorder(gate, fake)
    rec.arrive("first", hard("AAPL", "1"), job="A")
    rec.arrive("second", hard("MSFT", "2"), job="B")
    await settle()
    assert gate.waiting() == 2
    rec.tasks["first"].cancel()
    await settle()
    assert gate.waiting() == 1 and gate.waiting("A") == 0
    assert gate.requests_sent == sent_before
    answered.set()
    await fake.run_until()
    assert rec.granted == [("second", 600.0 if waiting_for == "window" else 0.0)]
    assert rec.tasks["first"].cancelled()
    assert gate.requests_sent == sent_before + 1
    assert gate.state()["open_requests"] == 0
    assert gate.waiting() == 0


async def test_a_job_cancelled_as_a_slot_frees_leaves_the_slot_to_another_job() -> None:
    # A segment cancels all its chunk tasks at once: the gate must step over the
    # waiters whose tasks are cancelled but have not yet run to leave the queue.
    fake = FakeTime()
    gate = gate_on(fake, PacingRules(margin_s=0.0, max_open=1))
    answered = await hold_the_only_slot(gate)
    rec = Recorder(gate, fake)
    for name in ("A1", "A2"):
        rec.arrive(name, hard("AAPL", name), job="A")
    rec.arrive("B1", hard("MSFT"), job="B")
    await settle()
    answered.set()
    await asyncio.sleep(0)  # the slot's holder is answered: the gate's next pass is due
    rec.tasks["A1"].cancel()  # ...and runs before these tasks can leave the queue
    rec.tasks["A2"].cancel()
    await fake.run_until()
    assert rec.granted == [("B1", 0.0)]
    assert gate.requests_sent == 2
    assert gate.state()["open_requests"] == 0 and gate.waiting() == 0


async def test_a_request_granted_then_cancelled_releases_its_slot() -> None:
    fake = FakeTime()
    gate = gate_on(fake, PacingRules(margin_s=0.0, max_open=1))
    inside = asyncio.Event()

    async def fetch() -> None:
        async with gate.slot(hard("AAPL"), job="A"):
            inside.set()
            await asyncio.Event().wait()  # IB never answers: the job is cancelled

    task = asyncio.create_task(fetch())
    await inside.wait()
    rec = Recorder(gate, fake)
    rec.arrive("next", hard("MSFT"), job="B")
    await settle()
    assert rec.granted == []  # the one open slot is taken
    task.cancel()
    await fake.run_until()
    assert rec.granted == [("next", 0.0)]
    assert gate.state()["open_requests"] == 0


async def test_a_waiter_cancelled_just_after_its_grant_gives_the_slot_back() -> None:
    fake = FakeTime()
    gate = gate_on(fake)
    fill_window(gate, [0.0] * 60)
    rec = Recorder(gate, fake)
    rec.arrive("late", hard("AAPL"), job="A")
    await fake.run_until(599.0)
    assert fake.wake_next()  # the gate's timer, due at 600
    await asyncio.sleep(0)  # the timer grants the waiter; its task has not resumed yet
    assert gate.requests_sent == 61
    rec.tasks["late"].cancel()
    await settle()
    assert rec.tasks["late"].cancelled()
    assert gate.state()["open_requests"] == 0 and gate.waiting() == 0


async def test_next_send_at_reports_when_the_window_opens() -> None:
    fake = FakeTime()
    gate = gate_on(fake, PacingRules(margin_s=0.1))
    fill_window(gate, [float(i) for i in range(60)])
    rec = Recorder(gate, fake)
    rec.arrive("paced", hard("AAPL"), job="A")
    rec.arrive("hourly", soft("MSFT"), job="B")
    await fake.run_until(10.0)
    assert gate.next_send_at("A") == pytest.approx(600.1)
    assert gate.waiting("A") == 1
    assert gate.next_send_at("B") is None  # nothing waiting: it went at once
    assert gate.waiting("B") == 0
    await fake.run_until()
    assert gate.next_send_at("A") is None
    assert rec.granted == [("hourly", 0.0), ("paced", pytest.approx(600.1))]


def test_state_says_the_window_and_when_it_next_has_room() -> None:
    gate = PacingGate(PacingRules(margin_s=0.0, time_scale=0.01), clock=lambda: 0.0)
    assert gate.state(now=0.0)["window_s"] == pytest.approx(6.0)  # 600 s, scaled as it runs
    assert gate.state(now=0.0)["next_free_in_s"] == 0.0
    fill_window(gate, [0.1 * i for i in range(59)])  # 0.0 to 5.8
    assert gate.state(now=5.9)["next_free_in_s"] == 0.0  # 59 of 60: room for one more
    gate.record(hard("LAST"), 5.9)
    full = gate.state(now=5.9)
    assert full["hard_requests_in_window"] == 60
    assert full["next_free_in_s"] == pytest.approx(0.1)  # the request at 0.0 ages out at 6.0
    assert gate.state(now=5.95)["next_free_in_s"] == pytest.approx(0.05)
    assert gate.state(now=6.0)["next_free_in_s"] == 0.0


TIGHT = PacingRules(window_s=60.0, window_max=8, max_open=3, soft_max_open=2, margin_s=0.0)

arrivals_of_jobs = st.tuples(
    arrival_gaps,
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from([1, 5]),
    requests,
    st.floats(min_value=0, max_value=20, allow_nan=False),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(arrivals_of_jobs, min_size=1, max_size=40))
def test_the_scheduler_with_many_jobs_never_breaks_a_rule_and_serves_everyone(
    items: list[tuple[float, str, int, HistoricalRequest, float]],
) -> None:
    sent, peak_open, peak_soft = asyncio.run(_drive(TIGHT, items))
    assert len(sent) == len(items)
    assert violations(sent, TIGHT) == []
    assert peak_open <= TIGHT.max_open
    assert peak_soft <= TIGHT.soft_max_open


async def _drive(
    rules: PacingRules, items: list[tuple[float, str, int, HistoricalRequest, float]]
) -> tuple[list[tuple[float, HistoricalRequest]], int, int]:
    """Run requests from several jobs through one gate; return sends and peak open counts."""
    fake = FakeTime()
    gate = gate_on(fake, rules)
    sent: list[tuple[float, HistoricalRequest]] = []
    peak, open_now = {"open": 0, "soft": 0}, {"all": 0, "soft": 0}

    async def one(
        arrival: float, job: str, priority: int, req: HistoricalRequest, answer_s: float
    ) -> None:
        await fake.sleep(arrival)
        async with gate.slot(req, job=job, priority=priority):
            sent.append((fake.now, req))
            open_now["all"] += 1
            open_now["soft"] += not req.hard
            peak["open"] = max(peak["open"], open_now["all"])
            peak["soft"] = max(peak["soft"], open_now["soft"])
            await fake.sleep(answer_s)
            open_now["all"] -= 1
            open_now["soft"] -= not req.hard

    arrival, tasks = 0.0, []
    for gap, job, priority, req, answer_s in items:
        arrival += gap
        tasks.append(asyncio.create_task(one(arrival, job, priority, req, answer_s)))
    await fake.run_until()
    assert all(t.done() for t in tasks)
    await asyncio.gather(*tasks)
    return sent, peak["open"], peak["soft"]
