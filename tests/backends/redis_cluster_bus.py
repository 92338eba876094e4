"""A real Redis Cluster (3 masters, 3 replicas) as a conformance bus for :class:`RedisClusterBackend`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis

from tests.backends.redis_cluster_server import RedisClusterServer
from typed_ss.backends import Backend
from typed_ss.backends.redis_cluster import RedisClusterBackend

__all__ = ["RedisClusterBus", "redis_cluster_bus"]


class RedisClusterBus:
    name = "redis-cluster"

    def __init__(self, cluster: RedisClusterServer, group: str = "conformance") -> None:
        self.cluster = cluster
        self.group = group
        self.made: list[RedisClusterBackend] = []

    def backends(self, count: int) -> list[Backend]:
        made = [RedisClusterBackend(self.cluster.url, group=self.group) for _ in range(count)]
        self.made.extend(made)
        return list(made)

    async def subscribers(self, topic: str) -> int:
        """Subscribers of the topic's (first) sharded channel, asked of the master serving it: sharded
        channels exist on that master only."""
        channel = RedisClusterBackend(self.cluster.url, group=self.group).channels(topic)[0]
        master = await self.cluster.master_of(channel)
        client = aioredis.Redis(host="127.0.0.1", port=master.port)
        try:
            ((_, count),) = await client.pubsub_shardnumsub(channel)
        finally:
            await client.aclose()
        return int(count)


@asynccontextmanager
async def redis_cluster_bus(workdir: Path) -> AsyncIterator[RedisClusterBus]:
    cluster = RedisClusterServer(workdir)
    try:
        await cluster.start()
        yield RedisClusterBus(cluster)
    finally:
        await cluster.kill()
