"""Byte-exact and property tests for :mod:`typed_ss.protocol`, the sans-I/O ``sac-sock`` codec.

The expected frames come from the wire contract (``protocol.md`` sections 2-4 and 7) and from the
original Sacrificial-Socket's example frames (``sacrificial-socket.md`` section 2.5). ``␁`` in comments
means 0x01 and ``␂`` means 0x02.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import msgspec
import pydantic
import pytest
from hypothesis import example, given, settings

from typed_ss import protocol
from typed_ss.errors import EncodeError, InvalidName, ProtocolError, TypedSSError
from typed_ss.protocol import (
    MAX_FLAGS_LENGTH,
    ClientFrame,
    check_event_name,
    check_room_name,
    encode_frame,
    encode_json,
    error_frame,
    frame_size,
    hello_frame,
    parse_client_frame,
)

LIMIT = 64
"""The event name limit (UTF-8 bytes) used by the tests unless they say otherwise."""

MiB = 1 << 20


# --- values to encode ------------------------------------------------------------------------------


class UserStruct(msgspec.Struct):
    name: str


class RenamedStruct(msgspec.Struct, rename="camel"):
    user_name: str


class GoMessage(msgspec.Struct):
    """The Go example's ``message{Message string `json:"message"`}``."""

    message: str = msgspec.field(name="message")


class UserModel(pydantic.BaseModel):
    name: str


class AliasedModel(pydantic.BaseModel):
    user_name: str = pydantic.Field(alias="userName")


class AnyModel(pydantic.BaseModel):
    value: Any


@dataclasses.dataclass
class UserDataclass:
    name: str
    age: int


class Level(enum.IntEnum):
    HIGH = 3


class MixinColour(str, enum.Enum):  # noqa: UP042 - the pre-3.11 idiom, on purpose
    RED = "red"


class StrColour(enum.StrEnum):
    RED = "red"


def _cyclic_list() -> list[object]:
    value: list[object] = []
    value.append(value)
    return value


def _cyclic_dict() -> dict[str, object]:
    value: dict[str, object] = {}
    value["self"] = value
    return value


def _outcome(message: str | bytes, limit: int) -> ClientFrame | str:
    """The parse result, or the name of the exception: lets two parses be compared with ``==``."""
    try:
        return parse_client_frame(message, limit)
    except ProtocolError:
        return "ProtocolError"


def _split_like_js(frame: str | bytes) -> tuple[str, str, str | bytes]:
    """Read a server frame the way the JS client does.

    The name is everything before the first 0x01 (which must come before any 0x02), the header is
    everything from there to the first following 0x02, the payload is the rest, delimiters included.
    Binary names are decoded as UTF-8 here (the original client used Latin-1, which only differs for
    non-ASCII names).
    """
    if isinstance(frame, str):
        soh = frame.index("\x01")
        stx = frame.index("\x02", soh + 1)
        assert "\x02" not in frame[:soh]
        return frame[:soh], frame[soh + 1 : stx], frame[stx + 1 :]
    soh = frame.index(b"\x01")
    stx = frame.index(b"\x02", soh + 1)
    assert b"\x02" not in frame[:soh]
    return frame[:soh].decode(), frame[soh + 1 : stx].decode("ascii"), frame[stx + 1 :]


# --- 1. server frames: the type table ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        pytest.param("hello", "hello", id="ascii"),
        pytest.param("", "", id="empty"),
        pytest.param("é中😀", "é中😀", id="non-ascii"),
        pytest.param("a\x01b\x02c\x02", "a\x01b\x02c\x02", id="delimiters-in-payload"),
        pytest.param('{"a":1}', '{"a":1}', id="json-looking-str-stays-S"),
        pytest.param("null", "null", id="null-text"),
        pytest.param(StrColour.RED, "red", id="StrEnum"),
        pytest.param(MixinColour.RED, "red", id="str-Enum-mixin"),
    ],
)
def test_str_is_an_S_text_frame(data: str, payload: str) -> None:
    frame = encode_frame("ev", data)
    assert type(frame) is str
    assert frame == "ev\x01S\x02" + payload


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        pytest.param(b"\xde\xad", b"\xde\xad", id="bytes"),
        pytest.param(b"", b"", id="empty-bytes"),
        pytest.param(b"\x00\x01\x02\xff", b"\x00\x01\x02\xff", id="delimiters-in-bytes"),
        pytest.param(bytearray(b"\x01\x02\x03"), b"\x01\x02\x03", id="bytearray"),
        pytest.param(bytearray(), b"", id="empty-bytearray"),
        pytest.param(memoryview(b"abc"), b"abc", id="memoryview"),
        pytest.param(memoryview(b"abcdef")[1:4], b"bcd", id="memoryview-slice"),
        pytest.param(memoryview(bytearray(b"abcdefgh")).cast("I"), b"abcdefgh", id="memoryview-cast-I"),
        pytest.param(memoryview(b"abcdef")[::2], b"ace", id="memoryview-non-contiguous"),
    ],
)
def test_bytes_like_is_a_B_binary_frame(data: bytes | bytearray | memoryview, payload: bytes) -> None:
    frame = encode_frame("ev", data)
    assert type(frame) is bytes
    assert frame == b"ev\x01B\x02" + payload


