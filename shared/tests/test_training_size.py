"""A training spec is bounded field by field (layer widths, window, seed) and as a whole by
an estimate of its memory against a limit (issue 15, item 8)."""

from __future__ import annotations

import msgspec
import pytest
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import StartTraining
from ktrdr_shared.messages.training import LstmModel, MlpModel
from ktrdr_shared.training_size import (
    MAX_TRAINING_BYTES,
    check_training_size,
    estimated_inputs,
    parameter_count,
)

pytestmark = pytest.mark.unit


def _spec(**fields: object) -> StartTraining:
    return msgspec.convert({"symbols": ["AAPL"], "timeframe": "1h", **fields}, StartTraining)


def test_parameters_of_an_mlp_and_an_lstm() -> None:
    assert parameter_count(MlpModel(hidden_sizes=[4]), 10) == 10 * 4 + 4 + 4 * 3 + 3
    lstm = LstmModel(hidden_size=2, layers=2)
    assert parameter_count(lstm, 3) == 4 * (3 * 2 + 4 + 4) + 4 * (2 * 2 + 4 + 4) + 2 * 3 + 3


def test_the_default_spec_and_large_but_sane_ones_fit_the_default_limit() -> None:
    for spec in (
        _spec(),
        _spec(batch_size=1_000_000),
        _spec(model={"kind": "lstm", "seq_len": 4096, "hidden_size": 64}),
        _spec(model={"kind": "mlp", "hidden_sizes": [4096, 4096]}),
    ):
        check_training_size(spec, MAX_TRAINING_BYTES)
    assert estimated_inputs(_spec().features) > 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"model": {"kind": "mlp", "hidden_sizes": [65_536, 65_536, 65_536]}}, "model"),
     ({"model": {"kind": "lstm", "hidden_size": 65_536, "layers": 8}}, "model"),
     ({"model": {"kind": "lstm", "seq_len": 4096, "hidden_size": 4096, "layers": 8}},
      "batch_size")],
)  # fmt: skip
def test_a_spec_over_the_limit_names_the_field_and_the_limit(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRequest, match=r"over the limit of 4 GiB") as raised:
        check_training_size(_spec(**fields), MAX_TRAINING_BYTES)
    assert raised.value.details["field"] == field
    assert raised.value.details["limit_bytes"] == MAX_TRAINING_BYTES


@pytest.mark.parametrize(
    ("fields", "path"),
    [({"model": {"kind": "mlp", "hidden_sizes": [10**7]}}, "$.model.hidden_sizes[0]"),
     ({"model": {"kind": "lstm", "hidden_size": 10**7}}, "$.model.hidden_size"),
     ({"model": {"kind": "lstm", "seq_len": 10**6}}, "$.model.seq_len"),
     ({"seed": 2**70}, "$.seed"), ({"seed": -1}, "$.seed")],
)  # fmt: skip
def test_one_field_out_of_bounds_is_refused_at_decode(fields: dict[str, object], path: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=path.replace("$", r"\$").replace("[", r"\[")):
        _spec(**fields)
