"""The smallest typed-ss app: echo, rooms and a validated chat message.

python -m examples.quickstart        # serves ws://127.0.0.1:8080/socket
"""

import msgspec
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from typed_ss import Server, Socket, run

ss = Server()


class Chat(msgspec.Struct):
    room: str
    text: str


@ss.on_connect
async def connected(sock: Socket) -> None: ...


@ss.on_disconnect
async def disconnected(sock: Socket) -> None: ...


@ss.on("echo")
async def echo(sock: Socket, data: bytes) -> None:
    await sock.emit("echo", data)


@ss.on("join")
async def join(sock: Socket, room: str) -> None:
    await sock.join(room)


@ss.on("chat")
async def chat(sock: Socket, msg: Chat) -> None:
    await sock.roomcast(msg.room, "chat", msg)


app = Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)

if __name__ == "__main__":
    run(app, ss)
