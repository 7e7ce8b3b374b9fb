"""Bar sizes and durations as IB spells them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class BarKind(Enum):
    """How bars of a size are cut: on a clock grid, or per session, week or month."""

    INTRADAY = "intraday"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class BarSize:
    """One legal ``barSizeSetting``."""

    setting: str
    seconds: int  # bar length for intraday sizes; nominal length otherwise
    kind: BarKind

    @property
    def is_small(self) -> bool:
        """Return whether IB's hard pacing limits apply (bars of 30 secs or less)."""
        return self.kind is BarKind.INTRADAY and self.seconds <= 30

    @property
    def hmds_label(self) -> str:
        """Return how HMDS names this bar size in its texts: seconds, or ``1d``/``1w``/``1m``."""
        if self.kind is BarKind.INTRADAY:
            return str(self.seconds)
        return {BarKind.DAY: "1d", BarKind.WEEK: "1w", BarKind.MONTH: "1m"}[self.kind]

    @property
    def is_intraday(self) -> bool:
        """Return whether bars are stamped with a time of day rather than a date."""
        return self.kind is BarKind.INTRADAY


def _intraday(setting: str, seconds: int) -> BarSize:
    return BarSize(setting, seconds, BarKind.INTRADAY)


_DAY = 86_400
BAR_SIZES: dict[str, BarSize] = {
    b.setting: b
    for b in (
        _intraday("1 secs", 1),
        _intraday("5 secs", 5),
        _intraday("10 secs", 10),
        _intraday("15 secs", 15),
        _intraday("30 secs", 30),
        _intraday("1 min", 60),
        _intraday("2 mins", 120),
        _intraday("3 mins", 180),
        _intraday("5 mins", 300),
        _intraday("10 mins", 600),
        _intraday("15 mins", 900),
        _intraday("20 mins", 1200),
        _intraday("30 mins", 1800),
        _intraday("1 hour", 3600),
        _intraday("2 hours", 7200),
        _intraday("3 hours", 10_800),
        _intraday("4 hours", 14_400),
        _intraday("8 hours", 28_800),
        BarSize("1 day", _DAY, BarKind.DAY),
        BarSize("1 week", 7 * _DAY, BarKind.WEEK),
        BarSize("1 month", 31 * _DAY, BarKind.MONTH),
    )
}
# IB's own error text spells the last two "1W" and "1M"; ib_async's docs say "1 week"/"1 month".
BAR_SIZES["1W"] = BAR_SIZES["1 week"]
BAR_SIZES["1M"] = BAR_SIZES["1 month"]

LEGAL_BAR_SIZES_TEXT = (
    "1 secs, 5 secs, 10 secs, 15 secs, 30 secs, 1 min, 2 mins, 3 mins, 5 mins, 10 mins, "
    "15 mins, 20 mins, 30 mins, 1 hour, 2 hours, 3 hours, 4 hours, 8 hours, 1 day, 1W, 1M"
)


class DurationUnit(Enum):
    """The unit letter of a ``durationStr``."""

    SECONDS = "S"
    DAYS = "D"
    WEEKS = "W"
    MONTHS = "M"
    YEARS = "Y"


@dataclass(frozen=True)
class Duration:
    """A parsed ``durationStr`` such as ``"2 D"``."""

    count: int
    unit: DurationUnit

    @property
    def nominal_seconds(self) -> int:
        """Return the calendar length (a month as 31 days, a year as 366) for limit checks."""
        per_unit = {"S": 1, "D": _DAY, "W": 7 * _DAY, "M": 31 * _DAY, "Y": 366 * _DAY}
        return self.count * per_unit[self.unit.value]

    def __str__(self) -> str:
        return f"{self.count} {self.unit.value}"
