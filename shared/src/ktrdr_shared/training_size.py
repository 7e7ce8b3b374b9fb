"""How big a training run is, estimated before it starts, and the limit it must stay under.

A spec's numbers are each bounded in its schema (``LayerSize``, ``Seed``), but
their product is what fills memory: a hidden size of 65,536 with a batch of
100,000 is still refused here. The estimate is deliberately simple and on the
high side (float32 everywhere):

- parameters: an MLP's ``Σ (in·out + out)`` over its layers; an LSTM's
  ``4·(in·h + h·h + 2h)`` per layer plus its 3-way head;
- memory: the parameters four times (weights, gradients, Adam's two moments)
  plus the activations of one batch twice (forward and backward): an MLP's
  ``batch·(inputs + Σ hidden + 3)``, an LSTM's ``batch·seq_len·(inputs +
  layers·4h)``.

The gateway checks it with an estimate of the inputs (``COLUMNS_PER_FEATURE``
per feature); the trainer checks it again with the real column count.
"""

from __future__ import annotations

import itertools
from typing import Annotated

from msgspec import Meta

from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages.training import Feature, LstmModel, MlpModel, StartTraining

MAX_TRAINING_BYTES = 4 * 2**30  # the default limit: 4 GiB of weights, optimiser state, batch
BYTES_PER_VALUE = 4  # float32
CLASSES = 3  # buy, hold, sell
COLUMNS_PER_FEATURE = 4  # the most columns one feature produces before fuzzy memberships

TrainingBytes = Annotated[int, Meta(ge=2**20, description="bytes a training run may need")]


def estimated_inputs(features: list[Feature]) -> int:
    """Return an upper estimate of the input columns ``features`` produce."""
    return sum(COLUMNS_PER_FEATURE * (1 + f.fuzzy_sets) for f in features)


def parameter_count(model: MlpModel | LstmModel, inputs: int) -> int:
    """Return the number of trainable parameters of ``model`` over ``inputs`` columns."""
    if isinstance(model, MlpModel):
        sizes = [inputs, *model.hidden_sizes, CLASSES]
        return sum(a * b + b for a, b in itertools.pairwise(sizes))
    h = model.hidden_size
    layers = sum(4 * (n_in * h + h * h + 2 * h) for n_in in [inputs] + [h] * (model.layers - 1))
    return layers + h * CLASSES + CLASSES


def training_bytes(spec: StartTraining, inputs: int) -> tuple[int, int]:
    """Return ``(parameter bytes, activation bytes)`` of one training step of ``spec``."""
    model, batch = spec.model, spec.batch_size
    if isinstance(model, MlpModel):
        activations = batch * (inputs + sum(model.hidden_sizes) + CLASSES)
    else:
        activations = batch * model.seq_len * (inputs + model.layers * 4 * model.hidden_size)
    params = parameter_count(model, inputs)
    return 4 * params * BYTES_PER_VALUE, 2 * activations * BYTES_PER_VALUE


def check_training_size(spec: StartTraining, limit_bytes: int, inputs: int | None = None) -> None:
    """Refuse a spec whose estimated memory exceeds ``limit_bytes``.

    Args:
        spec: the training spec.
        limit_bytes: the most a run may need.
        inputs: the input columns (estimated from ``spec.features`` when None).

    Raises:
        InvalidRequest: naming the field to shrink (``model``, or ``batch_size`` when the
            batch is what is too big) and the limit.
    """
    n = estimated_inputs(spec.features) if inputs is None else inputs
    params, activations = training_bytes(spec, n)
    if params + activations <= limit_bytes:
        return
    field = "model" if params >= activations else "batch_size"
    total, count = params + activations, parameter_count(spec.model, n)
    raise InvalidRequest(
        f"the training spec needs about {_gib(total)} ({count:,} parameters: {_gib(params)} "
        f"with optimiser state; one batch of {spec.batch_size}: {_gib(activations)}), over "
        f"the limit of {_gib(limit_bytes)} ({limit_bytes} bytes): make '{field}' smaller",
        details={"field": field, "limit_bytes": limit_bytes, "estimate_bytes": total},
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"
