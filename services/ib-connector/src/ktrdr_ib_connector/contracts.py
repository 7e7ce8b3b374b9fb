"""Turn a user's symbol (and what they say of the contract) into IB contracts.

Without a type the lookup tries CASH, STK, FUT, then IND. A forex symbol is written as the pair
(``EURUSD`` or ``EUR.USD``): IB's CASH contract is base ``EUR``, currency ``USD`` on IDEALPRO.
A ``ContractSpec`` narrows the lookup the way IB's ``Contract`` does: a conId names one contract
outright; currency, primary exchange, exchange and a futures month narrow the rest. A stock
lookup that still matches several listings is refused with the candidates named, never
guessed.

Futures: without a month, the contract for a range is the one whose expiry covers it (the
nearest expiry at or after the range's end), so a range in the past takes the contract that
was trading then; IB lists expired contracts only with ``includeExpired``, which the lookup
sets when the range ends before today and which the picked contract keeps, so its historical
requests carry the flag too (IB answers 200 for an expired contract without it). A range that
spans expiries is split at them (``contract_spans``): each piece comes from the contract that
was the front month in it. A future IB has no live contract for at all (``CL`` -> CLK0, May
2020) takes the latest expired one.

Answers are cached until they can change: a contract until its expiry, a list of a future's
contracts until the first of them expires (then a roll has happened and the list is asked
for again).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ib_async import Contract, ContractDetails
from ktrdr_shared.errors import InvalidRequest, UnknownSymbol
from ktrdr_shared.messages import SymbolInfo
from ktrdr_shared.messages.contract import ContractSpec
from ktrdr_shared.types import InstrumentType

DetailsLookup = Callable[[Contract], Awaitable[list[ContractDetails]]]
Clock = Callable[[], datetime]
# The symbols the gateway serves, when it says (ktrdr's simulator does); None when it does not.
Served = Callable[[], Sequence[str] | None]
#: How many served symbols an unknown-symbol error names before it says how many more.
SERVED_SHOWN = 20

DISCOVERY_ORDER = (InstrumentType.CASH, InstrumentType.STK, InstrumentType.FUT, InstrumentType.IND)

_PAIR = re.compile(r"^([A-Z]{3})[._/ ]?([A-Z]{3})$")
_NO_SPEC = ContractSpec()


def query_contract(
    symbol: str, instrument_type: InstrumentType, spec: ContractSpec | None = None
) -> Contract | None:
    """Return the contract to ask IB's details for, or None when the symbol cannot be that type."""
    spec = spec or _NO_SPEC
    currency = spec.currency or ""
    if spec.con_id is not None:
        return Contract(
            conId=spec.con_id, secType=instrument_type.value, exchange=spec.exchange or ""
        )
    if instrument_type is InstrumentType.CASH:
        match = _PAIR.match(symbol)
        if match is None or (spec.currency and spec.currency != match[2]):
            return None
        return Contract(secType="CASH", symbol=match[1], currency=match[2], exchange="IDEALPRO")
    if instrument_type is InstrumentType.STK:
        return Contract(
            secType="STK",
            symbol=symbol,
            exchange=spec.exchange or "SMART",
            primaryExchange=spec.primary_exchange or "",
            currency=currency,
        )
    if instrument_type is InstrumentType.FUT:
        return Contract(
            secType="FUT",
            symbol=symbol,
            exchange=spec.exchange or "",
            currency=currency,
            lastTradeDateOrContractMonth=spec.contract_month or "",
            includeExpired=False,
        )
    return Contract(secType="IND", symbol=symbol, exchange=spec.exchange or "", currency=currency)


def with_expired(query: Contract) -> Contract:
    """Return the same futures lookup with IB's expired contracts included."""
    return Contract(
        secType=query.secType,
        symbol=query.symbol,
        exchange=query.exchange,
        currency=query.currency,
        lastTradeDateOrContractMonth=query.lastTradeDateOrContractMonth,
        includeExpired=True,
    )


