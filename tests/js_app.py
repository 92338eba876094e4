"""The app the JS client's integration tests (clients/js/test/integration.test.js, and
clients/js/test/calls-integration.test.js for calls both ways) run against.

.venv/bin/python -m tests.serve tests.js_app:app
"""

from __future__ import annotations

import json

import msgspec
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tests.call_app import Answer, Question, add_call_handlers
from typed_ss import CallError, Server, Socket

MAX_MESSAGE_SIZE = 4096

ss = Server(max_message_size=MAX_MESSAGE_SIZE)


class Chat(msgspec.Struct):
    room: str
    text: str


confirm = ss.event("confirm", Question, reply=Answer)


@ss.on("echo")
async def echo(sock: Socket, data: bytes) -> None:
    await sock.emit("echo", data)  # bytes: a B frame


@ss.on("echo_text")
async def echo_text(sock: Socket, text: str) -> None:
    await sock.emit("echo_text", text)  # str: an S frame


@ss.on("echo_chat")
async def echo_chat(sock: Socket, msg: Chat) -> None:
    await sock.emit("echo_chat", msg)  # a Struct: a J frame


@ss.on("écho")
async def echo_utf8(sock: Socket, data: bytes) -> None:
    await sock.emit("écho", data)  # a non-ASCII event name in a binary frame


@ss.on("whoami")
async def whoami(sock: Socket, _: bytes) -> None:
    await sock.emit("whoami", sock.id)


@ss.on("fail")
async def fail(sock: Socket, _: bytes) -> None:
    raise RuntimeError("this handler always fails")


@ss.on("join")
async def join(sock: Socket, room: str) -> None:
    await sock.join(room)
    await sock.emit("joined", room)


@ss.on("say")
async def say(sock: Socket, msg: Chat) -> None:
    await sock.roomcast(msg.room, "said", msg)


@ss.on("kick")
async def kick(sock: Socket, code: int) -> None:
    """Close this socket with the close code the client asks for."""
    await sock.close(code, "kicked")


# Calls (docs/protocol.md section 5): a handler's return value is its reply, in every wire kind.
add_call_handlers(ss)


@ss.on("ack")
async def ack(sock: Socket, data: str) -> None:
    await sock.emit("acked", data)


@ss.on("ask")
async def ask(sock: Socket, how: str) -> str:
    """Call the client back and reply with what it answered (as JSON text), or how the call failed."""
    try:
        if how == "confirm":
            answer = await confirm.call(sock, Question("tea?"), timeout=5.0)
            return json.dumps({"yes": answer.yes})
        if how == "greet":
            return await sock.call("greet", "who?", returns=str, timeout=5.0)
        if how == "sign":
            signed = await sock.call("sign", b"\x01\x02\x03", returns=bytes, timeout=5.0)
            return signed.hex()
        return json.dumps(await sock.call(how, {"n": 1}, returns=object, timeout=5.0))
    except CallError as exc:
        return json.dumps({"code": exc.code, "message": exc.message, "data": exc.data})


app = Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)
