"""A live fuzz test: mutated frames from several clients against a real server, a few seconds long.

The server has a handler for every kind of payload type. Each fuzzing client takes valid frames and
mutates them with a seeded ``random.Random`` (bytes flipped, inserted and deleted, invalid UTF-8,
truncations, 0x01/0x02 moved, added or removed, text or binary frames, now and then a message over
the size limit), while a control client echoes throughout. Then:

- no connection ended without a close frame: each fuzzing connection is still open, or was closed
  with a close frame whose code docs/protocol.md documents (a client that is closed reconnects);
- nothing was logged at ERROR or above, by typed-ss or by uvicorn;
- no asyncio task is left behind once the clients have left;
- the control client got every echo, in order.

The loops are bounded by a count and by a time budget, whichever ends first; nothing asserts on time.

Invalid UTF-8 travels in binary frames, and now and then in a text frame: typed-ss's uvicorn protocol
closes such a connection with 1007 and a close frame, logged at info level (uvicorn's own protocol
logs an error with a traceback, and under this load now and then drops the connection without its
close frame).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import Any, Literal

import msgspec
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support import connect_client, eventually, running
from typed_ss import Server, Socket, TypedSSError

pytestmark = pytest.mark.timeout(120)

KiB = 1024
MAX_MESSAGE_SIZE = 16 * KiB
FUZZ_CLIENTS = 4
FRAMES_PER_CLIENT = 600
SEND_BUDGET = 3.0
"""Seconds each fuzzing client sends for at most (a bound on the test's length, not a check)."""
MAX_ECHOES = 5_000

DOCUMENTED_CLOSE_CODES = frozenset({1000, 1001, 1002, 1007, 1008, 1009, 1011, 1012, 4008, 4010})
"""The close codes of docs/protocol.md section 6 (the 4000-4999 application range aside: this server
has no application closes). ``test_the_close_codes_are_the_documented_ones`` keeps them in step."""


class Chat(msgspec.Struct):
    room: str
    text: str


@dataclasses.dataclass
class Named:
    name: str


class PydanticChat(pydantic.BaseModel):
    room: str
    text: str


PAYLOAD_TYPES: dict[str, object] = {
    "text": str,
    "chat": Chat,
    "strs": list[str],
    "counts": dict[str, int],
    "mode": Literal["on", "off"],
    "either": int | str | None,
    "named": Named,
    "pchat": PydanticChat,
    "pchats": list[PydanticChat],
}

VALID_FRAMES: list[bytes] = [
    b"echo\x02raw \x00\x01\x02 bytes \xff",
    "text\x02héllo".encode(),
    'chat\x02{"room":"ré","text":"t"}'.encode(),
    b'strs\x02["a","b"]',
    b'counts\x02{"a":1,"b":2}',
    b'mode\x02"on"',
    b"either\x0242",
    b'named\x02{"name":"n"}',
    b'pchat\x02{"room":"r","text":"t"}',
    b'pchats\x02[{"room":"r","text":"t"}]',
    b"join\x02room-1",
    b'cast\x02{"room":"room-1","text":"x"}',
    b"nobody\x02listens",
]

INSERTS: list[bytes] = [
    b"\xff",
    b"\xc3",  # a truncated two-byte sequence
    b"\xc0\xaf",  # overlong
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\x01",
    b"\x02",
    b"\x00",
    b'"',
    b"\\",
    b"\\ud800",
    b"[",
    b"{",
    b"9" * 50,
    b"__socket_id:",
]


def fuzz_server() -> Server:
    ss = Server(max_message_size=MAX_MESSAGE_SIZE)

    @ss.on("echo")
    async def echo(sock: Socket, data: bytes) -> None:
        await sock.emit("echo", data)

    async def reply(sock: Socket, value: object) -> None:
        await sock.emit("ok", type(value).__qualname__)

    on: Any = ss.on  # some payload types are not classes, which `on`'s overloads expect
    for event, payload_type in PAYLOAD_TYPES.items():
        on(event, payload_type)(reply)

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        try:
            await sock.join(room)
        except TypedSSError:  # a reserved or too long name, or too many rooms: the client's problem
            await sock.emit("refused", "join")

    @ss.on("cast")
    async def cast(sock: Socket, msg: Chat) -> None:
        try:
            await sock.roomcast(msg.room, "cast", msg)  # a room the client names
        except TypedSSError:
            await sock.emit("refused", "cast")

    return ss


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        roll = rng.random()
        if roll < 0.2 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif roll < 0.45:
            data[at:at] = rng.choice(INSERTS)
        elif roll < 0.6 and data:
            del data[at : at + rng.randint(1, 4)]
        elif roll < 0.7:
            del data[at:]  # truncated
        elif roll < 0.8:
            stx = data.find(b"\x02")
            if stx >= 0:
                del data[stx]  # no delimiter, or the next 0x02 becomes it
        elif roll < 0.9:
            stx = max(data.find(b"\x02"), 0)
            data[stx:stx] = b"\x01" + b"f" * rng.randint(0, 20)  # header flags, sometimes too long
        else:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
    return bytes(data)


@dataclasses.dataclass
class Findings:
    problems: list[str] = dataclasses.field(default_factory=list)
    replies: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    closes: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    sent: int = 0


async def drain(ws: ClientConnection, findings: Findings) -> None:
    """Read every frame until the connection ends, counting the events."""
    try:
        async for message in ws:
            head = message[:64]
            name = head.split("\x01")[0] if isinstance(head, str) else head.split(b"\x01")[0].decode()
            findings.replies[name] += 1
    except ConnectionClosed:
        pass


def check_close(ws: ClientConnection, findings: Findings) -> None:
    received = ws.protocol.close_rcvd
    if received is None:
        findings.problems.append("a connection ended without a close frame from the server")
        return
    findings.closes[received.code] += 1
    if received.code not in DOCUMENTED_CLOSE_CODES:
        findings.problems.append(f"closed with an undocumented code {received.code} ({received.reason!r})")


async def fuzz(url: str, rng: random.Random, findings: Findings) -> None:
    deadline = time.monotonic() + SEND_BUDGET
    while findings.sent < FRAMES_PER_CLIENT and time.monotonic() < deadline:
        async with connect_client(url) as client:
            ws = client.ws
            reader = asyncio.create_task(drain(ws, findings))
            while findings.sent < FRAMES_PER_CLIENT and time.monotonic() < deadline and not reader.done():
                message = mutate(rng, rng.choice(VALID_FRAMES))
                roll = rng.random()
                if roll < 0.01:
                    message = b"echo\x02" + b"x" * MAX_MESSAGE_SIZE  # too big: 1009
                text: bool | None = None
                if roll < 0.5:
                    # A text frame when the bytes are UTF-8, as every WebSocket client sends them.
                    try:
                        message.decode()
                        text = True
                    except UnicodeDecodeError:
                        text = roll < 0.1  # now and then a text frame that is not UTF-8: 1007
                try:
                    await ws.send(message, text=text)
                except ConnectionClosed:
                    break
                findings.sent += 1
                if findings.sent % 16 == 0:
                    await asyncio.sleep(0)  # let the server and the reader run
            if not reader.done():
                await ws.close()  # we end it: the server must still answer with a close frame
            await reader
            check_close(ws, findings)


async def control(url: str, stop: asyncio.Event) -> tuple[int, list[bytes]]:
    """Echo numbered messages one after another until ``stop``; return how many were sent and what
    came back."""
    received: list[bytes] = []
    sent = 0
    async with connect_client(url) as client:
        while not stop.is_set() and sent < MAX_ECHOES:
            await client.send("echo", str(sent).encode())
            sent += 1
            received.append((await client.expect("echo", within=10)).payload)  # type: ignore[arg-type]
    return sent, received


def test_the_close_codes_are_the_documented_ones() -> None:
    protocol = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    closing = protocol[protocol.index("## 6. Closing") : protocol.index("## 7.")]
    for code in DOCUMENTED_CLOSE_CODES:
        assert str(code) in closing, code


async def test_fuzzed_frames_from_several_clients(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="typed_ss")
    # uvicorn's default logging config stops its records at the "uvicorn" logger; let them reach
    # caplog, so an "Exception in ASGI application" fails the test too.
    monkeypatch.setattr(logging.getLogger("uvicorn"), "propagate", True)
    ss = fuzz_server()
    app = Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)
    async with running(app, ss, log_config=None) as url:
        before = asyncio.all_tasks()
        stop = asyncio.Event()
        controller = asyncio.create_task(control(url, stop))
        findings = [Findings() for _ in range(FUZZ_CLIENTS)]
        await asyncio.gather(*(fuzz(url, random.Random(f"fuzz-{i}"), f) for i, f in enumerate(findings)))
        stop.set()
        echoes_sent, echoes = await controller

        problems = [p for f in findings for p in f.problems]
        assert not problems, problems
        assert echoes == [str(i).encode() for i in range(echoes_sent)]
        assert echoes_sent > 0
        # The fuzz reached both the handlers and the invalid_payload path.
        replies = sum((f.replies for f in findings), collections.Counter[str]())
        assert replies["ok"], replies
        assert replies["__error"], replies
        await eventually(lambda: not ss.sockets)
        await eventually(lambda: not (asyncio.all_tasks() - before), within=10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
