"""The trainer's family: the training command with its spec, status and models."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from ktrdr_shared.messages.base import Message, check_range, upper_symbols
from ktrdr_shared.types import (
    Fraction,
    JobId,
    ModelId,
    PositiveFloat,
    PositiveInt,
    Symbol,
    Timeframe,
    UtcDatetime,
)


class FeatureName(enum.StrEnum):
    """Features the trainer can build from bars."""

    RETURNS = "returns"
    SMA_DISTANCE = "sma_distance"
    EMA_DISTANCE = "ema_distance"
    RSI = "rsi"
    MACD = "macd"
    ATR = "atr"
    BOLLINGER_B = "bollinger_b"
    VOLUME_Z = "volume_z"


# One layer's width: bounded so that one field cannot ask for terabytes (the product of all
# of them is checked against a limit in ``ktrdr_shared.training_size``).
LayerSize = Annotated[int, Meta(ge=1, le=65_536, description="units in one layer")]
SequenceLength = Annotated[int, Meta(ge=1, le=4_096, description="bars in one LSTM window")]
# numpy and torch take seeds in [0, 2**32): a bigger one would fail inside the run.
Seed = Annotated[int, Meta(ge=0, le=2**32 - 1, description="random seed, 0 .. 2**32-1")]


class Feature(Message, frozen=True, kw_only=True):
    """One feature with its parameters (e.g. ``{"name": "rsi", "params": {"period": 14}}``)."""

    name: FeatureName
    params: dict[str, float] = msgspec.field(default_factory=dict)
    fuzzy_sets: Annotated[int, Meta(ge=0, le=9)] = 0


def default_features() -> list[Feature]:
    """Return the default feature set."""
    return [Feature(name=name) for name in FeatureName]


class ZigZagLabel(Message, frozen=True, kw_only=True, tag_field="kind", tag="zigzag"):
    """Buy/hold/sell from zigzag swings larger than ``threshold`` (a fraction)."""

    threshold: Fraction = 0.02


class ForwardReturnLabel(
    Message, frozen=True, kw_only=True, tag_field="kind", tag="forward_return"
):
    """Buy/hold/sell from the return ``horizon`` bars ahead against two thresholds."""

    horizon: PositiveInt = 5
    up_threshold: PositiveFloat = 0.002
    down_threshold: PositiveFloat = 0.002


class MlpModel(Message, frozen=True, kw_only=True, tag_field="kind", tag="mlp"):
    """A multilayer perceptron."""

    hidden_sizes: Annotated[list[LayerSize], Meta(max_length=16)] = msgspec.field(
        default_factory=lambda: [64, 32]
    )
    dropout: Annotated[float, Meta(ge=0, lt=1)] = 0.1


class LstmModel(Message, frozen=True, kw_only=True, tag_field="kind", tag="lstm"):
    """An LSTM over a window of ``seq_len`` bars."""

    seq_len: SequenceLength = 32
    hidden_size: LayerSize = 64
    layers: Annotated[int, Meta(ge=1, le=8)] = 1
    dropout: Annotated[float, Meta(ge=0, lt=1)] = 0.0


class Device(enum.StrEnum):
    """Where to train; ``auto`` picks CUDA, then MPS, then CPU."""

    AUTO = "auto"
    CUDA = "cuda"
    MPS = "mps"
    CPU = "cpu"


Symbols = Annotated[list[Symbol], Meta(min_length=1, max_length=64)]


class TrainingKnobs(Message, frozen=True, kw_only=True):
    """How a run trains: length, batch, rate, splits, seed and device.

    The command below and the REST body (``ktrdr_api.training_schemas.TrainingRunIn``) both
    build on it, so a run published by hand and one posted to the API keep the same limits.
    """

    epochs: Annotated[int, Meta(ge=1, le=10_000)] = 20
    batch_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 256
    learning_rate: PositiveFloat = 1e-3
    early_stopping_patience: Annotated[int, Meta(ge=0)] = 5
    train_fraction: Fraction = 0.70
    validation_fraction: Fraction = 0.15
    seed: Seed = 42
    device: Device = Device.AUTO

    def __post_init__(self) -> None:
        if self.train_fraction + self.validation_fraction >= 1:
            raise ValueError(
                "'train_fraction' + 'validation_fraction' must leave room for a test split"
            )


class StartTraining(TrainingKnobs, frozen=True, kw_only=True):
    """Command on ``ktrdr.cmd.train.start``."""

    job_id: JobId | None = None
    symbols: Symbols
    timeframe: Timeframe
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    features: list[Feature] = msgspec.field(default_factory=default_features)
    label: ZigZagLabel | ForwardReturnLabel = msgspec.field(default_factory=ForwardReturnLabel)
    model: MlpModel | LstmModel = msgspec.field(default_factory=MlpModel)

    def __post_init__(self) -> None:
        upper_symbols(self, "symbols")
        check_range(self.start, self.end)
        super().__post_init__()


class TrainerStatus(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.train.status``."""

    device: str
    busy: bool
    job_id: JobId | None = None


class ModelInfo(Message, frozen=True, kw_only=True):
    """A stored model's metadata."""

    model_id: ModelId
    job_id: JobId
    created: UtcDatetime
    symbols: list[Symbol]
    timeframe: Timeframe
    device: str
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)
    size_bytes: int = 0
    # The bars it was trained on: sha256 over every value in order, and how many rows (the
    # manifest's ``data`` has the whole fingerprint). None for models stored before them.
    data_sha256: str | None = None
    data_rows: int | None = None


class ModelList(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.train.models``."""

    models: list[ModelInfo]
