"""The one reader of msgspec's error text: problem and path apart, a naive timestamp explained."""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest
from ktrdr_shared import codec
from ktrdr_shared.types import UtcDatetime

pytestmark = pytest.mark.unit


class Inner(msgspec.Struct):
    ts: datetime


class Outer(msgspec.Struct):
    epochs: int = 1
    items: list[Inner] = []


class Stamp(msgspec.Struct):
    ts: UtcDatetime


class Aware(msgspec.Struct):
    items: list[Stamp]


def message_of(data: bytes, message_type: object = Outer) -> str:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(data, type=message_type)
    return str(caught.value)


SECOND_TS_IS_AN_INT = b'{"items": [{"ts": "2024-01-01T00:00:00Z"}, {"ts": 5}]}'


@pytest.mark.parametrize(
    ("data", "problem", "path"),
    [
        (b'{"epochs": "20"}', "Expected `int`, got `str`", "epochs"),
        (SECOND_TS_IS_AN_INT, "Expected `datetime`, got `int`", "items[1].ts"),
        (b"[1]", "Expected `object`, got `array`", ""),
    ],
)
def test_split_validation_parts_problem_from_path(data: bytes, problem: str, path: str) -> None:
    assert codec.split_validation(message_of(data)) == (problem, path)


def test_split_validation_reads_a_top_level_array_index() -> None:
    assert codec.split_validation(message_of(b'[1, "x"]', list[int])).path == "[1]"


def test_a_naive_timestamp_deep_in_a_list_is_named_by_its_value() -> None:
    data = b'{"items": [{"ts": "2024-06-24T00:00:00"}]}'
    explained = codec.explain_naive(message_of(data, Aware), data)
    problem, path = codec.split_validation(explained)
    assert problem == codec.naive_timestamp("2024-06-24T00:00:00")
    assert path == "items[0].ts"