def expiry(details: ContractDetails) -> datetime | None:
    """Return when a contract stops trading for ktrdr's purposes: the end (UTC) of its last
    trading day; None for a contract that does not expire."""
    contract = details.contract
    text = (contract.lastTradeDateOrContractMonth if contract else "") or ""
    digits = text.split()[0] if text else ""
    if len(digits) == 8 and digits.isdigit():
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    elif len(digits) == 6 and digits.isdigit():  # a month only: its last day
        first_next = date(int(digits[:4]) + int(digits[4:]) // 12, int(digits[4:]) % 12 + 1, 1)
        day = first_next - timedelta(days=1)
    else:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _by_expiry(details: list[ContractDetails]) -> list[tuple[datetime, ContractDetails]]:
    dated = [(e, d) for d in details if (e := expiry(d)) is not None]
    return sorted(dated, key=lambda pair: pair[0])


def pick_covering(details: list[ContractDetails], end: datetime) -> ContractDetails | None:
    """Return the contract with the nearest expiry at or after ``end`` (None: all expired
    before it)."""
    for ends, found in _by_expiry(details):
        if ends >= end:
            return found
    return None


def pick_front_month(
    details: list[ContractDetails], now: datetime | None = None
) -> ContractDetails:
    """Return the details of the nearest expiry not yet past (or the only match)."""
    if len(details) == 1:
        return details[0]
    return pick_covering(details, now or datetime.now(UTC)) or max(
        details, key=lambda d: expiry(d) or datetime.min.replace(tzinfo=UTC)
    )


def pick_latest_expired(details: list[ContractDetails]) -> ContractDetails:
    """Return the most recently expired contract, flagged ``includeExpired`` for later requests."""
    found = max(details, key=lambda d: expiry(d) or datetime.min.replace(tzinfo=UTC))
    if found.contract is not None:
        found.contract.includeExpired = True
    return found


def contract_spans(
    details: list[ContractDetails], start: datetime, end: datetime, now: datetime
) -> list[tuple[datetime, datetime, ContractDetails]]:
    """Split ``[start, end)`` at the contracts' expiries: each piece with the contract that was
    the front month in it (the nearest expiry at or after the piece's end).

    Raises:
        InvalidRequest: the range reaches past every contract's expiry.
    """
    spans: list[tuple[datetime, datetime, ContractDetails]] = []
    at = start
    for ends, found in _by_expiry(details):
        if ends <= at:
            continue
        stop = min(ends, end)
        spans.append((at, stop, _flagged(found, ends, now)))
        at = stop
        if at >= end:
            return spans
    last = _by_expiry(details)[-1][0] if _by_expiry(details) else None
    raise InvalidRequest(
        f"no contract covers {at.isoformat()} to {end.isoformat()}: the last listed expiry is "
        f"{last.date().isoformat() if last else 'unknown'}"
    )


def _flagged(details: ContractDetails, ends: datetime, now: datetime) -> ContractDetails:
    """Return ``details`` with ``includeExpired`` set when the contract has expired."""
    if details.contract is not None and ends <= now:
        details.contract.includeExpired = True
    return details


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


def _ambiguous(symbol: str, details: list[ContractDetails]) -> InvalidRequest:
    """Return the problem of a stock lookup that matched several listings, naming them."""
    listings = ", ".join(
        f"{c.primaryExchange or c.exchange} {c.currency} (conId {c.conId})"
        for d in details[:6]
        if (c := d.contract) is not None
    )
    return InvalidRequest(
        f"{symbol!r} matches {len(details)} contracts: {listings}; say which with "
        "currency, primary_exchange or con_id",
        details={"symbol": symbol, "matches": len(details)},
    )


def _kind_of(details: list[ContractDetails]) -> InstrumentType:
    contract = details[0].contract
    return InstrumentType(contract.secType if contract else "STK")


@dataclass
class _Cached:
    details: list[ContractDetails]
    until: datetime | None  # None: until the process ends


def _unknown(
    symbol: str,
    instrument_type: InstrumentType | None,
    spec: ContractSpec | None,
    served: Sequence[str] | None,
) -> UnknownSymbol:
    """Return the error of a symbol IB has no contract for; on the simulator, name what it has."""
    tried = instrument_type.value if instrument_type else " / ".join(DISCOVERY_ORDER)
    described = "" if spec is None else f" with {spec.describe()}"
    message = (
        f"IB has no contract for {symbol!r}{described} (tried {tried}); check the symbol, "
        "its type or what was said of the contract"
    )
    details: dict[str, object] = {"symbol": symbol, "tried": tried, "ib_code": 200}
    if served:
        shown = ", ".join(served[:SERVED_SHOWN])
        more = len(served) - SERVED_SHOWN
        hint = (
            "this gateway is the ktrdr simulator, which serves only "
            f"{shown}{f', … ({more} more)' if more > 0 else ''}"
        )
        message += f"; {hint}"
        details |= {"hint": hint, "served": list(served)}
    return UnknownSymbol(message, details=details)


class ContractResolver:
    """Resolve symbols through IB; remember each answer until it can change (an expiry)."""

    def __init__(
        self, ib_details: DetailsLookup, clock: Clock | None = None, served: Served | None = None
    ) -> None:
        self._lookup = ib_details
        self._now = clock or (lambda: datetime.now(UTC))
        self._served = served or (lambda: None)
        self._cache: dict[tuple[object, ...], _Cached] = {}

    async def resolve(
        self,
        symbol: str,
        instrument_type: InstrumentType | None,
        spec: ContractSpec | None = None,
        *,
        covering: tuple[datetime, datetime] | None = None,
    ) -> ContractDetails:
        """Return IB's details for ``symbol`` (trying each type in turn when untyped).

        ``covering`` picks a future's contract for a range (the nearest expiry at or after
        its end); without it, the front month now.

        Raises:
            UnknownSymbol: IB knows no such contract (error 200 / no match).
            InvalidRequest: a stock lookup matched several listings.
        """
        kind, details = await self._matches(
            symbol, instrument_type, spec, None if covering is None else covering[1]
        )
        if kind is InstrumentType.FUT and len(details) > 1:
            end = covering[1] if covering else self._now()
            found = pick_covering(details, end)
            if found is None:
                return pick_latest_expired(details)
            return _flagged(found, expiry(found) or end, self._now())
        if len(details) > 1:
            raise _ambiguous(symbol, details)
        return details[0]

    async def spans(
        self,
        symbol: str,
        instrument_type: InstrumentType | None,
        spec: ContractSpec | None,
        start: datetime,
        end: datetime,
    ) -> list[tuple[datetime, datetime, ContractDetails]]:
        """Return ``[start, end)`` split by contract: one piece unless a future rolls in it."""
        kind, details = await self._matches(symbol, instrument_type, spec, end, since=start)
        if kind is InstrumentType.FUT and len(details) > 1:
            return contract_spans(details, start, end, self._now())
        return [
            (start, end, await self.resolve(symbol, instrument_type, spec, covering=(start, end)))
        ]

    async def _matches(
        self,
        symbol: str,
        instrument_type: InstrumentType | None,
        spec: ContractSpec | None,
        end: datetime | None,
        *,
        since: datetime | None = None,
    ) -> tuple[InstrumentType, list[ContractDetails]]:
        """Return the type that matched and IB's contracts for the lookup (cached)."""
        now = self._now()
        earliest = since or end
        past = earliest is not None and earliest < now
        key = (symbol, instrument_type, spec, past)
        cached = self._cache.get(key)
        if cached is not None and (cached.until is None or now < cached.until):
            return _kind_of(cached.details), cached.details
        for kind in (instrument_type,) if instrument_type else DISCOVERY_ORDER:
            query = query_contract(symbol, kind, spec)
            if query is None:
                continue
            if query.secType == "FUT" and past:
                details = [
                    _flagged(d, expiry(d) or now, now)
                    for d in await self._lookup(with_expired(query))
                ]
            else:
                details = await self._lookup(query)
                if not details and query.secType == "FUT":  # nothing live: the latest expired
                    expired = await self._lookup(with_expired(query))
                    details = [pick_latest_expired(expired)] if expired else []
            if details:
                live = [e for e, _ in _by_expiry(details) if e > now]
                self._cache[key] = _Cached(details, min(live) if live else None)
                return kind, details
        raise _unknown(symbol, instrument_type, spec, self._served())
