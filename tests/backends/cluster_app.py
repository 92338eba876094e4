"""The app every server process of a test cluster runs (``tests.backends.cluster``), under ``tests.serve``::

    TYPED_SS_TEST_BACKEND=redis TYPED_SS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 \\
        python -m tests.serve tests.backends.cluster_app:app

Its backend comes from the environment. ``TYPED_SS_TEST_BACKEND`` names it; then

- ``redis``: ``TYPED_SS_TEST_REDIS_URL``;
- ``redis-cluster``: ``TYPED_SS_TEST_REDIS_URL`` (any node of the cluster);
- ``nats``: ``TYPED_SS_TEST_NATS_URLS`` (comma-separated, the one to connect to first, first);
- ``mongo``: ``TYPED_SS_TEST_MONGO_URL`` (the stand-in's, or a real MongoDB's);
- ``grpc``: ``TYPED_SS_TEST_GRPC_LISTEN`` (host:port), ``TYPED_SS_TEST_GRPC_PEERS`` (comma-separated),
  ``TYPED_SS_TEST_GRPC_NAME``, the TLS files ``TYPED_SS_TEST_GRPC_CA``/``_CERT``/``_KEY``,
  ``TYPED_SS_TEST_GRPC_MUTUAL`` (``1`` for mutual TLS) and the shared key in hex,
  ``TYPED_SS_TEST_GRPC_SHARED_KEY``.

``TYPED_SS_TEST_RECOVERY=1`` turns connection state recovery on (``Recovery()``);
``TYPED_SS_TEST_PER_IDENTITY=1`` tells presence per identity (``Presence(per_identity=True)``).

Besides the handlers of ``echo_server``: ``cast`` (start a cast from this instance), ``relay``
(roomcast what a client sent) and ``health`` (this instance's multihome health).

Presence (docs/presence.md): a socket is the user its ``?user=`` query parameter names (``anon``
without one), its presence payload that name (``{"name": ...}``); the rooms starting with ``chat:``
are tracked. Calls (a client frame with ``c<id>``; the reply is JSON) ask this instance's
``ss.cluster``: ``cluster_whoami`` (its instance id and cluster health), ``cluster_members``,
``cluster_count``, ``cluster_counts``, ``cluster_sockets_of`` (a :class:`Question`) and
``cluster_act`` (an :class:`Act`: join, leave or disconnect).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import msgspec
from starlette.requests import HTTPConnection

from tests.apps import echo_server, make_app
from typed_ss import Presence, Recovery, Socket
from typed_ss.backends import Backend
from typed_ss.cluster import Answer, Member
from typed_ss.health import ClusterHealth


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


class User(msgspec.Struct, frozen=True):
    """A socket's identity: the ``?user=`` query parameter."""

    name: str


class Card(msgspec.Struct):
    """A socket's presence payload."""

    name: str


TRACKED_PREFIX = "chat:"
"""The rooms whose members are told of joins and leaves (``__presence``)."""


class Question(msgspec.Struct, kw_only=True):
    """A query of ``ss.cluster``: ``room`` (members, count), ``rooms`` (counts) or ``user`` (sockets_of)."""

    room: str = ""
    rooms: list[str] = []
    user: str = ""
    timeout: float = 1.0


class Act(msgspec.Struct, kw_only=True):
    """An action of ``ss.cluster`` on the sockets chosen by exactly one of ``sockets``, ``in_room``
    and ``user``; ``room``: the room joined or left."""

    kind: Literal["join", "leave", "disconnect"]
    room: str = ""
    sockets: list[str] | None = None
    in_room: str | None = None
    user: str | None = None
    code: int = 1000
    reason: str = ""
    timeout: float = 1.0


class Seen(msgspec.Struct):
    """One member as an answer lists it (the payload's name, ``None`` without a payload)."""

    socket: str
    instance: str
    name: str | None


