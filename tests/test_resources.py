"""What a client can make the server hold is bounded: a server in its own process, measured from outside.

Each test attacks a server started with typed-ss's recommended settings (``tests.serve``) and checks
the bound that docs/running.md documents: a ping flood from a client that never reads, clients that
stop reading while broadcasts pile up (evicted with 4008 and their connections aborted), TCP
connections that never send a complete upgrade request (closed after ``handshake_timeout``), and the
connection cap. The loops that attack are bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

import pytest
from websockets.exceptions import InvalidStatus

from tests.apps import echo_server, make_app
from tests.server_process import ServerProcess, server_process
from tests.support import Client, connect_client, eventually, running, stalled_client

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

MiB = 1024 * 1024
APP = "tests.resource_app:ss"
PING = bytes([0x89, 0x80 | 125]) + os.urandom(4) + os.urandom(125)
"""A masked ping frame with the largest payload a ping may carry (125 bytes), as a client sends it:
the server answers each with a pong that echoes the payload."""


async def echo_works(client: Client, text: str) -> None:
    await client.send("echo_text", text)
    assert (await client.expect("echo_text", within=10)).payload == text


async def settle(server: ServerProcess, control: Client) -> int:
    """The server's resident memory once it has served a round trip."""
    await echo_works(control, "settle")
    return server.rss()


def flood(sock: socket.socket, frame: bytes, *, max_frames: int, max_seconds: float) -> int:
    """Send ``frame`` as often as the socket takes it without blocking, within both bounds; returns
    how many frames went out (a server that stops reading makes the socket block)."""
    batch = frame * 4096
    sent = 0
    deadline = time.monotonic() + max_seconds
    stalled_since: float | None = None
    while sent < max_frames * len(frame) and time.monotonic() < deadline:
        try:
            # Continue where the last send stopped, so that frames stay whole.
            offset = sent % len(batch)
            sent += sock.send(batch[offset:])
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 1.0:
                break  # the server has stopped reading: the flood cannot go on
            time.sleep(0.01)
    return sent // len(frame)


async def test_a_ping_flood_from_a_client_that_never_reads_does_not_grow_the_server() -> None:
    async with server_process(APP) as server, connect_client(server.url) as control:
        before = await settle(server, control)
        attacker = await stalled_client(server.url)
        try:
            # Unbounded, 2 million pings grew uvicorn's write buffer by about 250 MB.
            pings = await asyncio.to_thread(flood, attacker, PING, max_frames=2_000_000, max_seconds=10)
            await echo_works(control, "still here")
            growth = server.rss() - before
        finally:
            attacker.close()
    assert pings > 0
    assert growth < 16 * MiB, f"{pings} pings grew the server by {growth / MiB:.1f} MiB"


async def test_clients_that_stop_reading_are_evicted_and_their_connections_released() -> None:
    async with server_process(APP) as server, connect_client(server.url) as control:
        before = await settle(server, control)
        sockets_before = server.sockets()
        stalled = [await stalled_client(server.url) for _ in range(20)]
        try:
            await eventually(lambda: server.sockets() == sockets_before + 20)
            await control.send("flood", "64")  # 4 MiB to every socket; the stalled ones take 256 KiB
            while (frame := await control.recv(within=30)).event != "flooded":
                assert frame.event == "chunk"
            # Evicted means gone: the server aborts each connection although the clients still hold
            # theirs open and never read, so its sockets and buffers are released.
            await eventually(lambda: server.sockets() == sockets_before, within=30)
            await echo_works(control, "still here")
            growth = server.rss() - before
            for sock in stalled:
                await ended_by_server(sock)
        finally:
            for sock in stalled:
                sock.close()
    assert growth < 32 * MiB, f"20 evicted clients left the server {growth / MiB:.1f} MiB bigger"


async def ended_by_server(sock: socket.socket) -> None:
    """Read what the server sent before it ended the connection, until the end shows: a reset (an
    abort) or the end of the stream. Fails if the connection is still open after 10 s of silence."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionResetError):
        while await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
            pass


async def test_connections_that_never_finish_their_upgrade_request_are_closed() -> None:
    async with server_process(APP) as server, connect_client(server.url) as control:
        await settle(server, control)
        sockets_before = server.sockets()
        loop = asyncio.get_running_loop()
        idle: list[socket.socket] = []
        try:
            for n in range(100):
                sock = socket.socket()
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", server.port))
                if n % 2:  # half send a partial request head and then nothing
                    await loop.sock_sendall(sock, b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                idle.append(sock)
            await eventually(lambda: server.sockets() >= sockets_before + 100)
            # handshake_timeout is 1 s in this app: every one of them is closed by the server.
            await eventually(lambda: server.sockets() == sockets_before, within=20)
            for sock in idle:
                with contextlib.suppress(ConnectionResetError):
                    assert await asyncio.wait_for(loop.sock_recv(sock, 1024), 10) == b""
            await echo_works(control, "still here")
        finally:
            for sock in idle:
                sock.close()


async def test_connections_past_max_connections_are_refused_with_503_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss = echo_server(max_connections=3)
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as first, connect_client(url), connect_client(url):
            with pytest.raises(InvalidStatus) as refused:
                async with connect_client(url):
                    pass
            assert refused.value.response.status_code == 503
            assert any("max_connections (3) reached" in r.getMessage() for r in caplog.records)
            assert all(r.levelname != "ERROR" for r in caplog.records)
            await echo_works(first, "still here")
        await eventually(lambda: not ss.sockets)
        async with connect_client(url) as again:
            await echo_works(again, "room again")