def test_binary_frame_event_name_is_utf8() -> None:
    assert encode_frame("é中", b"\x00") == "é中".encode() + b"\x01B\x02\x00"
    assert encode_frame("é中", b"\x00") == b"\xc3\xa9\xe4\xb8\xad\x01B\x02\x00"


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        pytest.param(UserStruct(name="ann"), '{"name":"ann"}', id="msgspec-Struct"),
        pytest.param(RenamedStruct(user_name="ann"), '{"userName":"ann"}', id="msgspec-Struct-renamed"),
        pytest.param(
            [UserStruct(name="a"), UserStruct(name="b")], '[{"name":"a"},{"name":"b"}]', id="structs"
        ),
        pytest.param(UserModel(name="ann"), '{"name":"ann"}', id="pydantic-model"),
        pytest.param(AliasedModel(userName="ann"), '{"userName":"ann"}', id="pydantic-alias"),
        pytest.param([UserModel(name="ann")], '[{"name":"ann"}]', id="pydantic-in-list"),
        pytest.param(
            {"u": AliasedModel(userName="x")}, '{"u":{"userName":"x"}}', id="pydantic-alias-in-dict"
        ),
        pytest.param(AnyModel(value=[1, "a", None]), '{"value":[1,"a",null]}', id="pydantic-any"),
        pytest.param({"a": 1, "b": [True, None]}, '{"a":1,"b":[true,null]}', id="dict"),
        pytest.param({}, "{}", id="empty-dict"),
        pytest.param({"name": "é😀"}, '{"name":"é😀"}', id="dict-non-ascii"),
        pytest.param({"c": "\x01\x02"}, '{"c":"\\u0001\\u0002"}', id="delimiters-escaped"),
        pytest.param({1: "one"}, '{"1":"one"}', id="dict-int-key"),
        pytest.param([1, "two", 3.5], '[1,"two",3.5]', id="list"),
        pytest.param([], "[]", id="empty-list"),
        pytest.param((1, "a"), '[1,"a"]', id="tuple"),
        pytest.param(42, "42", id="int"),
        pytest.param(0, "0", id="zero"),
        pytest.param(-7, "-7", id="negative-int"),
        pytest.param(2**64, "18446744073709551616", id="big-int"),
        pytest.param(1.5, "1.5", id="float"),
        pytest.param(-0.25, "-0.25", id="negative-float"),
        pytest.param(True, "true", id="true"),
        pytest.param(False, "false", id="false"),
        pytest.param(None, "null", id="None"),
        pytest.param(UserDataclass(name="ann", age=3), '{"name":"ann","age":3}', id="dataclass"),
        pytest.param(Level.HIGH, "3", id="IntEnum"),
    ],
)
def test_everything_else_is_a_J_text_frame(data: object, payload: str) -> None:
    frame = encode_frame("ev", data)
    assert type(frame) is str
    assert frame == "ev\x01J\x02" + payload
    assert encode_json(data) == payload.encode()


# --- 1. the example frames --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        pytest.param("echo", "hello", "echo\x01S\x02hello", id="echo-hello"),
        pytest.param("echo", b"\xde\xad", bytes.fromhex("65 63 68 6f 01 42 02 de ad"), id="echo-bytes"),
        pytest.param("user", UserStruct(name="ann"), 'user\x01J\x02{"name":"ann"}', id="user-struct"),
        pytest.param("user", UserModel(name="ann"), 'user\x01J\x02{"name":"ann"}', id="user-pydantic"),
        pytest.param(
            "user",
            UserDataclass(name="ann", age=1),
            'user\x01J\x02{"name":"ann","age":1}',
            id="user-dataclass",
        ),
        pytest.param("x", None, "x\x01J\x02null", id="x-None"),
        # sacrificial-socket.md 2.5
        pytest.param("echojson", GoMessage(message="hi"), 'echojson\x01J\x02{"message":"hi"}', id="echojson"),
        pytest.param("x", 42, "x\x01J\x0242", id="x-42"),
        pytest.param(
            "echobin", b"\xde\xad", bytes.fromhex("65 63 68 6f 62 69 6e 01 42 02 de ad"), id="echobin"
        ),
        pytest.param("e", b"", b"e\x01B\x02", id="e-empty-bytes"),
    ],
)
def test_example_server_frames(event: str, data: object, expected: str | bytes) -> None:
    frame = encode_frame(event, data)
    assert type(frame) is type(expected)
    assert frame == expected


