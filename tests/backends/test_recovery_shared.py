"""Connection state recovery with the history and the sessions in the backend, shared by every
instance: Redis (a real redis-server: streams and keys) and MongoDB (the stand-in: the capped
collection and a sessions collection). A client recovers on another instance than the one it left,
even one that was killed; what the backend no longer has is a fresh start, never a partial replay."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec
import pytest

from tests.apps import echo_server, make_app
from tests.backends.cluster import Node, cast, serving
from tests.backends.fault_proxy import FaultProxy
from tests.backends.redis_server import RedisServer
from tests.mongo_standin import MongoStandIn
from tests.support import connect_client, eventually, running
from typed_ss import Recovery, Server
from typed_ss.backends import Backend
from typed_ss.backends.mongo import MongoBackend
from typed_ss.backends.redis import RedisBackend
from typed_ss.client import Client as TypedClient
from typed_ss.client import Reconnected, ReconnectPolicy, connect
from typed_ss.multihome import Envelope, room_topic

FAST = ReconnectPolicy(base=0.01, cap=0.05)
GROUP = "recovery"


class Store(Protocol):
    """A backend that keeps the history, under test."""

    env: dict[str, str]
    """The environment of a server process on it (``tests.backends.cluster_app``)."""

    def backend(self) -> Backend: ...

    async def kept(self, room: str) -> list[bytes]:
        """The envelopes the backend keeps of ``room``, in its order."""
        ...

    async def trim(self) -> None:
        """Make the backend drop what it keeps (as sending far more than it keeps would)."""
        ...


class RedisStore:
    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.env = {"TYPED_SS_TEST_BACKEND": "redis", "TYPED_SS_TEST_REDIS_URL": redis.url}

    def backend(self) -> Backend:
        return RedisBackend(self.redis.url, group=GROUP)

    async def kept(self, room: str) -> list[bytes]:
        admin = self.redis.client()
        try:
            entries: Any = await admin.xrange(f"{GROUP}:history:{room_topic(room)}")
        finally:
            await admin.aclose()
        return [fields[b"d"] for _, fields in entries]

    async def trim(self) -> None:
        admin = self.redis.client()
        try:
            for key in await admin.keys(f"{GROUP}:history:*"):
                await admin.xtrim(key, maxlen=0)
        finally:
            await admin.aclose()


class MongoStore:
    def __init__(self, standin: MongoStandIn) -> None:
        self.standin = standin
        self.env = {"TYPED_SS_TEST_BACKEND": "mongo", "TYPED_SS_TEST_MONGO_URL": standin.url}

    def backend(self) -> Backend:
        return MongoBackend(self.standin.url)

    async def kept(self, room: str) -> list[bytes]:
        documents = self.standin.documents("typed_ss", "multihome")
        return [document["data"] for document in documents if document.get("topic") == room_topic(room)]

    async def trim(self) -> None:
        self.standin.wrap("typed_ss", "multihome")


@pytest.fixture(params=["redis", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "mongo":
        async with MongoStandIn() as standin:
            yield MongoStore(standin)
        return
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        yield RedisStore(redis)
    finally:
        await redis.kill()


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@asynccontextmanager
async def instances(store: Store, count: int, **recovery: Any) -> AsyncIterator[list[tuple[Server, str]]]:
    """``count`` servers in this process on one backend, recovery on; each with its URL."""
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            ss = echo_server(backend=store.backend(), recovery=Recovery(**recovery))
            started.append((ss, await stack.enter_async_context(running(make_app(ss), ss))))
        yield started


@asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[FaultProxy]:
    """A proxy to ``url`` that can cut its connections, and be pointed at another server."""
    host, port = url.removeprefix("ws://").split(":")
    proxy = FaultProxy(host, int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def point(proxy: FaultProxy, url: str) -> None:
    """New connections through ``proxy`` go to ``url`` from now on."""
    host, port = url.removeprefix("ws://").split(":")
    proxy.target = (host, int(port))


def numbered(client: TypedClient) -> list[int]:
    received: list[int] = []
    client.on("n", received.append, payload_type=int)
    return received


async def stream_order(store: Store, room: str) -> list[int]:
    """The numbers the backend keeps in ``room``'s history, in its order."""
    envelopes = [msgspec.msgpack.decode(data, type=Envelope) for data in await store.kept(room)]
    return [msgspec.json.decode(envelope.payload, type=int) for envelope in envelopes]


