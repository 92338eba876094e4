"""Clusters of server processes on one backend: N nodes (``tests.backends.cluster_app`` under
``tests.serve``, each in a process of its own) linked by Redis, a gRPC mesh or MongoDB (the stand-in).

    async with cluster("redis", tmp_path, 3) as nodes, serving(nodes.nodes) as (one, two, three):
        async with connect_client(one.url) as client: ...

Every process is one this module started, stopped by its PID. The backends: :class:`RedisCluster`
(a :class:`~tests.backends.redis_server.RedisServer`), :class:`Mesh` (free loopback ports, test
certificates with mutual TLS, a shared key; no process besides the nodes) and :class:`MongoCluster`
(a :class:`~tests.mongo_standin.MongoStandIn` in the test's event loop). Each has a ``check`` of its
own, made after the cross-process casts test (``tests/backends/test_cross_process.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.backends.grpc_certs import CertificateAuthority
from tests.backends.nats_server import NatsCluster
from tests.backends.redis_cluster_server import RedisClusterServer
from tests.backends.redis_server import RedisServer
from tests.mongo_standin import MongoStandIn
from tests.support import Client, eventually, free_ports
from typed_ss.backends.grpc import TLSConfig
from typed_ss.backends.nats import NatsBackend
from typed_ss.backends.redis_cluster import RedisClusterBackend
from typed_ss.cluster.wire import CONTROL_TOPIC, is_control_topic

__all__ = [
    "KINDS",
    "Cluster",
    "Mesh",
    "MongoCluster",
    "Node",
    "RedisCluster",
    "RoutedNats",
    "ShardedRedis",
    "cast",
    "cluster",
    "health",
    "health_when",
    "payload_of",
    "serving",
    "until_connected",
]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.backends.cluster_app:app"
KINDS = ("redis", "redis-cluster", "nats", "grpc", "mongo")
"""The backends :func:`cluster` runs nodes on."""


@dataclass
class Node:
    """One server process of a cluster: the environment that configures its backend (the variables
    of ``tests.backends.cluster_app``) and, while it runs, its process and ``ws://`` URL."""

    name: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    url: str = ""

    async def start(self) -> None:
        """Start the process (again, after :meth:`stop` or a kill) and read the port it serves on."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.serve",
            APP,
            "--set",
            "log_level=warning",
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 30)).decode()
        assert line.startswith("PORT "), line
        self.url = f"ws://127.0.0.1:{int(line.split()[1])}"

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the running process, by its PID."""
        assert self.process is not None
        assert self.process.returncode is None
        os.kill(self.process.pid, signum)

    async def stop(self) -> None:
        """Terminate the process by its PID (stopped or not), and kill it if it does not exit."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def serving(nodes: list[Node]) -> AsyncIterator[list[Node]]:
    """Start ``nodes`` together (a mesh node waits for its peers); stop them all on exit."""
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        yield nodes
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))


class Cluster(Protocol):
    """Nodes sharing one backend, not started yet, and the backend's own checks."""

    nodes: list[Node]

    async def check(self, clients: Sequence[Client], room: str) -> None:
        """The backend's own checks after the casts test: ``clients`` has one client per node, in
        node order; all but the first joined ``room``; casts went to everyone, to ``room`` and to
        the last client's socket."""
        ...


def alike(count: int, env: dict[str, str]) -> list[Node]:
    """``count`` nodes configured the same way (on a broker, the broker's address is all they need)."""
    return [Node(f"node{i + 1}", dict(env)) for i in range(count)]


class RedisCluster:
    """Nodes on one redis-server."""

    def __init__(self, redis: RedisServer, count: int) -> None:
        self.redis = redis
        self.nodes = alike(count, {"TYPED_SS_TEST_BACKEND": "redis", "TYPED_SS_TEST_REDIS_URL": redis.url})

    async def check(self, clients: Sequence[Client], room: str) -> None:
        """Interest routing, as Redis itself sees it: only the nodes with members of a room listen."""
        admin = self.redis.client()
        try:
            ((_, listeners),) = await admin.pubsub_numsub(f"typed-ss:r:{room}")
            ((_, nobody),) = await admin.pubsub_numsub("typed-ss:r:no-such-room")
            ((_, broadcast),) = await admin.pubsub_numsub("typed-ss:b")
            channels = {
                c if isinstance(c, str) else c.decode() for c in await admin.pubsub_channels("typed-ss:r:*")
            }
        finally:
            await admin.aclose()
        numsub = (listeners, nobody, broadcast)
        assert numsub == (len(clients) - 1, 0, len(clients)), f"NUMSUB room, no room, broadcasts: {numsub}"
        socket_rooms = {f"typed-ss:r:__socket_id:{c.id}" for c in clients}
        assert channels == {f"typed-ss:r:{room}"} | socket_rooms, channels