def test_echo_hello_hex() -> None:
    frame = encode_frame("echo", "hello")
    assert isinstance(frame, str)
    assert frame.encode() == bytes.fromhex("65 63 68 6f 01 53 02 68 65 6c 6c 6f")


@pytest.mark.parametrize(
    ("message", "event", "payload"),
    [
        pytest.param("join\x02global", "join", b"global", id="join-global"),
        pytest.param(
            bytes.fromhex("6a 6f 69 6e 02 67 6c 6f 62 61 6c"), "join", b"global", id="join-global-hex-binary"
        ),
        pytest.param(
            'message\x02{"Room":"g","Message":"hi"}',
            "message",
            b'{"Room":"g","Message":"hi"}',
            id="message-g",
        ),
        pytest.param(
            'message\x02{"Room":"global","Message":"hi"}',
            "message",
            b'{"Room":"global","Message":"hi"}',
            id="message-global",
        ),
        pytest.param("a\x025", "a", b"5", id="a-5"),
        pytest.param("a\x02undefined", "a", b"undefined", id="a-undefined"),
        pytest.param("a\x02null", "a", b"null", id="a-null"),
        pytest.param(
            bytes.fromhex("65 63 68 6f 62 69 6e 02 01 02 03"), "echobin", b"\x01\x02\x03", id="echobin-binary"
        ),
    ],
)
def test_example_client_frames(message: str | bytes, event: str, payload: bytes) -> None:
    frame = parse_client_frame(message, LIMIT)
    assert frame == ClientFrame(event, b"", payload)
    assert type(frame.payload) is bytes
    assert type(frame.flags) is bytes
    # The frame type does not matter.
    other = message.encode() if isinstance(message, str) else message.decode()
    assert parse_client_frame(other, LIMIT) == frame


# --- 2. client frames: edge cases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param("ev\x02", ClientFrame("ev", b"", b""), id="empty-payload"),
        pytest.param("ev\x02\x02", ClientFrame("ev", b"", b"\x02"), id="payload-is-stx"),
        pytest.param("ev\x02\x01", ClientFrame("ev", b"", b"\x01"), id="payload-is-soh"),
        pytest.param(
            "ev\x02a\x02b\x01c", ClientFrame("ev", b"", b"a\x02b\x01c"), id="payload-with-delimiters"
        ),
        pytest.param("ev\x02a\x01b", ClientFrame("ev", b"", b"a\x01b"), id="soh-after-stx-is-payload"),
        pytest.param(
            "ev\x02\x01S\x02x", ClientFrame("ev", b"", b"\x01S\x02x"), id="header-after-stx-is-payload"
        ),
        pytest.param("ev\x02é", ClientFrame("ev", b"", "é".encode()), id="payload-utf8-bytes"),
        pytest.param("ev\x01\x02x", ClientFrame("ev", b"", b"x"), id="soh-empty-flags"),
        pytest.param("ev\x01AB\x02x", ClientFrame("ev", b"AB", b"x"), id="flags"),
        pytest.param(
            "ev\x01A\x01B\x02x\x01", ClientFrame("ev", b"A\x01B", b"x\x01"), id="second-soh-in-flags"
        ),
        pytest.param(
            "ev\x01" + "F" * MAX_FLAGS_LENGTH + "\x02", ClientFrame("ev", b"F" * 16, b""), id="max-flags"
        ),
        pytest.param(
            "ev\x01" + "é" * 8 + "\x02", ClientFrame("ev", "é".encode() * 8, b""), id="max-flags-utf8"
        ),
        pytest.param("a b\x02x", ClientFrame("a b", b"", b"x"), id="space-in-name"),
        pytest.param("__hello\x02x", ClientFrame("__hello", b"", b"x"), id="reserved-name-parses"),
        pytest.param("é\x02x", ClientFrame("é", b"", b"x"), id="utf8-name"),
        pytest.param("中文\x01J\x02[]", ClientFrame("中文", b"J", b"[]"), id="utf8-name-flags"),
        pytest.param("😀\x02", ClientFrame("😀", b"", b""), id="astral-name"),
    ],
)
def test_client_frame_split(message: str, expected: ClientFrame) -> None:
    assert parse_client_frame(message, LIMIT) == expected
    assert parse_client_frame(message.encode(), LIMIT) == expected


