"""Yesterday's messages still decode with today's structs.

Each ``<Type>__<case>.json`` here is a payload frozen when it was written:
by a service, or by a person typing ``nats pub``. Decoding must keep working
as the schemas evolve (additive only). A payload decodes, re-encodes, and
every value it carried survives the trip.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ktrdr_shared import codec, messages

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
GOLDEN = sorted(HERE.glob("*.json"))


def _message_type(path: Path) -> Any:
    return getattr(messages, path.name.split("__")[0])


def test_golden_files_exist_for_every_command() -> None:
    names = {path.name.split("__")[0] for path in GOLDEN}
    assert {"LoadData", "FetchBars", "StartTraining", "BarBatch", "JobEvent"} <= names


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_payload_decodes_with_todays_structs(path: Path) -> None:
    raw = path.read_bytes()
    decoded = codec.decode(raw, _message_type(path), subject=f"golden/{path.name}")
    again = msgspec.json.decode(codec.encode(decoded))
    _assert_carried(json.loads(raw), again, where=path.name)


def _assert_carried(original: Any, now: Any, where: str) -> None:
    """Every value of the golden payload is still there (symbols upper-cased)."""
    if isinstance(original, dict):
        for key, value in original.items():
            assert key in now, f"{where}: field {key!r} was dropped"
            _assert_carried(value, now[key], f"{where}.{key}")
    elif isinstance(original, list):
        assert len(original) == len(now), where
        for i, (a, b) in enumerate(zip(original, now, strict=True)):
            _assert_carried(a, b, f"{where}[{i}]")
    elif isinstance(original, str) and _is_time(original):
        assert datetime.fromisoformat(original) == datetime.fromisoformat(now), where
    elif isinstance(original, str):
        assert original.upper() == str(now).upper(), where
    else:
        assert original == now, where


def _is_time(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False