class ShardedRedis:
    """Nodes on one Redis Cluster (3 masters, 3 replicas), through sharded pub/sub."""

    def __init__(self, redis: RedisClusterServer, count: int) -> None:
        self.redis = redis
        self.nodes = alike(
            count, {"TYPED_SS_TEST_BACKEND": "redis-cluster", "TYPED_SS_TEST_REDIS_URL": redis.url}
        )

    async def subscribers(self, topic: str) -> int:
        """Subscribers of ``topic``'s (first) sharded channel, on the master serving it."""
        channel = RedisClusterBackend(self.redis.url).channels(topic)[0]
        admin = self.redis.server((await self.redis.master_of(channel)).port).client()
        try:
            ((_, count),) = await admin.pubsub_shardnumsub(channel)
        finally:
            await admin.aclose()
        return int(count)

    async def check(self, clients: Sequence[Client], room: str) -> None:
        """Interest routing, as the cluster's masters see it: only the nodes with members of a room
        listen, and every node to the broadcasts; each node has one subscriber connection per master."""
        numsub = (
            await self.subscribers(f"r:{room}"),
            await self.subscribers("r:no-such-room"),
            await self.subscribers("b"),
        )
        assert numsub == (len(clients) - 1, 0, len(clients)), (
            f"SHARDNUMSUB room, no room, broadcasts: {numsub}"
        )
        for client in clients:
            masters = (await health(client))["backend"]["detail"]["masters"]
            assert len(masters) == 3, masters


class RoutedNats:
    """Nodes on a cluster of 3 nats-server nodes, node ``i`` connected to server ``i % 3``."""

    def __init__(self, nats: NatsCluster, count: int) -> None:
        self.nats = nats
        self.nodes = [
            Node(
                f"node{i + 1}",
                {
                    "TYPED_SS_TEST_BACKEND": "nats",
                    "TYPED_SS_TEST_NATS_URLS": ",".join(nats.urls(i % len(nats.nodes))),
                },
            )
            for i in range(count)
        ]

    async def subscribers(self, topic: str) -> int:
        """Client connections interested in ``topic``'s subject, over every server."""
        subject = NatsBackend(self.nats.nodes[0].url).subject(topic)
        return sum([await server.interest(subject) for server in self.nats.nodes])

    async def check(self, clients: Sequence[Client], room: str) -> None:
        """Interest routing across the servers: only the nodes with members of a room subscribe to its
        subject, and every node to the broadcasts; each node is on the server it was given first."""
        numsub = (
            await self.subscribers(f"r:{room}"),
            await self.subscribers("r:no-such-room"),
            await self.subscribers("b"),
        )
        assert numsub == (len(clients) - 1, 0, len(clients)), f"interest room, no room, broadcasts: {numsub}"
        for i, client in enumerate(clients):
            server = (await health(client))["backend"]["detail"]["server"]
            assert server == f"127.0.0.1:{self.nats.nodes[i % len(self.nats.nodes)].port}", server


class MongoCluster:
    """Nodes on one capped collection of the MongoDB stand-in."""

    def __init__(self, standin: MongoStandIn, count: int) -> None:
        self.standin = standin
        self.nodes = alike(count, {"TYPED_SS_TEST_BACKEND": "mongo", "TYPED_SS_TEST_MONGO_URL": standin.url})

    async def check(self, clients: Sequence[Client], room: str) -> None:
        """Every node reads every document and passes on the topics it subscribed to: the broadcasts,
        the control plane's topic and its own, its sockets' own rooms, and ``room`` where it has
        members; every cast (and every heartbeat) went through the collection."""
        details = [(await health(client))["backend"]["detail"] for client in clients]
        subscribed = [detail["topics"] for detail in details]
        assert subscribed == [4] + [5] * (len(clients) - 1), f"topics per node: {subscribed}"
        database, _, collection = details[0]["collection"].partition(".")
        documents = self.standin.documents(database, collection)
        topics = {document["topic"] for document in documents if "topic" in document}  # not markers
        assert CONTROL_TOPIC in topics
        casts = {topic for topic in topics if not is_control_topic(topic)}
        assert casts == {"b", f"r:{room}", f"r:__socket_id:{clients[-1].id}"}, casts