async def test_a_client_cut_mid_stream_recovers_on_another_instance_missing_nothing(store: Store) -> None:
    async with instances(store, 2) as [(a, a_url), (b, b_url)], proxy_to(a_url) as proxy:
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=FAST)
        received = numbered(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client:
            await client.join("r")
            socket_id = client.id
            assert socket_id is not None

            async def send(i: int) -> None:
                # The room's stream from both instances (Redis orders them), the broadcasts from
                # one, the socket's own stream from the other.
                if i % 3 == 0:
                    await (a if i % 2 else b).roomcast("r", "n", i)
                elif i % 3 == 1:
                    await a.broadcast("n", i)
                else:
                    await b.socketcast(socket_id, "n", i)

            for i in range(300):
                await send(i)
            await eventually(lambda: len(received) == 300)
            for i in range(300, 400):
                await send(i)
            point(proxy, b_url)  # the client comes back through another instance
            assert proxy.cut() == 1
            for i in range(400, 1000):
                await send(i)
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
            await eventually(lambda: len(received) >= 1000, within=30)
            await asyncio.sleep(0.2)  # anything duplicated would arrive now
            assert sorted(received) == list(range(1000))  # none lost, none twice
            assert reconnects == [Reconnected(True, ("r",))]
            assert client.id == socket_id
            assert socket_id in b.sockets
            assert socket_id not in a.sockets
            # Each stream in one order on every instance: the room's, from two publishers, is the
            # order Redis kept it in; the others are their publisher's.
            in_room = [n for n in received if n % 3 == 0]
            assert in_room == await stream_order(store, "r")
            assert [n for n in received if n % 3 == 1] == list(range(1, 1000, 3))
            assert [n for n in received if n % 3 == 2] == list(range(2, 1000, 3))


async def test_a_client_of_a_killed_instance_recovers_on_another(store: Store) -> None:
    env = {**store.env, "TYPED_SS_TEST_RECOVERY": "1"}
    nodes = [Node("one", dict(env)), Node("two", dict(env))]
    async with serving(nodes) as (one, two), proxy_to(one.url) as proxy:
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=FAST)
        received = numbered_casts(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client, connect_client(two.url) as sender:
            await client.join("r")
            socket_id = client.id

            for i in range(50):
                await cast(sender, "roomcast", "r", "S", str(i))
            await eventually(lambda: len(received) == 50)
            point(proxy, two.url)
            one.signal(signal.SIGKILL)  # its sessions were written to the backend as they changed
            for i in range(50, 100):
                await cast(sender, "roomcast", "r", "S", str(i))
            await eventually(lambda: len(received) >= 100, within=30)
            await asyncio.sleep(0.2)
            assert received == [str(i) for i in range(100)]
            assert reconnects == [Reconnected(True, ("r",))]
            assert client.id == socket_id


def rooms_of(ss: Server, socket_id: str | None) -> frozenset[str]:
    sock = ss.sockets.get(socket_id or "")
    return frozenset() if sock is None else sock.rooms


def backend_state(ss: Server) -> str | None:
    multihome = ss.health().multihome
    return None if multihome is None else multihome.backend.state


def numbered_casts(client: TypedClient) -> list[str]:
    received: list[str] = []
    client.on("cast", received.append, payload_type=str)
    return received


async def test_after_a_redis_restart_a_returning_client_starts_afresh_and_works(redis: RedisServer) -> None:
    async with instances(RedisStore(redis), 2) as [(a, a_url), (b, b_url)], proxy_to(a_url) as proxy:
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=ReconnectPolicy(base=0.05, cap=0.2))
        received = numbered(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client:
            await client.join("r")
            first_id = client.id
            await b.roomcast("r", "n", 1)
            await eventually(lambda: received == [1])
            point(proxy, b_url)
            await redis.kill()  # Redis is down while the client is away, and loses what it held
            proxy.cut()
            await asyncio.sleep(0.3)  # the client retries against an instance whose Redis is down
            await redis.start()
            await eventually(lambda: len(reconnects) >= 1, within=30)
            # Fresh: a new socket, nothing replayed (the client joins the rooms it remembers again).
            assert reconnects[-1] == Reconnected(False, ("r",))
            assert client.id != first_id
            await eventually(lambda: backend_state(a) == backend_state(b) == "connected", within=30)
            await eventually(lambda: rooms_of(b, client.id) == {"r"})
            await a.roomcast("r", "n", 2)
            await eventually(lambda: received == [1, 2], within=10)


async def test_past_the_history_redis_keeps_a_client_starts_afresh(redis: RedisServer) -> None:
    async with (
        instances(RedisStore(redis), 2, history=5) as [(_, a_url), (b, b_url)],
        proxy_to(a_url) as proxy,
    ):
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=ReconnectPolicy(base=0.5, cap=0.5))
        received = numbered(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client:
            await client.join("r")
            point(proxy, b_url)
            proxy.cut()
            for i in range(200):  # far past the 5 kept (Redis trims whole nodes of ~100 entries)
                await b.roomcast("r", "n", i)
            await eventually(lambda: len(reconnects) == 1, within=30)
            assert reconnects == [Reconnected(False, ("r",))]
            assert received == []


async def test_what_the_backend_no_longer_keeps_is_a_fresh_start(store: Store) -> None:
    async with instances(store, 2) as [(a, a_url), (b, b_url)]:
        async with connect_client(a_url) as first:
            await first.send("join", "r")
            joined = await first.expect("joined")
            first.ws.transport.abort()
        await eventually(lambda: first.id not in a.sockets)
        for i in range(20):
            await b.roomcast("r", "n", i)

        async def all_kept() -> bool:
            return len(await store.kept("r")) == 20

        await eventually(all_kept)
        await store.trim()
        tag, _, offset = joined.letter[2:].partition(".")
        path = f"/socket?ss_session={first.hello['session']}&ss_offsets={tag}.{offset}"
        async with connect_client(b_url, path) as again:
            assert again.hello["recovered"] is False
            assert again.id != first.id
            await again.nothing_within(0.2)  # no partial replay


async def test_a_session_taken_up_on_one_instance_cannot_be_taken_again_with_its_old_token(
    store: Store,
) -> None:
    async with instances(store, 2) as [(a, a_url), (_, b_url)]:
        async with connect_client(a_url) as first:
            await first.send("join", "r")
            await first.expect("joined")
            first.ws.transport.abort()
        await eventually(lambda: first.id not in a.sockets)
        path = f"/socket?ss_session={first.hello['session']}"
        async with connect_client(b_url, path) as again:
            assert again.hello["recovered"] is True
            assert again.id == first.id
            async with connect_client(a_url, path) as stale:  # the old token is dead everywhere
                assert stale.hello["recovered"] is False
                assert stale.id != first.id
