"""Every message round-trips through JSON and msgpack, and bad input names its field."""

from __future__ import annotations

import inspect

import msgspec
import pytest
from ktrdr_shared import codec, messages
from ktrdr_shared.errors import MessageDecodeError
from ktrdr_shared.messages import BarBatch, DatasetRepaired, JobEvent, LoadData
from ktrdr_shared.testing.examples import EXAMPLES

pytestmark = pytest.mark.unit

MESSAGE_CLASSES = sorted(
    (
        obj
        for obj in vars(messages).values()
        if inspect.isclass(obj)
        and issubclass(obj, msgspec.Struct)
        and obj
        not in (messages.Message, messages.Event, messages.JobEventBase, messages.StoreEventBase)
    ),
    key=lambda cls: cls.__name__,
)


def test_every_message_class_has_an_example() -> None:
    missing = [cls.__name__ for cls in MESSAGE_CLASSES if cls not in EXAMPLES]
    assert missing == []


@pytest.mark.parametrize("content_type", [codec.JSON, codec.MSGPACK])
@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_round_trip(cls: type, content_type: str) -> None:
    original = EXAMPLES[cls]
    data = codec.encode(original, content_type=content_type)
    decoded = codec.decode(data, cls, headers=codec.headers_for(content_type))
    assert decoded == original


@pytest.mark.parametrize(
    "cls", [c for c in MESSAGE_CLASSES if c.__struct_fields__], ids=lambda c: c.__name__
)
def test_messages_are_frozen(cls: type) -> None:
    example = EXAMPLES[cls]
    field = example.__struct_fields__[0]
    with pytest.raises(AttributeError):
        setattr(example, field, getattr(example, field))


def test_job_events_decode_as_a_tagged_union() -> None:
    for event in [e for e in EXAMPLES.values() if isinstance(e, messages.JobEventBase)]:
        data = codec.encode(event)
        assert msgspec.json.decode(data)["type"] == messages.event_type(event)
        assert codec.decode(data, JobEvent) == event


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = b'{"symbol": "AAPL", "timeframe": "1h", "added_in_v9": {"x": 1}}'
    assert codec.decode(raw, LoadData) == LoadData(symbol="AAPL", timeframe="1h")  # type: ignore[arg-type]


def test_symbols_are_upper_cased() -> None:
    decoded = codec.decode(b'{"symbol": "brk b", "timeframe": "1d"}', LoadData)
    assert decoded.symbol == "BRK B"


BAD_LOADS = [
    (b'{"symbol": "AAPL", "timeframe": "1h", "start": "2024-01-02T10:00:00"}', "start",
     "timezone"),
    (b'{"symbol": "AAPL", "timeframe": "2h"}', "timeframe", "use one of 1s 5s"),
    (b'{"symbol": 42, "timeframe": "1h"}', "symbol", "Expected `str`, got `int`"),
    (b'{"timeframe": "1h"}', None, "missing required field `symbol`"),
    (b'{"symbol": "AAPL", "timeframe": "1h", "mode": "sideways"}', "mode", "tail backfill full"),
    (b'{"symbol": "AAPL", "timeframe": "1h", "job_id": "not-hex"}', "job_id", "regex"),
    (b'{"symbol": "AA$PL", "timeframe": "1h"}', "symbol", "regex"),
    (b'{"symbol": "AAPL", "timeframe": "1h", "start": "2024-01-03T00:00:00Z",'
     b' "end": "2024-01-02T00:00:00Z"}', None, "'start'"),
    (b"\xff\xfe garbage", None, "not valid JSON"),
    (b"[1, 2, 3]", None, "Expected `object`, got `array`"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "field", "needle"), BAD_LOADS)
def test_bad_load_commands_name_the_field(payload: bytes, field: str | None, needle: str) -> None:
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(payload, LoadData, subject="ktrdr.cmd.data.load")
    err = caught.value
    assert err.field == field
    assert needle in err.problem
    assert err.subject == "ktrdr.cmd.data.load"
    assert err.code == "invalid_request"
    assert "ktrdr.cmd.data.load" in err.message


