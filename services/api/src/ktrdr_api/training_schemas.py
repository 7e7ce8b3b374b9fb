"""The HTTP contract of training runs and models (see ``schemas`` for the conventions)."""

from __future__ import annotations

import msgspec
from ktrdr_shared.messages.base import check_range
from ktrdr_shared.messages.training import (
    Feature,
    ForwardReturnLabel,
    LstmModel,
    MlpModel,
    ModelInfo,
    Symbols,
    TrainingKnobs,
    ZigZagLabel,
)
from ktrdr_shared.types import JobId, Timeframe

from ktrdr_api.jobs import JobStatus
from ktrdr_api.schemas import JobLinks, Struct, Timestamp

# The REST bodies reuse the wire structs' fields, defaults and limits (one definition in
# ktrdr_shared.messages.training); they add only what a body needs: unknown fields are an
# error, and the OpenAPI names end in ``In``.


class FeatureIn(Feature, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One feature with its parameters."""


class ZigZagLabelIn(
    ZigZagLabel, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="zigzag"
):
    """Buy/hold/sell from zigzag swings larger than ``threshold`` (a fraction)."""


class ForwardReturnLabelIn(
    ForwardReturnLabel, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="forward_return"
):
    """Buy/hold/sell from the return ``horizon`` bars ahead against two thresholds."""


class MlpModelIn(MlpModel, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="mlp"):
    """A multilayer perceptron."""


class LstmModelIn(LstmModel, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="lstm"):
    """An LSTM over a window of ``seq_len`` bars."""


class TrainingRunIn(TrainingKnobs, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A training run: which bars, which features and label, which model, how long."""

    symbols: Symbols
    timeframe: Timeframe
    start: Timestamp | None = None
    end: Timestamp | None = None
    features: list[FeatureIn] | None = None
    label: ZigZagLabelIn | ForwardReturnLabelIn = msgspec.field(
        default_factory=ForwardReturnLabelIn
    )
    model: MlpModelIn | LstmModelIn = msgspec.field(default_factory=MlpModelIn)

    def __post_init__(self) -> None:
        check_range(self.start, self.end)
        super().__post_init__()


class TrainingRunOut(Struct, frozen=True, kw_only=True):
    """A submitted training run: its job id and where to follow it."""

    job_id: JobId
    status: JobStatus
    links: JobLinks


class ModelOut(ModelInfo, frozen=True, kw_only=True):
    """A stored model's metadata, with where to fetch it."""

    links: dict[str, str] = msgspec.field(default_factory=dict)


class ModelsOut(Struct, frozen=True, kw_only=True):
    """Every stored model."""

    models: list[ModelOut]
