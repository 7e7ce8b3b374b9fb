"""Turn a user's symbol into an IB contract (CASH -> STK -> FUT -> IND unless typed).

A forex symbol is written as the pair (``EURUSD`` or ``EUR.USD``): IB's CASH
contract is base ``EUR``, currency ``USD`` on IDEALPRO. Futures resolve to
the front month (the nearest expiry not yet past). When IB has no live
contract for a future, the lookup is retried once with ``includeExpired``
(IB hides expired contracts otherwise) and the latest expired contract is
taken, e.g. ``CL`` -> CLK0 (May 2020). Its contract keeps
``includeExpired=True``, so the historical requests made with it carry the
flag too (IB answers 200 for an expired contract without it). Answers are
cached in memory and in the ``ktrdr_symbols`` KV bucket by the service.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from ib_async import Contract, ContractDetails
from ktrdr_shared.errors import UnknownSymbol
from ktrdr_shared.messages import SymbolInfo
from ktrdr_shared.types import InstrumentType

DetailsLookup = Callable[[Contract], Awaitable[list[ContractDetails]]]

DISCOVERY_ORDER = (InstrumentType.CASH, InstrumentType.STK, InstrumentType.FUT, InstrumentType.IND)

_PAIR = re.compile(r"^([A-Z]{3})[._/ ]?([A-Z]{3})$")


def query_contract(symbol: str, instrument_type: InstrumentType) -> Contract | None:
    """Return the contract to ask IB's details for, or None when the symbol cannot be that type."""
    if instrument_type is InstrumentType.CASH:
        match = _PAIR.match(symbol)
        if match is None:
            return None
        return Contract(secType="CASH", symbol=match[1], currency=match[2], exchange="IDEALPRO")
    if instrument_type is InstrumentType.STK:
        return Contract(secType="STK", symbol=symbol, exchange="SMART")
    if instrument_type is InstrumentType.FUT:
        return Contract(secType="FUT", symbol=symbol, includeExpired=False)
    return Contract(secType="IND", symbol=symbol)


def expired_query(query: Contract) -> Contract | None:
    """Return the retry for a future IB found nothing live for, or None for other types."""
    if query.secType != "FUT" or query.includeExpired:
        return None
    return Contract(secType="FUT", symbol=query.symbol, includeExpired=True)


def pick_latest_expired(details: list[ContractDetails]) -> ContractDetails:
    """Return the most recently expired contract, flagged ``includeExpired`` for later requests."""
    found = max(
        details, key=lambda d: d.contract.lastTradeDateOrContractMonth if d.contract else ""
    )
    if found.contract is not None:
        found.contract.includeExpired = True
    return found


def pick_front_month(
    details: list[ContractDetails], now: datetime | None = None
) -> ContractDetails:
    """Return the details of the nearest expiry not yet past (or the only match)."""
    if len(details) == 1:
        return details[0]
    today = (now or datetime.now(UTC)).strftime("%Y%m%d")
    live = [d for d in details if d.contract and d.contract.lastTradeDateOrContractMonth >= today]
    pool = live or details
    return min(pool, key=lambda d: d.contract.lastTradeDateOrContractMonth if d.contract else "")


def symbol_info(symbol: str, details: ContractDetails) -> SymbolInfo:
    """Return the wire form of what IB said about ``symbol``."""
    contract = details.contract
    assert contract is not None
    return SymbolInfo(
        symbol=symbol,
        instrument_type=InstrumentType(contract.secType),
        exchange=contract.exchange or contract.primaryExchange,
        currency=contract.currency,
        time_zone=details.timeZoneId,
        trading_hours=details.tradingHours,
        liquid_hours=details.liquidHours,
        con_id=contract.conId or None,
        description=details.longName,
    )


class ContractResolver:
    """Resolve symbols through IB once; remember the answers."""

    def __init__(self, ib_details: DetailsLookup) -> None:
        self._lookup = ib_details
        self._cache: dict[tuple[str, InstrumentType | None], ContractDetails] = {}

    async def resolve(self, symbol: str, instrument_type: InstrumentType | None) -> ContractDetails:
        """Return IB's details for ``symbol`` (trying each type in turn when untyped).

        Raises:
            UnknownSymbol: IB knows no such contract (error 200 / no match).
        """
        cached = self._cache.get((symbol, instrument_type))
        if cached is not None:
            return cached
        for kind in (instrument_type,) if instrument_type else DISCOVERY_ORDER:
            query = query_contract(symbol, kind)
            if query is None:
                continue
            details = await self._lookup(query)
            found = pick_front_month(details) if details else None
            retry = None if found else expired_query(query)
            if retry is not None:
                expired = await self._lookup(retry)
                found = pick_latest_expired(expired) if expired else None
            if found is not None:
                self._cache[(symbol, instrument_type)] = found
                return found
        tried = instrument_type.value if instrument_type else " / ".join(DISCOVERY_ORDER)
        raise UnknownSymbol(
            f"IB has no contract for {symbol!r} (tried {tried}); check the symbol or its type",
            details={"symbol": symbol, "tried": tried, "ib_code": 200},
        )
