"""Which contract a symbol means: the spec, the expiry covering a range, rolls, the cache.

The pure parts with ib_async's own ``Contract``/``ContractDetails`` values; the resolver with
a lookup that answers from a list (the lookup is ktrdr's callable, not ib_async: the same
resolver runs over the real simulator in the segment tests).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ib_async import Contract, ContractDetails
from ktrdr_ib_connector.contracts import (
    ContractResolver,
    contract_spans,
    expiry,
    pick_covering,
    query_contract,
)
from ktrdr_shared.errors import InvalidRequest, UnknownSymbol
from ktrdr_shared.messages.contract import ContractSpec
from ktrdr_shared.types import InstrumentType

pytestmark = pytest.mark.unit

STK, FUT = InstrumentType.STK, InstrumentType.FUT


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def es(last_trade: str) -> ContractDetails:
    return ContractDetails(
        contract=Contract(
            secType="FUT",
            symbol="ES",
            conId=int(last_trade),
            lastTradeDateOrContractMonth=last_trade,
            exchange="CME",
            currency="USD",
        )
    )


ES = [es("20240315"), es("20240621"), es("20240920"), es("20241220")]


def test_a_spec_narrows_the_lookup_like_ibs_contract() -> None:
    spec = ContractSpec(currency="USD", primary_exchange="NASDAQ")
    stk = query_contract("AAPL", STK, spec)
    assert stk is not None
    assert (stk.exchange, stk.primaryExchange, stk.currency) == ("SMART", "NASDAQ", "USD")
    fut = query_contract("ES", FUT, ContractSpec(contract_month="202406", exchange="CME"))
    assert fut is not None
    assert (fut.lastTradeDateOrContractMonth, fut.exchange) == ("202406", "CME")
    by_id = query_contract("AAPL", STK, ContractSpec(con_id=265598))
    assert by_id is not None and by_id.conId == 265598 and not by_id.symbol
    assert query_contract("EURUSD", InstrumentType.CASH, ContractSpec(currency="JPY")) is None


def test_an_expiry_ends_with_its_last_trading_day() -> None:
    assert expiry(es("20240315")) == day(2024, 3, 16)
    assert expiry(es("202403")) == day(2024, 4, 1)  # a month only: its last day
    assert expiry(ContractDetails(contract=Contract(secType="STK", symbol="AAPL"))) is None


def test_the_contract_for_a_range_is_the_nearest_expiry_covering_its_end() -> None:
    assert pick_covering(ES, day(2024, 2, 1)) is ES[0]
    assert pick_covering(ES, day(2024, 3, 16)) is ES[0]  # through the expiry day
    assert pick_covering(ES, day(2024, 3, 17)) is ES[1]
    assert pick_covering(ES, day(2025, 1, 1)) is None


def test_a_range_over_a_roll_is_split_at_the_expiry() -> None:
    spans = contract_spans(ES, day(2024, 3, 1), day(2024, 4, 1), now=day(2026, 1, 1))
    assert [(a, b, d.contract.lastTradeDateOrContractMonth) for a, b, d in spans] == [
        (day(2024, 3, 1), day(2024, 3, 16), "20240315"),
        (day(2024, 3, 16), day(2024, 4, 1), "20240621"),
    ]
    assert all(d.contract.includeExpired for _, _, d in spans)  # expired by "now": flagged
    with pytest.raises(InvalidRequest, match="last listed expiry is 2024-12-21"):
        contract_spans(ES, day(2024, 12, 1), day(2025, 2, 1), now=day(2026, 1, 1))


class Lookup:
    """IB's contract details as a list, with a count of the lookups."""

    def __init__(self, live: list[ContractDetails], expired: list[ContractDetails]) -> None:
        self.live, self.expired, self.calls = live, expired, []

    async def __call__(self, query: Contract) -> list[ContractDetails]:
        self.calls.append(query)
        if query.secType != "FUT" or query.symbol != "ES":
            if query.secType == "STK" and query.symbol == "DUAL":
                listings = [("NYSE", "USD"), ("TSX", "CAD")]
                return [
                    ContractDetails(
                        contract=Contract(
                            secType="STK", symbol="DUAL", conId=i, primaryExchange=x, currency=c
                        )
                    )
                    for i, (x, c) in enumerate(listings, 1)
                ]
            return []
        return self.live + (self.expired if query.includeExpired else [])


