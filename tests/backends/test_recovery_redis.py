"""Connection state recovery with the history and the sessions in Redis (a real redis-server): a client
recovers on another instance than the one it left, even one that was killed; what Redis no longer
has is a fresh start, never a partial replay."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.apps import echo_server, make_app
from tests.backends.cluster import Node, cast, serving
from tests.backends.fault_proxy import FaultProxy
from tests.backends.redis_server import RedisServer
from tests.support import connect_client, eventually, running
from typed_ss import Recovery, Server
from typed_ss.backends.redis import RedisBackend
from typed_ss.client import Client as TypedClient
from typed_ss.client import Reconnected, ReconnectPolicy, connect
from typed_ss.multihome import Envelope, room_topic

FAST = ReconnectPolicy(base=0.01, cap=0.05)
GROUP = "recovery"


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@asynccontextmanager
async def instances(
    redis: RedisServer, count: int, **recovery: Any
) -> AsyncIterator[list[tuple[Server, str]]]:
    """``count`` servers in this process on one Redis, recovery on; each with its URL."""
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            ss = echo_server(backend=RedisBackend(redis.url, group=GROUP), recovery=Recovery(**recovery))
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


async def stream_order(redis: RedisServer, room: str) -> list[int]:
    """The numbers Redis keeps in ``room``'s history, in its order."""
    admin = redis.client()
    try:
        entries: Any = await admin.xrange(f"{GROUP}:history:{room_topic(room)}")
    finally:
        await admin.aclose()
    envelopes = [msgspec.msgpack.decode(fields[b"d"], type=Envelope) for _, fields in entries]
    return [msgspec.json.decode(envelope.payload, type=int) for envelope in envelopes]


async def test_a_client_cut_mid_stream_recovers_on_another_instance_missing_nothing(
    redis: RedisServer,
) -> None:
    async with instances(redis, 2) as [(a, a_url), (b, b_url)], proxy_to(a_url) as proxy:
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
            assert in_room == await stream_order(redis, "r")
            assert [n for n in received if n % 3 == 1] == list(range(1, 1000, 3))
            assert [n for n in received if n % 3 == 2] == list(range(2, 1000, 3))


async def test_a_client_of_a_killed_instance_recovers_on_another(redis: RedisServer) -> None:
    env = {
        "TYPED_SS_TEST_BACKEND": "redis",
        "TYPED_SS_TEST_REDIS_URL": redis.url,
        "TYPED_SS_TEST_RECOVERY": "1",
    }
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
            one.signal(signal.SIGKILL)  # its sessions were written to Redis as they changed
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
    async with instances(redis, 2) as [(a, a_url), (b, b_url)], proxy_to(a_url) as proxy:
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


async def test_what_redis_trimmed_is_a_fresh_start(redis: RedisServer) -> None:
    async with instances(redis, 2, history=5) as [(_, a_url), (b, b_url)], proxy_to(a_url) as proxy:
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


async def test_a_session_taken_up_on_one_instance_cannot_be_taken_again_with_its_old_token(
    redis: RedisServer,
) -> None:
    async with instances(redis, 2) as [(a, a_url), (_, b_url)]:
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