class Listing(msgspec.Struct):
    members: list[Seen]
    missing: list[str]
    truncated: bool


class Counted(msgspec.Struct):
    value: int
    missing: list[str]


class CountedRooms(msgspec.Struct):
    value: dict[str, int]
    missing: list[str]


class Whoami(msgspec.Struct):
    instance: str
    cluster: ClusterHealth | None


def backend_from_env() -> Backend:
    env = os.environ
    kind = env["TYPED_SS_TEST_BACKEND"]
    if kind == "redis":
        from typed_ss.backends.redis import RedisBackend

        return RedisBackend(env["TYPED_SS_TEST_REDIS_URL"])
    if kind == "redis-cluster":
        from typed_ss.backends.redis_cluster import RedisClusterBackend

        return RedisClusterBackend(env["TYPED_SS_TEST_REDIS_URL"])
    if kind == "nats":
        from typed_ss.backends.nats import NatsBackend

        return NatsBackend(env["TYPED_SS_TEST_NATS_URLS"].split(","), dont_randomize=True)
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
    raise ValueError(
        f"TYPED_SS_TEST_BACKEND: no backend {kind!r} (redis, redis-cluster, nats, mongo or grpc)"
    )


recovery = Recovery() if os.environ.get("TYPED_SS_TEST_RECOVERY") == "1" else None
presence = Presence(
    Card,
    lambda sock: Card(sock.identity.name),
    tracked=lambda room: room.startswith(TRACKED_PREFIX),
    per_identity=os.environ.get("TYPED_SS_TEST_PER_IDENTITY") == "1",
)
ss = echo_server(backend=backend_from_env(), recovery=recovery, presence=presence)
app = make_app(ss)


@ss.authenticate
async def authenticate(request: HTTPConnection) -> User:
    return User(request.query_params.get("user", "anon"))


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


# --- the cluster's queries and actions, asked of this instance ---------------------------------------


def listing(answer: Answer[list[Member[Any]]]) -> Listing:
    members = [
        Seen(m.socket, m.instance, None if m.presence is None else m.presence.name) for m in answer.value
    ]
    return Listing(sorted(members, key=lambda m: m.socket), sorted(answer.missing), answer.truncated)


@ss.on("cluster_whoami")
async def cluster_whoami(sock: Socket, _: bytes) -> Whoami:
    return Whoami(ss.cluster.instance_id, ss.health().cluster)


@ss.on("cluster_members")
async def cluster_members(sock: Socket, question: Question) -> Listing:
    return listing(await ss.cluster.members(question.room, timeout=question.timeout))


@ss.on("cluster_count")
async def cluster_count(sock: Socket, question: Question) -> Counted:
    answer = await ss.cluster.count(question.room, timeout=question.timeout)
    return Counted(answer.value, sorted(answer.missing))


@ss.on("cluster_counts")
async def cluster_counts(sock: Socket, question: Question) -> CountedRooms:
    answer = await ss.cluster.counts(question.rooms, timeout=question.timeout)
    return CountedRooms(answer.value, sorted(answer.missing))


@ss.on("cluster_sockets_of")
async def cluster_sockets_of(sock: Socket, question: Question) -> Listing:
    return listing(await ss.cluster.sockets_of(User(question.user), timeout=question.timeout))


@ss.on("cluster_act")
async def cluster_act(sock: Socket, act: Act) -> Counted:
    identity = None if act.user is None else User(act.user)
    if act.kind == "disconnect":
        answer = await ss.cluster.disconnect(
            sockets=act.sockets,
            in_room=act.in_room,
            identity=identity,
            code=act.code,
            reason=act.reason,
            timeout=act.timeout,
        )
    else:
        method = ss.cluster.join if act.kind == "join" else ss.cluster.leave
        answer = await method(
            act.room, sockets=act.sockets, in_room=act.in_room, identity=identity, timeout=act.timeout
        )
    return Counted(answer.value, sorted(answer.missing))
