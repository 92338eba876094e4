"""Fixtures for the multihome suites: a real redis-server, and N linked instances over any backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.apps import echo_server, make_app
from tests.backends.mongo_bus import MONGO_BUSES, mongo_bus
from tests.backends.nats_server import NatsServer
from tests.backends.redis_server import RedisServer
from tests.support import running
from typed_ss import Server
from typed_ss.backends import Backend, MemoryBackend, MemoryBroker
from typed_ss.backends.redis import RedisBackend


@dataclass
class Instance:
    server: Server
    url: str


class Bus(Protocol):
    """One backend kind under test: makes linked backends, and says who subscribes to a topic."""

    name: str

    def backends(self, count: int) -> list[Backend]:
        """``count`` backends linked to each other (made together: a static mesh needs every peer)."""
        ...

    async def subscribers(self, topic: str) -> int: ...


class MemoryBus:
    name = "memory"

    def __init__(self) -> None:
        self.broker = MemoryBroker()

    def backends(self, count: int) -> list[Backend]:
        return [MemoryBackend(self.broker) for _ in range(count)]

    async def subscribers(self, topic: str) -> int:
        return len(self.broker.subscribers(topic))


class RedisBus:
    name = "redis"

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis

    def backends(self, count: int) -> list[Backend]:
        return [RedisBackend(self.redis.url, group="conformance") for _ in range(count)]

    async def subscribers(self, topic: str) -> int:
        client = self.redis.client()
        try:
            ((_, count),) = await client.pubsub_numsub(f"conformance:{topic}")
            return int(count)
        finally:
            await client.aclose()


Linked = Callable[..., AbstractAsyncContextManager[list[Instance]]]


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real nats-server on free loopback ports, killed (by its PID) afterwards."""
    server = NatsServer(tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@pytest.fixture(params=["memory", "redis", "redis-cluster", "nats", "grpc", *MONGO_BUSES])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    if request.param == "memory":
        yield MemoryBus()
        return
    if request.param == "redis-cluster":
        from tests.backends.redis_cluster_bus import redis_cluster_bus

        async with redis_cluster_bus(tmp_path) as cluster:
            yield cluster
        return
    if request.param == "nats":
        from tests.backends.nats_bus import nats_bus

        async with nats_bus(tmp_path) as nats:
            yield nats
        return
    if request.param in MONGO_BUSES:
        async with mongo_bus(request.param) as mongo:
            yield mongo
        return
    if request.param == "grpc":
        from tests.backends.grpc_bus import GrpcBus

        yield GrpcBus(tmp_path)
        return
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        yield RedisBus(redis)
    finally:
        await redis.kill()


@pytest.fixture
def linked(bus: Bus) -> Linked:
    """``async with linked(3) as instances``: N servers (``echo_server`` by default) sharing the bus,
    each served by uvicorn on its own free port."""

    @asynccontextmanager
    async def start(
        count: int, make: Callable[..., Server] = echo_server, **options: Any
    ) -> AsyncIterator[list[Instance]]:
        async with AsyncExitStack() as stack:
            instances = []
            for backend in bus.backends(count):
                server = make(backend=backend, **options)
                url = await stack.enter_async_context(running(make_app(server), server))
                instances.append(Instance(server, url))
            yield instances

    return start
