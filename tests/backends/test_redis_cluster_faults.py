"""Redis Cluster faults during a stream: a master killed (its replica takes over), and the slots
resharded to another master.

The stream of tests/backends/fault_stream.py runs from instance A to instance B, each on a
``RedisClusterBackend`` of a real cluster of 3 masters and 3 replicas. The fault strikes the master
that serves A's broadcast channel, so the stream's own path is cut. The checks are the shared ones:
local delivery never stops, no broadcast call waits on Redis, B loses only messages sent around the
fault and counts exactly those, and gets everything sent once its backend reports it is subscribed
again on the masters now serving its channels.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends.fault_stream import (
    Stream,
    check_losses_only_around_the_faults,
    check_stream,
    health,
    reconnected,
    stream_between_two_instances,
)
from tests.backends.redis_cluster_server import ClusterNode, RedisClusterServer
from typed_ss import Server
from typed_ss.backends.redis_cluster import RedisClusterBackend
from typed_ss.multihome import BROADCAST_TOPIC

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[RedisClusterServer]:
    cluster = RedisClusterServer(tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.kill()


class Made:
    """Makes the stream's backends and remembers them: the first is A's."""

    def __init__(self, cluster: RedisClusterServer) -> None:
        self.cluster = cluster
        self.backends: list[RedisClusterBackend] = []

    def __call__(self) -> RedisClusterBackend:
        backend = RedisClusterBackend(self.cluster.url, group="faults")
        self.backends.append(backend)
        return backend

    async def streams_master_port(self) -> int:
        """The port of the master serving the channel A broadcasts on."""
        return (await self.cluster.master_of(self.backends[0].publish_channel(BROADCAST_TOPIC))).port


async def test_the_master_of_the_stream_killed_its_replica_takes_over(cluster: RedisClusterServer) -> None:
    made = Made(cluster)

    async def kill_the_streams_master() -> None:
        port = await made.streams_master_port()
        await cluster.server(port).kill()  # no waiting: the stream goes on through the failover

    stream, on_b = await stream_between_two_instances(
        made, 800, {200: kill_the_streams_master}, recovered=reconnected
    )
    check_losses_only_around_the_faults(stream, check_stream(stream, on_b))
    # B's connection to the dead master was lost; its channels live on the promoted replica now.
    assert on_b["backend"]["reconnects"] >= 1
    assert on_b["backend"]["detail"]["moves"] >= 1
    ports = {int(address.split(":")[1]) for address in on_b["backend"]["detail"]["masters"]}
    assert ports == {node.port for node in await cluster.masters_now()}


async def test_the_stream_s_slots_resharded_to_another_master(cluster: RedisClusterServer) -> None:
    made = Made(cluster)
    resharding: list[asyncio.Task[None]] = []
    moves_before: list[int] = []

    async def reshard(source: ClusterNode, target: ClusterNode) -> None:
        await cluster.move_all_slots(source, target)

    async def start_resharding_the_streams_master() -> None:
        port = await made.streams_master_port()
        masters = await cluster.masters_now()
        source = next(node for node in masters if node.port == port)
        target = next(node for node in masters if node.port != port)
        moves_before.append(int(str(made.backends[1].health().detail["moves"])))
        # In the background: the stream goes on while the slots move, one by one.
        resharding.append(asyncio.create_task(reshard(source, target)))

    def subscribed_on_the_new_master(b: Server, _stream: Stream) -> bool:
        if not resharding or not resharding[0].done():
            return False
        resharding[0].result()  # a failed resharding fails the test here
        backend = health(b)["backend"]
        return bool(
            backend["state"] == "connected"
            and backend["detail"]["moves"] > moves_before[0]
            and backend["detail"]["unplaced"] == 0
        )

    try:
        stream, on_b = await stream_between_two_instances(
            made, 800, {200: start_resharding_the_streams_master}, recovered=subscribed_on_the_new_master
        )
    finally:
        for task in resharding:
            await task
    check_losses_only_around_the_faults(stream, check_stream(stream, on_b))
    # The source master serves no slot now, and B keeps no connection to it.
    masters = await cluster.masters_now()
    assert len(masters) == 2
    ports = {int(address.split(":")[1]) for address in on_b["backend"]["detail"]["masters"]}
    assert ports == {node.port for node in masters}
