"""Static checks of the public API: type-checked by mypy (``make typecheck``), never run.

pytest collects only ``test_*.py``, so this module is never imported. Each ``assert_type`` states what
mypy must infer; each negative case sits on one line with ``# type: ignore[<code>]``, and because the
project runs mypy with ``warn_unused_ignores`` (part of ``strict``), a negative case that stopped
failing would turn into an "unused type: ignore" error.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, assert_type

import msgspec
import pydantic
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute

from typed_ss import AuthHook, Limits, Server, Socket, SocketHook
from typed_ss.handlers import HandlerSpec

ss = Server()


class Chat(msgspec.Struct):
    room: str
    text: str


class LoudChat(Chat):
    shout: bool = True


class Profile(pydantic.BaseModel):
    name: str
    age: int


# --- what must hold --------------------------------------------------------------------------------


@ss.on("echo")
async def echo(sock: Socket, data: bytes) -> None:
    assert_type(data, bytes)
    await sock.emit("echo", data)


@ss.on("join")
async def join(sock: Socket, room: str) -> None:
    assert_type(room, str)
    await sock.join(room)
    assert_type(sock.rooms, frozenset[str])
    assert_type(sock.in_room(room), bool)


@ss.on("chat")
async def chat(sock: Socket, msg: Chat) -> None:
    assert_type(msg, Chat)
    assert_type(sock.id, str)
    assert_type(sock.connected, bool)
    assert_type(sock.request, HTTPConnection)
    await sock.roomcast(msg.room, "chat", msg)


# The decorated function keeps a callable type, with the payload type mypy inferred from the annotation.
assert_type(chat, Callable[[Socket, Chat], Coroutine[Any, Any, None]])
assert_type(chat, Callable[[Socket, Chat], Coroutine[Any, Any, None]])
assert_type(echo, Callable[[Socket, bytes], Coroutine[Any, Any, None]])
assert_type(join, Callable[[Socket, str], Coroutine[Any, Any, None]])


@ss.on("chat2", Chat)
async def chat2(sock: Socket, msg: Chat) -> None:
    assert_type(msg, Chat)


assert_type(chat2, Callable[[Socket, Chat], Coroutine[Any, Any, None]])


# The explicit model may be narrower than the annotation (a subclass, or object): the handler accepts it.
@ss.on("loud", LoudChat)
async def loud(sock: Socket, msg: Chat) -> None:
    assert_type(msg, Chat)


assert_type(loud, Callable[[Socket, LoudChat], Coroutine[Any, Any, None]])


@ss.on("anything", Chat)
async def anything(sock: Socket, msg: object) -> None:
    assert_type(msg, object)


assert_type(anything, Callable[[Socket, Chat], Coroutine[Any, Any, None]])


@ss.on("profile")
async def profile(sock: Socket, p: Profile) -> None:
    assert_type(p, Profile)
    await sock.emit("profile", p)


@ss.on("numbers")
async def numbers(sock: Socket, values: list[int]) -> None:
    assert_type(values, list[int])


assert_type(numbers, Callable[[Socket, list[int]], Coroutine[Any, Any, None]])


@ss.on_connect
async def connected(sock: Socket) -> None:
    await sock.emit("welcome", {"id": sock.id})


@ss.on_disconnect
async def disconnected(sock: Socket) -> None:
    assert_type(sock.rooms, frozenset[str])


@ss.authenticate
async def auth(request: HTTPConnection) -> str | None:
    return request.query_params.get("token")


assert_type(connected, SocketHook)
assert_type(disconnected, SocketHook)
assert_type(auth, AuthHook)


async def server_side() -> None:
    assert_type(ss.sockets, Mapping[str, Socket])
    assert_type(ss.get_socket("id"), Socket | None)
    assert_type(ss.handlers, Mapping[str, HandlerSpec])
    assert_type(ss.limits, Limits)
    assert_type(ss.limits.max_message_size, int)
    await ss.broadcast("news", {"n": 1})
    await ss.roomcast("lobby", "news", b"raw")
    await ss.socketcast("id", "direct", "text")
    await ss.shutdown()


app = Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)


# --- what must fail --------------------------------------------------------------------------------


@ss.on("contradicts", Chat)  # type: ignore[arg-type]
async def contradicts(sock: Socket, n: int) -> None: ...


@ss.on("subclass_annotation", Chat)  # type: ignore[arg-type]
async def subclass_annotation(sock: Socket, msg: LoudChat) -> None: ...


@ss.on("sync")  # type: ignore[arg-type]
def sync_handler(sock: Socket, data: str) -> None: ...


@ss.on("one_param")  # type: ignore[arg-type]
async def one_param(sock: Socket) -> None: ...


@ss.on("three_params")  # type: ignore[arg-type]
async def three_params(sock: Socket, data: str, extra: int) -> None: ...


@ss.on("returns_int")  # a handler's return value is its reply to a call
async def returns_int(sock: Socket, data: str) -> int:
    return 1


assert_type(returns_int, Callable[[Socket, str], Coroutine[Any, Any, int]])


@ss.on("returns_wrong")
async def returns_wrong(sock: Socket, data: str) -> int:
    return "not an int"  # type: ignore[return-value]


@ss.on("not_a_socket")  # type: ignore[arg-type]
async def not_a_socket(sock: str, data: str) -> None: ...


@ss.on_connect  # type: ignore[arg-type]
async def connect_takes_str(sock: str) -> None: ...


@ss.on_disconnect  # type: ignore[arg-type]
def sync_disconnect(sock: Socket) -> None: ...


async def wrong_calls(sock: Socket) -> None:
    await sock.emit(1, "x")  # type: ignore[arg-type]
    await sock.join(1)  # type: ignore[arg-type]
    await ss.broadcast(b"news", "x")  # type: ignore[arg-type]
    sock.emit("x", "y")  # type: ignore[unused-coroutine]


ss.on(1)  # type: ignore[call-overload]
ss.on("x", Chat, "extra")  # type: ignore[call-overload]


# --- a typed identity: Server[User] -----------------------------------------------------------------


class User(msgspec.Struct):
    name: str


class Admin(msgspec.Struct):
    level: int


typed = Server[User]()
assert_type(typed, Server[User])
assert_type(Server(), Server[Any])


@typed.authenticate
async def who(request: HTTPConnection) -> User | None:
    return User(request.headers.get("x-user", "anon"))


@typed.on("whoami")
async def whoami(sock: Socket[User], data: str) -> None:
    assert_type(sock.identity, User)
    assert_type(sock.identity.name, str)


@typed.on_connect
async def greet(sock: Socket[User]) -> None:
    assert_type(sock.identity, User)


@typed.on_disconnect
async def farewell(sock: Socket) -> None:  # a plain Socket (Socket[Any]) is accepted everywhere
    assert_type(sock.identity, Any)


def lookups(found: Socket[User] | None) -> None:
    assert_type(typed.get_socket("id"), Socket[User] | None)
    assert_type(typed.sockets, Mapping[str, Socket[User]])


typed.authenticate(who)
typed.mount(Starlette(), "/socket")
typed.mount(FastAPI(), "/socket")


async def not_a_user(request: HTTPConnection) -> Admin | None: ...


async def admin_handler(sock: Socket[Admin], data: str) -> None: ...


async def admin_hook(sock: Socket[Admin]) -> None: ...


typed.authenticate(not_a_user)  # type: ignore[arg-type]
typed.on("admin")(admin_handler)  # type: ignore[arg-type]
typed.on_connect(admin_hook)  # type: ignore[arg-type]
typed.mount(object(), "/socket")  # type: ignore[arg-type]
