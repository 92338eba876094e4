"""Test helpers: real uvicorn servers on free loopback ports and a small sac-sock client."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect

from typed_ss import NativeServer, Server, uvicorn_settings

__all__ = [
    "Client",
    "ServerFrame",
    "connect_client",
    "connect_clients",
    "eventually",
    "free_port",
    "free_ports",
    "free_socket",
    "parse_server_frame",
    "running",
    "stalled_client",
]


def free_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound to 127.0.0.1, on a port the OS picked unless ``port`` is given (to restart
    a server where it was), ready to hand to uvicorn."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports, free right now, for servers that must be told their port
    before they bind it (redis-server, a gRPC mesh, a subprocess's ``--port``). Whatever can take a
    socket should get one from :func:`free_socket` instead, and keep it: nothing can take that port.

    They are drawn at random below the kernel's ephemeral range. The kernel hands out ports in that
    range for every ``bind(port 0)`` (:func:`free_socket`, the stand-ins' servers) and as the source
    port of every outgoing connection, in this process and in every other one (the suite runs in
    several worker processes at once), so a port from there could be taken between this pick and
    the server's bind, or while a test restarts a server on its port. Below the range only another
    pick can take it, which the random draw makes unlikely; and a server that then cannot bind fails
    loudly (``RedisServer`` picks again). Each port is checked by binding it, all at once, so they
    differ.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(max(1024, low - 20_000), low))
    random.shuffle(candidates)
    probes: list[socket.socket] = []
    try:
        for port in candidates:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                probe.close()
                continue
            probes.append(probe)
            if len(probes) == count:
                return [p.getsockname()[1] for p in probes]
        raise RuntimeError(f"no {count} free ports below {low}")
    finally:
        for probe in probes:
            probe.close()


def free_port() -> int:
    """One port from :func:`free_ports`."""
    return free_ports(1)[0]


TRANSPORT: Final = os.environ.get("TYPED_SS_TRANSPORT", "asgi")
"""Which transport :func:`running` serves on: ``asgi`` (uvicorn) or ``native`` (``typed_ss.serve``'s);
``make test`` runs the live suites once with each."""


def native_path(app: Any, server: Server) -> str | None:
    """Where ``app`` serves ``server``: ``""`` when ``app`` is the server (every path), the path of
    its ``WebSocketRoute``, or ``None`` when the native transport cannot find it (a ``Mount``)."""
    if app is server:
        return ""
    for route in getattr(app, "routes", ()):
        if isinstance(route, WebSocketRoute) and route.app is server:
            return route.path
    return None


def natively_servable(app: Any, server: Server) -> bool:
    """Whether ``app`` is nothing but ``server`` at ``/socket`` (what :func:`tests.apps.make_app`
    makes), which the native transport serves without an ASGI app beside it."""
    return app is server or (
        isinstance(app, Starlette)
        and len(app.routes) == 1
        and native_path(app, server) == "/socket"
        and app.router.lifespan_context == server.lifespan  # no start-up code of the app's own
    )


@asynccontextmanager
async def running(app: Any, server: Server, **overrides: Any) -> AsyncIterator[str]:
    """Serve ``app`` on a free port, in this event loop; yields the ``ws://`` base URL and stops the
    server on exit. With ``TYPED_SS_TRANSPORT=native`` and no uvicorn ``overrides``, the server is
    served by the native transport at its path in ``app`` (:func:`native_path`), with the rest of the
    app beside it; otherwise by uvicorn with the recommended settings plus ``overrides``."""
    path = native_path(app, server)
    if TRANSPORT == "native" and not overrides and path is not None:
        # The app's other routes and its lifespan go to the app, served beside the native path.
        beside = None if natively_servable(app, server) else app
        async with NativeServer(server, port=0, path=path or None, app=beside) as native:
            yield f"ws://127.0.0.1:{native.port}"
        return
    sock = free_socket()
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's configuration (typed-ss's included) would stop typed-ss's records
    # from propagating to the root logger, where pytest's caplog reads them.
    settings = {**uvicorn_settings(server), "log_level": "warning", "log_config": None, **overrides}
    uv = uvicorn.Server(uvicorn.Config(app, **settings))
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        await eventually(lambda: uv.started or task.done(), within=10)
        if task.done():
            task.result()
        yield f"ws://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, timeout=15)
        sock.close()  # uvicorn closes it too; closing twice is harmless


async def eventually(
    condition: Callable[[], object | Awaitable[object]], within: float = 5.0, interval: float = 0.01
) -> None:
    """Wait until ``condition()`` is true, checking every ``interval`` seconds; fail the test after
    ``within`` seconds. ``condition`` may be a coroutine function (a probe over the network, an
    attempt that fails until the other side is back): each check awaits it. ``within`` is a deadline,
    never a bound the test asserts: the condition normally holds long before it."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class ServerFrame:
    """A server frame split the way the JS client splits it."""

    event: str
    letter: str
    payload: str | bytes
    binary: bool

    def json(self) -> Any:
        assert self.letter == "J", f"expected a J frame, got {self.letter!r}"
        return json.loads(self.payload)


def parse_server_frame(message: str | bytes) -> ServerFrame:
    if isinstance(message, str):
        soh = message.index("\x01")
        stx = message.index("\x02", soh)
        return ServerFrame(message[:soh], message[soh + 1 : stx], message[stx + 1 :], False)
    soh = message.index(b"\x01")
    stx = message.index(b"\x02", soh)
    return ServerFrame(message[:soh].decode(), message[soh + 1 : stx].decode(), message[stx + 1 :], True)


class Client:
    """A sac-sock client on a real WebSocket connection (the ``websockets`` library)."""

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.id: str = hello["id"]

    async def send(self, event: str, payload: str | bytes = "") -> None:
        """Send a client frame the way the original JS client does."""
        if isinstance(payload, bytes):
            await self.ws.send(event.encode() + b"\x02" + payload)
        else:
            await self.ws.send(f"{event}\x02{payload}")

    async def recv(self, within: float = 5.0) -> ServerFrame:
        return parse_server_frame(await asyncio.wait_for(self.ws.recv(), within))

    async def expect(self, event: str, within: float = 5.0) -> ServerFrame:
        frame = await self.recv(within)
        assert frame.event == event, f"expected event {event!r}, got {frame}"
        return frame

    async def nothing_within(self, seconds: float) -> None:
        """Assert that no frame arrives for ``seconds``."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {parse_server_frame(message)}")


@asynccontextmanager
async def connect_client(url: str, path: str = "/socket", **kwargs: Any) -> AsyncIterator[Client]:
    """Connect, offering ``sac-sock``, and read the ``__hello`` frame."""
    kwargs.setdefault("subprotocols", ["sac-sock"])
    kwargs.setdefault("open_timeout", 10)
    async with connect(url + path, **kwargs) as ws:
        hello = parse_server_frame(await asyncio.wait_for(ws.recv(), 5))
        assert hello.event == "__hello", hello
        yield Client(ws, hello.json())


@asynccontextmanager
async def connect_clients(url: str, count: int) -> AsyncIterator[list[Client]]:
    """``count`` connected clients, closed on exit."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect_client(url)) for _ in range(count)]


async def stalled_client(url: str, path: str = "/socket") -> socket.socket:
    """Open a WebSocket by hand and then never read from it again: a client that stopped reading
    (or vanished without closing). The caller closes the returned socket."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window, so the server's buffers fill with little data.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: sac-sock\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1024), 5)
        assert chunk, "the server closed the connection during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock
