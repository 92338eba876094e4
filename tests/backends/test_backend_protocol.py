"""The Backend protocol (``typed_ss/backends/base.py``) tested directly, with no Server: two linked
backends of each kind, A and B, and what one publishes and the other receives.

Memory, Redis (a real redis-server), Redis Cluster (3 masters and 3 replicas), NATS (a real
nats-server), MongoDB (the stand-in; a real mongod too with ``TYPED_SS_MONGO_URL``) and gRPC (two
nodes linked insecure on free ports). What every one of them does: what is published after
``subscribe`` returns arrives, once, intact and in order; only the topics subscribed arrive, and an
unsubscribed topic stops arriving; subscribing twice and unsubscribing what is not subscribed are
harmless; ``health`` names the backend and follows it from connected to stopped; ``stop`` ends the
message stream, is safe twice, and a stopped backend refuses to publish.
``tests/backends/test_conformance.py`` runs the same backends under real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends.conftest import MemoryBus, RedisBus
from tests.backends.mongo_bus import MONGO_BUSES, mongo_bus
from tests.backends.receiving import Message, receiving
from tests.backends.redis_server import RedisServer
from tests.support import eventually, free_ports
from typed_ss.backends import Backend, BackendHealth
from typed_ss.errors import BackendError

pytestmark = pytest.mark.timeout(30)


async def grpc_pair() -> list[Backend]:
    """Two gRPC nodes, each the other's only peer, plaintext and unauthenticated (``insecure=True``),
    started together (each waits at its start for the other to link)."""
    from typed_ss.backends.grpc import GrpcBackend

    for _attempt in range(5):
        ports = free_ports(2)
        addresses = [f"127.0.0.1:{port}" for port in ports]
        nodes = [
            GrpcBackend(listen=address, peers=[other], insecure=True, name=f"node-{port}")
            for address, other, port in zip(addresses, reversed(addresses), ports, strict=True)
        ]
        started = await asyncio.gather(*(node.start() for node in nodes), return_exceptions=True)
        failed = [result for result in started if isinstance(result, BaseException)]
        if not failed:
            return list(nodes)
        for node in nodes:
            await node.stop()
        if not all(isinstance(result, BackendError) for result in failed):
            raise failed[0]  # not a port taken meanwhile
    raise RuntimeError("no two free ports for the gRPC nodes")


@pytest.fixture(params=["memory", "redis", "redis-cluster", "nats", *MONGO_BUSES, "grpc"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Backend, Backend]]:
    """Two started backends of one kind, linked to each other; stopped afterwards."""
    async with contextlib.AsyncExitStack() as stack:
        backends: list[Backend]
        if request.param == "memory":
            backends = MemoryBus().backends(2)
        elif request.param == "redis":
            redis = RedisServer(tmp_path)
            await redis.start()
            stack.push_async_callback(redis.kill)
            backends = RedisBus(redis).backends(2)
        elif request.param == "redis-cluster":
            from tests.backends.redis_cluster_bus import redis_cluster_bus

            backends = (await stack.enter_async_context(redis_cluster_bus(tmp_path))).backends(2)
        elif request.param == "nats":
            from tests.backends.nats_bus import nats_bus

            backends = (await stack.enter_async_context(nats_bus(tmp_path))).backends(2)
        elif request.param in MONGO_BUSES:
            backends = (await stack.enter_async_context(mongo_bus(request.param))).backends(2)
        else:
            backends = await grpc_pair()
        for backend in backends:
            stack.push_async_callback(backend.stop)
            assert isinstance(backend, Backend)
        if request.param != "grpc":  # the gRPC nodes start together, above
            for backend in backends:
                await backend.start()
        a, b = backends
        yield a, b


def on(topic: str, received: list[Message]) -> list[bytes]:
    return [data for t, data in received if t == topic]


def connected(backend: Backend) -> bool:
    return backend.health().state == "connected"


async def test_what_is_published_after_subscribe_returns_arrives_once_intact_and_in_order(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    await a.subscribe("to-a")
    await b.subscribe("to-b")
    sent = [
        b"",
        b"\x00\x01\x02\xff",
        "héllo".encode(),
        bytes(range(256)) * 256,
        *(b"%d" % i for i in range(200)),
    ]
    async with receiving(a) as at_a, receiving(b) as at_b:
        for data in sent:
            await a.publish("to-b", data)
            await b.publish("to-a", data)
        await a.publish("to-b", b"end")
        await b.publish("to-a", b"end")
        # The per-publisher order on a topic puts any copy before the end: none arrived.
        assert on("to-b", await at_b.until(("to-b", b"end"))) == [*sent, b"end"]
        assert on("to-a", await at_a.until(("to-a", b"end"))) == [*sent, b"end"]


async def test_a_topic_subscribed_right_before_a_publish_gets_it(pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    async with receiving(b) as at_b:
        for i in range(20):
            topic = f"fresh-{i}"
            await b.subscribe(topic)
            await a.publish(topic, b"first")  # published right after subscribe returned
            await at_b.until((topic, b"first"))


async def test_only_the_topics_subscribed_arrive(pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    await b.subscribe("wanted")
    async with receiving(b) as at_b:
        for i in range(5):
            await a.publish("unwanted", b"%d" % i)
            await b.publish("unwanted", b"%d" % i)  # its own neither
            await a.publish("wanted", b"%d" % i)
        received = await at_b.until(("wanted", b"4"))
    assert {topic for topic, _ in received} == {"wanted"}


async def test_an_unsubscribed_topic_stops_arriving(pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    await b.subscribe("t")
    await b.subscribe("marker")
    async with receiving(b) as at_b:
        await a.publish("t", b"before")
        await at_b.until(("t", b"before"))
        await b.unsubscribe("t")

        async def round_trip(i: int) -> bool:
            """Publish on the topic and then a marker; whether the topic's message came first."""
            await a.publish("t", b"%d" % i)
            await a.publish("marker", b"%d" % i)
            return ("t", b"%d" % i) in await at_b.until(("marker", b"%d" % i))

        # Stopping may take a moment (the broker, or the peer, applies it), never long; the deadline
        # is the round count.
        rounds = 0
        while await round_trip(rounds):
            rounds += 1
            assert rounds < 200, "the topic never stopped arriving"
        stopped_at = len(at_b.received)
        for i in range(rounds + 1, rounds + 11):
            await round_trip(i)
        assert on("t", at_b.received[stopped_at:]) == [], "and it stays stopped"


