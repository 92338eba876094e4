"""The app every server process of a test cluster runs (``tests.backends.cluster``), under ``tests.serve``::

    TYPED_SS_TEST_BACKEND=redis TYPED_SS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 \\
        python -m tests.serve tests.backends.cluster_app:app

Its backend comes from the environment. ``TYPED_SS_TEST_BACKEND`` names it; then

- ``redis``: ``TYPED_SS_TEST_REDIS_URL``;
- ``mongo``: ``TYPED_SS_TEST_MONGO_URL`` (the stand-in's, or a real MongoDB's);
- ``grpc``: ``TYPED_SS_TEST_GRPC_LISTEN`` (host:port), ``TYPED_SS_TEST_GRPC_PEERS`` (comma-separated),
  ``TYPED_SS_TEST_GRPC_NAME``, the TLS files ``TYPED_SS_TEST_GRPC_CA``/``_CERT``/``_KEY``,
  ``TYPED_SS_TEST_GRPC_MUTUAL`` (``1`` for mutual TLS) and the shared key in hex,
  ``TYPED_SS_TEST_GRPC_SHARED_KEY``.

``TYPED_SS_TEST_RECOVERY=1`` turns connection state recovery on (``Recovery()``).

Besides the handlers of ``echo_server``: ``cast`` (start a cast from this instance), ``relay``
(roomcast what a client sent) and ``health`` (this instance's multihome health).
"""

from __future__ import annotations

import os
from typing import Literal

import msgspec

from tests.apps import echo_server, make_app
from typed_ss import Recovery, Socket
from typed_ss.backends import Backend


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


def backend_from_env() -> Backend:
    env = os.environ
    kind = env["TYPED_SS_TEST_BACKEND"]
    if kind == "redis":
        from typed_ss.backends.redis import RedisBackend

        return RedisBackend(env["TYPED_SS_TEST_REDIS_URL"])
    if kind == "mongo":
        from typed_ss.backends.mongo import MongoBackend

        return MongoBackend(env["TYPED_SS_TEST_MONGO_URL"])
    if kind == "grpc":
        from typed_ss.backends.grpc import GrpcBackend, TLSConfig

        return GrpcBackend(
            listen=env["TYPED_SS_TEST_GRPC_LISTEN"],
            peers=[peer for peer in env["TYPED_SS_TEST_GRPC_PEERS"].split(",") if peer],
            name=env["TYPED_SS_TEST_GRPC_NAME"],
            tls=TLSConfig(
                ca=env["TYPED_SS_TEST_GRPC_CA"],
                cert=env["TYPED_SS_TEST_GRPC_CERT"],
                key=env["TYPED_SS_TEST_GRPC_KEY"],
                mutual=env.get("TYPED_SS_TEST_GRPC_MUTUAL") == "1",
            ),
            shared_key=bytes.fromhex(env["TYPED_SS_TEST_GRPC_SHARED_KEY"]),
        )
    raise ValueError(f"TYPED_SS_TEST_BACKEND: no backend {kind!r} (redis, mongo or grpc)")


recovery = Recovery() if os.environ.get("TYPED_SS_TEST_RECOVERY") == "1" else None
ss = echo_server(backend=backend_from_env(), recovery=recovery)
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


@ss.on("health")
async def health(sock: Socket, _: bytes) -> None:
    await sock.emit("health", ss.health().multihome)
