"""Spreading a load's segments over the connectors in the pool (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from ktrdr_data_store.spread import piece_requests, requests_of, spread
from ktrdr_shared.types import Timeframe, to_unix_nanos

WEEK = 7 * 86_400 * 10**9
START = to_unix_nanos(datetime(2023, 6, 30, 13, 30, tzinfo=UTC))
YEAR_END = START + 52 * WEEK + 3 * 86_400 * 10**9  # 52 weeks and three days: 53 requests


def test_a_year_of_minute_bars_is_53_requests_cut_into_pieces_that_end_on_week_boundaries() -> None:
    year = (START, YEAR_END)
    assert requests_of(Timeframe.M1, year) == 53
    pieces = spread(Timeframe.M1, [year], per_piece=10)
    assert [requests_of(Timeframe.M1, p) for p in pieces] == [3, 10, 10, 10, 10, 10]
    assert pieces[0][0] == START and pieces[-1][1] == YEAR_END
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))  # no gap, no overlap
    assert all((YEAR_END - p[1]) % (10 * WEEK) == 0 for p in pieces)


def test_short_segments_are_left_whole_and_order_is_kept() -> None:
    segments = [(START, START + WEEK // 2), (START + WEEK, START + 3 * WEEK)]
    assert spread(Timeframe.M1, segments, per_piece=2) == segments
    assert spread(Timeframe.M1, segments, per_piece=1) == [
        (START, START + WEEK // 2),
        (START + WEEK, START + 2 * WEEK),
        (START + 2 * WEEK, START + 3 * WEEK),
    ]
    assert spread(Timeframe.M1, [], per_piece=3) == []


@pytest.mark.parametrize(
    ("connectors", "max_requests", "expected"),
    [
        (1, 16, 16),  # one connector: pieces no longer than the cap (27 would do otherwise)
        (3, 16, 9),  # three: about two pieces each (53 / 6)
        (30, 16, 1),  # more connectors than requests: one request a piece
        (0, 16, 16),  # none seen (yet): as if one
    ],
)
def test_piece_size_gives_each_connector_two_pieces_within_the_cap(
    connectors: int, max_requests: int, expected: int
) -> None:
    assert (
        piece_requests(
            Timeframe.M1,
            [(START, YEAR_END)],
            connectors=connectors,
            max_requests=max_requests,
        )
        == expected
    )


def test_per_piece_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        spread(Timeframe.M1, [(START, YEAR_END)], per_piece=0)
