"""The chat demo: the original Sacrificial-Socket chat, rebuilt on typed-ss.

Pick a name and a room; messages are roomcast to everyone in the room. The events are the original
example's (`join` with the room name as text, `message` with `{"Room", "Message"}` JSON), so the
original chat page works against this server too. Differences: joining a room leaves the previous
chat room but not the socket's own room (the original left that too, which broke socketcast), and
room members are told who joined and left.

    make demo                      # or: python -m examples.chat.app [--port 8080]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from typed_ss import Server, Socket, run

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parent.parent / "clients" / "js" / "ss.js"

ss = Server()


class Message(msgspec.Struct, rename="pascal"):
    """A chat line, in the original example's shape: ``{"Room": "...", "Message": "..."}``."""

    room: str
    message: str


class Presence(msgspec.Struct):
    """Sent to a room when someone joins or leaves it."""

    room: str
    members: int
    text: str


@ss.on("join")
async def join(sock: Socket, room: str) -> None:
    room = room.strip() or "global"
    for old in sock.rooms - {room}:
        await sock.leave(old)
        await ss.roomcast(old, "presence", Presence(old, ss.hub.room_size(old), "someone left"))
    await sock.join(room)
    await sock.emit("joinedRoom", room)
    await ss.roomcast(room, "presence", Presence(room, ss.hub.room_size(room), "someone joined"))


@ss.on("message")
async def message(sock: Socket, msg: Message) -> None:
    if sock.in_room(msg.room):
        await sock.roomcast(msg.room, "message", msg.message)


@ss.on_disconnect
async def disconnected(sock: Socket) -> None:
    for room in sock.rooms:
        # The socket is out of its rooms already, so the count is of those who stay.
        await ss.roomcast(room, "presence", Presence(room, ss.hub.room_size(room), "someone left"))


async def client_script(request: object) -> FileResponse:
    return FileResponse(CLIENT, media_type="text/javascript")


app = Starlette(
    routes=[
        WebSocketRoute("/socket", ss),
        Route("/ss.js", client_script),
        Mount("/", StaticFiles(directory=HERE / "static", html=True)),
    ],
    lifespan=ss.lifespan,
)


def main() -> None:
    parser = argparse.ArgumentParser(description="typed-ss chat demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"chat demo on http://{args.host}:{args.port}", flush=True)
    run(app, ss, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
