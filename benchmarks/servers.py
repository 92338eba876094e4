"""The servers under test, each doing the same work, and how one is served in its own process.

    python -m benchmarks.servers KIND [--redis URL]

prints ``PORT <n>`` once the OS-picked port on 127.0.0.1 is bound, then serves until SIGINT or
SIGTERM. Every ASGI kind is served under uvicorn with typed-ss's recommended settings
(:func:`typed_ss.uvicorn_settings`), the same for each; only the log level is lowered, for every kind
alike, so that 10,000 connects are not 10,000 log lines. ``typed-ss-native`` is served by
:class:`typed_ss.NativeServer` on uvloop, as :func:`typed_ss.serve` does (:func:`native_settings`), and
``typed-ss-recovery`` the same way.

Every kind offers the same five operations, each in its own wire format (see
:mod:`benchmarks.loadgen`): ``echo`` (send the payload back to the sender), ``bc`` (broadcast the
payload to every connection), ``join`` (join the room named by the payload, then answer ``joined``),
``rc`` (payload ``"<room> <text>"``: send it to every member of the room) and ``add``, a call (the
request carries an id; the reply, the payload returned, carries the same id). With ``--redis``,
broadcasts also reach the connections of every other instance on the same Redis.

- ``typed-ss``: a :class:`typed_ss.Server` mounted in Starlette as the README shows, with typed
  ``str`` handlers; ``RedisBackend`` for ``--redis``. ``add`` is a handler that returns its reply
  (a call, docs/protocol.md section 5).
- ``typed-ss-native``: the same :class:`typed_ss.Server` and handlers (:func:`typed_ss_server`),
  served on typed-ss's native transport (picows, no ASGI) instead of uvicorn; the same wire.
- ``typed-ss-recovery``: ``typed-ss-native`` exactly, with connection state recovery on
  (``Server(recovery=Recovery())``, the defaults; docs/recovery.md): every cast is kept in the
  history and carries its offset flag. What recovery costs, against ``typed-ss-native``
  (:data:`VARIANTS`). With ``--redis`` the history is kept in Redis (docs/recovery.md, "Where the
  history lives"): the redis scenario measures what that costs.
- ``asgi``: a raw ASGI 3 application (``async def app(scope, receive, send)``, no framework), the
  floor an ASGI library stands on: one letter of command, no framing, no validation; a hand-written
  Redis pub/sub bridge for ``--redis``. Its call is hand-written too: ``c<id> 0x02 <payload>``
  answered with ``r<id> 0x02 <payload>``.
- ``starlette``: the same endpoint (one :class:`_Bare` serves both: the same wire, operations and
  bridge) as a bare Starlette WebSocket route: what Starlette's routing and ``WebSocket`` add.
- ``socketio``: python-socketio's ``AsyncServer(async_mode="asgi")`` in its ``ASGIApp``, its
  documented ASGI deployment; ``AsyncRedisManager`` for ``--redis``. ``add`` returns its value, which
  python-socketio sends as the ack of an event the client emitted with an ack id (its ``call``).
- ``go``: a Go server of the sac-sock wire on gorilla/websocket, for the Go original
  (:mod:`benchmarks.goserver`, ``benchmarks/go/main.go``): the same wire and operations as typed-ss's;
  no Redis backend. It is a binary built at bench time, not served from here: the orchestrator runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from benchmarks.loadgen import TYPED_SS_KINDS
from typed_ss import NativeServer, Recovery, Server, Socket, uvicorn_settings
from typed_ss.backends.base import Backend
from typed_ss.errors import CloseCode
from typed_ss.native.server import DEFAULT_READ_BUFFER

__all__ = [
    "KINDS",
    "NATIVE_KINDS",
    "OURS",
    "PYTHON_KINDS",
    "VARIANTS",
    "build_app",
    "call_reply",
    "native_settings",
    "serve_settings",
    "typed_ss_server",
]

KINDS = ("typed-ss", "typed-ss-native", "typed-ss-recovery", "asgi", "starlette", "socketio", "go")
"""Every server kind, in the order the reports list them."""
PYTHON_KINDS = tuple(kind for kind in KINDS if kind != "go")
"""The kinds served from this module (``go`` is a binary: :mod:`benchmarks.goserver`)."""
OURS = tuple(kind for kind in KINDS if kind in TYPED_SS_KINDS)
"""The kinds that are typed-ss (on uvicorn, on the native transport, and that with recovery on): the
reports divide their figures by the other kinds', the peers' (but a variant's: :data:`VARIANTS`)."""
VARIANTS = {"typed-ss-recovery": "typed-ss-native"}
"""A typed-ss kind that is another with one feature on, and that kind: the reports divide the
variant's figures by that kind's only (what the feature costs), never by the peers'."""
NATIVE_KINDS = ("typed-ss-native", "typed-ss-recovery")
"""The kinds served by :class:`typed_ss.NativeServer` (:func:`serve_native`), not by uvicorn."""
BACKLOG = 4096
"""Every kind's listening backlog: 50 concurrent handshakes and more wait there."""
MAX_CONNECTIONS = 20_000
"""typed-ss's ``max_connections``: the idle scenario holds 10,000 connections, the default, plus its
probes."""


def serve_settings() -> dict[str, Any]:
    """The uvicorn settings every ASGI kind is served with: typed-ss's recommended ones (default
    limits)."""
    return {**uvicorn_settings(Server()), "log_level": "warning"}


def native_settings() -> dict[str, Any]:
    """How ``typed-ss-native`` is served: :class:`typed_ss.NativeServer`'s defaults but the backlog
    (the ASGI kinds' listening socket's), on uvloop as :func:`typed_ss.serve` runs it."""
    return {
        "backlog": BACKLOG,
        "read_buffer_size": DEFAULT_READ_BUFFER,
        "close_timeout": 5.0,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio",
    }


# --- typed-ss --------------------------------------------------------------------------------------


def typed_ss_server(
    redis_url: str | None, *, recovery: bool = False, backend: Backend | None = None
) -> Server:
    """The typed-ss server and its handlers, the same for every typed-ss kind; ``recovery``: with
    connection state recovery on, at its defaults (``typed-ss-recovery``); ``backend``: on this one
    instead of ``RedisBackend(redis_url)`` (the scale scenario's, :mod:`benchmarks.scale`)."""
    if redis_url is not None:
        if backend is not None:
            raise ValueError("typed_ss_server takes redis_url or backend, not both")
        from typed_ss.backends.redis import RedisBackend

        backend = RedisBackend(redis_url, group="bench")
    ss = Server(backend=backend, max_connections=MAX_CONNECTIONS, recovery=Recovery() if recovery else None)

    @ss.on("echo")
    async def echo(sock: Socket, data: str) -> None:
        await sock.emit("echo", data)

    @ss.on("bc")
    async def broadcast(sock: Socket, data: str) -> None:
        await ss.broadcast("bc", data)

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)
        await sock.emit("joined", room)

    @ss.on("rc")
    async def roomcast(sock: Socket, data: str) -> None:
        await ss.roomcast(data.partition(" ")[0], "rc", data)

    @ss.on("add")
    async def add(sock: Socket, data: str) -> str:
        return data  # the reply to the call

    return ss


