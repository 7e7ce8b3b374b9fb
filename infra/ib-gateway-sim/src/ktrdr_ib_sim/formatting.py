"""Rendering bars and instants as the text IB puts on the wire (spec 3.2, 3.5)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from ktrdr_ib_sim.catalogue import Instrument
from ktrdr_ib_sim.series import Bars
from ktrdr_ib_sim.sessions import utc_offsets_at
from ktrdr_ib_sim.wire import encode_text_fields

INSTRUMENT_TZ = "instrument"
UTC_TZ = "utc"


def _iso_texts(epoch_s: np.ndarray) -> list[str]:
    return np.datetime_as_string(epoch_s.astype("datetime64[s]")).tolist()  # type: ignore[no-any-return]


def intraday_dates(
    start_s: np.ndarray, offsets_s: np.ndarray | None, zone_label: str | None
) -> list[str]:
    """Render instants as IB's ``formatDate=1`` intraday dates.

    Args:
        start_s: Epoch seconds.
        offsets_s: UTC offset to apply per instant; None renders UTC.
        zone_label: Zone name appended (``yyyyMMdd HH:mm:ss zone``); None gives IB's UTC
            format ``yyyyMMdd-HH:mm:ss`` (which ib_async reads as a naive datetime).
    """
    local = start_s if offsets_s is None else start_s + offsets_s
    texts = _iso_texts(local)
    if zone_label is None:
        return [f"{s[0:4]}{s[5:7]}{s[8:10]}-{s[11:19]}" for s in texts]
    return [f"{s[0:4]}{s[5:7]}{s[8:10]} {s[11:19]} {zone_label}" for s in texts]


def day_dates(days: np.ndarray) -> list[str]:
    """Render session dates (days since 1970-01-01) as ``yyyyMMdd``."""
    return [s.replace("-", "") for s in np.datetime_as_string(days.astype("datetime64[D]"))]


class DateStyle:
    """How one request wants instants rendered: formatDate and the gateway's zone setting."""

    def __init__(self, instrument: Instrument, format_date: int, bar_tz: str) -> None:
        self.instrument = instrument
        self.format_date = format_date
        self.bar_tz = bar_tz

    def _zone(self) -> tuple[str | None, str | None]:
        """Return (IANA zone for offsets, label to print); (None, None) means UTC format."""
        if self.bar_tz == UTC_TZ:
            return None, None
        if self.bar_tz == INSTRUMENT_TZ:
            return self.instrument.zone, self.instrument.time_zone_id
        return self.bar_tz, self.bar_tz

    def instants(self, epoch_s: np.ndarray) -> list[str]:
        """Render instants (bar starts, window edges) in this style."""
        if self.format_date == 2:
            return [str(int(t)) for t in epoch_s]
        zone, label = self._zone()
        offsets = None if zone is None else utc_offsets_at(epoch_s, zone)
        return intraday_dates(epoch_s, offsets, label)

    def bar_dates(self, bars: Bars) -> list[str]:
        """Render bar dates: ``yyyyMMdd`` for day bars and longer, else like instants."""
        if not bars.bar_size.is_intraday:
            return day_dates(bars.session_day)
        if self.format_date == 2:
            return [str(t) for t in bars.start_s.tolist()]
        zone, label = self._zone()
        if zone == self.instrument.zone:  # the offsets per bar are already known
            return intraday_dates(bars.start_s, bars.utc_offset_s, label)
        offsets = None if zone is None else utc_offsets_at(bars.start_s, zone)
        return intraday_dates(bars.start_s, offsets, label)


def _numbers(values: np.ndarray) -> list[str]:
    # repr of a float is its shortest round-trip text: ib_async's float() gets the same value.
    return [repr(v) for v in values.tolist()]


def historical_data_message(
    req_id: int, bars: Bars, style: DateStyle, window: tuple[int, int]
) -> bytes:
    """Return one framed historicalData message (id 17) holding every bar (spec 3.2).

    At server version 178 there is no version field, no hasGaps and no separate end message;
    ``count`` must be an integer string.
    """
    start_text, end_text = style.instants(np.array(window, dtype=np.int64))
    columns = [
        style.bar_dates(bars),
        _numbers(bars.open),
        _numbers(bars.high),
        _numbers(bars.low),
        _numbers(bars.close),
        [_volume_text(v) for v in bars.volume.tolist()],
        _numbers(bars.wap),
        [str(c) for c in bars.count.tolist()],
    ]
    fields = ["17", str(req_id), start_text, end_text, str(len(bars))]
    for row in zip(*columns, strict=True):
        fields.extend(row)
    return encode_text_fields(fields)


def _volume_text(volume: float) -> str:
    return str(int(volume)) if volume == int(volume) else repr(volume)


def head_timestamp_text(epoch_s: int, format_date: int) -> str:
    """Render a head timestamp: ``yyyyMMdd-HH:mm:ss`` UTC for 1, epoch seconds for 2."""
    if format_date == 2:
        return str(epoch_s)
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y%m%d-%H:%M:%S")


def live_update_fields(req_id: int, bars: Bars, style: DateStyle) -> list[str]:
    """Return historicalDataUpdate (id 90) for the last bar: count, date, open, CLOSE, high, low,
    wap, volume (spec 3.3; note the field order)."""
    i = len(bars) - 1
    return [
        "90",
        str(req_id),
        str(int(bars.count[i])),
        style.bar_dates(bars)[i],
        repr(float(bars.open[i])),
        repr(float(bars.close[i])),
        repr(float(bars.high[i])),
        repr(float(bars.low[i])),
        repr(float(bars.wap[i])),
        _volume_text(float(bars.volume[i])),
    ]
