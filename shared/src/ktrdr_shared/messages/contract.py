"""What a user can say about which IB contract a symbol means, beyond the symbol itself."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from ktrdr_shared.messages.base import Message
from ktrdr_shared.types import PositiveInt

Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$(?!\n)", description="ISO currency, e.g. USD")]
ExchangeName = Annotated[
    str, Meta(pattern=r"^[A-Z0-9.]{1,16}$(?!\n)", description="IB exchange code")
]
ContractMonth = Annotated[
    str, Meta(pattern=r"^\d{6}(\d{2})?$(?!\n)", description="YYYYMM or YYYYMMDD (futures)")
]


class ContractSpec(Message, frozen=True, kw_only=True, omit_defaults=True):
    """Which contract a symbol means, where the symbol alone is ambiguous (all optional).

    ``con_id`` names one contract outright; the other fields narrow IB's lookup the way
    ``Contract`` does: ``currency`` (a stock listed in two currencies), ``primary_exchange``
    (the listing exchange; routing stays SMART), ``exchange`` (routing, or a futures
    exchange such as CME), ``contract_month`` (a future's expiry, ``YYYYMM`` or
    ``YYYYMMDD``). Without a month a future is the contract whose expiry covers the
    requested range. The defaults are today's: SMART routing, IB's primary listing, the
    symbol's own currency.
    """

    con_id: PositiveInt | None = None
    currency: Currency | None = None
    exchange: ExchangeName | None = None
    primary_exchange: ExchangeName | None = None
    contract_month: ContractMonth | None = None

    def describe(self) -> str:
        """Return the spec as a user would write it (``"currency USD, month 202403"``)."""
        parts = [
            f"{name.replace('_', ' ')} {value}"
            for name, value in (
                ("con_id", self.con_id),
                ("currency", self.currency),
                ("exchange", self.exchange),
                ("primary_exchange", self.primary_exchange),
                ("contract_month", self.contract_month),
            )
            if value is not None
        ]
        return ", ".join(parts) or "the defaults"
