"""Answering historical data and head-timestamp requests, with IB's rules in IB's order.

Checks run synchronously when a request arrives, so a burst is judged in arrival order:
open-request limit (322), contract (200), parameters (10314/321/162), size (162), pacing (162),
HMDS farm (162). Bars are then cut in a worker thread and sent after the modelled latency.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ktrdr_ib_sim import codes
from ktrdr_ib_sim.bars import head_timestamp_s, open_seconds, sessions_for
from ktrdr_ib_sim.catalogue import Instrument
from ktrdr_ib_sim.codes import IBError
from ktrdr_ib_sim.contracts import ContractQuery, contract_data, find
from ktrdr_ib_sim.formatting import (
    DateStyle,
    head_timestamp_text,
    historical_data_message,
    live_update_fields,
)
from ktrdr_ib_sim.ledger import RequestRecord
from ktrdr_ib_sim.pacing import PacedRequest
from ktrdr_ib_sim.requests import (
    ContractDetailsRequest,
    HeadTimestampRequest,
    HistoricalRequest,
    OpenRequest,
)
from ktrdr_ib_sim.rules import (
    SMALL_BAR_HISTORY_S,
    HistoricalParams,
    check_format_date,
    check_what_to_show,
    validate_historical,
    window_start,
)
from ktrdr_ib_sim.series import Bars, generate_bars
from ktrdr_ib_sim.sessions import Sessions
from ktrdr_ib_sim.timeframes import BarSize
from ktrdr_ib_sim.wire import Fields

if TYPE_CHECKING:
    from ktrdr_ib_sim.connection import ClientConnection
    from ktrdr_ib_sim.server import IBGatewaySimulator

logger = logging.getLogger(__name__)

LIVE_UPDATE_PERIOD_S = 5.0
_NEVER = 2**62  # the data start of a whatToShow the contract does not have: no bar is that late


@dataclass(frozen=True)
class BarPlan:
    """Everything needed to cut and render the bars of one accepted request."""

    req_id: int
    instrument: Instrument
    bar: BarSize
    what_to_show: str
    use_rth: bool
    window: tuple[int, int]
    data_start_s: int | None
    now_s: int
    seed: int
    style: DateStyle
    empty_as_error: bool
    forming: bool = False  # an open end time: the bar still forming is sent too

    def cut(self, window: tuple[int, int] | None = None, now_s: int | None = None) -> Bars:
        """Return the bars of this plan's window (or another window, at another "now")."""
        return generate_bars(
            self.instrument,
            self.bar,
            self.what_to_show,
            self.use_rth,
            window or self.window,
            seed=self.seed,
            now_s=now_s or self.now_s,
            data_start_s=_NEVER if self.data_start_s is None else self.data_start_s,
            forming=self.forming and window is None,
        )

    def render(self) -> tuple[bytes, int]:
        """Cut the bars and frame them as one historicalData message (runs in a thread)."""
        bars = self.cut()
        if len(bars) == 0 and self.empty_as_error:
            inst = self.instrument
            raise codes.no_data(inst.local_symbol, inst.exchange, self.what_to_show)
        return historical_data_message(self.req_id, bars, self.style, self.window), len(bars)


def resolve(catalogue: tuple[Instrument, ...], query: ContractQuery, today: dt.date) -> Instrument:
    """Return the one instrument a query names; 200 when it names none or several.

    An expired contract counts only when the request set ``includeExpired``.
    """
    found = find(catalogue, query, today)
    if len(found) == 1:
        return found[0]
    if found:
        raise IBError(200, f"The contract description specified for {query.symbol} is ambiguous.")
    raise codes.NO_SECURITY_DEFINITION


def _today(sim: IBGatewaySimulator) -> dt.date:
    """Return the UTC date of the simulator's data clock."""
    today: dt.date = np.datetime64(sim.now_s(), "s").astype("datetime64[D]").item()
    return today


def _check_capacity(conn: ClientConnection, req_id: int) -> None:
    if req_id in conn.open_requests:
        raise codes.DUPLICATE_TICKER
    if len(conn.open_requests) >= conn.sim.config.max_open_requests:
        raise codes.TOO_MANY_OPEN


