"""Apps the tests serve, in-process (``echo_server()``) or in a subprocess (``tests.apps:app``)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import msgspec
import pydantic
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute

from typed_ss import Presence, Server, Socket

log = logging.getLogger("tests.apps")


class Chat(msgspec.Struct):
    room: str
    text: str


class Profile(pydantic.BaseModel):
    name: str
    age: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


def make_app(ss: Server) -> Starlette:
    return Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)


def echo_server(**options: Any) -> Server:
    """A server with the handlers most tests use; ``options`` go to :class:`Server`."""
    ss = Server(**options)

    @ss.on("echo")
    async def echo(sock: Socket, data: bytes) -> None:
        await sock.emit("echo", data)

    @ss.on("echo_text")
    async def echo_text(sock: Socket, text: str) -> None:
        await sock.emit("echo_text", text)

    @ss.on("echo_chat")
    async def echo_chat(sock: Socket, msg: Chat) -> None:
        await sock.emit("echo_chat", msg)

    @ss.on("profile")
    async def profile(sock: Socket, p: Profile) -> None:
        await sock.emit("profile", p)

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)
        await sock.emit("joined", room)

    @ss.on("leave")
    async def leave(sock: Socket, room: str) -> None:
        await sock.leave(room)
        await sock.emit("left", room)

    @ss.on("roomcast")
    async def roomcast(sock: Socket, msg: Chat) -> None:
        await sock.roomcast(msg.room, "chat", msg)

    @ss.on("broadcast")
    async def broadcast(sock: Socket, text: str) -> None:
        await sock.broadcast("news", text)

    @ss.on("socketcast")
    async def socketcast(sock: Socket, target: str) -> None:
        await sock.socketcast(target, "direct", f"from {sock.id}")

    @ss.on("fail")
    async def fail(sock: Socket, data: bytes) -> None:
        raise RuntimeError("boom")

    @ss.on("hang")
    async def hang(sock: Socket, data: bytes) -> None:
        """A handler that never returns on its own (it waits for an event nobody sets)."""
        await sock.emit("hanging", data)
        await asyncio.Event().wait()

    return ss


class Card(msgspec.Struct):
    """The presence payload of :func:`presence_server`."""

    name: str


class User(msgspec.Struct, frozen=True):
    """The identity of :func:`presence_server`'s sockets."""

    name: str


def presence_server(**options: Any) -> Server[Any]:
    """:func:`echo_server` whose sockets say who they are in the ``?user=`` query (anonymous
    without), with presence tracked in rooms starting with ``chat:``; ``options`` go to
    :class:`~typed_ss.Presence`, and ``backend`` to the :class:`Server`."""
    backend = options.pop("backend", None)
    presence = Presence(Card, lambda sock: Card(sock.identity.name), **{"tracked": _chat_room, **options})
    ss = echo_server(backend=backend, presence=presence)

    @ss.authenticate
    async def auth(request: HTTPConnection) -> User:
        return User(request.query_params.get("user", "anon"))

    return ss


def _chat_room(room: str) -> bool:
    return room.startswith("chat:")


# The app `python -m tests.serve tests.apps:app` runs in a subprocess; it logs its hooks to stderr.
ss = echo_server()
app = make_app(ss)


@ss.on_connect
async def connected(sock: Socket) -> None:
    log.warning("connected %s", sock.id)


@ss.on_disconnect
async def disconnected(sock: Socket) -> None:
    log.warning("disconnected %s", sock.id)
