"""The chat demo on several instances sharing one MongoDB: a message sent on any instance reaches the
room's members on every instance.

The casts travel through a capped collection that every instance tails (``typed_ss.backends.mongo``);
the collection is created on first start. Pick a name and a room; messages are roomcast to the room,
and members are told when someone joins or leaves, and on which instance. Each page shows the
instance it is connected to, and each line the instance it was sent on.

    python -m examples.mongo_multihome.app --port 8081 --mongo mongodb://127.0.0.1:27017
    python -m examples.mongo_multihome.app --port 8082 --mongo mongodb://127.0.0.1:27017

``--mongo`` defaults to ``$MONGO_URL``. ``GET /health`` returns ``ss.health()``: HTTP 503 until the
instance reads from MongoDB, and the backend's reconnects and gaps under ``multihome.backend``.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from typed_ss import InvalidName, LimitExceeded, Server, Socket, run
from typed_ss.backends.mongo import MongoBackend

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parent.parent / "clients" / "js" / "ss.js"
STYLE = HERE.parent / "chat" / "static" / "style.css"

RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class Message(msgspec.Struct, rename="pascal"):
    """A chat line from a page: ``{"Room": "...", "Message": "..."}``, as in the chat demo."""

    room: RoomName
    message: Annotated[str, msgspec.Meta(max_length=2000)]


class Line(msgspec.Struct):
    """A chat line as the room's members get it: with the instance it was sent on."""

    room: str
    text: str
    instance: str


class Presence(msgspec.Struct):
    """Someone joined or left ``room`` on ``instance``."""

    room: str
    text: str
    instance: str


class Welcome(msgspec.Struct):
    instance: str
    socket: str


def create_app(
    mongo_url: str,
    *,
    instance: str | None = None,
    database: str = "typed_ss",
    collection: str = "chat",
) -> tuple[Starlette, Server]:
    """One instance: the Starlette app (page, ``/ss.js``, ``/health``, ``/socket``) and its server,
    linked to the other instances through the capped collection ``database.collection``."""
    name = instance or secrets.token_hex(3)
    ss = Server(backend=MongoBackend(mongo_url, database=database, collection=collection))

    @ss.on_connect
    async def welcome(sock: Socket) -> None:
        await sock.emit("welcome", Welcome(name, sock.id))

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        room = room.strip() or "global"
        try:
            await sock.join(room)  # first: a refused room name leaves the old rooms as they were
        except (InvalidName, LimitExceeded) as exc:
            await sock.emit("refused", f"cannot join {room!r}: {exc}")
            return
        for old in sock.rooms - {room}:
            await sock.leave(old)
            await ss.roomcast(old, "presence", Presence(old, "someone left", name))
        await sock.emit("joinedRoom", room)
        await ss.roomcast(room, "presence", Presence(room, "someone joined", name))

    @ss.on("message")
    async def message(sock: Socket, msg: Message) -> None:
        if sock.in_room(msg.room):
            await sock.roomcast(msg.room, "message", Line(msg.room, msg.message, name))

    @ss.on_disconnect
    async def left(sock: Socket) -> None:
        for room in sock.rooms:
            await ss.roomcast(room, "presence", Presence(room, "someone left", name))

    async def health(request: Request) -> Response:
        state = ss.health()
        linked = state.multihome is not None and state.multihome.backend.state == "connected"
        return Response(
            msgspec.json.encode(state),
            status_code=200 if state.accepting and linked else 503,
            media_type="application/json",
        )

    async def client_script(request: Request) -> FileResponse:
        return FileResponse(CLIENT, media_type="text/javascript")

    async def style(request: Request) -> FileResponse:
        return FileResponse(STYLE, media_type="text/css")

    app = Starlette(
        routes=[
            WebSocketRoute("/socket", ss),
            Route("/ss.js", client_script),
            Route("/style.css", style),
            Route("/health", health),
            Mount("/", StaticFiles(directory=HERE / "static", html=True)),
        ],
        lifespan=ss.lifespan,
    )
    return app, ss


# For `MONGO_URL=mongodb://... uvicorn examples.mongo_multihome.app:app`: nothing connects before startup.
app, ss = create_app(os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27017"))


def redacted(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description="typed-ss chat over MongoDB (one instance)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--mongo",
        default=os.environ.get("MONGO_URL"),
        help="the MongoDB connection string (default: $MONGO_URL)",
    )
    parser.add_argument("--database", default="typed_ss")
    parser.add_argument("--collection", default="chat", help="the capped collection the instances share")
    parser.add_argument("--name", help="this instance's name on the page (default: host:port)")
    args = parser.parse_args()
    if not args.mongo:
        parser.error("give the MongoDB URL with --mongo or $MONGO_URL")
    name = args.name or f"{args.host}:{args.port}"
    instance, server = create_app(
        args.mongo, instance=name, database=args.database, collection=args.collection
    )
    print(
        f"mongo multihome chat on http://{args.host}:{args.port} "
        f"(MongoDB {redacted(args.mongo)}, {args.database}.{args.collection})",
        flush=True,
    )
    run(instance, server, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
