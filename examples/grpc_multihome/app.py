"""The gRPC multihome demo: three typed-ss instances in a full mesh, with no broker between them.

Every instance listens for its peers on a gRPC port and opens one stream to each of them; a cast
started on any instance reaches the matching sockets on all three. Open two instances in two tabs,
broadcast from one, and the other shows it. Each cast comes as text, binary and JSON.

Client events: ``join`` / ``leave`` (the room as text); ``broadcast``, ``roomcast`` and ``socketcast``,
each with a JSON ``{"kind": "text" | "binary" | "json", "target": ..., "data": ...}`` (``target`` is
the room or the socket id). ``GET /health`` returns ``ss.health()``: HTTP 503 until every peer link is
up, and each peer's link state, outbox and counters under ``multihome.backend.detail.peers``.

TLS and the shared key are on by default::

    python -m examples.grpc_multihome.app --port 8081 --grpc 127.0.0.1:30001 \\
        --peer 127.0.0.1:30002 --peer 127.0.0.1:30003 \\
        --ca certs/ca.pem --cert certs/node1.pem --key certs/node1.key
    examples/grpc_multihome/start.sh      # certificates and three nodes, on 8081-8083

The shared key comes from ``$TYPED_SS_MESH_KEY`` (start.sh makes a random one). ``--insecure`` runs
the mesh in plaintext without authentication, and says so in the log.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Literal

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route, WebSocketRoute

from typed_ss import InvalidName, LimitExceeded, Server, Socket, run
from typed_ss.backends.grpc import GrpcBackend, TLSConfig

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parent.parent / "clients" / "js" / "ss.js"


class Cast(msgspec.Struct):
    """What the page asks for: ``data`` as text, as its UTF-8 bytes, or as a JSON object."""

    kind: Literal["text", "binary", "json"]
    data: str
    target: str = ""


def payload(cast: Cast) -> object:
    if cast.kind == "text":
        return cast.data
    if cast.kind == "binary":
        return cast.data.encode()
    return {"data": cast.data}


def create_app(backend: GrpcBackend) -> tuple[Starlette, Server]:
    """One node: the Starlette app (page, ``/ss.js``, ``/health``, ``/socket``) and its server."""
    ss = Server(backend=backend)

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        try:
            await sock.join(room)
        except (InvalidName, LimitExceeded) as exc:
            await sock.emit("status", f"cannot join room: {exc}")
        else:
            await sock.emit("status", f"joined room: {room}")

    @ss.on("leave")
    async def leave(sock: Socket, room: str) -> None:
        try:
            await sock.leave(room)
        except InvalidName as exc:
            await sock.emit("status", f"cannot leave room: {exc}")
        else:
            await sock.emit("status", f"left room: {room}")

    @ss.on("broadcast")
    async def broadcast(sock: Socket, cast: Cast) -> None:
        await sock.broadcast(f"broadcast-{cast.kind}", payload(cast))

    @ss.on("roomcast")
    async def roomcast(sock: Socket, cast: Cast) -> None:
        try:
            await sock.roomcast(cast.target, f"roomcast-{cast.kind}", payload(cast))
        except InvalidName as exc:
            await sock.emit("status", f"cannot roomcast: {exc}")

    @ss.on("socketcast")
    async def socketcast(sock: Socket, cast: Cast) -> None:
        try:
            await sock.socketcast(cast.target, f"socketcast-{cast.kind}", payload(cast))
        except InvalidName as exc:
            await sock.emit("status", f"cannot socketcast: {exc}")

    async def health(request: Request) -> Response:
        state = ss.health()
        linked = state.multihome is not None and state.multihome.backend.state == "connected"
        return Response(
            msgspec.json.encode(state),
            status_code=200 if state.accepting and linked else 503,
            media_type="application/json",
        )

    async def page(request: Request) -> FileResponse:
        return FileResponse(HERE / "index.html", media_type="text/html")

    async def client_script(request: Request) -> FileResponse:
        return FileResponse(CLIENT, media_type="text/javascript")

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/ss.js", client_script),
            Route("/health", health),
            WebSocketRoute("/socket", ss),
        ],
        lifespan=ss.lifespan,
    )
    return app, ss


def main() -> None:
    parser = argparse.ArgumentParser(description="typed-ss gRPC multihome demo (one node)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="HTTP and WebSocket port")
    parser.add_argument("--grpc", default="127.0.0.1:30001", help="host:port the mesh listens on")
    parser.add_argument("--peer", action="append", default=[], help="host:port or servername@host:port")
    parser.add_argument("--name", help="this node's name in the mesh (default: the --grpc address)")
    parser.add_argument("--ca", help="the mesh's CA certificate (PEM)")
    parser.add_argument("--cert", help="this node's certificate (PEM)")
    parser.add_argument("--key", help="this node's private key (PEM)")
    parser.add_argument("--mutual", action="store_true", help="require peers' certificates too")
    parser.add_argument("--insecure", action="store_true", help="plaintext, no authentication")
    args = parser.parse_args()
    if args.insecure:
        backend = GrpcBackend(args.grpc, args.peer, name=args.name, insecure=True)
    else:
        if not (args.ca and args.cert and args.key and os.environ.get("TYPED_SS_MESH_KEY")):
            parser.error("a secure mesh needs --ca, --cert, --key and $TYPED_SS_MESH_KEY (or --insecure)")
        backend = GrpcBackend(
            args.grpc,
            args.peer,
            name=args.name,
            tls=TLSConfig(ca=args.ca, cert=args.cert, key=args.key, mutual=args.mutual),
            shared_key=os.environ["TYPED_SS_MESH_KEY"],
        )
    instance, server = create_app(backend)
    security = "insecure" if args.insecure else ("mutual TLS" if args.mutual else "TLS") + " + shared key"
    print(
        f"grpc multihome demo on http://{args.host}:{args.port} (mesh on {args.grpc}, {security})", flush=True
    )
    run(instance, server, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
