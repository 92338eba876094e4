"""The Redis multihome demo: the original Sacrificial-Socket redis-multihome example on typed-ss.

Run several instances against one Redis and every cast reaches the sockets of every instance: open
two of them in two tabs, broadcast from one, and the other shows it. Each action comes in the three
data types: text (``echo``), binary (``echobin``) and JSON (``echojson``).

Client events, as in the original (plus its gRPC example's socketcasts):

- ``echo`` (text), ``echobin`` (binary), ``echojson`` (JSON ``{"message"}``): sent back to the sender;
- ``join`` / ``leave`` (the room as text): answered with an ``echo`` "joined room: …" / "left room: …";
- ``roomcast``, ``roomcastbin``, ``roomcastjson`` (JSON ``{"room", "data"}``): ``data`` to the room's
  members on every instance, as text, as its UTF-8 bytes, or as the whole JSON object;
- ``broadcast`` (text), ``broadcastbin`` (binary), ``broadcastjson`` (JSON ``{"message"}``): to everyone;
- ``socketcast``, ``socketcastbin``, ``socketcastjson`` (JSON ``{"socketId", "data"}``): to one socket,
  on whichever instance it is connected.

``GET /health`` returns ``ss.health()``, with HTTP 503 until the instance accepts connections and its
Redis subscriber is connected. The page shows the instance and its socket id, so that socketcast can be
tried across instances (the original made you copy ids from the server's debug log).

    python -m examples.redis_multihome.app --port 8081 --redis redis://127.0.0.1:6379/0
    examples/redis_multihome/start.sh      # Redis and three instances, on 8081-8083
"""

from __future__ import annotations

import argparse
import os
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
from typed_ss.backends.redis import RedisBackend

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parent.parent / "clients" / "js" / "ss.js"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
SocketId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Message(msgspec.Struct):
    """``{"message": "..."}``: the payload of ``echojson`` and ``broadcastjson``."""

    message: str


class Roomcast(msgspec.Struct):
    """``{"room": "...", "data": "..."}``: the payload of the three roomcasts."""

    room: RoomName
    data: str


class Socketcast(msgspec.Struct, rename="camel"):
    """``{"socketId": "...", "data": "..."}``: the payload of the three socketcasts."""

    socket_id: SocketId
    data: str


def create_app(redis_url: str) -> tuple[Starlette, Server]:
    """One instance: the Starlette app (page, ``/ss.js``, ``/health``, ``/socket``) and its server,
    linked to the other instances through the Redis at ``redis_url``."""
    ss = Server(backend=RedisBackend(redis_url))

    @ss.on("echo")
    async def echo(sock: Socket, text: str) -> None:
        await sock.emit("echo", text)

    @ss.on("echobin")
    async def echobin(sock: Socket, data: bytes) -> None:
        await sock.emit("echobin", data)

    @ss.on("echojson")
    async def echojson(sock: Socket, msg: Message) -> None:
        await sock.emit("echojson", msg)

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        try:
            await sock.join(room)
        except (InvalidName, LimitExceeded) as exc:
            await sock.emit("echo", f"cannot join room: {exc}")
        else:
            await sock.emit("echo", f"joined room: {room}")

    @ss.on("leave")
    async def leave(sock: Socket, room: str) -> None:
        try:
            await sock.leave(room)
        except InvalidName as exc:
            await sock.emit("echo", f"cannot leave room: {exc}")
        else:
            await sock.emit("echo", f"left room: {room}")

    @ss.on("roomcast")
    async def roomcast(sock: Socket, cast: Roomcast) -> None:
        await sock.roomcast(cast.room, "roomcast", cast.data)

    @ss.on("roomcastbin")
    async def roomcastbin(sock: Socket, cast: Roomcast) -> None:
        await sock.roomcast(cast.room, "roomcastbin", cast.data.encode())

    @ss.on("roomcastjson")
    async def roomcastjson(sock: Socket, cast: Roomcast) -> None:
        await sock.roomcast(cast.room, "roomcastjson", cast)

    @ss.on("broadcast")
    async def broadcast(sock: Socket, text: str) -> None:
        await sock.broadcast("broadcast", text)

    @ss.on("broadcastbin")
    async def broadcastbin(sock: Socket, data: bytes) -> None:
        await sock.broadcast("broadcastbin", data)

    @ss.on("broadcastjson")
    async def broadcastjson(sock: Socket, msg: Message) -> None:
        await sock.broadcast("broadcastjson", msg)

    @ss.on("socketcast")
    async def socketcast(sock: Socket, cast: Socketcast) -> None:
        await sock.socketcast(cast.socket_id, "socketcast", cast.data)

    @ss.on("socketcastbin")
    async def socketcastbin(sock: Socket, cast: Socketcast) -> None:
        await sock.socketcast(cast.socket_id, "socketcastbin", cast.data.encode())

    @ss.on("socketcastjson")
    async def socketcastjson(sock: Socket, cast: Socketcast) -> None:
        await sock.socketcast(cast.socket_id, "socketcastjson", cast)

    async def health(request: Request) -> Response:
        state = ss.health()
        linked = state.multihome is not None and state.multihome.backend.state == "connected"
        healthy = state.accepting and linked
        return Response(
            msgspec.json.encode(state), status_code=200 if healthy else 503, media_type="application/json"
        )

    async def client_script(request: Request) -> FileResponse:
        return FileResponse(CLIENT, media_type="text/javascript")

    app = Starlette(
        routes=[
            WebSocketRoute("/socket", ss),
            Route("/ss.js", client_script),
            Route("/health", health),
            Mount("/", StaticFiles(directory=HERE / "static", html=True)),
        ],
        lifespan=ss.lifespan,
    )
    return app, ss


# For `uvicorn examples.redis_multihome.app:app`: Redis from $REDIS_URL. Nothing connects before startup.
app, ss = create_app(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))


def _redacted(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def main() -> None:
    parser = argparse.ArgumentParser(description="typed-ss Redis multihome demo (one instance)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        help="the Redis URL (default: $REDIS_URL, else %(default)s)",
    )
    args = parser.parse_args()
    instance, server = create_app(args.redis)
    redis = _redacted(args.redis)
    print(f"redis multihome demo on http://{args.host}:{args.port} (Redis {redis})", flush=True)
    run(instance, server, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
