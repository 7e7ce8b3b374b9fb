"""Settings of one simulator instance: where it listens, how fast time runs, how slow IB is."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

#: The one server version the simulator speaks (every layout is v178's); ib_async 2.1.0 asks
#: for 157..178. A client whose range does not include 178 is refused at the handshake.
SERVER_VERSION = 178
#: ib_async's ``MinClientVersion``: the lower end of the range the raw test client offers.
MIN_CLIENT_VERSION = 157


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Everything that shapes one simulator's behaviour.

    Attributes:
        host: Interface the TWS socket listens on.
        port: TWS socket port; 0 picks a free one (read it back from ``sim.port``).
        control_port: HTTP control port on ``host``; ``None`` runs without one, 0 picks a free one.
        time_scale: Factor applied to every IB window and delay (pacing windows, soft delay,
            latency, keepUpToDate period). 0.01 turns IB's 10-minute window into 6 seconds.
        latency_ms: Base answer delay of every historical and head-timestamp request (IB time).
            With ``per_bar_us`` and the slow answers it is the latency model (README, "Answer
            time"); on by default, so a client's timeouts and retries meet realistic waits.
        per_bar_us: Additional answer delay per bar returned (IB time).
        slow_fraction: Share of historical requests drawn (seeded, deterministic) to be slow.
        slow_ms: Extra delay of a slow answer (IB time).
        soft_delay_ms: Delay added, instead of an error, when a request for bars of 1 min or
            more would have broken a pacing rule (IB's "soft" throttling).
        seed: Seed of the deterministic price model; the same seed always gives the same bars.
        bar_tz: Zone of intraday ``formatDate=1`` dates: ``"instrument"`` (the contract's
            ``timeZoneId``), ``"utc"`` (IB's ``yyyyMMdd-HH:mm:ss`` UTC format) or an IANA zone.
        login_tz: Zone IB assumes for end times written without a zone (with warning 2174).
        accounts: Managed accounts announced at connect; must not be empty.
        next_valid_id: First order id announced at connect (``nextValidId``).
        max_open_requests: Open historical requests one client may have before 322.
        max_bars: Bars one request may return before 162 "Time length exceed max.".
        empty_as_error: Answer an empty result with 162 "HMDS query returned no data" as IB
            does, instead of an empty ``historicalData`` message.
        now_utc: Freeze the data clock at this instant (tz-aware); ``None`` follows the wall
            clock. Bars exist only up to "now".
        hmds_at_connect: State of the HMDS farm at start: ``"ok"`` (2106 at connect) or
            ``"inactive"`` (2107; the first historical request wakes it: 2106, then the answer
            after ``farm_activation_ms``).
        farm_activation_ms: Extra delay of the request that wakes an inactive HMDS farm (IB time).
        futures_listing: ``"live"`` (as IB): a bare ES lists its five live quarters, past ones
            are found with includeExpired; ``"front"``: only the front month (the simulator's
            former behaviour). Both roll the front month as the data clock passes its expiry.
        daily_reset: Region whose daily reset windows the simulator plays on its time-scaled
            clock (``north_america``, ``europe``, ``asia``); ``None``: no scheduled resets.
        reset_outage_s: How long the link stays lost in each scheduled reset (IB seconds).
        reset_data_lost: Whether a scheduled reset ends with 1101 (data lost) or 1102.
        ledger_size: Per-request records kept (oldest dropped first); counters are never dropped.
        max_frame_bytes: Largest incoming message accepted before the connection is closed.
    """

    host: str = "127.0.0.1"
    port: int = 4002
    control_port: int | None = None
    time_scale: float = 1.0
    latency_ms: float = 300.0
    per_bar_us: float = 1500.0
    slow_fraction: float = 0.02
    slow_ms: float = 30_000.0
    soft_delay_ms: float = 1000.0
    seed: int = 0
    bar_tz: str = "instrument"
    login_tz: str = "US/Eastern"
    accounts: tuple[str, ...] = field(default=("DU1234567",))
    next_valid_id: int = 1
    max_open_requests: int = 50
    max_bars: int = 200_000
    empty_as_error: bool = True
    now_utc: dt.datetime | None = None
    hmds_at_connect: str = "ok"
    futures_listing: str = "live"
    farm_activation_ms: float = 1500.0
    daily_reset: str | None = None
    reset_outage_s: float = 180.0
    reset_data_lost: bool = True
    ledger_size: int = 100_000
    max_frame_bytes: int = 0xFFFFFF

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if not self.accounts or not all(self.accounts):
            raise ValueError("accounts must name at least one account; ib_async waits forever")
        if self.now_utc is not None and self.now_utc.tzinfo is None:
            raise ValueError(f"now_utc must be timezone-aware, got {self.now_utc!r}")
        _check_zone("login_tz", self.login_tz)
        if self.bar_tz not in ("instrument", "utc"):
            _check_zone("bar_tz", self.bar_tz)
        if self.hmds_at_connect not in ("ok", "inactive"):
            raise ValueError(
                f"hmds_at_connect must be 'ok' or 'inactive', got {self.hmds_at_connect!r}"
            )
        if self.futures_listing not in ("front", "live"):
            raise ValueError(
                f"futures_listing must be 'front' or 'live', got {self.futures_listing!r}"
            )
        if not 0.0 <= self.slow_fraction <= 1.0:
            raise ValueError(f"slow_fraction must be in [0, 1], got {self.slow_fraction}")
        if self.daily_reset is not None:
            from ktrdr_ib_sim.resets import next_reset_s

            next_reset_s(self.daily_reset, 0.0)  # raises on an unknown region
        for name in (
            "latency_ms",
            "per_bar_us",
            "soft_delay_ms",
            "slow_ms",
            "farm_activation_ms",
            "reset_outage_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def scaled_s(self, ib_seconds: float) -> float:
        """Return how many real seconds ``ib_seconds`` of IB time take at this time scale."""
        return ib_seconds * self.time_scale


def _check_zone(name: str, zone: str) -> None:
    try:
        ZoneInfo(zone)
    except (ValueError, KeyError, OSError) as e:  # unknown or malformed zone key
        raise ValueError(f"{name}: unknown time zone {zone!r}; use an IANA name") from e
