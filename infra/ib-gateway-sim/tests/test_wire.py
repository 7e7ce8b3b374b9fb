"""Framing: length prefixes, NUL-terminated fields, the handshake payload."""

import asyncio
import struct

import pytest
from ktrdr_ib_sim.wire import (
    FieldError,
    Fields,
    FrameError,
    decode_payload,
    encode_message,
    parse_hello,
    read_frame,
)

pytestmark = pytest.mark.unit


def test_every_field_ends_with_nul_behind_a_big_endian_length() -> None:
    framed = encode_message([17, "abc", None, True, 1.5])
    assert framed[:4] == struct.pack(">I", len(framed) - 4)
    assert framed[4:] == b"17\0abc\0\x001\x001.5\0"


def test_decode_inverts_encode() -> None:
    fields = ["4", "2", "-1", "2104", "Market data farm connection is OK:usfarm", ""]
    assert decode_payload(encode_message(fields)[4:]) == fields


@pytest.mark.parametrize(
    ("payload", "low", "high", "options"),
    [
        (b"v157..178", 157, 178, ""),
        (b"v100..151 +PACEAPI", 100, 151, "+PACEAPI"),
        (b"v176", 176, 176, ""),
    ],
)
def test_hello_reads_the_version_range(payload: bytes, low: int, high: int, options: str) -> None:
    hello = parse_hello(payload)
    assert (hello.min_version, hello.max_version, hello.options) == (low, high, options)


def test_hello_that_is_no_version_range_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        parse_hello(b"hello there")


async def test_oversized_length_is_a_frame_error() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack(">I", 1 << 30))
    with pytest.raises(FrameError):
        await read_frame(reader, max_bytes=0xFFFFFF)


def test_fields_read_typed_values_and_reject_garbage() -> None:
    msg = Fields(["7", "", "1", "x"])
    assert msg.integer() == 7
    assert msg.integer(default=0) == 0
    assert msg.flag() is True
    with pytest.raises(FieldError):
        msg.integer()
    assert msg.text() == ""  # reading past the end yields empty fields, like IB's decoder