def _reject(conn: ClientConnection, record: RequestRecord, req_id: int, error: IBError) -> None:
    conn.sim.ledger.fail(record, error.code, error.text)
    conn.send_error(req_id, error)


def _data_start(inst: Instrument, req: HistoricalRequest, bar: BarSize, now: int) -> int | None:
    """Return the first instant with data: the head timestamp, six months back for small bars."""
    head = head_timestamp_s(inst, req.what_to_show, req.use_rth)
    if head is not None and bar.is_small:
        return max(head, now - SMALL_BAR_HISTORY_S)
    return head


def _estimated_bars(sessions: Sessions, bar: BarSize, window: tuple[int, int]) -> int:
    """Return about how many bars a window holds, without cutting them."""
    start, end = window
    if not bar.is_intraday:
        return len(sessions.overlapping(start, end))
    return open_seconds(sessions, start, end) // bar.seconds if end > start else 0


def _plan(
    sim: IBGatewaySimulator, inst: Instrument, req: HistoricalRequest, params: HistoricalParams
) -> BarPlan:
    """Work out the request's window and refuse it (162) if it would hold too many bars."""
    now = sim.now_s()
    end = params.end.epoch_s if params.end.epoch_s is not None else now
    sessions = sessions_for(inst, req.use_rth)
    start = window_start(end, params.duration, sessions)
    data_start = _data_start(inst, req, params.bar, now)
    served = (max(start, data_start or start), min(end, now))
    if _estimated_bars(sessions, params.bar, served) > sim.config.max_bars:
        raise codes.TIME_LENGTH_EXCEEDED
    style = DateStyle(inst, req.format_date, sim.config.bar_tz)
    cfg = sim.config
    return BarPlan(
        req.req_id,
        inst,
        params.bar,
        req.what_to_show,
        req.use_rth,
        (start, end),
        data_start,
        now,
        cfg.seed,
        style,
        cfg.empty_as_error,
        forming=end >= now,
    )


def _pace(sim: IBGatewaySimulator, inst: Instrument, req: HistoricalRequest, bar: BarSize) -> float:
    """Apply pacing; return the soft delay (IB seconds) to add, or raise a 162 violation."""
    series = (inst.con_id, req.contract.exchange, req.what_to_show)
    identity = (*series, req.bar_size, req.duration, req.end, req.use_rth, req.format_date)
    paced = PacedRequest.of(identity, series, req.what_to_show)
    if bar.is_small:
        broken = sim.pacing.admit(paced)
        if broken is not None:
            sim.ledger.pacing_violation(broken.name)
            raise codes.PACING_VIOLATION
        return 0.0
    # IB lifted the hard limits for bars of 1 min and more but slows heavy users down instead.
    broken = sim.soft_pacing.check(paced)
    sim.soft_pacing.record(paced)
    if broken is None:
        return 0.0
    sim.ledger.totals.soft_delays += 1
    return sim.config.soft_delay_ms / 1000.0


def begin_historical(conn: ClientConnection, msg: Fields) -> None:
    """Judge a reqHistoricalData now and, if accepted, answer it in the background."""
    sim, req = conn.sim, HistoricalRequest.read(msg)
    record = sim.ledger.open(conn.client_id, req.req_id, "historical", **req.ledger_details())
    try:
        _check_capacity(conn, req.req_id)
        inst = resolve(sim.catalogue, req.contract, _today(sim))
        record.con_id = inst.con_id
        params = validate_historical(
            end_text=req.end,
            duration_text=req.duration,
            bar_text=req.bar_size,
            what_to_show=req.what_to_show,
            format_date=req.format_date,
            keep_up_to_date=req.keep_up_to_date,
            login_tz=sim.config.login_tz,
        )
        plan = _plan(sim, inst, req, params)
        soft_delay_s = _pace(sim, inst, req, params.bar)
        if req.what_to_show not in inst.what_to_show:  # forex TRADES
            raise codes.no_market_data(
                inst.symbol, inst.sec_type, inst.exchange, req.what_to_show, params.bar.hmds_label
            )
        if sim.ops.refuse_while_hmds_down():
            raise codes.no_data(inst.local_symbol, inst.exchange, req.what_to_show)
    except IBError as e:
        _reject(conn, record, req.req_id, e)
        return
    if params.end.implied_zone:
        conn.send_error(req.req_id, codes.IMPLIED_TIME_ZONE)
    record.link_epoch = sim.ops.data_epoch
    soft_delay_s += sim.ops.activate_hmds()
    record.stalled = sim.take_stall()
    if record.stalled:
        record.outcome = "stalled"
    open_request = OpenRequest("historical", record)
    conn.open_requests[req.req_id] = open_request
    open_request.task = conn.spawn(
        _answer_historical(conn, open_request, plan, soft_delay_s, req.keep_up_to_date)
    )


