"""``/api/v1/ib``: the IB connection's status and health, symbol discovery, head timestamps."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from ktrdr_shared import subjects
from ktrdr_shared.messages import (
    HeadTimestamp,
    HeadTimestampRequest,
    IbStatus,
    StatusRequest,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow
from litestar import Controller, get, post
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter

from ktrdr_api.deps import GatewayDep, SettingsDep
from ktrdr_api.errors import problem_responses
from ktrdr_api.schemas import (
    HeadTimestampOut,
    IbHealthOut,
    IbStatusOut,
    SymbolOut,
    ValidateSymbolIn,
)
from ktrdr_api.validation import StrictBody
from ktrdr_api.views import ib_status_out, symbol_out

SYMBOL_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 ._/&-]*[A-Za-z0-9._/&-])?$(?!\n)"
SymbolQuery = Annotated[
    str,
    Parameter(
        description="Instrument symbol as IB knows it (AAPL, EURUSD, ES).",
        min_length=1,
        max_length=32,
        pattern=SYMBOL_PATTERN,
        examples=[Example(value="AAPL")],
    ),
]


class IbController(Controller):
    """The ib-connector's request/reply endpoints, over REST."""

    path = "/api/v1/ib"
    tags = ["ib"]

    @get(
        "/status",
        operation_id="getIbStatus",
        summary="The IB connection state",
        responses=problem_responses(401, 502, 503, 504),
    )
    async def status(self, gateway: GatewayDep) -> IbStatusOut:
        """Ask the ib-connector for its connection state (one NATS round trip)."""
        reply = await gateway.request(subjects.IB_STATUS, StatusRequest(), IbStatus)
        return ib_status_out(reply)

    @get(
        "/health",
        operation_id="getIbHealth",
        summary="Whether the connector can fetch from IB",
        responses=problem_responses(401, 502, 503, 504),
    )
    async def health(self, gateway: GatewayDep) -> IbHealthOut:
        """Return ``healthy`` when the connector answers and IB is connected."""
        reply = await gateway.request(subjects.IB_STATUS, StatusRequest(), IbStatus)
        detail = (
            f"connected to IB at {reply.host}:{reply.port} as client {reply.client_id}"
            if reply.connected
            else f"the ib-connector is running but IB at {reply.host}:{reply.port} is not "
            f"connected ({reply.last_error or 'connecting'}); it reconnects on its "
            "own"
        )
        return IbHealthOut(
            healthy=reply.connected,
            connected=reply.connected,
            detail=detail,
            last_error=reply.last_error,
        )

    @post(
        "/symbols/validate",
        status_code=200,
        operation_id="validateSymbol",
        dto=StrictBody[ValidateSymbolIn],
        summary="Look a symbol up at IB: instrument type, exchange, currency, trading hours",
        responses=problem_responses(400, 401, 404, 429, 502, 503, 504),
    )
    async def validate(
        self,
        gateway: GatewayDep,
        settings: SettingsDep,
        data: Annotated[
            ValidateSymbolIn,
            Body(
                examples=[
                    Example(
                        summary="any type (CASH, then STK, then FUT)", value={"symbol": "AAPL"}
                    ),
                    Example(summary="a future", value={"symbol": "ES", "instrument_type": "FUT"}),
                ]
            ),
        ],
    ) -> SymbolOut:
        """Validate a symbol; 404 ``unknown_symbol`` when IB has no contract for it."""
        message = ValidateSymbol(symbol=data.symbol.upper(), instrument_type=data.instrument_type)
        # Without a type the connector may ask IB three times (CASH, STK, FUT).
        reply = await gateway.request(
            subjects.IB_VALIDATE, message, SymbolInfo, timeout_s=3 * settings.api_request_timeout_s
        )
        return symbol_out(reply)

    @get(
        "/head-timestamp",
        operation_id="getHeadTimestamp",
        summary="The earliest bar IB has for a symbol",
        responses=problem_responses(400, 401, 404, 429, 502, 503, 504),
    )
    async def head_timestamp(
        self,
        gateway: GatewayDep,
        settings: SettingsDep,
        symbol: SymbolQuery,
        timeframe: Annotated[
            Timeframe | None,
            Parameter(description="Echoed back; IB's earliest bar is the same for every bar size."),
        ] = None,
        instrument_type: Annotated[
            InstrumentType | None,
            Parameter(description="STK, CASH, FUT or IND; discovered when absent."),
        ] = None,
        what_to_show: Annotated[
            WhatToShow | None,
            Parameter(
                description="TRADES (default for stocks) or MIDPOINT (default for forex), ..."
            ),
        ] = None,
        use_rth: Annotated[bool, Parameter(description="Regular trading hours only.")] = False,
    ) -> HeadTimestampOut:
        """Ask IB (through the connector) for the first bar it has."""
        request = HeadTimestampRequest(
            symbol=symbol.upper(),
            instrument_type=instrument_type,
            what_to_show=what_to_show,
            use_rth=use_rth,
        )
        reply = await gateway.request(
            subjects.IB_HEAD_TIMESTAMP,
            request,
            HeadTimestamp,
            timeout_s=3 * settings.api_request_timeout_s,
        )
        return HeadTimestampOut(
            symbol=reply.symbol,
            what_to_show=reply.what_to_show,
            head_timestamp=reply.head_timestamp.astimezone(UTC),
            timeframe=timeframe,
        )
