"""Buy / hold / sell labels from future prices, with how far ahead each label looks.

A label at row ``t`` is built from closes after ``t`` (that is what a label
is); features never are. Each label also says the last row it looked at
(``horizon_end``), so the dataset can purge training rows whose label reaches
into the validation or test period. Rows whose future is not known yet get
class ``UNKNOWN`` and are never used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ktrdr_shared.messages import ForwardReturnLabel, ZigZagLabel

CLASSES = ("buy", "hold", "sell")
BUY, HOLD, SELL = range(3)
UNKNOWN = -1
POSITIONS = (1.0, 0.0, -1.0)  # what each class means for a position: long, flat, short


@dataclass(frozen=True)
class Labels:
    """One symbol's labels: a class per row and the last row each label looked at."""

    classes: torch.Tensor
    horizon_end: torch.Tensor


def make_labels(close: torch.Tensor, spec: ZigZagLabel | ForwardReturnLabel) -> Labels:
    """Return the labels a spec asks for, on ``close``'s device."""
    if isinstance(spec, ForwardReturnLabel):
        return forward_return_labels(close, spec.horizon, spec.up_threshold, spec.down_threshold)
    return zigzag_labels(close, spec.threshold)


def forward_return_labels(close: torch.Tensor, horizon: int, up: float, down: float) -> Labels:
    """Buy when the return ``horizon`` bars ahead exceeds ``up``, sell below ``-down``."""
    n = len(close)
    classes = torch.full((n,), UNKNOWN, dtype=torch.int64, device=close.device)
    rows = torch.arange(n, device=close.device)
    if horizon < n:
        change = close[horizon:] / close[:-horizon] - 1
        known = torch.full_like(change, HOLD, dtype=torch.int64)
        known = torch.where(change > up, BUY, torch.where(change < -down, SELL, known))
        classes[: n - horizon] = known
    return Labels(classes, rows + horizon)


def zigzag_pivots(close: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the confirmed zigzag pivots and the row that confirmed each.

    A swing counts once price reverses from its extreme by ``threshold`` (a
    fraction); the extreme is then a pivot, confirmed at the reversing row.
    The last extreme is never confirmed (its reversal has not happened yet).
    This walk is inherently sequential, so it runs once over a NumPy array;
    everything derived from the pivots is vectorised.

    Returns:
        ``(pivots, confirmed_at)``: row indices, both ascending.
    """
    pivots: list[int] = []
    confirmed: list[int] = []
    prices = close.tolist()
    high_i = low_i = 0
    # +1 while tracking a rise (to a peak), -1 a fall (to a trough), 0 before the
    # first swing of ``threshold`` either way.
    direction = 0
    for i, price in enumerate(prices):
        if direction >= 0 and price > prices[high_i]:
            high_i = i
        if direction <= 0 and price < prices[low_i]:
            low_i = i
        if direction >= 0 and price <= prices[high_i] * (1 - threshold) and high_i < i:
            pivots.append(high_i)
            confirmed.append(i)
            direction, low_i = -1, i
        elif direction <= 0 and price >= prices[low_i] * (1 + threshold) and low_i < i:
            pivots.append(low_i)
            confirmed.append(i)
            direction, high_i = 1, i
    return np.asarray(pivots, dtype=np.int64), np.asarray(confirmed, dtype=np.int64)


def zigzag_labels(close: torch.Tensor, threshold: float) -> Labels:
    """Buy ahead of a rise of at least ``threshold`` to the next zigzag peak, sell ahead of a fall.

    Between two pivots each row is labelled by the move from its close to the
    next pivot: a rise to a peak of at least ``threshold`` is ``buy``, a fall
    to a trough of at least ``threshold`` is ``sell``, anything smaller
    (the tail end of a swing) is ``hold``. A label looks as far as the row
    that confirmed its pivot.
    """
    n, device = len(close), close.device
    pivots_np, confirmed_np = zigzag_pivots(close.cpu().numpy(), threshold)
    classes = torch.full((n,), UNKNOWN, dtype=torch.int64, device=device)
    horizon_end = torch.arange(n, device=device)
    if len(pivots_np) == 0:
        return Labels(classes, horizon_end)
    pivots = torch.from_numpy(pivots_np).to(device)
    confirmed = torch.from_numpy(confirmed_np).to(device)
    rows = torch.arange(int(pivots[-1]), device=device)
    ahead = torch.searchsorted(pivots, rows, right=True)  # the next pivot after each row
    target = pivots[ahead]
    move = close[target] / close[rows] - 1
    is_peak = close[target] > close[pivots[ahead - 1].clamp(min=0)]
    is_peak = torch.where(ahead == 0, move > 0, is_peak)
    labelled = torch.where(
        is_peak & (move >= threshold), BUY, torch.where(~is_peak & (move <= -threshold), SELL, HOLD)
    )
    classes[: len(rows)] = labelled
    horizon_end[: len(rows)] = confirmed[ahead]
    return Labels(classes, horizon_end)
