"""A dataset holds one contract's bars with one kind of hours: the profile book."""

from __future__ import annotations

from pathlib import Path

import pytest
from ktrdr_data_store.profiles import DEFAULT, DatasetProfile, ProfileBook
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import ContractSpec
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit

H1 = Timeframe.H1
RTH = DatasetProfile(use_rth=True)
MARCH = DatasetProfile(contract=ContractSpec(contract_month="202403", exchange="CME"))


def test_the_first_load_records_its_profile_and_the_same_one_passes(tmp_path: Path) -> None:
    book = ProfileBook(tmp_path)
    assert book.get("AAPL", H1) == DEFAULT
    book.claim("AAPL", H1, RTH, has_bars=False)
    assert book.get("AAPL", H1) == RTH
    book.claim("AAPL", H1, RTH, has_bars=True)  # the same again: fine
    assert ProfileBook(tmp_path).get("aapl", H1) == RTH  # on disk, by symbol key
    assert book.get("AAPL", Timeframe.D1) == DEFAULT  # per dataset, not per symbol


def test_another_profile_is_refused_while_the_dataset_holds_bars(tmp_path: Path) -> None:
    book = ProfileBook(tmp_path)
    book.claim("AAPL", H1, DEFAULT, has_bars=False)
    with pytest.raises(
        InvalidRequest,
        match=r"AAPL 1h holds bars of the default contract, "
        r"extended hours; this load asks for the default "
        r"contract, regular trading hours only",
    ):
        book.claim("AAPL", H1, RTH, has_bars=True)
    book.claim("AAPL", H1, RTH, has_bars=False)  # no bars yet (a load that failed): re-record
    assert book.get("AAPL", H1) == RTH


def test_bars_from_before_profiles_count_as_the_defaults(tmp_path: Path) -> None:
    book = ProfileBook(tmp_path)
    with pytest.raises(
        InvalidRequest, match="asks for exchange CME, contract month 202403, extended hours"
    ):
        book.claim("ES", H1, MARCH, has_bars=True)
    book.claim("ES", H1, DEFAULT, has_bars=True)


def test_an_unreadable_book_is_taken_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "profiles.json").write_text("{not json")
    book = ProfileBook(tmp_path)
    assert book.get("AAPL", H1) == DEFAULT
    book.claim("AAPL", H1, RTH, has_bars=False)
    assert book.get("AAPL", H1) == RTH
    assert "profiles.json is unreadable" in caplog.text


def test_a_book_reads_the_file_again_once_another_writer_changed_it(tmp_path: Path) -> None:
    reader, writer = ProfileBook(tmp_path), ProfileBook(tmp_path)
    writer.claim("AAPL", H1, RTH, has_bars=False)
    assert reader.get("AAPL", H1) == RTH
    assert reader.get("MSFT", H1) == DEFAULT  # the file is decoded once, then kept
    writer.claim("MSFT", H1, MARCH, has_bars=False)
    assert (reader.get("AAPL", H1), reader.get("MSFT", H1)) == (RTH, MARCH)
    (tmp_path / "profiles.json").unlink()
    assert reader.get("AAPL", H1) == DEFAULT
