"""The app the multi-process Redis tests run in each uvicorn process (``tests.serve``).

TYPED_SS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 python -m tests.serve tests.backends.redis_app:app
"""

from __future__ import annotations

import os
from typing import Literal

import msgspec

from tests.apps import echo_server, make_app
from typed_ss import Socket
from typed_ss.backends.redis import RedisBackend


class Cast(msgspec.Struct):
    """Ask this instance to start a cast of ``text`` as a str, bytes or JSON payload."""

    kind: Literal["broadcast", "roomcast", "socketcast"]
    target: str
    letter: Literal["S", "B", "J"]
    text: str


class Relayed(msgspec.Struct):
    room: str
    publisher: str
    seq: int


ss = echo_server(backend=RedisBackend(os.environ["TYPED_SS_TEST_REDIS_URL"]))
app = make_app(ss)


@ss.on("cast")
async def cast(sock: Socket, request: Cast) -> None:
    data: object = {"S": request.text, "B": request.text.encode(), "J": {"text": request.text}}[
        request.letter
    ]
    if request.kind == "broadcast":
        await ss.broadcast("cast", data)
    elif request.kind == "roomcast":
        await ss.roomcast(request.target, "cast", data)
    else:
        await ss.socketcast(request.target, "cast", data)


@ss.on("relay")
async def relay(sock: Socket, message: Relayed) -> None:
    await sock.roomcast(message.room, "relayed", message)