class Mesh:
    """A static gRPC mesh: node ``i`` listens on ``addresses[i]`` and links to every other address,
    with a certificate of ``ca`` (mutual TLS) and the mesh's shared ``key``."""

    def __init__(self, directory: Path, count: int = 3) -> None:
        self.directory = directory
        self.ca = CertificateAuthority.create(directory)
        self.key = secrets.token_bytes(32)
        self.addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
        self.nodes = [Node(f"node{i + 1}", self.env(i)) for i in range(count)]

    def env(self, index: int, *, tls: TLSConfig | None = None, key: bytes | None = None) -> dict[str, str]:
        """Node ``index``'s configuration: its own certificate and the mesh's key unless others are
        given (a rogue node)."""
        name = f"node{index + 1}"
        if tls is None:
            tls = self.ca.issue(self.directory, name, mutual=True)
        listen = self.addresses[index]
        return {
            "TYPED_SS_TEST_BACKEND": "grpc",
            "TYPED_SS_TEST_GRPC_LISTEN": listen,
            "TYPED_SS_TEST_GRPC_PEERS": ",".join(a for a in self.addresses if a != listen),
            "TYPED_SS_TEST_GRPC_NAME": name,
            "TYPED_SS_TEST_GRPC_CA": str(tls.ca),
            "TYPED_SS_TEST_GRPC_CERT": str(tls.cert),
            "TYPED_SS_TEST_GRPC_KEY": str(tls.key),
            "TYPED_SS_TEST_GRPC_MUTUAL": "1" if tls.mutual else "0",
            "TYPED_SS_TEST_GRPC_SHARED_KEY": (self.key if key is None else key).hex(),
        }

    async def check(self, clients: Sequence[Client], room: str) -> None:
        """Every link is secure, with mutual TLS; interest routing: each node knows what each peer
        wants (the broadcasts, the control plane's topic and its own, its socket's own room, and
        ``room`` on all but the first)."""
        wants = {address: 4 if i == 0 else 5 for i, address in enumerate(self.addresses)}
        for client, address in zip(clients, self.addresses, strict=True):
            detail = (await health(client))["backend"]["detail"]
            assert (detail["secure"], detail["mutual_tls"]) == (True, True), detail
            interest = {peer: link["interest"] for peer, link in detail["peers"].items()}
            expected = {peer: n for peer, n in wants.items() if peer != address}
            assert interest == expected, f"{address}'s peers' interest: {interest}, not {expected}"


@asynccontextmanager
async def cluster(kind: str, directory: Path, count: int = 3) -> AsyncIterator[Cluster]:
    """``count`` nodes (not started) on a backend of ``kind`` (one of :data:`KINDS`) of their own,
    which is stopped on exit."""
    if kind == "grpc":
        yield Mesh(directory, count)
    elif kind == "mongo":
        async with MongoStandIn() as standin:
            yield MongoCluster(standin, count)
    elif kind == "redis-cluster":
        sharded = RedisClusterServer(directory)
        try:
            await sharded.start()
            yield ShardedRedis(sharded, count)
        finally:
            await sharded.kill()
    elif kind == "nats":
        routed = NatsCluster(directory)
        try:
            await routed.start()
            yield RoutedNats(routed, count)
        finally:
            await routed.kill()
    elif kind == "redis":
        redis = RedisServer(directory)
        await redis.start()
        try:
            yield RedisCluster(redis, count)
        finally:
            await redis.kill()
    else:
        raise ValueError(f"no cluster backend {kind!r}: one of {KINDS}")


# --- talking to a node (the handlers of tests.backends.cluster_app) ---------------------------------


async def cast(client: Client, kind: str, target: str, letter: str, text: str) -> None:
    """Have the client's node start a ``kind`` cast of ``text`` as a str (S), bytes (B) or JSON (J)."""
    await client.send("cast", json.dumps({"kind": kind, "target": target, "letter": letter, "text": text}))


def payload_of(letter: str, text: str) -> object:
    """What a cast of ``text`` as ``letter`` arrives as."""
    return {"S": text, "B": text.encode(), "J": {"text": text}}[letter]


async def health(client: Client) -> dict[str, Any]:
    """The node's multihome health (casts arriving meanwhile are skipped)."""
    await client.send("health")
    while (frame := await client.recv()).event != "health":
        pass
    result: dict[str, Any] = frame.json()
    return result


async def health_when(
    client: Client, condition: Callable[[dict[str, Any]], bool], within: float = 10.0
) -> dict[str, Any]:
    """Poll the node's health until ``condition`` holds for it; returns that health."""
    last: dict[str, Any] = {}

    async def holds() -> bool:
        nonlocal last
        last = await health(client)
        return condition(last)

    try:
        await eventually(holds, within=within, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the node's health: {json.dumps(last, indent=1)}") from None
    return last


async def until_connected(client: Client) -> dict[str, Any]:
    """Wait until the node's backend is connected (a mesh node: linked to every peer)."""
    return await health_when(client, lambda state: state["backend"]["state"] == "connected")
