"""The chat demo, typed end to end: msgspec payloads on the server, a generated client in the browser.

The server declares what it sends with ``ss.event`` and what it handles with annotated handlers, so
mypy checks every payload on this side. ``typed-ss gen-client`` turns that contract into
``static/generated/ss.client.js`` and ``ss.client.d.ts``, which the page's ``static/app.js`` imports
(checked by tsc with ``// @ts-check``). ``make test`` fails when the generated files are stale;
``make codegen`` regenerates them:

    typed-ss gen-client examples.typed_chat.app:ss --out examples/typed_chat/static/generated --lang js

The server refuses a page generated from an older contract (``contract_check="refuse"``, close code
4010); the page then asks for a reload instead of reconnecting forever.

    python -m examples.typed_chat.app [--port 8080]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles

from typed_ss import Server, Socket, run

HERE = Path(__file__).resolve().parent

ss = Server(contract_check="refuse")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class Join(msgspec.Struct):
    """Join a room (leaving the previous one) under a name."""

    room: RoomName
    name: Name = "guest"


class Say(msgspec.Struct):
    """A line for the room the sender is in."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class Said(msgspec.Struct):
    """A line as the room receives it."""

    room: str
    author: str
    text: str
    sent_at: datetime


class Joined(msgspec.Struct):
    """Sent to the socket that joined."""

    room: str
    name: str


class Presence(msgspec.Struct):
    """Sent to a room when someone joins or leaves it."""

    room: str
    members: int
    who: str
    joined: bool


class Activity(msgspec.Struct):
    """Someone in the room started or stopped typing."""

    who: str
    status: Literal["typing", "idle"]


said = ss.event("said", Said)
joined = ss.event("joined", Joined)
presence = ss.event("presence", Presence)
activity = ss.event("activity", Activity)

names: dict[str, str] = {}
"""Each connected socket's name, by socket id."""


async def leave_rooms(sock: Socket, keep: str | None = None) -> None:
    for room in sock.rooms - {keep}:
        await sock.leave(room)
        await presence.roomcast(room, Presence(room, ss.hub.room_size(room), names[sock.id], False))


@ss.on("join")
async def join(sock: Socket, request: Join) -> None:
    """Join a room under a name; the room is told."""
    names[sock.id] = request.name
    await leave_rooms(sock, keep=request.room)
    await sock.join(request.room)
    await joined.emit(sock, Joined(request.room, request.name))
    await presence.roomcast(
        request.room, Presence(request.room, ss.hub.room_size(request.room), request.name, True)
    )


@ss.on("say")
async def say(sock: Socket, line: Say) -> None:
    """Send a line to the sender's room."""
    for room in sock.rooms:
        await said.roomcast(room, Said(room, names.get(sock.id, "guest"), line.text, datetime.now(UTC)))


@ss.on("status")
async def status(sock: Socket, value: Literal["typing", "idle"]) -> None:
    """Typing or not: a JSON string payload, which the generated client sends quoted."""
    for room in sock.rooms:
        await activity.roomcast(room, Activity(names.get(sock.id, "guest"), value))


@ss.on_disconnect
async def disconnected(sock: Socket) -> None:
    for room in sock.rooms:  # the socket is out of its rooms already: the count is of those who stay
        who = names.get(sock.id, "guest")
        await presence.roomcast(room, Presence(room, ss.hub.room_size(room), who, False))
    names.pop(sock.id, None)


app = Starlette(
    routes=[
        WebSocketRoute("/socket", ss),
        Mount("/", StaticFiles(directory=HERE / "static", html=True)),
    ],
    lifespan=ss.lifespan,
)


def main() -> None:
    parser = argparse.ArgumentParser(description="typed-ss typed chat demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"typed chat demo on http://{args.host}:{args.port}", flush=True)
    run(app, ss, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
