"""The one module that asks IB for data: historical bars, head timestamps, contract details.

Each call waits for a ready connection, passes the pacing gate (historical
requests and head timestamps), takes its request id from ib_async's public
``getReqId``, sends with the public client calls ``reqHistoricalDataAsync``
and friends are made of, and returns a typed answer:

* ``Bars`` / ``Head`` / ``Details``: IB answered;
* ``Empty``: IB answered that there is nothing there;
* ``Failed``: IB refused, classified (``errors.classify``);
* ``TimedOut``: no answer within the boundary's own timeout; the request was
  then cancelled at IB (``cancelHistoricalData`` / ``cancelHeadTimeStamp``);
* ``LinkLost``: the connection or the gateway's link to IB went away. With
  ``reissue`` the request had been sent and IB dropped it (1101: restored,
  data lost), or the link was lost while it waited: asking again as soon as
  the link is back is right. Without it nothing could be sent.

Each answer carries the link and HMDS farm state at the moment it came
(``Conditions``): while the HMDS farm is down IB answers "no data" for data it
has, so such an answer is a farm outage (``Failed`` ``farm_down``), not an
empty range.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ib_async import BarData, BarDataList, Contract, ContractDetails
from ib_async.wrapper import RequestError

from ktrdr_ib_connector import errors
from ktrdr_ib_connector.client import IbConnection
from ktrdr_ib_connector.errors import FailureKind, IbFailure
from ktrdr_ib_connector.pacing import HistoricalRequest, PacingGate

FORMAT_UTC_EPOCH = 2  # formatDate=2: intraday dates come back as UTC instants


@dataclass(frozen=True)
class Conditions:
    """The gateway's state when an answer came: its link to IB and the HMDS farm."""

    link_ok: bool = True
    hmds_ok: bool = True


@dataclass(frozen=True)
class Bars:
    """IB answered a historical request with bars (possibly none)."""

    bars: Sequence[BarData]
    at: Conditions = Conditions()


@dataclass(frozen=True)
class Head:
    """IB answered a head-timestamp request."""

    head: datetime
    at: Conditions = Conditions()


@dataclass(frozen=True)
class Details:
    """IB answered a contract-details request (one entry per matching contract)."""

    details: list[ContractDetails]
    at: Conditions = Conditions()


@dataclass(frozen=True)
class Empty:
    """IB answered that it has nothing for this request (no data, no such contract)."""

    message: str
    ib_code: int | None = None
    at: Conditions = Conditions()


@dataclass(frozen=True)
class Failed:
    """IB refused the request; ``failure`` says why and whether asking again can help."""

    failure: IbFailure
    at: Conditions = Conditions()


@dataclass(frozen=True)
class TimedOut:
    """IB did not answer within ``after_s``; the request was cancelled at IB."""

    after_s: float
    at: Conditions = Conditions()

    @property
    def failure(self) -> IbFailure:
        """Return the retryable failure a timeout counts as."""
        return errors.timed_out(self.after_s)


@dataclass(frozen=True)
class LinkLost:
    """The connection or IB's link went away; ``reissue``: send the same request again."""

    reason: str
    reissue: bool = False
    at: Conditions = Conditions(link_ok=False)

    @property
    def failure(self) -> IbFailure:
        """Return the retryable failure a lost link counts as."""
        return errors.connection_lost(self.reason)


@dataclass(frozen=True)
class _Answered:
    """IB answered without an error; the caller reads the result it expects."""

    at: Conditions


HistoricalAnswer = Bars | Empty | Failed | TimedOut | LinkLost
HeadAnswer = Head | Empty | Failed | TimedOut | LinkLost
DetailsAnswer = Details | Empty | Failed | TimedOut | LinkLost
_Outcome = _Answered | Empty | Failed | TimedOut | LinkLost


@dataclass
class RequestTally:
    """What one segment's requests are doing (progress reports read it).

    Attributes:
        sent: historical requests sent to IB, retries included.
        waiting: requests waiting at the pacing gate for their turn.
        in_flight: requests sent and not answered yet.
    """

    sent: int = 0
    waiting: int = 0
    in_flight: int = 0


@dataclass(frozen=True)
class Owner:
    """Whose requests these are: the job (the gate shares IB's budget between jobs), its
    priority (lower goes first) and the tally its requests are counted on."""

    job: str = ""
    priority: int = 5
    tally: RequestTally = field(default_factory=RequestTally)