async def test_subscribing_twice_and_unsubscribing_what_is_not_subscribed_are_harmless(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    await b.unsubscribe("never-subscribed")
    await b.subscribe("t")
    await b.subscribe("t")
    async with receiving(b) as at_b:
        for i in range(3):
            await a.publish("t", b"%d" % i)
        await a.publish("t", b"end")
        assert on("t", await at_b.until(("t", b"end"))) == [b"0", b"1", b"2", b"end"]  # each once


async def test_health_names_the_backend_and_follows_it_to_stopped(
    pair: tuple[Backend, Backend], request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["pair"].removesuffix("-real")
    # Both connected before either stops: a gRPC node counts as connected once its link to the other
    # is up, which can only happen while that other one runs.
    for backend in pair:
        await eventually(functools.partial(connected, backend))
    for backend in pair:
        health = backend.health()
        assert isinstance(health, BackendHealth)
        assert health.name == kind
        await backend.stop()
        assert backend.health().state == "stopped"
        assert all(task.state != "running" for task in backend.health().tasks)


async def test_stop_ends_the_message_stream_is_safe_twice_and_refuses_later_publishes(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    await b.subscribe("t")
    async with receiving(b) as at_b:
        await a.publish("t", b"x")
        await at_b.until(("t", b"x"))
        await b.stop()
        await eventually(lambda: at_b.ended)  # the stream ended by itself
        await b.stop()
    with pytest.raises(BackendError):
        await b.publish("t", b"after stop")