async def test_the_resolver_picks_by_range_rolls_when_the_front_month_expires() -> None:
    now = [day(2024, 3, 10)]
    lookup = Lookup(live=ES, expired=[es("20231215")])
    resolver = ContractResolver(lookup, clock=lambda: now[0])
    front = await resolver.resolve("ES", FUT)
    assert front.contract.lastTradeDateOrContractMonth == "20240315"
    old = await resolver.resolve("ES", FUT, covering=(day(2023, 11, 1), day(2023, 12, 1)))
    assert old.contract.lastTradeDateOrContractMonth == "20231215"
    assert old.contract.includeExpired  # its historical requests must say so
    assert lookup.calls[-1].includeExpired
    calls = len(lookup.calls)
    await resolver.resolve("ES", FUT)
    assert len(lookup.calls) == calls  # cached
    now[0] = day(2024, 3, 20)  # past the March expiry: the list is asked for again
    rolled = await resolver.resolve("ES", FUT)
    assert len(lookup.calls) == calls + 1
    assert rolled.contract.lastTradeDateOrContractMonth == "20240621"


async def test_spans_cover_a_range_over_a_roll_with_each_front_month() -> None:
    resolver = ContractResolver(Lookup(live=ES, expired=[]), clock=lambda: day(2024, 6, 1))
    spans = await resolver.spans("ES", FUT, None, day(2024, 3, 10), day(2024, 3, 20))
    months = [d.contract.lastTradeDateOrContractMonth for _, _, d in spans]
    assert months == ["20240315", "20240621"]


async def test_a_stock_with_several_listings_is_refused_naming_them_and_a_spec_picks_one() -> None:
    resolver = ContractResolver(Lookup(live=[], expired=[]))
    with pytest.raises(
        InvalidRequest,
        match=r"'DUAL' matches 2 contracts: NYSE USD \(conId 1\), "
        r"TSX CAD \(conId 2\); say which with currency",
    ):
        await resolver.resolve("DUAL", STK)
    with pytest.raises(UnknownSymbol, match="with currency CHF"):
        await resolver.resolve("NOPE", STK, ContractSpec(currency="CHF"))


async def test_an_expired_contract_found_for_a_past_range_keeps_include_expired() -> None:
    clk0 = ContractDetails(
        contract=Contract(
            secType="FUT", symbol="CL", conId=1, lastTradeDateOrContractMonth="20200421"
        )
    )

    async def lookup(query: Contract) -> list[ContractDetails]:
        return [clk0] if query.symbol == "CL" and query.includeExpired else []

    resolver = ContractResolver(lookup, clock=lambda: day(2026, 1, 1))
    spans = await resolver.spans("CL", FUT, None, day(2020, 4, 1), day(2020, 4, 21))
    assert [d.contract.conId for _, _, d in spans] == [1]
    assert spans[0][2].contract.includeExpired  # IB answers 200 for it otherwise


SERVED = ["AAPL", "MSFT", "SPY", "BRK B", "EURUSD"]


async def test_an_unknown_symbol_on_the_simulator_names_the_symbols_it_serves() -> None:
    resolver = ContractResolver(Lookup(live=[], expired=[]), served=lambda: SERVED)
    with pytest.raises(UnknownSymbol) as caught:
        await resolver.resolve("NOSUCH", STK)
    hint = "this gateway is the ktrdr simulator, which serves only AAPL, MSFT, SPY, BRK B, EURUSD"
    assert caught.value.message.endswith(f"; {hint}")
    assert caught.value.details["hint"] == hint
    assert caught.value.details["served"] == SERVED


async def test_a_long_list_of_served_symbols_is_cut_short() -> None:
    served = [f"S{i:02d}" for i in range(30)]
    resolver = ContractResolver(Lookup(live=[], expired=[]), served=lambda: served)
    with pytest.raises(UnknownSymbol) as caught:
        await resolver.resolve("NOSUCH", STK)
    assert caught.value.message.endswith(
        "which serves only S00, S01, S02, S03, S04, S05, S06, "
        "S07, S08, S09, S10, S11, S12, S13, S14, S15, S16, S17, "
        "S18, S19, … (10 more)"
    )


async def test_an_unknown_symbol_on_a_real_gateway_names_no_symbols() -> None:
    lookup = Lookup(live=[], expired=[])
    for resolver in (ContractResolver(lookup), ContractResolver(lookup, served=lambda: None)):
        with pytest.raises(UnknownSymbol) as caught:
            await resolver.resolve("NOSUCH", STK)
        assert caught.value.message == (
            "IB has no contract for 'NOSUCH' (tried STK); check the symbol, its type or what "
            "was said of the contract"
        )
        assert "hint" not in caught.value.details and "served" not in caught.value.details
