"""The HTTP contract of training runs and models (see ``schemas`` for the conventions)."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec
from ktrdr_shared.messages.base import check_range
from ktrdr_shared.messages.training import FeatureName, LayerSize, Seed, SequenceLength
from ktrdr_shared.types import JobId, ModelId, Symbol, Timeframe
from msgspec import Meta

from ktrdr_api.jobs import JobStatus
from ktrdr_api.schemas import Count, JobLinks, Struct, Timestamp


class FeatureIn(Struct, frozen=True, kw_only=True):
    """One feature with its parameters."""

    name: FeatureName
    params: dict[str, float] = msgspec.field(default_factory=dict)
    fuzzy_sets: Annotated[int, Meta(ge=0, le=9)] = 0


Fraction = Annotated[float, Meta(gt=0, lt=1)]
Positive = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]


class ZigZagLabelIn(Struct, frozen=True, kw_only=True, tag_field="kind", tag="zigzag"):
    """Buy/hold/sell from zigzag swings larger than ``threshold`` (a fraction)."""

    threshold: Fraction = 0.02


class ForwardReturnLabelIn(
    Struct, frozen=True, kw_only=True, tag_field="kind", tag="forward_return"
):
    """Buy/hold/sell from the return ``horizon`` bars ahead against two thresholds."""

    horizon: PositiveInt = 5
    up_threshold: Positive = 0.002
    down_threshold: Positive = 0.002


class MlpModelIn(Struct, frozen=True, kw_only=True, tag_field="kind", tag="mlp"):
    """A multilayer perceptron."""

    hidden_sizes: Annotated[list[LayerSize], Meta(max_length=16)] = msgspec.field(
        default_factory=lambda: [64, 32]
    )
    dropout: Annotated[float, Meta(ge=0, lt=1)] = 0.1


class LstmModelIn(Struct, frozen=True, kw_only=True, tag_field="kind", tag="lstm"):
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


class TrainingRunIn(Struct, frozen=True, kw_only=True):
    """A training run: which bars, which features and label, which model, how long."""

    symbols: Annotated[list[Symbol], Meta(min_length=1, max_length=64)]
    timeframe: Timeframe
    start: Timestamp | None = None
    end: Timestamp | None = None
    features: list[FeatureIn] | None = None
    label: ZigZagLabelIn | ForwardReturnLabelIn = msgspec.field(
        default_factory=ForwardReturnLabelIn
    )
    model: MlpModelIn | LstmModelIn = msgspec.field(default_factory=MlpModelIn)
    epochs: Annotated[int, Meta(ge=1, le=10_000)] = 20
    batch_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 256
    learning_rate: Positive = 1e-3
    early_stopping_patience: Annotated[int, Meta(ge=0)] = 5
    train_fraction: Fraction = 0.70
    validation_fraction: Fraction = 0.15
    seed: Seed = 42
    device: Device = Device.AUTO

    def __post_init__(self) -> None:
        check_range(self.start, self.end)
        if self.train_fraction + self.validation_fraction >= 1:
            raise ValueError(
                "'train_fraction' + 'validation_fraction' must leave room for a test split"
            )


class TrainingRunOut(Struct, frozen=True, kw_only=True):
    """A submitted training run: its job id and where to follow it."""

    job_id: JobId
    status: JobStatus
    links: JobLinks


class ModelOut(Struct, frozen=True, kw_only=True):
    """A stored model's metadata."""

    model_id: ModelId
    job_id: str
    created: Timestamp
    symbols: list[str]
    timeframe: Timeframe
    device: str
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)
    size_bytes: Count = 0
    links: dict[str, str] = msgspec.field(default_factory=dict)


class ModelsOut(Struct, frozen=True, kw_only=True):
    """Every stored model."""

    models: list[ModelOut]
