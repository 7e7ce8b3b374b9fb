"""The PNG report of a run: loss curves and the test-period equity curve.

Drawn with matplotlib's object API on an Agg canvas (no ``pyplot``: no global
figure state, no display), so it is safe in the worker thread that builds it.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ktrdr_trainer.backtest import Curve
from ktrdr_trainer.training import EpochStats


def render_report(title: str, history: list[EpochStats], best_epoch: int, result: Curve) -> bytes:
    """Return a PNG with the loss curves (left) and the test equity curves (right)."""
    figure = Figure(figsize=(12, 4.5), dpi=100, layout="tight")
    losses, equity = figure.subplots(1, 2)
    epochs = [s.epoch for s in history]
    losses.plot(epochs, [s.train_loss for s in history], label="train loss")
    losses.plot(epochs, [s.val_loss for s in history], label="validation loss")
    if best_epoch:
        losses.axvline(best_epoch, color="grey", linestyle=":", label=f"best (epoch {best_epoch})")
    losses.set_xlabel("epoch")
    losses.xaxis.set_major_locator(MaxNLocator(integer=True))
    losses.set_ylabel("class-weighted cross-entropy")
    losses.set_title("loss")
    losses.legend()
    when = result.ts.astype("datetime64[ns]")
    equity.plot(when, result.equity("strategy"), label="model signals")
    equity.plot(when, result.equity("buy_and_hold"), label="buy and hold")
    equity.axhline(1.0, color="grey", linewidth=0.5)
    equity.set_ylabel("equity (start = 1)")
    equity.set_title("test period")
    equity.tick_params(axis="x", labelrotation=30)
    equity.legend()
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # Figure picks the Agg canvas for PNG itself
    return buffer.getvalue()