def test_binary_frame_payload_is_not_decoded() -> None:
    assert parse_client_frame(b"ev\x02\xff\xfe\x00", LIMIT) == ClientFrame("ev", b"", b"\xff\xfe\x00")
    assert parse_client_frame(b"ev\x01\xff\x02", LIMIT) == ClientFrame("ev", b"\xff", b"")


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("", id="empty"),
        pytest.param("ev", id="name-only"),
        pytest.param("ev\x01S", id="soh-no-stx"),
        pytest.param("\x01", id="soh-only"),
        pytest.param("ev\x01" + "F" * 40, id="long-flags-no-stx"),
    ],
)
def test_no_stx_is_a_protocol_error(message: str) -> None:
    with pytest.raises(ProtocolError):
        parse_client_frame(message, LIMIT)
    with pytest.raises(ProtocolError):
        parse_client_frame(message.encode(), LIMIT)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("\x02", id="stx-only"),
        pytest.param("\x02payload", id="stx-first"),
        pytest.param("\x02a\x02b", id="stx-first-twice"),
        pytest.param("\x01\x02x", id="soh-first"),
        pytest.param("\x01S\x02x", id="server-style-no-name"),
    ],
)
def test_empty_event_name_is_a_protocol_error(message: str) -> None:
    with pytest.raises(ProtocolError):
        parse_client_frame(message, LIMIT)
    with pytest.raises(ProtocolError):
        parse_client_frame(message.encode(), LIMIT)


