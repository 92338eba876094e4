"""Type tests for declared server events (checked by mypy, never run)."""

from __future__ import annotations

from typing import Any, Literal, assert_type

import msgspec

from typed_ss import Server, ServerEvent, Socket

ss = Server()


class ChatOut(msgspec.Struct):
    text: str


chat_out = ss.event("chat", ChatOut)
assert_type(chat_out, ServerEvent[ChatOut])
assert_type(ss.event("blob", bytes), ServerEvent[bytes])
assert_type(ss.event("anything", Literal["a", "b"]), ServerEvent[Any])
status: ServerEvent[Literal["on", "off"]] = ss.event("status", Literal["on", "off"])


async def uses(sock: Socket) -> None:
    await chat_out.emit(sock, ChatOut("hi"))
    await chat_out.roomcast("room", ChatOut("hi"))
    await chat_out.broadcast(ChatOut("hi"))
    await chat_out.socketcast(sock.id, ChatOut("hi"))
    await status.emit(sock, "on")
    await chat_out.emit(sock, "not a ChatOut")  # type: ignore[arg-type]
    await chat_out.broadcast({"text": "a dict is not a ChatOut"})  # type: ignore[arg-type]
    await chat_out.roomcast(1, ChatOut("room must be a str"))  # type: ignore[arg-type]
    await status.emit(sock, "maybe")  # type: ignore[arg-type]
    await sock.emit("untyped", {"still": "works"})


# A declared name looked up by name: emit and the casts send through the declaration.
assert_type(ss.check_event("chat"), ServerEvent[Any, Any] | None)
Server(allowed_hosts=["chat.example.com", "*.example.com"], allowed_origins=["https://app.example.com"])