def typed_ss_app(redis_url: str | None) -> Any:
    """``typed-ss``: the server mounted in Starlette, as the README shows (served by uvicorn)."""
    ss = typed_ss_server(redis_url)
    return Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)


async def serve_native(redis_url: str | None, *, recovery: bool = False) -> None:
    """``typed-ss-native`` (``typed-ss-recovery`` with ``recovery``): the server on the native
    transport, on an OS-picked port of 127.0.0.1, until SIGINT or SIGTERM; then every socket is closed
    with 1012, as :func:`typed_ss.serve` does."""
    await serve_natively(typed_ss_server(redis_url, recovery=recovery))


async def serve_natively(ss: Server) -> None:
    """``ss`` on the native transport with the recommended settings, on an OS-picked port of
    127.0.0.1 (printed as ``PORT <n>``), until SIGINT or SIGTERM; then every socket is closed with 1012."""
    settings = native_settings()
    native = NativeServer(
        ss,
        host="127.0.0.1",
        port=0,
        path="/socket",
        backlog=settings["backlog"],
        read_buffer_size=settings["read_buffer_size"],
        close_timeout=settings["close_timeout"],
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await native.start()
    print(f"PORT {native.port}", flush=True)
    await stop.wait()
    await native.stop(CloseCode.SERVICE_RESTART)


# --- the bare endpoints: raw ASGI and Starlette ----------------------------------------------------

SendText = Callable[[str], Awaitable[None]]
"""Sends one text message to one connection: how the bare endpoints hold their connections."""
Message = dict[str, Any]
"""An ASGI event or message."""
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def call_reply(message: str) -> str:
    """The reply to a bare call, ``c<id> 0x02 <payload>``: ``r<id> 0x02 <payload>``."""
    call_id, _, data = message[1:].partition("\x02")
    return f"r{call_id}\x02{data}"


class _Bare:
    """What both bare endpoints share: every connection (by its :data:`SendText`), rooms of them, the
    operations that reach other connections (broadcast, join, roomcast) and the hand-written Redis
    pub/sub bridge. Each endpoint answers echo and call itself, in line, as a hand-written endpoint
    would: the callgrind counts measure those per message, and a shared call would add to them."""

    def __init__(self, redis_url: str | None) -> None:
        self.clients: set[SendText] = set()
        self.rooms: dict[str, set[SendText]] = {}
        self.redis_url = redis_url
        self.instance = secrets.token_hex(4)
        self.redis: Any = None

    async def fan_out(self, clients: set[SendText], message: str) -> None:
        for send_text in list(clients):
            with contextlib.suppress(Exception):  # a client that left meanwhile
                await send_text(message)

    async def group_command(self, send_text: SendText, message: str, joined: list[str]) -> None:
        """Carry out a broadcast, join or roomcast of the connection ``send_text`` reaches (``joined``:
        its rooms); any other message is ignored."""
        command = message[:1]
        if command == "b":
            await self.fan_out(self.clients, message)
            if self.redis is not None:
                await self.redis.publish("bench", f"{self.instance}|{message}")
        elif command == "j":
            room = message[1:]
            self.rooms.setdefault(room, set()).add(send_text)
            joined.append(room)
            await send_text("j" + room)
        elif command == "r":
            await self.fan_out(self.rooms.get(message[1:].partition(" ")[0], set()), message)

    def leave(self, send_text: SendText, joined: list[str]) -> None:
        """Forget a connection that ended, and the rooms it had ``joined``."""
        self.clients.discard(send_text)
        for room in joined:
            self.rooms[room].discard(send_text)

    async def relay(self) -> None:
        """Deliver the other instances' broadcasts to the local connections."""
        pubsub = self.redis.pubsub()
        await pubsub.subscribe("bench")
        async for item in pubsub.listen():
            if item["type"] != "message":
                continue
            origin, _, message = item["data"].decode().partition("|")
            if origin != self.instance:
                await self.fan_out(self.clients, message)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Connected to Redis (with ``--redis``) while the server runs."""
        if self.redis_url is None:
            yield
            return
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(self.redis_url)
        relay = asyncio.create_task(self.relay())
        try:
            yield
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            await self.redis.aclose()


def starlette_app(redis_url: str | None) -> Any:
    """``starlette``: the bare endpoint as a Starlette WebSocket route."""
    bare = _Bare(redis_url)

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        send_text: SendText = ws.send_text
        bare.clients.add(send_text)
        joined: list[str] = []
        try:
            while True:
                message = await ws.receive_text()
                command = message[:1]
                if command == "e":
                    await ws.send_text(message)
                elif command == "c":
                    await ws.send_text(call_reply(message))
                else:
                    await bare.group_command(send_text, message, joined)
        except WebSocketDisconnect:
            pass
        finally:
            bare.leave(send_text, joined)

    return Starlette(routes=[WebSocketRoute("/socket", endpoint)], lifespan=bare.lifespan)


def asgi_app(redis_url: str | None) -> Any:
    """``asgi``: the bare endpoint as a raw ASGI 3 application, no framework: a WebSocket at
    ``/socket``, the lifespan (for the Redis bridge), and 404 for anything else."""
    bare = _Bare(redis_url)

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def websocket(scope: Message, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        if scope["path"] != "/socket":
            await send({"type": "websocket.close", "code": 1000})  # the handshake refused (403)
            return
        await send({"type": "websocket.accept"})

        async def send_text(text: str) -> None:
            await send({"type": "websocket.send", "text": text})

        bare.clients.add(send_text)
        joined: list[str] = []
        try:
            while True:
                event = await receive()
                if event["type"] != "websocket.receive":  # websocket.disconnect
                    return
                message = event["text"]
                command = message[:1]
                if command == "e":
                    await send({"type": "websocket.send", "text": message})
                elif command == "c":
                    await send({"type": "websocket.send", "text": call_reply(message)})
                else:
                    await bare.group_command(send_text, message, joined)
        finally:
            bare.leave(send_text, joined)

    async def lifespan(receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with bare.lifespan():
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})

    return app


# --- python-socketio -------------------------------------------------------------------------------


def socketio_app(redis_url: str | None) -> Any:
    import socketio

    manager = socketio.AsyncRedisManager(redis_url) if redis_url is not None else None
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)

    async def echo(sid: str, data: str) -> None:
        await sio.emit("echo", data, to=sid)

    async def broadcast(sid: str, data: str) -> None:
        await sio.emit("bc", data)

    async def join(sid: str, room: str) -> None:
        await sio.enter_room(sid, room)
        await sio.emit("joined", room, to=sid)

    async def roomcast(sid: str, data: str) -> None:
        await sio.emit("rc", data, room=data.partition(" ")[0])

    async def add(sid: str, data: str) -> str:
        return data  # python-socketio sends a handler's return value as the ack

    # The call form, not the decorator: socketio has no type information.
    handlers: dict[str, Any] = {"echo": echo, "bc": broadcast, "join": join, "rc": roomcast, "add": add}
    for event, handler in handlers.items():
        sio.on(event, handler=handler)
    return socketio.ASGIApp(sio)


def build_app(kind: str, redis_url: str | None = None) -> Any:
    """The ASGI app of server ``kind`` (one of :data:`KINDS` but the :data:`NATIVE_KINDS`, which have
    none: :func:`serve_native`, and ``go``)."""
    if kind == "typed-ss":
        return typed_ss_app(redis_url)
    if kind == "asgi":
        return asgi_app(redis_url)
    if kind == "starlette":
        return starlette_app(redis_url)
    if kind == "socketio":
        return socketio_app(redis_url)
    if kind in NATIVE_KINDS:
        raise ValueError(f"{kind} is no ASGI app: serve_native() serves it")
    if kind == "go":
        raise ValueError("go is no ASGI app: it is a binary (benchmarks.goserver)")
    raise ValueError(f"unknown server kind {kind!r}; one of {', '.join(KINDS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=PYTHON_KINDS)
    parser.add_argument("--redis", help="a redis:// URL: broadcasts reach the other instances on it")
    args = parser.parse_args()
    if args.kind in NATIVE_KINDS:
        runner: Any = asyncio.run
        if importlib.util.find_spec("uvloop") is not None:
            import uvloop

            runner = uvloop.run
        runner(serve_native(args.redis, recovery=args.kind == "typed-ss-recovery"))
        return
    app = build_app(args.kind, args.redis)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)  # 50 concurrent handshakes and more wait here while uvicorn starts
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, **serve_settings())).run(sockets=[sock])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