async def _answer_historical(
    conn: ClientConnection,
    open_request: OpenRequest,
    plan: BarPlan,
    soft_delay_s: float,
    keep_up_to_date: bool,
) -> None:
    sim, record = conn.sim, open_request.record
    try:
        if record.stalled:
            await asyncio.Event().wait()  # held until the client cancels or disconnects
        message, count = await asyncio.to_thread(plan.render)
        cfg = sim.config
        slow_ib_s, slow_real_s = sim.ops.extra_delay(record)
        ib_delay_s = cfg.latency_ms / 1e3 + cfg.per_bar_us * count / 1e6 + soft_delay_s
        record.delay_s = cfg.scaled_s(ib_delay_s + slow_ib_s) + slow_real_s
        await asyncio.sleep(record.delay_s)
        if not await sim.ops.admit(record, "hmds"):
            return  # the link came back with its data lost: this request is gone
        conn.send_bytes(message)
        sim.ledger.answer(record, count)
        await conn.drain()
        if keep_up_to_date:
            await _stream_updates(conn, plan, record)
    except IBError as e:
        if await sim.ops.admit(record, "hmds"):
            _reject(conn, record, plan.req_id, e)
    finally:
        conn.finish(plan.req_id, open_request)


def _update_window(plan: BarPlan, now: int) -> tuple[int, int]:
    if not plan.bar.is_intraday:
        return now - 40 * 86_400, now + 1
    return now - max(4 * plan.bar.seconds, 120 if plan.bar.is_small else 3600), now + 1


async def _stream_updates(conn: ClientConnection, plan: BarPlan, record: RequestRecord) -> None:
    """Send the latest completed bar every ~5 s (scaled) until the request is cancelled.

    Nothing is sent while the link is lost; a subscription ends silently when the link comes
    back with its data lost (1101), as IB's live subscriptions do.
    """
    ops = conn.sim.ops
    while True:
        await asyncio.sleep(conn.sim.config.scaled_s(LIVE_UPDATE_PERIOD_S))
        if record.link_epoch != ops.data_epoch:
            return
        if ops.link_lost:
            continue
        now = conn.sim.now_s()
        bars = await asyncio.to_thread(plan.cut, _update_window(plan, now), now)
        if len(bars):
            conn.send(live_update_fields(plan.req_id, bars, plan.style))


def cancel_historical(conn: ClientConnection, msg: Fields) -> None:
    """Handle cancelHistoricalData: 162 "query cancelled" if running, else 366."""
    msg.skip(1)  # version
    req_id = msg.integer()
    open_request = conn.open_requests.get(req_id)
    if open_request is None or open_request.kind != "historical":
        conn.send_error(req_id, codes.unknown_query(req_id))
        return
    conn.open_requests.pop(req_id)
    if open_request.task is not None:
        open_request.task.cancel()
    conn.sim.ledger.close(open_request.record, "cancelled")
    conn.sim.ledger.totals.cancels += 1
    open_request.record.cancelled_at = time.time()
    conn.send_error(req_id, codes.cancelled(req_id))


