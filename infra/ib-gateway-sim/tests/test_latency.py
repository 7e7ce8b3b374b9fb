"""The latency model: base delay, per-bar cost, seeded slow answers, and slow answers on demand."""

from __future__ import annotations

import pytest
from ib_async import IB, Stock
from ktrdr_ib_sim import SimulatorConfig

pytestmark = pytest.mark.integration

END = "20240628 16:00:00 US/Eastern"
AAPL = Stock("AAPL", "SMART", "USD")
MODEL = {"latency_ms": 300, "per_bar_us": 1500, "slow_fraction": 0.02, "slow_ms": 30_000}


async def hourly(ib: IB, duration: str = "1 D", **kwargs):
    return await ib.reqHistoricalDataAsync(
        AAPL, END, duration, "1 hour", "TRADES", True, 2, **kwargs
    )


def test_the_model_is_on_by_default() -> None:
    cfg = SimulatorConfig()
    assert {name: getattr(cfg, name) for name in MODEL} == MODEL


async def test_base_delay_and_per_bar_cost_are_scaled(start_sim, connect_ib) -> None:
    sim = await start_sim(**{**MODEL, "slow_fraction": 0}, time_scale=0.01, soft_delay_ms=0)
    client = await connect_ib(sim.port, 1)
    assert len(await hourly(client.ib)) == 7
    [record] = sim.records()
    assert record["delay_s"] == pytest.approx((0.3 + 7 * 0.0015) * 0.01)


async def test_slow_answers_are_drawn_from_the_seed(start_sim, connect_ib) -> None:
    async def slow_requests(seed: int) -> list[int]:
        sim = await start_sim(
            **{**MODEL, "slow_fraction": 0.3, "slow_ms": 1000},
            seed=seed,
            time_scale=0.01,
            soft_delay_ms=0,
        )
        client = await connect_ib(sim.port, 1)
        for days in range(1, 21):
            await hourly(client.ib, f"{days} D")
        slow = [r["seq"] for r in sim.records() if r["delay_s"] > 0.01 * 1.0]
        assert sim.counters()["slow_answers"] == len(slow)
        client.ib.disconnect()
        return slow

    first = await slow_requests(seed=7)
    assert first == await slow_requests(seed=7)  # deterministic
    assert 1 <= len(first) <= 12  # about 30 % of 20
    assert first != await slow_requests(seed=8)


async def test_slow_next_lets_a_client_time_out_and_cancel(start_sim, connect_ib) -> None:
    sim = await start_sim(soft_delay_ms=0)
    client = await connect_ib(sim.port, 1)
    sim.slow_next(1, 5.0)
    assert sim.counters()["slow_armed"] == 1
    assert len(await hourly(client.ib, timeout=0.3)) == 0  # ib_async times out and cancels
    await client.errors.wait_for(162)
    counters = await sim.wait_until(lambda c: c["open_requests"] == 0)
    assert (counters["cancels"], counters["slow_answers"]) == (1, 1)
    [record] = sim.records()
    assert record["outcome"] == "cancelled" and record["cancelled_at"] is not None
    assert record["delay_s"] == pytest.approx(5.0)
    assert len(await hourly(client.ib)) == 7  # the retry is answered at once
