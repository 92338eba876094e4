"""typed-ss's limits hold however uvicorn is started: with typed-ss's settings or with uvicorn's own.

Plain ``uvicorn module:app`` negotiates permessage-deflate and inflates messages up to its own 16 MiB
``ws_max_size``; typed-ss bounds every message by its ``max_message_size`` on the live connection
instead. Refusing an upgrade with an HTTP status logs no error in either case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from tests.apps import echo_server, make_app
from tests.support import connect_client, running, stalled_client
from typed_ss import CloseCode, Server, Socket
from typed_ss.uvicorn_protocols import HttpProtocol, WebSocketProtocol

KiB = 1024
MiB = 1024 * KiB

# uvicorn's defaults, as `uvicorn module:app` runs (websockets is installed, so "auto" is sansio).
STOCK: dict[str, Any] = {
    "ws": "auto",
    "http": "auto",
    "ws_max_size": 16 * MiB,
    "ws_per_message_deflate": True,
}


def bomb_server() -> tuple[Server, list[int]]:
    ss = Server(max_message_size=64 * KiB)
    seen: list[int] = []

    @ss.on("data")
    async def data(sock: Socket, payload: bytes) -> None:
        seen.append(len(payload))
        await sock.emit("got", str(len(payload)))

    return ss, seen


@pytest.mark.parametrize("settings", [STOCK, {}], ids=["plain uvicorn", "typed-ss settings"])
async def test_a_compressed_message_is_bounded_by_max_message_size(
    settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="typed_ss")
    ss, seen = bomb_server()
    async with running(make_app(ss), ss, **settings) as url:
        ws = await connect(url + "/socket", compression="deflate", max_size=None)
        try:
            await ws.recv()  # __hello
            await ws.send(b"data\x02" + b"x" * (60 * KiB))  # under the limit: handled
            assert await ws.recv() == "got\x01S\x02" + str(60 * KiB)
            # 4 MiB of zeros compress to about 4 KiB on the wire: refused with 1009 before it is
            # inflated past 64 KiB, and never handed to the handler.
            with contextlib.suppress(ConnectionClosed):  # it may already fail while sending
                await ws.send(b"data\x02" + bytes(4 * MiB))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == CloseCode.MESSAGE_TOO_BIG
        finally:
            # Not `async with`: closing a connection that is already closed while the rest of its
            # 4 MiB send is still buffered trips CPython 3.11's asyncio (abort() after a graceful
            # close of a transport with a pending buffer).
            if ws.state is not State.CLOSED:
                await ws.close()
    assert seen == [60 * KiB]
    # Refused by the protocol while inflating, not assembled whole and then refused by typed-ss.
    assert not [r for r in caplog.records if "larger than" in r.getMessage()]


@pytest.mark.parametrize("settings", [STOCK, {}], ids=["plain uvicorn", "typed-ss settings"])
async def test_a_refused_upgrade_gets_its_status_and_logs_no_error(
    settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ss = echo_server()

    @ss.authenticate
    async def nobody(request: object) -> None:
        return None

    caplog.set_level(logging.INFO)
    async with running(make_app(ss), ss, **settings) as url:
        for _ in range(3):
            with pytest.raises(InvalidStatus) as refused:
                async with connect_client(url):
                    pass
            assert refused.value.response.status_code == 403
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_the_recommended_settings_use_typed_ss_protocols_with_the_servers_limits() -> None:
    from typed_ss import uvicorn_settings

    ss = Server(max_message_size=123 * KiB, handshake_timeout=3.5)
    settings = uvicorn_settings(ss)
    assert issubclass(settings["ws"], WebSocketProtocol)
    assert settings["ws"].max_message_size == 123 * KiB
    assert issubclass(settings["http"], HttpProtocol)
    assert settings["http"].handshake_timeout == 3.5
    assert settings["ws_per_message_deflate"] is False


async def test_plain_uvicorn_is_named_once_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    import typed_ss.asgi

    typed_ss.asgi._warned_without_protocols = False  # reset the once-per-process flag
    ss = echo_server()
    async with running(make_app(ss), ss, **STOCK) as url:
        for _ in range(2):
            async with connect_client(url) as client:
                await client.send("echo_text", "hi")
                await client.expect("echo_text")
    warnings = [r for r in caplog.records if "not served by its own uvicorn protocols" in r.getMessage()]
    assert len(warnings) == 1


async def read_frames_until_close(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Read unmasked server frames (opcode, payload) from a raw socket until a close frame."""
    loop = asyncio.get_running_loop()
    buffer = b""
    frames: list[tuple[int, bytes]] = []
    while True:
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                length, start = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                length, start = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < start + length:
                break
            frames.append((buffer[0] & 0x0F, buffer[start : start + length]))
            buffer = buffer[start + length :]
            if frames[-1][0] == 0x8:
                return frames
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        if not chunk:
            raise AssertionError(f"the connection ended without a close frame after {frames}")
        buffer += chunk


@pytest.mark.parametrize("followed_by", [b"", b"x" * 300_000], ids=["alone", "then more data"])
async def test_a_text_message_that_is_not_utf8_is_closed_with_1007_quietly(
    followed_by: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url:
        sock = await stalled_client(url)
        try:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, masked(0x1, b"echo_text\x02\xff\xfe"))
            if followed_by:  # the client goes on sending: the close frame must still reach it
                await loop.sock_sendall(sock, masked(0x2, followed_by))
            frames = await read_frames_until_close(sock)
        finally:
            sock.close()
    opcode, payload = frames[-1]
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1007)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def masked(opcode: int, payload: bytes) -> bytes:
    """One client frame: final, masked."""
    mask = os.urandom(4)
    if len(payload) < 126:
        head = bytes([0x80 | opcode, 0x80 | len(payload)])
    elif len(payload) < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", len(payload))
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