def begin_head_timestamp(conn: ClientConnection, msg: Fields) -> None:
    """Judge a reqHeadTimeStamp; it stays open (and counts) until cancelHeadTimeStamp."""
    sim, req = conn.sim, HeadTimestampRequest.read(msg)
    record = sim.ledger.open(conn.client_id, req.req_id, "head_timestamp", **req.ledger_details())
    try:
        _check_capacity(conn, req.req_id)
        inst = resolve(sim.catalogue, req.contract, _today(sim))
        record.con_id = inst.con_id
        check_what_to_show(req.what_to_show)
        check_format_date(req.format_date)
        series = (inst.con_id, req.contract.exchange, req.what_to_show)
        identity = ("HEAD", *series, req.use_rth, req.format_date)
        broken = sim.pacing.admit(PacedRequest.of(identity, series, req.what_to_show))
        if broken is not None:
            sim.ledger.pacing_violation(broken.name)
            raise codes.PACING_VIOLATION
        if sim.ops.refuse_while_hmds_down():
            raise codes.no_data(inst.local_symbol, inst.exchange, req.what_to_show)
        head = head_timestamp_s(inst, req.what_to_show, req.use_rth)
        if head is None:
            raise codes.NO_HEAD_TIMESTAMP
    except IBError as e:
        _reject(conn, record, req.req_id, e)
        return
    record.link_epoch = sim.ops.data_epoch
    delay_s = sim.config.latency_ms / 1e3 + sim.ops.activate_hmds()
    open_request = OpenRequest("head_timestamp", record)
    conn.open_requests[req.req_id] = open_request
    text = head_timestamp_text(head, req.format_date)
    open_request.task = conn.spawn(_answer_head_timestamp(conn, record, req.req_id, text, delay_s))


async def _answer_head_timestamp(
    conn: ClientConnection, record: RequestRecord, req_id: int, text: str, delay_s: float
) -> None:
    record.delay_s = conn.sim.config.scaled_s(delay_s)
    await asyncio.sleep(record.delay_s)
    if await conn.sim.ops.admit(record, "hmds"):
        conn.send([88, req_id, text])
        conn.sim.ledger.answer(record)


def cancel_head_timestamp(conn: ClientConnection, msg: Fields) -> None:
    """Handle cancelHeadTimeStamp (id 90): close the request silently, known or not."""
    req_id = msg.integer()
    open_request = conn.open_requests.get(req_id)
    if open_request is None or open_request.kind != "head_timestamp":
        return
    conn.open_requests.pop(req_id)
    if open_request.task is not None and not open_request.task.done():
        open_request.task.cancel()
        conn.sim.ledger.close(open_request.record, "cancelled")


def serve_contract_details(conn: ClientConnection, msg: Fields) -> None:
    """Answer reqContractDetails with one contractData per match and contractDataEnd, or 200."""
    sim, req = conn.sim, ContractDetailsRequest.read(msg)
    record = sim.ledger.open(
        conn.client_id,
        req.req_id,
        "contract_details",
        symbol=req.contract.symbol,
        sec_type=req.contract.sec_type,
        exchange=req.contract.exchange,
        con_id=req.contract.con_id,
    )
    record.link_epoch = sim.ops.data_epoch
    if sim.ops.link_lost or sim.ops.farms["secdef"] == "down":
        conn.spawn(_answer_contract_details_later(conn, record, req))  # held until both are up
        return
    _answer_contract_details(conn, record, req)


async def _answer_contract_details_later(
    conn: ClientConnection, record: RequestRecord, req: ContractDetailsRequest
) -> None:
    if await conn.sim.ops.admit(record, "secdef"):
        _answer_contract_details(conn, record, req)


def _answer_contract_details(
    conn: ClientConnection, record: RequestRecord, req: ContractDetailsRequest
) -> None:
    sim, today = conn.sim, _today(conn.sim)
    matched = find(sim.catalogue, req.contract, today)
    if not matched:
        _reject(conn, record, req.req_id, codes.NO_SECURITY_DEFINITION)
        return
    for inst in matched:
        conn.send(contract_data(req.req_id, inst, req.contract.exchange, today))
    conn.send([52, 1, req.req_id])
    sim.ledger.answer(record)