@dataclass
class IbBoundary:
    """Ask IB for data through one connection and one pacing gate."""

    connection: IbConnection
    gate: PacingGate
    request_timeout_s: float = 60.0
    ready_timeout_s: float = 30.0
    requests_made: int = 0

    def conditions(self) -> Conditions:
        """Return the link and HMDS farm state now."""
        s = self.connection.state
        return Conditions(link_ok=s.link_ok, hmds_ok=s.hmds_ok)

    async def historical(
        self, contract: Contract, key: HistoricalRequest, owner: Owner
    ) -> HistoricalAnswer:
        """Ask for one chunk of bars (``key`` says which); counted on ``owner.tally``.

        It waits up to ``ready_timeout_s`` for a connect in progress.
        """
        lost = await self._not_ready(self.ready_timeout_s)
        if lost is not None:
            return lost
        outages = self.connection.state.hmds_outages
        async with paced(self.gate, key, owner):
            answer = await self._send_historical(contract, key, owner.tally)
        return self._farm_checked(answer, outages)

    async def head_timestamp(
        self, contract: Contract, what_to_show: str, use_rth: bool
    ) -> HeadAnswer:
        """Ask for the earliest bar IB has (one paced request, always cancelled after).

        Not ready is answered at once (``LinkLost``): the caller decides how long to wait.
        """
        key = head_request(contract, what_to_show, use_rth)
        lost = await self._not_ready(0)
        if lost is not None:
            return lost
        client: Any = self.connection.ib.client
        async with self.gate.slot(key):
            req_id, answered = self._start(contract, None)
            client.reqHeadTimeStamp(req_id, contract, what_to_show, use_rth, FORMAT_UTC_EPOCH)
            self.requests_made += 1
            # IB counts a head-timestamp request as open until it is cancelled.
            answer = await self._await(
                answered, lambda: client.cancelHeadTimeStamp(req_id), cancel_after_answer=True
            )
        if not isinstance(answer, _Answered):
            return answer
        value = answered.result()
        if not isinstance(value, datetime):
            return Empty(f"IB has no head timestamp for {contract.symbol}", at=answer.at)
        return Head(value if value.tzinfo else value.replace(tzinfo=UTC), answer.at)

    async def contract_details(self, query: Contract) -> DetailsAnswer:
        """Ask which contracts match ``query`` (not paced: not a historical request).

        Not ready is answered at once (``LinkLost``), as for a head timestamp.
        """
        lost = await self._not_ready(0)
        if lost is not None:
            return lost
        client: Any = self.connection.ib.client
        req_id, answered = self._start(query, [])
        client.reqContractDetails(req_id, query)
        answer = await self._await(answered, None)
        if isinstance(answer, Failed) and answer.failure.kind is FailureKind.UNKNOWN_SYMBOL:
            return Empty(answer.failure.message, answer.failure.ib_code, answer.at)
        if isinstance(answer, _Answered):
            return Details(list(answered.result()), answer.at)
        return answer

    async def server_time(self, timeout_s: float = 2.0) -> datetime | None:
        """Return IB's clock (``reqCurrentTime`` is not a historical request: no pacing)."""
        try:
            now = await asyncio.wait_for(self.connection.ib.reqCurrentTimeAsync(), timeout_s)
        except (TimeoutError, ConnectionError, RequestError):
            return None
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    # -- the parts every request shares -------------------------------------------------

    async def _not_ready(self, wait_s: float) -> LinkLost | None:
        if self.connection.ready.is_set() or await self.connection.wait_ready(wait_s):
            return None
        return LinkLost(f"not connected to IB: {self.connection.problem}", at=self.conditions())

    def _start(self, contract: Contract, container: Any) -> tuple[int, asyncio.Future[Any]]:
        """Take a request id and register it with ib_async's wrapper; return both."""
        client: Any = self.connection.ib.client  # ib_async's client and wrapper are untyped
        wrapper: Any = self.connection.ib.wrapper
        req_id: int = client.getReqId()
        answered: asyncio.Future[Any] = wrapper.startReq(req_id, contract, container=container)
        # An answer nobody reads any more (cancelled, re-issued) must not be logged as lost.
        answered.add_done_callback(_consume)
        return req_id, answered

    async def _send_historical(
        self, contract: Contract, key: HistoricalRequest, tally: RequestTally
    ) -> HistoricalAnswer:
        client: Any = self.connection.ib.client
        bars = BarDataList()  # type: ignore[no-untyped-call]  # ib_async leaves it untyped
        req_id, answered = self._start(contract, bars)
        client.reqHistoricalData(
            req_id,
            contract,
            key.end,
            key.duration,
            key.bar_size,
            key.what_to_show,
            key.use_rth,
            FORMAT_UTC_EPOCH,
            False,
            [],
        )
        self.requests_made += 1
        tally.sent += 1
        answer = await self._await(answered, lambda: client.cancelHistoricalData(req_id))
        return Bars(bars, answer.at) if isinstance(answer, _Answered) else answer

    async def _await(
        self,
        answered: asyncio.Future[Any],
        cancel: Callable[[], None] | None,
        cancel_after_answer: bool = False,
    ) -> _Outcome:
        """Wait for ``answered``, a 1101, or the timeout (then ``cancel``); classify.

        Cancelled itself (the job was cancelled), it cancels the request at IB too.
        """
        connection = self.connection
        data_lost = asyncio.ensure_future(connection.data_lost.wait())
        link_was_lost = not connection.state.link_ok
        try:
            done, _ = await asyncio.wait(
                {answered, data_lost},
                timeout=self.request_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            # An answer already in is not cancelled: IB would answer 366 (no such query).
            if cancel is not None and not answered.done() and connection.ib.isConnected():
                cancel()
            raise
        finally:
            data_lost.cancel()
        link_was_lost = link_was_lost or not connection.state.link_ok
        if answered in done:
            if cancel is not None and cancel_after_answer and connection.ib.isConnected():
                cancel()
            return self._answered(answered)
        if cancel is not None and connection.ib.isConnected():
            cancel()  # also ends ib_async's record of it (IB answers 162 cancelled or 366)
        if data_lost in done:
            return LinkLost(
                "IB dropped the request (1101: restored, data lost)",
                reissue=True,
                at=self.conditions(),
            )
        if link_was_lost:
            return LinkLost(
                "no answer while IB's link was lost", reissue=True, at=self.conditions()
            )
        return TimedOut(self.request_timeout_s, self.conditions())

    def _answered(self, answered: asyncio.Future[Any]) -> _Outcome:
        at = self.conditions()
        error = answered.exception()
        if isinstance(error, RequestError):
            farm_ok = self.connection.state.farm_ok_at_error.pop(error.reqId, at.hmds_ok)
            classified = errors.classify(error.code, error.message)
            at = Conditions(link_ok=at.link_ok, hmds_ok=farm_ok)
            if classified.is_empty_answer:
                return Empty(classified.message, error.code, at)
            return Failed(classified, at)
        if isinstance(error, ConnectionError):
            return LinkLost(f"IB connection lost: {error}", at=Conditions(link_ok=False))
        if error is not None:
            return Failed(IbFailure(FailureKind.UNKNOWN, True, 10.0, None, repr(error)), at)
        if not self.connection.ib.isConnected():
            return LinkLost("connection dropped during the request")
        return _Answered(at)

    def _farm_checked(self, answer: HistoricalAnswer, outages: int) -> HistoricalAnswer:
        """Return ``answer``, or a farm outage when "no data" came while the farm was down."""
        if not isinstance(answer, Empty):
            return answer
        if answer.at.hmds_ok and self.connection.state.hmds_outages == outages:
            return answer
        return Failed(
            IbFailure(FailureKind.FARM_DOWN, True, 30.0, answer.ib_code, answer.message), answer.at
        )


def head_request(contract: Contract, what_to_show: str, use_rth: bool) -> HistoricalRequest:
    """Return a head-timestamp request as the pacing gate sees it (hard-paced)."""
    return HistoricalRequest(
        contract=str(contract.conId),
        exchange=contract.exchange,
        what_to_show=what_to_show,
        bar_size="",
        duration="",
        end="head",
        use_rth=use_rth,
    )


@contextlib.asynccontextmanager
async def paced(gate: PacingGate, key: HistoricalRequest, owner: Owner) -> AsyncIterator[None]:
    """Hold a legal slot of ``gate`` for ``key`` while the request is out.

    ``owner.tally`` counts it as waiting at the gate, then in flight. Cancelled while it
    waits, the request leaves the gate without spending a slot.
    """
    async with contextlib.AsyncExitStack() as held:
        owner.tally.waiting += 1
        try:
            await held.enter_async_context(gate.slot(key, job=owner.job, priority=owner.priority))
        finally:
            owner.tally.waiting -= 1
        owner.tally.in_flight += 1
        try:
            yield
        finally:
            owner.tally.in_flight -= 1


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
