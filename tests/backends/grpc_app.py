"""The app the multi-process gRPC mesh tests run in each uvicorn process (``tests.serve``).

Its node configuration comes from the environment: ``TYPED_SS_TEST_GRPC_LISTEN`` (host:port),
``TYPED_SS_TEST_GRPC_PEERS`` (comma-separated), ``TYPED_SS_TEST_GRPC_NAME``, the TLS files
``TYPED_SS_TEST_GRPC_CA``/``_CERT``/``_KEY``, ``TYPED_SS_TEST_GRPC_MUTUAL`` (``1`` for mutual TLS)
and the shared key in hex, ``TYPED_SS_TEST_GRPC_SHARED_KEY``::

    python -m tests.serve tests.backends.grpc_app:app
"""

from __future__ import annotations

import os
from typing import Literal

import msgspec

from tests.apps import echo_server, make_app
from typed_ss import Socket
from typed_ss.backends.grpc import GrpcBackend, TLSConfig


class Cast(msgspec.Struct):
    """Ask this instance to start a cast of ``text`` as a str, bytes or JSON payload."""

    kind: Literal["broadcast", "roomcast", "socketcast"]
    target: str
    letter: Literal["S", "B", "J"]
    text: str


def backend_from_env() -> GrpcBackend:
    env = os.environ
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


ss = echo_server(backend=backend_from_env())
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


@ss.on("health")
async def health(sock: Socket, _: bytes) -> None:
    await sock.emit("health", ss.health().multihome)