@pytest.mark.parametrize(
    ("name", "limit", "ok"),
    [
        pytest.param("a" * LIMIT, LIMIT, True, id="ascii-at-limit"),
        pytest.param("a" * (LIMIT + 1), LIMIT, False, id="ascii-over-limit"),
        pytest.param("é" * (LIMIT // 2), LIMIT, True, id="2-byte-at-limit"),
        pytest.param("é" * (LIMIT // 2) + "a", LIMIT, False, id="2-byte-over-limit"),
        pytest.param("a" * (LIMIT - 1) + "é", LIMIT, False, id="2-byte-last-char-over-limit"),
        pytest.param("中" * 21, 63, True, id="3-byte-at-limit"),
        pytest.param("中" * 21, 62, False, id="3-byte-over-limit"),
        pytest.param("中" * 21 + "a", LIMIT, True, id="3-byte-plus-ascii-at-limit"),
        pytest.param("中" * 22, LIMIT, False, id="3-byte-straddles-limit"),
        pytest.param("😀" * (LIMIT // 4), LIMIT, True, id="4-byte-at-limit"),
        pytest.param("😀" * (LIMIT // 4) + "a", LIMIT, False, id="4-byte-over-limit"),
        pytest.param("a", 1, True, id="limit-1-ascii"),
        pytest.param("ab", 1, False, id="limit-1-two-ascii"),
        pytest.param("é", 1, False, id="limit-1-two-byte-char"),
        pytest.param("é", 2, True, id="limit-2-two-byte-char"),
        pytest.param("a" * 1000, 1000, True, id="ascii-at-limit-1000"),
        pytest.param("a" * 1001, 1000, False, id="ascii-over-limit-1000"),
    ],
)
@pytest.mark.parametrize(
    "header", ["", "\x01", "\x01" + "F" * MAX_FLAGS_LENGTH], ids=["plain", "soh", "max-flags"]
)
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_event_name_length_limit(name: str, limit: int, ok: bool, header: str, binary: bool) -> None:
    text = name + header + "\x02payload"
    message: str | bytes = text.encode() if binary else text
    if ok:
        flags = header[1:].encode()
        assert parse_client_frame(message, limit) == ClientFrame(name, flags, b"payload")
    else:
        with pytest.raises(ProtocolError):
            parse_client_frame(message, limit)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param("F" * (MAX_FLAGS_LENGTH + 1), id="ascii"),
        pytest.param("é" * 8 + "a", id="utf8-17-bytes-9-chars"),
        pytest.param("F" * 100, id="long"),
    ],
)
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_flags_over_max_length_are_a_protocol_error(flags: str, binary: bool) -> None:
    text = "ev\x01" + flags + "\x02x"
    message: str | bytes = text.encode() if binary else text
    with pytest.raises(ProtocolError):
        parse_client_frame(message, LIMIT)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("a" * MiB, id="text-no-stx"),
        pytest.param(b"a" * MiB, id="binary-no-stx"),
        pytest.param("a" * MiB + "\x02", id="text-stx-at-end"),
        pytest.param(b"a" * MiB + b"\x02", id="binary-stx-at-end"),
        pytest.param("\x01" * MiB + "\x02", id="text-soh-run"),
        pytest.param(b"a\x01" + b"F" * MiB + b"\x02", id="binary-huge-flags"),
    ],
)
def test_huge_message_without_a_valid_header_is_a_protocol_error(message: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_client_frame(message, LIMIT)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_huge_payload_is_kept_whole(binary: bool) -> None:
    payload = bytes(range(256)) * (MiB // 256)
    message: str | bytes = b"big\x02" + payload if binary else "big\x02" + payload.decode("latin-1")
    frame = parse_client_frame(message, LIMIT)
    assert frame.event == "big"
    expected = payload if binary else payload.decode("latin-1").encode()
    assert frame.payload == expected


@pytest.mark.parametrize(
    "raw_name",
    [
        pytest.param(b"\xe9", id="latin1-e-acute-from-original-js-client"),
        pytest.param(b"caf\xe9", id="latin1-in-word"),
        pytest.param(b"\xff", id="ff"),
        pytest.param(b"\xc3", id="truncated-2-byte"),
        pytest.param(b"\xe4\xb8", id="truncated-3-byte"),
        pytest.param(b"\xc0\x80", id="overlong-nul"),
        pytest.param(b"\xed\xa0\x80", id="encoded-surrogate"),
        pytest.param(b"\xf4\x90\x80\x80", id="above-u10ffff"),
        pytest.param(b"\x80a", id="lone-continuation"),
    ],
)
@pytest.mark.parametrize("header", [b"", b"\x01J"], ids=["plain", "flags"])
def test_binary_name_not_utf8_is_a_protocol_error(raw_name: bytes, header: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_client_frame(raw_name + header + b"\x02payload", LIMIT)


@pytest.mark.parametrize("name", ["é", "café", "中文", "😀", "naïve event", "Ωmega"])
def test_binary_utf8_name_is_decoded(name: str) -> None:
    frame = parse_client_frame(name.encode() + b"\x02\xde\xad", LIMIT)
    assert frame == ClientFrame(name, b"", b"\xde\xad")


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("\ud800\x02x", id="surrogate-in-name"),
        pytest.param("a\udc80b\x02x", id="low-surrogate-in-name"),
        pytest.param("ev\x02\ud800", id="surrogate-in-payload"),
        pytest.param("ev\x02ok\udfff", id="low-surrogate-in-payload"),
        pytest.param("ev\x01\ud800\x02x", id="surrogate-in-flags"),
    ],
)
def test_text_frame_with_lone_surrogate_is_a_protocol_error(message: str) -> None:
    # parse_client_frame documents ProtocolError as the only exception it raises; a str with a lone
    # surrogate has no UTF-8 form, so its payload cannot be "the text frame's UTF-8 bytes".
    with pytest.raises(ProtocolError):
        parse_client_frame(message, LIMIT)


# --- 3. server frame errors -------------------------------------------------------------------------


def _no_json_values() -> list[Any]:
    return [
        pytest.param(object(), id="object"),
        pytest.param({object()}, id="set-of-object"),
        pytest.param([1, object()], id="object-in-list"),
        pytest.param({"k": object()}, id="object-in-dict"),
        pytest.param({object(): 1}, id="object-as-key"),
        pytest.param(len, id="builtin-function"),
        pytest.param(_cyclic_list, id="function"),
        pytest.param(lambda: None, id="lambda"),
        pytest.param(1j, id="complex"),
        pytest.param(UserStruct(name=object()), id="object-in-struct"),  # type: ignore[arg-type]
        pytest.param(AnyModel(value=object()), id="object-in-pydantic"),
        pytest.param({"m": AnyModel(value=object())}, id="object-in-pydantic-in-dict"),
        pytest.param(_cyclic_list(), id="cyclic-list"),
        pytest.param(_cyclic_dict(), id="cyclic-dict"),
        pytest.param(AnyModel(value=_cyclic_list()), id="cyclic-in-pydantic"),
    ]


@pytest.mark.parametrize("data", _no_json_values())
def test_value_without_json_form_raises_encode_error(data: object) -> None:
    with pytest.raises(EncodeError) as info:
        encode_frame("ev", data)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, TypedSSError)


@pytest.mark.parametrize("data", _no_json_values())
def test_encode_json_without_json_form_raises_encode_error(data: object) -> None:
    with pytest.raises(EncodeError):
        encode_json(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("a\ud800", id="str-high-surrogate"),
        pytest.param("\udfff", id="str-low-surrogate"),
        pytest.param("ok\udc80ok", id="str-surrogate-inside"),
        pytest.param({"k": "\ud800"}, id="surrogate-in-dict-value"),
        pytest.param({"\ud800": 1}, id="surrogate-in-dict-key"),
        pytest.param(["\ud800"], id="surrogate-in-list"),
        pytest.param(UserStruct(name="\ud800"), id="surrogate-in-struct"),
        pytest.param(UserModel(name="\ud800"), id="surrogate-in-pydantic"),
    ],
)
def test_lone_surrogate_raises_encode_error(data: object) -> None:
    with pytest.raises(EncodeError) as info:
        encode_frame("ev", data)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        # msgspec (and pydantic's default ser_json_inf_nan="null") write non-finite floats as null.
        pytest.param(math.nan, "null", id="nan"),
        pytest.param(math.inf, "null", id="inf"),
        pytest.param(-math.inf, "null", id="minus-inf"),
        pytest.param([math.nan, 1.0, -math.inf], "[null,1.0,null]", id="in-list"),
        pytest.param({"x": math.nan}, '{"x":null}', id="in-dict"),
        pytest.param(AnyModel(value=math.nan), '{"value":null}', id="in-pydantic"),
    ],
)
def test_non_finite_floats_are_never_NaN_on_the_wire(data: object, payload: str) -> None:
    frame = encode_frame("ev", data)
    assert isinstance(frame, str)
    assert "NaN" not in frame
    assert "Infinity" not in frame
    assert frame == "ev\x01J\x02" + payload


# --- 4. hello, error, names -------------------------------------------------------------------------


def test_constants() -> None:
    assert protocol.SUBPROTOCOL == "sac-sock"
    assert protocol.PROTOCOL_VERSION == 1
    assert protocol.RESERVED_PREFIX == "__"
    assert protocol.SOCKET_ROOM_PREFIX == "__socket_id:"
    assert protocol.HELLO_EVENT == "__hello"
    assert protocol.ERROR_EVENT == "__error"


@pytest.mark.parametrize(
    ("socket_id", "max_message_size"),
    [
        pytest.param("3f0Lim0WUWFi1_eu_l3Xfsxgoo2hDmxx", MiB, id="base64url-id"),
        pytest.param("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, id="zero-size"),
        pytest.param("-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_", 2**40, id="big-size"),
    ],
)
def test_hello_frame_bytes(socket_id: str, max_message_size: int) -> None:
    frame = hello_frame(socket_id, max_message_size, "c0ffee", 64)
    assert type(frame) is str
    assert frame == (
        f'__hello\x01J\x02{{"v":1,"id":"{socket_id}","max_message_size":{max_message_size},'
        '"contract":"c0ffee","max_calls":64}'
    )


def test_hello_frame_exact_literal() -> None:
    assert (
        hello_frame("3f0Lim0WUWFi1_eu_l3Xfsxgoo2hDmxx", 1048576, "0123456789abcdef0123456789abcdef", 64)
        == '__hello\x01J\x02{"v":1,"id":"3f0Lim0WUWFi1_eu_l3Xfsxgoo2hDmxx","max_message_size":1048576,'
        '"contract":"0123456789abcdef0123456789abcdef","max_calls":64}'
    )


@pytest.mark.parametrize(
    ("event", "code", "detail", "expected"),
    [
        pytest.param(
            "message",
            "invalid_payload",
            "Expected `str`, got `int` - at `$.Room`",
            '__error\x01J\x02{"event":"message","code":"invalid_payload",'
            '"detail":"Expected `str`, got `int` - at `$.Room`"}',
            id="invalid-payload",
        ),
        pytest.param(
            "join",
            "handler_error",
            "",
            '__error\x01J\x02{"event":"join","code":"handler_error","detail":""}',
            id="handler-error",
        ),
        pytest.param(
            "é",
            "invalid_payload",
            'bad "x"\n\\\x01',
            '__error\x01J\x02{"event":"é","code":"invalid_payload","detail":"bad \\"x\\"\\n\\\\\\u0001"}',
            id="escaping",
        ),
    ],
)
def test_error_frame_bytes(event: str, code: str, detail: str, expected: str) -> None:
    frame = error_frame(event, code, detail)
    assert type(frame) is str
    assert frame == expected
    assert json.loads(frame.split("\x02", 1)[1]) == {"event": event, "code": code, "detail": detail}


CHECKS = [
    pytest.param(check_event_name, id="event"),
    pytest.param(check_room_name, id="room"),
]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("__", id="dunder-only"),
        pytest.param("__x", id="reserved"),
        pytest.param("__hello", id="reserved-hello"),
        pytest.param("__error", id="reserved-error"),
        pytest.param("__socket_id:abc", id="reserved-socket-room"),
        pytest.param("a\x01b", id="soh"),
        pytest.param("a\x02b", id="stx"),
        pytest.param("\x01", id="soh-only"),
        pytest.param("\x02", id="stx-only"),
        pytest.param("ab\x01", id="soh-at-end"),
        pytest.param("a" * (LIMIT + 1), id="ascii-over-limit"),
        pytest.param("é" * (LIMIT // 2) + "a", id="2-byte-over-limit"),
        pytest.param("中" * 22, id="3-byte-over-limit"),
        pytest.param("😀" * (LIMIT // 4) + "a", id="4-byte-over-limit"),
        pytest.param(1, id="int"),
        pytest.param(None, id="None"),
        pytest.param(b"abc", id="bytes"),
        pytest.param(["a"], id="list"),
    ],
)
def test_invalid_names(check: Callable[[str, int], None], name: Any) -> None:
    with pytest.raises(InvalidName) as info:
        check(name, LIMIT)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TypedSSError)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a", id="one-char"),
        pytest.param("echo", id="echo"),
        pytest.param("_private", id="single-underscore"),
        pytest.param("a__b", id="dunder-inside"),
        pytest.param("x__", id="dunder-at-end"),
        pytest.param("with space", id="space"),
        pytest.param("é", id="utf8"),
        pytest.param("中文", id="cjk"),
        pytest.param("a" * LIMIT, id="ascii-at-limit"),
        pytest.param("é" * (LIMIT // 2), id="2-byte-at-limit"),
        pytest.param("中" * 21 + "a", id="3-byte-at-limit"),
        pytest.param("😀" * (LIMIT // 4), id="4-byte-at-limit"),
    ],
)
def test_valid_names(check: Callable[[str, int], None], name: str) -> None:
    check(name, LIMIT)


def test_frame_size_counts_characters_or_bytes() -> None:
    assert frame_size("ev\x01S\x02hello") == 10
    assert frame_size(b"ev\x01B\x02\xde\xad") == 7


# --- 5. properties ----------------------------------------------------------------------------------

NAME_CHARS = st.characters(codec="utf-8", exclude_characters="\x01\x02")


@st.composite
def event_names(draw: st.DrawFn, max_bytes: int = 200) -> str:
    """Non-empty names without 0x01/0x02, cut to ``max_bytes`` UTF-8 bytes at a character boundary."""
    text = draw(st.text(NAME_CHARS, min_size=1, max_size=max_bytes))
    name = text.encode()[:max_bytes].decode(errors="ignore")
    return name or text[0]


PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),
    st.lists(st.sampled_from([b"\x01", b"\x02", b"a", b"\xff", "é".encode()]), max_size=30).map(b"".join),
)


@settings(max_examples=200, deadline=None)
@given(name=event_names(), payload=PAYLOADS, slack=st.integers(min_value=0, max_value=40))
@example(name="a" * LIMIT, payload=b"", slack=0)
@example(name="é" * (LIMIT // 2), payload=b"\x02\x01\x02", slack=0)
@example(name="😀" * (LIMIT // 4), payload=b"\x01S\x02x", slack=0)
@example(name="__hello", payload=b"\xff\xfe", slack=0)
def test_property_client_frame_round_trip(name: str, payload: bytes, slack: int) -> None:
    limit = len(name.encode()) + slack
    expected = ClientFrame(name, b"", payload)
    assert parse_client_frame(name.encode() + b"\x02" + payload, limit) == expected
    try:
        text_payload = payload.decode()
    except UnicodeDecodeError:
        return
    assert parse_client_frame(name + "\x02" + text_payload, limit) == expected


BYTE_CHUNKS = st.one_of(
    st.binary(max_size=8),
    st.sampled_from([b"\x01", b"\x02", b"\x01\x02", b"\x02\x01", b"\xff", b"\xc3", b"\xe9", "é".encode()]),
    st.sampled_from([b"a" * 17, b"a" * 70, "é".encode() * 40, b"\x01" * 20]),
)
RANDOM_BYTES = st.one_of(st.binary(max_size=300), st.lists(BYTE_CHUNKS, max_size=20).map(b"".join))

TEXT_CHUNKS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["\x01", "\x02", "\x01\x02", "\x02\x01", "é", "😀", "\x00"]),
    st.sampled_from(["\ud800", "\udfff", "\udc80", "\ud83d"]),
    st.sampled_from(["a" * 17, "a" * 70, "é" * 40, "😀" * 20, "\x01" * 20]),
)
RANDOM_TEXT = st.one_of(
    st.text(st.characters(), max_size=200), st.lists(TEXT_CHUNKS, max_size=20).map("".join)
)


def _check_frame_invariants(frame: ClientFrame, raw: bytes, limit: int) -> None:
    assert type(frame) is ClientFrame
    assert type(frame.payload) is bytes
    assert type(frame.flags) is bytes
    assert frame.event
    assert "\x01" not in frame.event
    assert "\x02" not in frame.event
    assert len(frame.event.encode(errors="surrogatepass")) <= limit
    assert len(frame.flags) <= MAX_FLAGS_LENGTH
    name = frame.event.encode(errors="surrogatepass")
    assert raw in (name + b"\x02" + frame.payload, name + b"\x01" + frame.flags + b"\x02" + frame.payload)


@settings(max_examples=200, deadline=None)
@given(message=RANDOM_BYTES, limit=st.integers(min_value=1, max_value=80))
@example(message=b"", limit=1)
@example(message=b"\x02", limit=1)
@example(message=b"\x01\x02", limit=1)
@example(message=b"a" * MiB, limit=64)
@example(message=b"\xe9\x02x", limit=64)
def test_property_parse_arbitrary_bytes(message: bytes, limit: int) -> None:
    try:
        frame = parse_client_frame(message, limit)
    except ProtocolError:
        return
    _check_frame_invariants(frame, message, limit)


@settings(max_examples=200, deadline=None)
@given(message=RANDOM_TEXT, limit=st.integers(min_value=1, max_value=80))
@example(message="", limit=1)
@example(message="\x02", limit=1)
@example(message="a" * MiB, limit=64)
@example(message="\ud800\x02x", limit=64)
@example(message="ev\x02\udfff", limit=64)
def test_property_parse_arbitrary_text(message: str, limit: int) -> None:
    frame: ClientFrame | None
    try:
        frame = parse_client_frame(message, limit)
    except ProtocolError:
        frame = None
    try:
        raw = message.encode()
    except UnicodeEncodeError:
        return
    if frame is not None:
        _check_frame_invariants(frame, raw, limit)
    # A text frame and the binary frame with the same bytes give the same result.
    assert _outcome(raw, limit) == (frame if frame is not None else "ProtocolError")


@settings(max_examples=200, deadline=None)
@given(name=event_names(LIMIT), data=st.one_of(st.text(max_size=100), st.binary(max_size=100)))
@example(name="ev", data="a\x01b\x02c")
@example(name="ev", data=b"\x02\x01\x02")
@example(name="é", data=b"")
@example(name="x", data="")
def test_property_encode_frame_reads_back_like_the_js_client(name: str, data: str | bytes) -> None:
    frame = encode_frame(name, data)
    assert type(frame) is type(data)
    event, header, payload = _split_like_js(frame)
    assert event == name
    assert header == ("S" if isinstance(data, str) else "B")
    assert payload == data


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)


def _reject_constant(name: str) -> object:
    raise AssertionError(f"non-standard JSON constant {name} in a frame")


@settings(max_examples=150, deadline=None)
@given(name=event_names(LIMIT), value=JSON_VALUES.filter(lambda v: not isinstance(v, str)))
@example(name="ev", value={"a": "\x01\x02"})
@example(name="ev", value=[1e308, -0.0, 5e-324])
def test_property_json_frame_reads_back(name: str, value: object) -> None:
    frame = encode_frame(name, value)
    assert isinstance(frame, str)
    event, header, payload = _split_like_js(frame)
    assert (event, header) == (name, "J")
    assert isinstance(payload, str)
    assert "\x01" not in payload
    assert "\x02" not in payload
    assert json.loads(payload, parse_constant=_reject_constant) == value


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(), max_size=10))
def test_property_floats_are_standard_json(values: list[float]) -> None:
    frame = encode_frame("f", values)
    assert isinstance(frame, str)
    decoded = json.loads(frame.split("\x02", 1)[1], parse_constant=_reject_constant)
    assert decoded == [v if math.isfinite(v) else None for v in values]


# --- the read loop's split: text stays text ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(message=st.one_of(RANDOM_TEXT, RANDOM_BYTES), limit=st.integers(min_value=1, max_value=80))
@example(message="ev\x01c12\x02x", limit=64)
@example(message="ev\x01" + "é" * 9 + "\x02x", limit=64)
@example(message="a" * 81 + "\x02x", limit=64)
def test_property_split_message_agrees_with_the_bytes_split(message: str | bytes, limit: int) -> None:
    # split_message keeps a text frame's flags and payload as text; otherwise both splits agree,
    # errors included.
    try:
        expected: tuple[str, bytes, bytes] | str = protocol.split_client_frame(message, limit)
    except ProtocolError:
        expected = "ProtocolError"
    try:
        event, flags, payload = protocol.split_message(message, limit)
    except ProtocolError:
        assert expected == "ProtocolError"
        return
    assert isinstance(payload, type(message))
    if isinstance(payload, str):
        try:
            as_bytes = (event, flags.encode(), payload.encode())
        except UnicodeEncodeError:  # a lone surrogate in the payload: never from a real text frame
            assert expected == "ProtocolError"
            return
    else:
        as_bytes = (event, flags.encode("latin-1"), payload)
    assert as_bytes == expected


@pytest.mark.parametrize("flags", ["c12", b"c12"])
def test_call_flags_parse_from_text_and_bytes(flags: str | bytes) -> None:
    assert protocol.parse_call_flag(flags) == ("c", 12)


@pytest.mark.parametrize("flags", ["c\u0661\u0662", "c\u00b2", "r\uff11", "c12\u0663"])
def test_call_ids_are_ascii_digits_only(flags: str) -> None:
    # str.isdigit (and int()) take other scripts' digits; a call id is ASCII decimal.
    with pytest.raises(ProtocolError):
        protocol.parse_call_flag(flags)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("hi", "ev\x01Sr7\x02hi"),
        (b"\x00", b"ev\x01Br7\x02\x00"),
        ({"a": 1}, 'ev\x01Jr7\x02{"a":1}'),
    ],
)
def test_encode_frame_puts_a_flag_after_the_type_letter(data: object, expected: str | bytes) -> None:
    assert encode_frame("ev", data, "r7") == expected
    assert protocol.with_flag(encode_frame("ev", data), "r7") == expected
