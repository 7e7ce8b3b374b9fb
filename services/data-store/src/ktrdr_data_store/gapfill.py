"""The gap filler: keep every stored dataset up to date with a ``tail`` load when due.

Every ``gap_fill_interval_s`` it asks, per dataset, whether the market has completed a bar
since the last stored one (``planning.traded_since``, on the symbol's calendar and IB's
clock); only then is a ``LoadData`` sent, as any user would send it. Nights, weekends and
holidays add no complete bar, so they cause no work. The command's ``Nats-Msg-Id`` names the
dataset and the bar it reaches for, so two rounds before that load ran send it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ktrdr_shared import subjects
from ktrdr_shared.errors import KtrdrError
from ktrdr_shared.messages import LoadData
from ktrdr_shared.types import LoadMode

from ktrdr_data_store.loads import LoadRunner
from ktrdr_data_store.planning import market_calendar, traded_since
from ktrdr_data_store.store import BarStore

log = logging.getLogger(__name__)


async def fill_once(runner: LoadRunner, store: BarStore) -> list[LoadData]:
    """Send a tail load for each dataset whose market traded since its last bar; return them."""
    sent: list[LoadData] = []
    datasets = await asyncio.to_thread(store.datasets)
    if not datasets:
        return sent
    now_ns = await runner.ib_now()
    for dataset in datasets:
        if dataset.last_ns is None:
            continue
        # the store keeps keys ("BRK B" is stored as "BRK_B"): IB needs the symbol its loads used
        named = await asyncio.to_thread(runner.instruments.symbol, dataset.symbol_key)
        symbol = named or dataset.symbol_key
        profile = await asyncio.to_thread(runner.profiles.get, symbol, dataset.timeframe)
        try:  # known from earlier loads; asked of the connector once for imported data
            instrument_type, exchange = await runner.instrument(
                LoadData(symbol=symbol, timeframe=dataset.timeframe, contract=profile.contract)
            )
        except KtrdrError as e:
            log.warning("gap filler: skipping %s %s: %s", symbol, dataset.timeframe, e.message)
            continue
        calendar = market_calendar(instrument_type, exchange, use_rth=profile.use_rth)
        if not traded_since(calendar, dataset.timeframe, dataset.last_ns, now_ns):
            continue
        command = LoadData(
            symbol=symbol,
            timeframe=dataset.timeframe,
            mode=LoadMode.TAIL,
            instrument_type=instrument_type,
            contract=profile.contract,
            use_rth=profile.use_rth,
        )
        due = calendar.complete_until(dataset.timeframe, now_ns)
        msg_id = f"gap-fill.{symbol}.{dataset.timeframe.value}.{due}"
        await runner.queue.send(subjects.CMD_DATA_LOAD, command, msg_id)
        sent.append(command)
    if sent:
        log.info("gap filler: %d tail loads sent", len(sent))
    return sent


async def run_gap_filler(
    runner: LoadRunner, store: BarStore, interval_s: float, stopping: asyncio.Event
) -> None:
    """Run ``fill_once`` every ``interval_s`` until ``stopping`` is set (0 turns it off)."""
    if interval_s <= 0:
        return
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval_s)
        if stopping.is_set():
            return
        try:
            await fill_once(runner, store)
        except KtrdrError as e:  # no connector now: the next round tries again
            log.warning("gap filler: round skipped: %s", e.message)
