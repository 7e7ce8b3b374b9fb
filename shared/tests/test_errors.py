"""Errors: retryable vs permanent, stable codes, rebuilt from the wire."""

from __future__ import annotations

import pytest
from ktrdr_shared import errors

pytestmark = pytest.mark.unit


def test_classification() -> None:
    assert errors.IbUnavailable("down").retryable
    assert errors.PacingViolation("slow down", delay_s=15).delay_s == 15
    assert not errors.UnknownSymbol("XYZ").retryable
    assert isinstance(errors.InvalidRequest("x"), errors.PermanentError)


def test_decode_error_names_subject_field_problem() -> None:
    err = errors.MessageDecodeError(
        subject="ktrdr.cmd.ib.fetch", field="start", problem="naive", expected="FetchBars"
    )
    assert str(err) == "invalid FetchBars on 'ktrdr.cmd.ib.fetch': field 'start': naive"
    assert err.details["field"] == "start"
    assert err.status == 400


@pytest.mark.parametrize(
    ("code", "cls"),
    [("unknown_symbol", errors.UnknownSymbol), ("ib_unavailable", errors.IbUnavailable),
     ("invalid_request", errors.InvalidRequest), ("not_found", errors.NotFound)],
)  # fmt: skip
def test_error_from_code(code: str, cls: type[errors.KtrdrError]) -> None:
    err = errors.error_from_code(code, "msg", {"a": 1})
    assert type(err) is cls and err.message == "msg" and err.details == {"a": 1}


def test_unknown_codes_survive() -> None:
    err = errors.error_from_code("brand_new", "from a newer service")
    assert type(err) is errors.KtrdrError and err.code == "brand_new"
