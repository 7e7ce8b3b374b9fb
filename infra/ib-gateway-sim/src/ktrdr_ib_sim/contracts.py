"""Contract lookup (conId first, else every non-empty field) and the contractData message.

As at IB, an expired contract (its last trading day is past) is found only when the request
sets ``includeExpired`` (the field right after the 12 contract fields), by conId or otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from ktrdr_ib_sim.bars import sessions_for
from ktrdr_ib_sim.catalogue import Instrument
from ktrdr_ib_sim.sessions import format_hours
from ktrdr_ib_sim.wire import Fields, WireValue

_HOURS_DAYS_BEFORE, _HOURS_DAYS_AFTER = 1, 6


@dataclass(frozen=True)
class ContractQuery:
    """The 12 contract fields every request carries, as the client sent them.

    ``include_expired`` is the wire field that follows them (set by the request readers).
    """

    con_id: int
    symbol: str
    sec_type: str
    last_trade: str
    strike: float
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    include_expired: bool = False

    @classmethod
    def read(cls, fields: Fields) -> ContractQuery:
        """Read the 12 contract fields at the cursor."""
        return cls(
            con_id=fields.integer(default=0),
            symbol=fields.text(),
            sec_type=fields.text(),
            last_trade=fields.text(),
            strike=fields.number(),
            right=fields.text(),
            multiplier=fields.text(),
            exchange=fields.text(),
            primary_exchange=fields.text(),
            currency=fields.text(),
            local_symbol=fields.text(),
            trading_class=fields.text(),
        )

    def describe(self) -> str:
        """Return a short human label for logs and the ledger."""
        return f"{self.symbol or self.con_id} {self.sec_type} {self.exchange}".strip()


def _same(wanted: str, actual: str) -> bool:
    return wanted == "" or wanted.upper() == actual.upper()


def matches(instrument: Instrument, query: ContractQuery, today: dt.date) -> bool:
    """Return whether ``instrument`` satisfies every field ``query`` sets (expiry included)."""
    if instrument.expired(today) and not query.include_expired:
        return False
    if not instrument.listed(today):
        return False
    if query.con_id:
        return query.con_id == instrument.con_id
    exchanges = {e.upper() for e in instrument.valid_exchanges.split(",")}
    return (
        _same(query.symbol, instrument.symbol)
        and _same(query.sec_type, instrument.sec_type)
        and instrument.last_trade_date.startswith(query.last_trade)
        and query.strike == 0.0
        and query.right in ("", "0", "?")
        and _same(query.multiplier, instrument.multiplier)
        and (query.exchange == "" or query.exchange.upper() in exchanges)
        and _same(query.primary_exchange, instrument.primary_exchange)
        and _same(query.currency, instrument.currency)
        and _same(query.local_symbol, instrument.local_symbol)
        and _same(query.trading_class, instrument.trading_class)
    )


def find(catalogue: Sequence[Instrument], query: ContractQuery, today: dt.date) -> list[Instrument]:
    """Return every catalogue instrument the query matches on ``today`` (the data clock's)."""
    return [inst for inst in catalogue if matches(inst, query, today)]


def _day(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days


def contract_data(
    req_id: int, instrument: Instrument, exchange: str, today: dt.date
) -> list[WireValue]:
    """Return the contractData message (id 10, server version >= 164: no version field).

    Args:
        req_id: The request being answered.
        instrument: The matched contract.
        exchange: The exchange the client asked for (IB echoes it), or "" for the default.
        today: The day around which trading and liquid hours are listed.
    """
    i = instrument
    first, last = _day(today) - _HOURS_DAYS_BEFORE, _day(today) + _HOURS_DAYS_AFTER
    trading = format_hours(sessions_for(i, use_rth=False), i.zone, first, last)
    liquid = format_hours(sessions_for(i, use_rth=True), i.zone, first, last)
    sec_ids: list[WireValue] = [1, "ISIN", i.isin] if i.isin else [0]
    return [
        10,
        req_id,
        i.symbol,
        i.sec_type,
        i.last_trade_date,
        0.0,
        "",
        exchange.upper() or i.exchange,
        i.currency,
        i.local_symbol,
        i.market_name,
        i.trading_class,
        i.con_id,
        f"{i.min_tick:.{i.price_decimals}f}",
        i.multiplier,
        i.order_types,
        i.valid_exchanges,
        1,
        0,
        i.long_name,
        i.primary_exchange,
        i.contract_month,
        i.industry,
        i.category,
        i.subcategory,
        i.time_zone_id,
        trading,
        liquid,
        "",
        "",  # evRule, evMultiplier (int field: never "1.0")
        *sec_ids,
        i.agg_group,
        i.under_symbol,
        i.under_sec_type,
        i.market_rule_ids,
        i.last_trade_date,
        i.stock_type,
        "0.0001" if i.sec_type == "STK" else "1",
        "0.0001" if i.sec_type == "STK" else "1",
        "100" if i.sec_type == "STK" else "1",
    ]
