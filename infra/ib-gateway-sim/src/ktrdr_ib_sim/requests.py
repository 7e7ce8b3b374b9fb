"""The data requests the simulator understands, read from their wire fields (spec 3.1, 3.5, 4.1)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from ktrdr_ib_sim.contracts import ContractQuery
from ktrdr_ib_sim.ledger import RequestRecord
from ktrdr_ib_sim.wire import Fields


@dataclass(frozen=True)
class HistoricalRequest:
    """reqHistoricalData (id 20) at server version 178; note bar size comes before duration."""

    req_id: int
    contract: ContractQuery
    end: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool

    @classmethod
    def read(cls, msg: Fields) -> HistoricalRequest:
        """Read the fields after the message id."""
        req_id = msg.integer()
        contract = replace(ContractQuery.read(msg), include_expired=msg.flag())
        end, bar_size, duration = msg.text(), msg.text(), msg.text()
        use_rth, what_to_show, format_date = msg.flag(), msg.text(), msg.integer(default=1)
        if contract.sec_type == "BAG":
            msg.skip(4 * msg.integer(default=0))  # (conId, ratio, action, exchange) per leg
        return cls(
            req_id,
            contract,
            end,
            bar_size,
            duration,
            use_rth,
            what_to_show,
            format_date,
            keep_up_to_date=msg.flag(),
        )

    def ledger_details(self) -> dict[str, Any]:
        """Return the request's parameters as ledger record fields."""
        return {
            "symbol": self.contract.symbol,
            "sec_type": self.contract.sec_type,
            "exchange": self.contract.exchange,
            "con_id": self.contract.con_id,
            "bar_size": self.bar_size,
            "duration": self.duration,
            "end": self.end,
            "what_to_show": self.what_to_show,
            "use_rth": self.use_rth,
            "format_date": self.format_date,
            "keep_up_to_date": self.keep_up_to_date,
        }


@dataclass(frozen=True)
class HeadTimestampRequest:
    """reqHeadTimeStamp (id 87): useRTH comes before whatToShow here."""

    req_id: int
    contract: ContractQuery
    use_rth: bool
    what_to_show: str
    format_date: int

    @classmethod
    def read(cls, msg: Fields) -> HeadTimestampRequest:
        """Read the fields after the message id."""
        req_id = msg.integer()
        contract = replace(ContractQuery.read(msg), include_expired=msg.flag())
        return cls(req_id, contract, msg.flag(), msg.text(), msg.integer(default=1))

    def ledger_details(self) -> dict[str, Any]:
        """Return the request's parameters as ledger record fields."""
        return {
            "symbol": self.contract.symbol,
            "sec_type": self.contract.sec_type,
            "exchange": self.contract.exchange,
            "con_id": self.contract.con_id,
            "what_to_show": self.what_to_show,
            "use_rth": self.use_rth,
            "format_date": self.format_date,
        }


@dataclass(frozen=True)
class ContractDetailsRequest:
    """reqContractDetails (id 9, version 8)."""

    req_id: int
    contract: ContractQuery

    @classmethod
    def read(cls, msg: Fields) -> ContractDetailsRequest:
        """Read the fields after the message id (version, reqId, contract, includeExpired, ...)."""
        msg.skip(1)  # version
        req_id = msg.integer()
        return cls(req_id, replace(ContractQuery.read(msg), include_expired=msg.flag()))


@dataclass
class OpenRequest:
    """A request that counts towards the client's 50 open historical requests."""

    kind: str  # "historical" or "head_timestamp"
    record: RequestRecord
    task: asyncio.Task[None] | None = None