NAIVE_FIX = "has no timezone; add Z (UTC) or an offset such as +02:00"


@pytest.mark.parametrize("content_type", [codec.JSON, codec.MSGPACK])
def test_a_naive_timestamp_by_hand_says_to_add_z_or_an_offset(content_type: str) -> None:
    raw = {"symbol": "AAPL", "timeframe": "1h", "start": "2024-06-24T00:00:00"}
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(
            codec.encode(raw, content_type=content_type),
            LoadData,
            subject="ktrdr.cmd.data.load",
            headers=codec.headers_for(content_type),
        )
    assert caught.value.field == "start"
    assert caught.value.message == (
        f"invalid LoadData on 'ktrdr.cmd.data.load': field 'start': 2024-06-24T00:00:00 {NAIVE_FIX}"
    )


def test_a_naive_timestamp_deep_inside_a_message_is_named_with_its_value() -> None:
    raw = b'{"symbol": "AAPL", "timeframe": "1h", "forgotten": [{"start": "2024-01-01T00:00:00Z",'
    raw += b' "end": "2024-01-02T00:00:00"}]}'
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(raw, DatasetRepaired, subject="ktrdr.store.repair")
    assert caught.value.field == "forgotten[0].end"
    assert caught.value.problem == f"2024-01-02T00:00:00 {NAIVE_FIX}"


def _batch_dict(**changes: object) -> dict[str, object]:
    raw = msgspec.to_builtins(EXAMPLES[BarBatch])
    raw.update(changes)
    return raw


def test_a_negative_price_is_data_not_a_bad_message() -> None:
    # CL (WTI crude, May 2020 contract) settled at -37.63 on 2020-04-20
    data = codec.encode(_batch_dict(low=[184.9, -37.63]), content_type=codec.MSGPACK)
    batch = codec.decode(
        data, BarBatch, subject="ktrdr.bars.CL.1d", headers=codec.headers_for(codec.MSGPACK)
    )
    assert batch.low[1] == -37.63


@pytest.mark.parametrize("content_type", [codec.JSON, codec.MSGPACK])
@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"volume": [1.0, -1.0]}, "volume[1]", ">= 0"),
        ({"volume": [1.0, "lots"]}, "volume[1]", "Expected `float`, got `str`"),
        ({"ts": [1]}, None, "column 'open' has 2 values but 'ts' has 1"),
        ({"timeframe": "7m"}, "timeframe", "Invalid enum value '7m'"),
        ({"chunk_index": 5}, None, "'chunk_index' (5) must be below 'chunk_count' (2)"),
    ],
)
def test_bad_bar_batches_name_the_field(
    changes: dict[str, object], field: str | None, needle: str, content_type: str
) -> None:
    data = codec.encode(_batch_dict(**changes), content_type=content_type)
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(
            data, BarBatch, subject="ktrdr.bars.AAPL.1m", headers=codec.headers_for(content_type)
        )
    assert caught.value.field == field
    assert needle in caught.value.problem


def test_msgpack_header_is_honoured_and_json_is_the_fallback() -> None:
    batch = EXAMPLES[BarBatch]
    packed = codec.encode(batch, content_type=codec.MSGPACK)
    assert codec.decode(packed, BarBatch, headers={"Content-Type": codec.MSGPACK}) == batch
    with pytest.raises(MessageDecodeError, match="not valid JSON"):
        codec.decode(packed, BarBatch)  # no header: taken as JSON, and it is not
    assert codec.decode(codec.encode(batch), BarBatch, headers={"Other": "x"}) == batch


def test_empty_payload_is_an_empty_object() -> None:
    assert codec.decode(b"", messages.StatusRequest) == messages.StatusRequest()
    with pytest.raises(MessageDecodeError, match="missing required field"):
        codec.decode(b"", LoadData)


def test_unknown_event_type_lists_the_known_ones() -> None:
    payload = b'{"type": "exploded", "job_id": "0123456789abcdef0123456789abcdef"}'
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(payload, JobEvent)
    assert caught.value.field == "type"
    assert "accepted" in caught.value.problem
    assert "completed" in caught.value.problem
