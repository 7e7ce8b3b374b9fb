"""The bars the simulator serves, as arrays: the ground truth other test suites compare against."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ktrdr_ib_sim.bars import (
    Grouped,
    aggregate,
    concat,
    empty_grouped,
    head_timestamp_s,
    intraday_bars,
    last_close_s,
    period_bars,
    sessions_for,
)
from ktrdr_ib_sim.catalogue import Instrument, build_catalogue
from ktrdr_ib_sim.prices import PricePath
from ktrdr_ib_sim.timeframes import BAR_SIZES, BarSize

#: whatToShow values whose bars carry no volume: IB sends -1 for volume, wap and count.
NO_VOLUME = frozenset({"MIDPOINT", "BID", "ASK", "BID_ASK"})


@dataclass(frozen=True)
class Bars:
    """Bars ready to send: start instants, session dates and OHLCV as float/int arrays.

    Prices are exact decimal values (ticks divided by an integer), so ``float(str(price))``
    gives back the same float that ib_async will decode.
    """

    instrument: Instrument
    bar_size: BarSize
    what_to_show: str
    start_s: np.ndarray  # bar open, epoch seconds (day/week/month: first session's open)
    end_s: np.ndarray
    session_day: np.ndarray  # session date of the (first) session, days since 1970-01-01
    utc_offset_s: np.ndarray  # the instrument zone's UTC offset at the bar
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    wap: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.start_s)

    def to_frame(self) -> pd.DataFrame:
        """Return the bars with ib_async's ``BarData`` column names plus start/end instants.

        ``date`` is what ib_async yields for ``formatDate=2``: a UTC timestamp for intraday bars,
        a ``datetime.date`` for day, week and month bars.
        """
        start = pd.to_datetime(self.start_s, unit="s", utc=True)
        dates: object = start
        if not self.bar_size.is_intraday:
            dates = self.session_day.astype("datetime64[D]").astype(object)
        return pd.DataFrame(
            {
                "date": dates,
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
                "average": self.wap,
                "barCount": self.count,
                "start_utc": start,
                "end_utc": pd.to_datetime(self.end_s, unit="s", utc=True),
            }
        )


def _prices(grouped: Grouped, instrument: Instrument, what_to_show: str) -> dict[str, np.ndarray]:
    """Turn mid-price tick aggregates into the OHLC of one whatToShow."""
    b, per_unit = grouped.base, float(instrument.ticks_per_unit)
    half = instrument.half_spread_ticks
    shift = {"BID": -half, "ASK": half}.get(what_to_show, 0)
    prices = {k: (getattr(b, k) + shift) / per_unit for k in ("open", "high", "low", "close")}
    if what_to_show == "BID_ASK":
        # IB: open = time-average bid, high = max ask, low = min bid, close = time-average ask.
        centi_mid = np.rint(b.mid_sum * 100.0 / (2 * b.units))
        prices["open"] = (centi_mid - 100 * half) / (per_unit * 100)
        prices["close"] = (centi_mid + 100 * half) / (per_unit * 100)
        prices["high"] = (b.high + half) / per_unit
        prices["low"] = (b.low - half) / per_unit
    return prices


def _volumes(grouped: Grouped, instrument: Instrument, what_to_show: str) -> dict[str, np.ndarray]:
    b, n = grouped.base, len(grouped)
    if what_to_show in NO_VOLUME:
        minus_one = np.full(n, -1.0)
        return {"volume": minus_one, "wap": minus_one, "count": np.full(n, -1, dtype=np.int64)}
    traded = b.volume > 0
    centi_wap = np.rint(b.turnover * 100.0 / (3 * np.maximum(b.volume, 1)))
    wap = np.where(
        traded,
        centi_wap / (instrument.ticks_per_unit * 100),
        b.close / float(instrument.ticks_per_unit),
    )
    return {"volume": b.volume.astype(np.float64), "wap": wap, "count": b.count}


def to_bars(grouped: Grouped, instrument: Instrument, bar: BarSize, what_to_show: str) -> Bars:
    """Render aggregated ticks as the bars of one whatToShow."""
    return Bars(
        instrument=instrument,
        bar_size=bar,
        what_to_show=what_to_show,
        start_s=grouped.stamp,
        end_s=grouped.end,
        session_day=grouped.day,
        utc_offset_s=grouped.offset,
        **_prices(grouped, instrument, what_to_show),
        **_volumes(grouped, instrument, what_to_show),
    )


def generate_bars(
    instrument: Instrument,
    bar: BarSize,
    what_to_show: str,
    use_rth: bool,
    window: tuple[int, int],
    *,
    seed: int,
    now_s: int,
    data_start_s: int | None = None,
    forming: bool = False,
) -> Bars:
    """Return the bars starting in ``window`` (epoch seconds, end exclusive) that exist by now.

    Args:
        instrument: The contract.
        bar: The bar size.
        what_to_show: TRADES, MIDPOINT, BID, ASK or BID_ASK (must be offered by the contract).
        use_rth: Regular trading hours only.
        window: ``(start_s, end_s)``; bars whose start lies in it are returned.
        seed: Price-model seed.
        now_s: Bars that end after this instant do not exist yet.
        data_start_s: No bars start before this; defaults to the contract's head timestamp.
        forming: Also return the bar still forming at ``now_s`` (its start in ``window``), with
            the values of its complete seconds so far, as IB does for an open end time.

    A dated contract has no bars after its last session: "now" stops at its close.
    """
    stop_s = last_close_s(instrument)
    if stop_s is not None:
        now_s = min(now_s, stop_s)
    if data_start_s is None:
        data_start_s = head_timestamp_s(instrument, what_to_show, use_rth)
    start_s, end_s = window
    if data_start_s is None:
        grouped = empty_grouped()
    elif bar.is_intraday:
        path = PricePath(instrument, seed)
        sessions = sessions_for(instrument, use_rth)
        lo, hi = max(start_s, data_start_s), min(end_s, now_s)
        grouped = intraday_bars(path, sessions, bar, lo, max(lo, hi))
    else:
        grouped = period_bars(instrument, seed, use_rth, bar, (start_s, end_s), data_start_s)
    complete = grouped.take(grouped.end <= now_s)
    if forming and data_start_s is not None and (stop_s is None or now_s < stop_s):
        complete = concat(
            [complete, _forming_bar(instrument, bar, use_rth, window, seed, now_s, data_start_s)]
        )
    return to_bars(complete, instrument, bar, what_to_show)


def _forming_bar(
    instrument: Instrument,
    bar: BarSize,
    use_rth: bool,
    window: tuple[int, int],
    seed: int,
    now_s: int,
    data_start_s: int,
) -> Grouped:
    """Return the bar that contains ``now_s`` (if it starts in ``window``), cut short at now.

    Its values aggregate the complete minutes and then the complete seconds since it opened,
    so they are exactly what the finished bar will have been up to now.
    """
    start_s, end_s = window
    lo = max(start_s, data_start_s)
    path, sessions = PricePath(instrument, seed), sessions_for(instrument, use_rth)
    if bar.is_intraday:
        full = intraday_bars(path, sessions, bar, lo, max(lo, min(end_s, now_s)))
    else:
        full = period_bars(instrument, seed, use_rth, bar, (start_s, end_s), data_start_s)
    current = full.take((full.stamp < now_s) & (full.end > now_s))
    if len(current) != 1:
        return empty_grouped()
    opened, minute = int(current.stamp[0]), now_s // 60 * 60
    minutes = intraday_bars(path, sessions, BAR_SIZES["1 min"], opened, max(opened, minute))
    seconds = intraday_bars(path, sessions, BAR_SIZES["1 secs"], max(opened, minute), now_s)
    so_far = concat([minutes, seconds])
    if len(so_far) == 0:
        return empty_grouped()
    first = np.zeros(1, dtype=np.int64)
    return Grouped(
        current.stamp, current.end, current.day, current.offset, aggregate(so_far.base, first)
    )


def find_instrument(
    symbol: str, sec_type: str, today: dt.date, contract_month: str = ""
) -> Instrument:
    """Return the catalogue instrument for a symbol (forex also as ``EURUSD``/``EUR.USD``).

    A future is the front month on ``today`` unless ``contract_month`` (``YYYYMM``) names one,
    live or expired (ES quarters from two years before ``today`` to three after).

    Raises:
        KeyError: The catalogue has no such contract.
    """
    wanted = symbol.upper().replace(".", "")
    found = [
        inst
        for inst in build_catalogue(today)
        if inst.sec_type == sec_type.upper()
        and wanted in {inst.symbol, inst.local_symbol.replace(".", "")}
        and inst.contract_month.startswith(contract_month)
    ]
    # A future named by its symbol is the front month: the first listed one not yet expired.
    live = sorted(
        (i for i in found if i.listed(today) and not i.expired(today)),
        key=lambda i: i.last_trade_date,
    )
    if live or found:
        return (live or found)[0]
    raise KeyError(f"no {sec_type} contract {symbol!r} in the simulator catalogue")


def _epoch_s(instant: dt.datetime) -> int:
    if instant.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got {instant!r}")
    return int(instant.timestamp())


def expected_bars(
    symbol: str,
    sec_type: str,
    bar_size: str,
    what_to_show: str,
    use_rth: bool,
    start_utc: dt.datetime,
    end_utc: dt.datetime,
    *,
    seed: int = 0,
    now_utc: dt.datetime | None = None,
    contract_month: str = "",
) -> pd.DataFrame:
    """Return exactly the bars a simulator with ``seed`` serves for bar starts in a UTC range.

    Args:
        symbol: e.g. ``"AAPL"``, ``"BRK B"``, ``"EURUSD"``, ``"ES"``, ``"SPX"``, ``"CL"``.
        sec_type: ``STK``, ``CASH``, ``FUT`` or ``IND``.
        bar_size: An IB ``barSizeSetting`` such as ``"1 min"`` or ``"1 day"``.
        what_to_show: TRADES, MIDPOINT, BID, ASK or BID_ASK.
        use_rth: Regular trading hours only.
        start_utc: First bar start included (tz-aware).
        end_utc: Bars starting at or after this are excluded (tz-aware).
        seed: The simulator's ``--seed``.
        now_utc: The simulator's "now" (bars ending later do not exist); defaults to the wall
            clock, which also picks the ES front month.
        contract_month: ``YYYYMM`` of a future other than the front month (a load that spans
            a roll is the concatenation of each contract's bars over its span).

    Returns:
        One row per bar, in the columns of :meth:`Bars.to_frame`.
    """
    now = now_utc or dt.datetime.now(dt.UTC)
    instrument = find_instrument(symbol, sec_type, now.date(), contract_month)
    bars = generate_bars(
        instrument,
        BAR_SIZES[bar_size],
        what_to_show,
        use_rth,
        (_epoch_s(start_utc), _epoch_s(end_utc)),
        seed=seed,
        now_s=_epoch_s(now) if now_utc else int(time.time()),
    )
    return bars.to_frame()
