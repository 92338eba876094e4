"""What only the Redis Cluster backend does, on a real cluster of 3 masters and 3 replicas: rooms
spread over the masters by hash-tag partitions, the broadcast spread too, one subscriber connection
per master however many rooms, credentials carried to every master, a publish that fails at once when
the cluster is gone, and its configuration errors. The conformance, protocol and fault suites cover
the rest."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from tests.backends.receiving import receiving
from tests.backends.redis_cluster_server import RedisClusterServer
from tests.support import eventually
from typed_ss.backends.redis_cluster import RedisClusterBackend, spread_tags
from typed_ss.errors import BackendError, ConfigurationError
from typed_ss.multihome import BROADCAST_TOPIC, room_topic

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


@contextlib.asynccontextmanager
async def started_cluster(tmp_path: Path, password: str | None = None) -> AsyncIterator[RedisClusterServer]:
    cluster = RedisClusterServer(tmp_path, password=password)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.kill()


@contextlib.asynccontextmanager
async def started(backend: RedisClusterBackend) -> AsyncIterator[RedisClusterBackend]:
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


async def pubsub_clients(cluster: RedisClusterServer) -> dict[int, int]:
    """Subscriber connections on each master, by port."""
    counts = {}
    for node in await cluster.masters_now():
        client = cluster.server(node.port).client()
        try:
            counts[node.port] = len(await client.client_list(_type="pubsub"))
        finally:
            await client.aclose()
    return counts


def test_partition_tags_split_the_slot_space_evenly() -> None:
    for count in (1, 3, 16, 128):
        tags = spread_tags(count)
        assert len(set(tags)) == count
        for i, tag in enumerate(tags):
            slot = key_slot(tag.encode())
            assert i * REDIS_CLUSTER_HASH_SLOTS // count <= slot < (i + 1) * REDIS_CLUSTER_HASH_SLOTS // count


async def test_rooms_and_the_broadcast_spread_over_every_master(tmp_path: Path) -> None:
    async with started_cluster(tmp_path) as cluster:
        backend = RedisClusterBackend(cluster.url)
        masters = {node.port: node for node in await cluster.masters_now()}

        async def master_port(channel: str) -> int:
            return (await cluster.master_of(channel)).port

        rooms = [f"room-{i}" for i in range(300)]
        per_master = Counter([await master_port(backend.channels(room_topic(room))[0]) for room in rooms])
        assert set(per_master) == set(masters)
        assert min(per_master.values()) >= 60  # 100 each on average: none left out, none taking all
        broadcast = backend.channels(BROADCAST_TOPIC)
        assert len(broadcast) == 16
        assert {await master_port(channel) for channel in broadcast} == set(masters)
        # Each instance publishes the broadcast to one channel of its own, of those.
        assert backend.publish_channel(BROADCAST_TOPIC) in broadcast
        # Channels of one partition share a slot: one SSUBSCRIBE subscribes them all.
        same = [
            room for room in rooms if backend.channels(room_topic(room))[0].split("}")[0].endswith("{0.0")
        ]
        for room in same:
            assert key_slot(backend.channels(room_topic(room))[0].encode()) == key_slot(b"{0.0}")


async def test_one_subscriber_connection_per_master_however_many_rooms(tmp_path: Path) -> None:
    async with started_cluster(tmp_path) as cluster:
        async with started(RedisClusterBackend(cluster.url)) as backend:
            await backend.subscribe(BROADCAST_TOPIC)
            for i in range(300):
                await backend.subscribe(room_topic(f"room-{i}"))
            assert backend.health().state == "connected"
            assert set((await pubsub_clients(cluster)).values()) == {1}
            # Unsubscribed from everything on a master, its connection is closed.
            await backend.unsubscribe(BROADCAST_TOPIC)
            for i in range(300):
                await backend.unsubscribe(room_topic(f"room-{i}"))

            async def none_left() -> bool:
                return set((await pubsub_clients(cluster)).values()) == {0}

            await eventually(none_left)


async def test_credentials_of_the_cluster_client_reach_every_master(tmp_path: Path) -> None:
    async with started_cluster(tmp_path, password="s3cret-for-the-test") as cluster:
        client = RedisCluster(host="127.0.0.1", port=cluster.servers[0].port, password="s3cret-for-the-test")
        a = RedisClusterBackend(client=client)
        b = RedisClusterBackend(cluster.url)  # the password in the URL
        try:
            async with started(a), started(b):
                await b.subscribe(BROADCAST_TOPIC)
                async with receiving(b) as at_b:
                    await a.publish(BROADCAST_TOPIC, b"with a password")
                    await at_b.until((BROADCAST_TOPIC, b"with a password"))
                assert a.health().state == b.health().state == "connected"
        finally:
            await client.aclose()
        # Without it, the backend never connects, and says why.
        unauthorised = RedisClusterBackend(f"redis://127.0.0.1:{cluster.servers[0].port}/0")
        async with started(unauthorised):
            await eventually(lambda: "auth" in str(unauthorised.health().detail["last_error"]).lower())
            assert unauthorised.health().state != "connected"


async def test_publish_fails_fast_while_the_cluster_is_down(tmp_path: Path) -> None:
    async with started_cluster(tmp_path) as cluster:
        async with started(RedisClusterBackend(cluster.url)) as backend:
            await backend.subscribe(BROADCAST_TOPIC)
            await backend.publish(BROADCAST_TOPIC, b"up")
            await cluster.kill()
            with pytest.raises(BackendError):
                await backend.publish(BROADCAST_TOPIC, b"down")
            await eventually(lambda: backend.health().state == "reconnecting")


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        RedisClusterBackend()
    with pytest.raises(ConfigurationError):
        RedisClusterBackend("redis://127.0.0.1:1", client=RedisCluster(host="127.0.0.1", port=1))
    for group in ("", "a:b", "a{b", "a}b"):
        with pytest.raises(ConfigurationError):
            RedisClusterBackend("redis://127.0.0.1:1", group=group)
    with pytest.raises(ConfigurationError):
        RedisClusterBackend("redis://127.0.0.1:1", partitions=0)


async def test_an_unreachable_cluster_at_start_is_reported_not_raised(tmp_path: Path) -> None:
    async with started_cluster(tmp_path) as cluster:
        port = cluster.servers[0].port
    backend = RedisClusterBackend(f"redis://127.0.0.1:{port}/0")
    async with started(backend):
        await backend.subscribe(BROADCAST_TOPIC)  # returns: subscribed once the cluster answers
        assert backend.health().state in ("connecting", "reconnecting")
        assert backend.health().detail["last_error"]


async def test_a_room_left_and_joined_at_once_is_no_slot_move(tmp_path: Path) -> None:
    async with started_cluster(tmp_path) as cluster:
        async with started(RedisClusterBackend(cluster.url)) as backend:
            await backend.subscribe(BROADCAST_TOPIC)  # keeps a connection to every master open
            topic = room_topic("lobby")
            await backend.subscribe(topic)
            for _ in range(20):
                await backend.unsubscribe(topic)
                await backend.subscribe(topic)
            async with receiving(backend) as at_backend, started(RedisClusterBackend(cluster.url)) as sender:
                await sender.publish(topic, b"still subscribed")
                await at_backend.until((topic, b"still subscribed"))
            health = backend.health()
            assert health.state == "connected"
            assert (health.detail["moves"], health.detail["unplaced"]) == (0, 0)
