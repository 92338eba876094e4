"""Hostile and malformed client frames against a real server.

Each case sends one frame and checks the documented outcome: a malformed frame is dropped (nothing is
sent back) and logged with the socket id; a payload its handler's type rejects gets an ``__error``
frame with code ``invalid_payload``. Either way the same connection keeps working, and so does a fresh
client connecting afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import msgspec
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tests.support import Client, connect_client, running
from typed_ss import Server, Socket

KiB = 1024
MiB = 1024 * KiB
DEEP = 10_000


class Chat(msgspec.Struct):
    room: str
    text: str


class Envelope(msgspec.Struct):
    data: Any


class PydanticEnvelope(pydantic.BaseModel):
    data: Any


class IntValue(msgspec.Struct):
    value: int


class FloatValue(msgspec.Struct):
    value: float


class PydanticInt(pydantic.BaseModel):
    value: int


class PydanticFloat(pydantic.BaseModel):
    value: float


class PydanticChat(pydantic.BaseModel):
    room: str
    text: str


LONGEST_EVENT = "e" * 128


def make_server(**options: Any) -> Server:
    ss = Server(**options)

    @ss.on("echo")
    async def echo(sock: Socket, data: bytes) -> None:
        await sock.emit("echo", data)

    @ss.on("text")
    async def text(sock: Socket, value: str) -> None:
        await sock.emit("text", value)

    @ss.on("chat")
    async def chat(sock: Socket, msg: Chat) -> None:
        await sock.emit("chat", msg)

    @ss.on("pchat")
    async def pchat(sock: Socket, msg: PydanticChat) -> None:
        await sock.emit("pchat", msg)

    @ss.on("envelope")
    async def envelope(sock: Socket, msg: Envelope) -> None:
        await sock.emit("envelope", "decoded")

    @ss.on("penvelope")
    async def penvelope(sock: Socket, msg: PydanticEnvelope) -> None:
        await sock.emit("penvelope", "decoded")

    # The number handlers reply with the repr of what they received, so "nan" shows a NaN got through.
    @ss.on("int")
    async def int_value(sock: Socket, msg: IntValue) -> None:
        await sock.emit("int", repr(msg.value))

    @ss.on("float")
    async def float_value(sock: Socket, msg: FloatValue) -> None:
        await sock.emit("float", repr(msg.value))

    @ss.on("pint")
    async def pint_value(sock: Socket, msg: PydanticInt) -> None:
        await sock.emit("pint", repr(msg.value))

    @ss.on("pfloat")
    async def pfloat_value(sock: Socket, msg: PydanticFloat) -> None:
        await sock.emit("pfloat", repr(msg.value))

    @ss.on(LONGEST_EVENT)
    async def longest(sock: Socket, data: bytes) -> None:
        await sock.emit("longest", data)

    return ss


def make_app(ss: Server) -> Starlette:
    return Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)


@dataclasses.dataclass(frozen=True)
class Case:
    message: str | bytes
    outcome: Literal["dropped", "invalid_payload", "reply"]
    expect: str
    """dropped: part of the logged reason; invalid_payload: part of the error detail; reply: the
    reply's event."""
    event: str = ""
    """invalid_payload: the event the ``__error`` names."""
    reply: Any = None
    """reply: the reply's payload (decoded JSON for J frames)."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def deep_json(depth: int = DEEP) -> str:
    return '{"data":' + "[" * depth + "]" * depth + "}"


def many_keys(count: int) -> str:
    keys = ",".join(f'"k{i}":0' for i in range(count))
    return "{" + keys + ',"room":"r","text":"t"}'


CASES = [
    # Frames that break the wire protocol: dropped and logged, nothing sent back.
    pytest.param(Case("echo", "dropped", "no 0x02 delimiter"), id="text-no-stx"),
    pytest.param(Case(b"echo", "dropped", "no 0x02 delimiter"), id="binary-no-stx"),
    pytest.param(Case("", "dropped", "no 0x02 delimiter"), id="empty-text-frame"),
    pytest.param(Case(b"", "dropped", "no 0x02 delimiter"), id="empty-binary-frame"),
    pytest.param(Case("\x02echo", "dropped", "empty event name"), id="text-stx-at-0"),
    pytest.param(Case(b"\x02echo", "dropped", "empty event name"), id="binary-stx-at-0"),
    pytest.param(Case("\x01S\x02echo", "dropped", "empty event name"), id="flags-but-no-name"),
    pytest.param(
        Case("a" * (MiB - KiB), "dropped", "no 0x02 delimiter within the longest allowed event name"),
        id="text-1MiB-name-no-stx",
    ),
    pytest.param(
        Case(b"a" * (MiB - KiB), "dropped", "no 0x02 delimiter within the longest allowed event name"),
        id="binary-1MiB-name-no-stx",
    ),
    pytest.param(
        Case("a" * (MiB - 2 * KiB) + "\x02x", "dropped", "no 0x02 delimiter within"),
        id="1MiB-name-then-stx",
    ),
    pytest.param(Case("e" * 129 + "\x02x", "dropped", "longer than 128 bytes"), id="text-name-129-bytes"),
    pytest.param(Case(b"e" * 129 + b"\x02x", "dropped", "longer than 128 bytes"), id="binary-name-129-bytes"),
    pytest.param(Case("é" * 65 + "\x02x", "dropped", "longer than 128 bytes"), id="name-65-chars-130-bytes"),
    pytest.param(
        Case(b"\xff\xfe\x02x", "dropped", "event name is not valid UTF-8"), id="binary-name-not-utf8"
    ),
    pytest.param(
        Case(b"ech\xc3\x02x", "dropped", "event name is not valid UTF-8"), id="binary-name-truncated"
    ),
    pytest.param(
        Case("echo\x01" + "f" * 17 + "\x02x", "dropped", "header flags longer"), id="flags-too-long"
    ),
    # The limits themselves are allowed.
    pytest.param(Case(LONGEST_EVENT + "\x02x", "reply", "longest", reply=b"x"), id="name-128-bytes"),
    pytest.param(Case("echo\x01" + "f" * 16 + "\x02x", "reply", "echo", reply=b"x"), id="flags-16-bytes"),
    # Payloads their handler's type rejects: an __error frame.
    pytest.param(
        Case(b"text\x02ok\xff\xfe", "invalid_payload", "payload is not valid UTF-8 at byte 2", event="text"),
        id="str-handler-invalid-utf8",
    ),
    pytest.param(
        Case(b"text\x02\xed\xa0\x80", "invalid_payload", "not valid UTF-8", event="text"),
        id="str-handler-encoded-surrogate",
    ),
    pytest.param(
        Case("envelope\x02" + deep_json(), "invalid_payload", "JSON nests too deeply", event="envelope"),
        id="msgspec-10000-deep",
    ),
    pytest.param(
        Case("penvelope\x02" + deep_json(), "invalid_payload", "recursion limit exceeded", event="penvelope"),
        id="pydantic-10000-deep",
    ),
    pytest.param(
        Case('int\x02{"value": NaN}', "invalid_payload", "JSON is malformed", event="int"),
        id="msgspec-int-nan",
    ),
    pytest.param(
        Case('float\x02{"value": NaN}', "invalid_payload", "JSON is malformed", event="float"),
        id="msgspec-float-nan",
    ),
    pytest.param(
        Case('pint\x02{"value": NaN}', "invalid_payload", "Input should be a finite number", event="pint"),
        id="pydantic-int-nan",
    ),
    # pydantic's default (allow_inf_nan=True) lets NaN and Infinity into a float field, where msgspec
    # refuses them as malformed JSON.
    pytest.param(Case('pfloat\x02{"value": NaN}', "reply", "pfloat", reply="nan"), id="pydantic-float-nan"),
    pytest.param(
        Case('pfloat\x02{"value": Infinity}', "reply", "pfloat", reply="inf"), id="pydantic-float-infinity"
    ),
    pytest.param(
        Case("chat\x02undefined", "invalid_payload", "JSON is malformed", event="chat"),
        id="msgspec-undefined",
    ),
    pytest.param(
        Case("pchat\x02undefined", "invalid_payload", "Invalid JSON", event="pchat"), id="pydantic-undefined"
    ),
    pytest.param(Case("chat\x02", "invalid_payload", "truncated", event="chat"), id="msgspec-empty-payload"),
    # 200,000 unknown keys: ignored, the known fields decode. Such a message is ~2.4 MB, so the limit is
    # raised for these cases.
    pytest.param(
        Case(
            "chat\x02" + many_keys(200_000),
            "reply",
            "chat",
            reply={"room": "r", "text": "t"},
            options={"max_message_size": 4 * MiB},
        ),
        id="msgspec-200000-keys",
    ),
    pytest.param(
        Case(
            "pchat\x02" + many_keys(200_000),
            "reply",
            "pchat",
            reply={"room": "r", "text": "t"},
            options={"max_message_size": 4 * MiB},
        ),
        id="pydantic-200000-keys",
    ),
]


async def round_trip(client: Client, text: str) -> None:
    await client.send("echo", text.encode())
    frame = await client.expect("echo")
    assert frame.payload == text.encode()


@pytest.mark.parametrize("case", CASES)
async def test_bad_input(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="typed_ss")
    ss = make_server(**case.options)
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as client:
            await client.ws.send(case.message)

            if case.outcome == "dropped":
                await client.nothing_within(0.2)
                logged = [r.getMessage() for r in caplog.records if r.name == "typed_ss"]
                malformed = [m for m in logged if f"socket {client.id} sent a malformed frame" in m]
                assert len(malformed) == 1, logged
                assert case.expect in malformed[0]
            elif case.outcome == "invalid_payload":
                error = (await client.expect("__error")).json()
                assert error["event"] == case.event
                assert error["code"] == "invalid_payload"
                assert case.expect in error["detail"]
                assert any(
                    f"socket {client.id} sent an invalid payload for {case.event!r}" in r.getMessage()
                    for r in caplog.records
                )
            else:
                frame = await client.expect(case.expect)
                assert (frame.json() if frame.letter == "J" else frame.payload) == case.reply

            # The same connection still works, and nothing else was queued before the echo.
            await round_trip(client, "same connection")
            assert ss.get_socket(client.id) is not None

        async with connect_client(url) as fresh:
            await round_trip(fresh, "fresh client")


async def test_bad_frames_in_a_burst_leave_the_connection_in_order(caplog: pytest.LogCaptureFixture) -> None:
    """Every malformed frame of a burst is dropped on its own; the good frames between them are handled
    in order."""
    caplog.set_level(logging.INFO, logger="typed_ss")
    ss = make_server()
    bad: list[str | bytes] = ["echo", b"\x02x", b"\xff\x02x", "e" * 129 + "\x02x", "a" * (64 * KiB)]
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        for i, message in enumerate(bad):
            await client.ws.send(message)
            await client.send("echo", str(i).encode())
        for i in range(len(bad)):
            assert (await client.expect("echo")).payload == str(i).encode()
        await client.nothing_within(0.2)
    malformed = [r for r in caplog.records if f"socket {client.id} sent a malformed frame" in r.getMessage()]
    assert len(malformed) == len(bad)


# --- invalid UTF-8 inside a JSON payload, for every kind of payload type --------------------------


@dataclasses.dataclass
class Named:
    name: str


class PydanticNamed(pydantic.BaseModel):
    name: str


def every_kind_server() -> Server:
    """One handler per kind of payload type; each replies "ok" when its payload decoded."""
    ss = Server()

    async def ok(sock: Socket, value: object) -> None:
        await sock.emit("ok", repr(value))

    kinds: dict[str, object] = {
        "raw": bytes,
        "text": str,
        "chat": Chat,
        "strs": list[str],
        "counts": dict[str, int],
        "mode": Literal["fine", "other"],
        "either": int | str,
        "named": Named,
        "pchat": PydanticChat,
        "pchats": list[PydanticChat],
    }
    on: Any = ss.on  # some of these types are not classes, which `on`'s overloads expect
    for event, payload_type in kinds.items():
        on(event, payload_type)(ok)
    return ss


# (event, a valid payload with {} where a string's content goes)
EVERY_KIND = [
    pytest.param("text", b"{}", id="str"),
    pytest.param("chat", b'{"room":"{}","text":"x"}', id="msgspec-struct"),
    pytest.param("strs", b'["{}"]', id="msgspec-list-str"),
    pytest.param("counts", b'{"{}":1}', id="msgspec-dict-key"),
    pytest.param("mode", b'"{}"', id="msgspec-literal"),
    pytest.param("either", b'"{}"', id="msgspec-union"),
    pytest.param("named", b'{"name":"{}"}', id="dataclass"),
    pytest.param("pchat", b'{"room":"{}","text":"x"}', id="pydantic-model"),
    pytest.param("pchats", b'[{"room":"{}","text":"x"}]', id="pydantic-type-adapter"),
]

NOT_UTF8 = [
    b"\xff",  # never valid
    b"a\xc3",  # a truncated two-byte sequence
    b"\xc0\xaf",  # an overlong "/"
    b"\xed\xa0\x80",  # an encoded UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
]


@pytest.mark.parametrize(("event", "template"), EVERY_KIND)
async def test_invalid_utf8_inside_the_payload_is_an_invalid_payload(
    event: str, template: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ss = every_kind_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        for bad in NOT_UTF8:
            # A binary frame: uvicorn closes a text frame that is not UTF-8 itself (1007).
            await client.ws.send(event.encode() + b"\x02" + template.replace(b"{}", bad))
            error = (await client.expect("__error")).json()
            assert (error["event"], error["code"]) == (event, "invalid_payload")
            # The detail names the problem, never the decoder's internals.
            assert "codec" not in error["detail"]
            assert "Error" not in error["detail"]
            assert "UTF-8" in error["detail"] or "unicode" in error["detail"], error["detail"]
            # The valid payload still decodes, on the same connection.
            await client.ws.send(event.encode() + b"\x02" + template.replace(b"{}", b"fine"))
            assert (await client.expect("ok")).payload
        assert ss.get_socket(client.id) is not None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ]


async def test_a_bytes_handler_gets_invalid_utf8_unchanged() -> None:
    ss = every_kind_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.ws.send(b"raw\x02" + b"".join(NOT_UTF8))
        assert (await client.expect("ok")).payload == repr(b"".join(NOT_UTF8))
