"""The Redis Cluster backend: sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7), one subscriber
connection per master.

``RedisClusterBackend(url="redis://10.0.0.1:7000")`` (any node: the others are found from it) or
``RedisClusterBackend(client=redis.asyncio.RedisCluster(...))`` for TLS, credentials and every other
connection setting. ``group`` (default ``"typed-ss"``) prefixes every channel.

Why sharded pub/sub: a plain PUBLISH on a Redis Cluster is copied to every node, so adding nodes adds
load instead of capacity. A sharded channel lives on the master that serves its hash slot: SPUBLISH
goes to that master alone, which delivers it to its own subscribers.

- **Partitions.** A topic's channel is ``<group>:{<tag>}:<topic>``, the tag one of ``partitions``
  (128) hash tags chosen so that their slots spread evenly over the 16,384: rooms spread over the
  masters, and the channels of one partition share a slot, so that resubscribing ten thousand
  rooms after a failover takes at most ``partitions`` commands per master.
- **The broadcast and the control topics** (``b``, ``c``) reach every instance. One channel each
  would pin all of that traffic on one master; instead each has ``broadcast_shards`` (16) channels
  spread over the slots, every instance subscribes to all of them, and each instance publishes to
  one of them (its own, fixed: the order of one publisher's messages is kept). The masters share
  the broadcast load; the price is ``broadcast_shards`` subscriptions more per instance.
- **Interest routing.** The bridge subscribes to the broadcast channels and the channels of rooms
  with local members only: ``PUBSUB SHARDNUMSUB`` on the room's master shows exactly that.
- **Topology.** The backend reads the slot map (``CLUSTER SLOTS``) at start, every
  ``topology_interval`` (2 s), and at once when a master unsubscribes channels by itself (its slot
  moved: resharding), when a subscriber connection is lost (a master may have died: its replica
  takes over) or when a master answers ``MOVED``; each channel is then subscribed on the master now
  serving it. Messages published before that are lost, and the bridge's sequence numbers count them.
- **Failures.** Each subscriber connection is kept like the Redis backend's (a
  :class:`~typed_ss.backends._support.Link`, a PING probe, a backoff capped at ``max_backoff``);
  ``publish`` gives up after ``publish_timeout`` and raises, and the bridge's outbox retries.
- No connection state recovery history: a ``RedisClusterBackend`` is a plain backend (recovery
  works per instance; see docs/recovery.md).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import secrets
import zlib
from collections.abc import AsyncIterator
from typing import Any, Final

from typed_ss.backends._redis_shard import GONE, ShardSubscriber, describe
from typed_ss.backends._support import Inbox
from typed_ss.backends.base import BackendHealth, BackendState
from typed_ss.cluster.wire import CONTROL_TOPIC
from typed_ss.errors import BackendError, ConfigurationError, MissingDependencyError
from typed_ss.multihome import BROADCAST_TOPIC
from typed_ss.supervision import Backoff, Supervised, raise_if_cancelled

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError("redis", "redis") from exc

__all__ = ["RedisClusterBackend"]

logger = logging.getLogger("typed_ss.backends.redis_cluster")

EVERY_INSTANCE_TOPICS: Final = frozenset({BROADCAST_TOPIC, CONTROL_TOPIC})
"""Topics every instance subscribes to: spread over ``broadcast_shards`` channels."""


@functools.cache
def spread_tags(count: int) -> tuple[str, ...]:
    """``count`` hash tags whose slots split the slot space evenly: tag ``i``'s slot lies in the
    ``i``-th of ``count`` equal ranges (the same tags on every instance and every run)."""
    tags = []
    for i in range(count):
        low = i * REDIS_CLUSTER_HASH_SLOTS // count
        high = (i + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        candidate = 0
        while not low <= key_slot(f"{i}.{candidate}".encode()) < high:
            candidate += 1
        tags.append(f"{i}.{candidate}")
    return tuple(tags)


class RedisClusterBackend:
    """A :class:`~typed_ss.backends.base.Backend` over Redis Cluster sharded pub/sub (extra ``redis``).
    See the module docstring.

    Args:
        url: any node of the cluster (``redis://``, or ``rediss://`` for TLS; a password may be in it).
        client: a ``redis.asyncio.RedisCluster`` the application made (TLS, credentials, several seed
            nodes); instead of ``url``. Not closed by the backend.
        group: the channels' first part, so that separate applications can share a cluster.
        partitions: hash tags the topics are spread over (each channel of a partition shares a slot).
        broadcast_shards: channels the broadcast and the control topic are each spread over.
        publish_timeout: how long :meth:`publish` may take before it raises.
        subscribe_timeout: how long :meth:`subscribe` waits for a master's confirmation.
        probe_interval, probe_timeout: a PING on each subscriber connection every ``probe_interval``;
            none answered within ``probe_timeout`` replaces the connection.
        topology_interval: seconds between two reads of the slot map when nothing prompts one.
        max_backoff: the longest wait between two attempts to connect to a master.
        max_pending: received messages waiting for the bridge, at most (the oldest are dropped and
            counted past it).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: RedisCluster | None = None,
        group: str = "typed-ss",
        partitions: int = 128,
        broadcast_shards: int = 16,
        publish_timeout: float = 1.0,
        subscribe_timeout: float = 2.0,
        probe_interval: float = 1.0,
        probe_timeout: float = 3.0,
        topology_interval: float = 2.0,
        max_backoff: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisClusterBackend needs either url=... or client=..., not both")
        if not group or any(c in group for c in ":{}"):
            raise ConfigurationError(
                f"group must be a non-empty name without ':', '{{' or '}}', not {group!r}"
            )
        if partitions < 1 or broadcast_shards < 1:
            raise ConfigurationError("partitions and broadcast_shards must be at least 1")
        self._url = url
        self._client = client
        self._owns_client = client is None
        self._prefix = f"{group}:"
        self._partition_tags = spread_tags(partitions)
        self._broadcast_tags = spread_tags(broadcast_shards)
        # This instance's broadcast channel, fixed for its life: one publisher's order is kept.
        self._own_shard = secrets.randbelow(broadcast_shards)
        self._publish_timeout = publish_timeout
        self._subscribe_timeout = subscribe_timeout
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._topology_interval = topology_interval
        self._max_backoff = max_backoff
        self._inbox: Inbox[tuple[str, bytes]] = Inbox(max_pending)
        self._wanted: dict[str, str] = {}  # channel -> topic, for every subscribed topic
        self._placed: dict[str, tuple[str, int]] = {}  # channel -> the master it is subscribed on
        self._live: set[str] = set()  # channels their master confirmed
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._shards: dict[tuple[str, int], ShardSubscriber] = {}
        # The slot map: the first slot of each range, and the master serving it.
        self._range_starts: list[int] = []
        self._range_owners: list[tuple[tuple[str, int], int]] = []  # (master, last slot)
        self._mapped = asyncio.Event()
        self._look_again = asyncio.Event()
        self._topology = Supervised("redis cluster topology", self._watch_topology, log=logger)
        self._topology_backoff = Backoff(cap=max_backoff)
        self._running = False
        self._moves = 0
        self._refreshes = 0
        self._retired_reconnects = 0
        self._last_error = ""

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is None:
            # Retries are this backend's job (the outbox republishes), not redis-py's; redirections
            # (MOVED, ASK) are still followed by the cluster client.
            self._client = RedisCluster.from_url(
                self._url or "",
                retry=Retry(NoBackoff(), 0),
                socket_connect_timeout=self._publish_timeout,
                socket_timeout=max(self._publish_timeout, self._subscribe_timeout),
            )
        self._running = True
        self._inbox.open()
        self._topology.start()

    async def stop(self) -> None:
        self._running = False
        await self._topology.stop()
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            await shard.stop()
        self._placed.clear()
        self._live.clear()
        if self._owns_client and self._client is not None:
            with contextlib.suppress(*GONE):
                await self._client.aclose()
                # redis-py 8.1's aclose() closes nothing while the client waits to read the slot map
                # again (after any connection error): its nodes' connections are closed here.
                await self._client.nodes_manager.aclose()
                await self._client.nodes_manager.aclose("startup_nodes")
            self._client = None
        self._inbox.close()

    # --- the Backend interface ---------------------------------------------------------------------

    def channels(self, topic: str) -> list[str]:
        """The sharded channels ``topic`` is carried on (tests and operators look them up)."""
        if topic in EVERY_INSTANCE_TOPICS:
            return [f"{self._prefix}{{{tag}}}:{topic}" for tag in self._broadcast_tags]
        tag = self._partition_tags[zlib.crc32(topic.encode()) % len(self._partition_tags)]
        return [f"{self._prefix}{{{tag}}}:{topic}"]

    def publish_channel(self, topic: str) -> str:
        """The channel this instance publishes ``topic`` to (its own one of the broadcast channels for
        ``b`` and ``c``)."""
        if topic in EVERY_INSTANCE_TOPICS:
            return f"{self._prefix}{{{self._broadcast_tags[self._own_shard]}}}:{topic}"
        return self.channels(topic)[0]

    async def publish(self, topic: str, data: bytes) -> None:
        client = self._client
        if client is None or not self._running:
            raise BackendError("the Redis Cluster backend is not started")
        try:
            async with asyncio.timeout(self._publish_timeout):
                await client.spublish(self.publish_channel(topic), data)
        except GONE as exc:
            raise BackendError(f"publishing to Redis Cluster failed: {describe(exc)}") from exc

    async def subscribe(self, topic: str) -> None:
        channels = self.channels(topic)
        for channel in channels:
            self._wanted[channel] = topic
        waiting = [self._confirmation(channel) for channel in channels if channel not in self._live]
        if not self._mapped.is_set():
            # The first slot map is on its way (it places every wanted channel): wait for it, as for
            # a first connection.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._subscribe_timeout):
                    await self._mapped.wait()
            if not self._mapped.is_set():
                return  # placed once the map is read
        await self._place([channel for channel in channels if channel not in self._placed])
        masters = {self._placed.get(channel) for channel in channels}
        shards = [self._shards.get(master) for master in masters if master is not None]
        if None in masters or not all(
            shard is not None and shard.link.state in ("connecting", "connected") for shard in shards
        ):
            return  # a master does not answer (or is not known): subscribed once it is; nobody waits
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._subscribe_timeout):
                await asyncio.gather(*(asyncio.shield(future) for future in waiting))

    async def unsubscribe(self, topic: str) -> None:
        by_shard: dict[tuple[str, int], list[str]] = {}
        for channel in self.channels(topic):
            self._wanted.pop(channel, None)
            self._on_confirmed(channel)  # a subscribe still waiting for it stops waiting
            self._live.discard(channel)
            master = self._placed.pop(channel, None)
            if master is not None:
                by_shard.setdefault(master, []).append(channel)
        for master, channels in by_shard.items():
            shard = self._shards.get(master)
            if shard is not None:
                await shard.remove(channels)
        self._retire_idle_shards()

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._inbox.messages()

    def health(self) -> BackendHealth:
        return BackendHealth(
            name="redis-cluster",
            state=self._state(),
            reconnects=self._retired_reconnects + sum(s.link.reconnects for s in self._shards.values()),
            detail={
                "masters": {
                    f"{host}:{port}": {"state": shard.link.state, "channels": len(shard.channels)}
                    for (host, port), shard in self._shards.items()
                },
                "channels": len(self._wanted),
                "unplaced": self._unplaced(),
                "topology_refreshes": self._refreshes,
                "moves": self._moves,
                "probe_failures": sum(shard.probe_failures for shard in self._shards.values()),
                "pending": len(self._inbox),
                "dropped": self._inbox.dropped,
                "last_error": self._last_error,
            },
            tasks=[self._topology.health(), *(shard.task.health() for shard in self._shards.values())],
        )

    def _state(self) -> BackendState:
        if not self._running:
            return "stopped"
        if not self._mapped.is_set():
            return "connecting" if not self._refreshes else "reconnecting"
        states = {shard.link.state for shard in self._shards.values()}
        worst: tuple[BackendState, ...] = ("reconnecting", "unresponsive", "connecting")
        for state in worst:
            if state in states:
                return state
        if self._unplaced():
            return "reconnecting"  # channels whose master is not known yet
        return "connected"

    # --- placing channels on masters ---------------------------------------------------------------

    def _unplaced(self) -> int:
        """Wanted channels not subscribed on any master (their master is not known yet)."""
        return sum(1 for channel in self._wanted if channel not in self._placed)

    def _confirmation(self, channel: str) -> asyncio.Future[None]:
        future = self._confirmed.get(channel)
        if future is None or future.done():
            future = self._confirmed[channel] = asyncio.get_running_loop().create_future()
        return future

    def _on_confirmed(self, channel: str) -> None:
        if channel in self._wanted:
            self._live.add(channel)
        future = self._confirmed.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _master_of(self, channel: str) -> tuple[str, int] | None:
        slot = key_slot(channel.encode())
        at = bisect.bisect_right(self._range_starts, slot) - 1
        if at < 0:
            return None
        master, last = self._range_owners[at]
        return master if slot <= last else None

    async def _place(self, channels: list[str]) -> list[ShardSubscriber]:
        """Subscribe each of ``channels`` on the master serving it now; returns those masters."""
        by_master: dict[tuple[str, int], list[str]] = {}
        for channel in channels:
            master = self._master_of(channel)
            if master is not None:
                by_master.setdefault(master, []).append(channel)
        shards = []
        for master, group in by_master.items():
            # Only what is still wanted: an unsubscribe may have run during the previous await.
            group = [channel for channel in group if channel in self._wanted]
            if not group:
                continue
            shard = self._shard(master)
            for channel in group:
                self._placed[channel] = master
            await shard.add(group)
            shards.append(shard)
        return shards

    def _shard(self, master: tuple[str, int]) -> ShardSubscriber:
        shard = self._shards.get(master)
        if shard is None:
            shard = self._shards[master] = ShardSubscriber(
                master,
                connect=self._connect_to,
                deliver=self._deliver,
                confirmed=self._on_confirmed,
                moved=self._on_moved,
                subscribe_timeout=self._subscribe_timeout,
                probe_interval=self._probe_interval,
                probe_timeout=self._probe_timeout,
                max_backoff=self._max_backoff,
            )
            shard.start()
        return shard

    def _retire_idle_shards(self) -> None:
        """Close the connections to masters that no channel is placed on any more."""
        in_use = set(self._placed.values())
        for master in [master for master in self._shards if master not in in_use]:
            shard = self._shards.pop(master)
            self._retired_reconnects += shard.link.reconnects
            task = asyncio.get_running_loop().create_task(shard.stop())
            task.add_done_callback(_ended)

    def _connect_to(self, host: str, port: int) -> aioredis.Redis:
        """A client for one master, with the cluster client's connection settings (TLS, credentials)."""
        assert self._client is not None
        template = next(iter(self._client.get_nodes()), None)
        settings: dict[str, Any] = dict(template.connection_kwargs) if template is not None else {}
        settings.update(host=host, port=port, retry=Retry(NoBackoff(), 0))
        settings.setdefault("socket_connect_timeout", self._subscribe_timeout)
        if template is not None:
            settings["connection_class"] = template.connection_class
        return aioredis.Redis.from_pool(ConnectionPool(**settings))  # closed with the client

    def _deliver(self, channel: str, data: bytes) -> None:
        topic = self._wanted.get(channel)
        if topic is not None:
            self._inbox.put((topic, data))

    def _on_moved(self, channels: list[str]) -> None:
        """A master stopped serving ``channels`` (or refused a command): read the slot map again."""
        self._moves += len(channels)
        for channel in channels:
            self._placed.pop(channel, None)
            self._live.discard(channel)
        self._look_again.set()

    # --- the slot map ------------------------------------------------------------------------------

    async def _watch_topology(self) -> None:
        """Read the slot map now, every ``topology_interval``, and whenever something suggests it
        changed; place every channel on the master that serves it."""
        while True:
            self._look_again.clear()
            try:
                await self._read_slot_map()
            except GONE as exc:
                raise_if_cancelled()  # a cancellation a library turned into a connection error
                self._last_error = f"reading the slot map: {describe(exc)}"
                delay = self._topology_backoff.failed()
                if self._topology_backoff.should_log():
                    logger.warning("cannot read the Redis Cluster slot map (%s): still trying", describe(exc))
                await asyncio.sleep(delay)
                continue
            raise_if_cancelled()  # redis-py's cluster client may swallow a cancellation, now and then
            self._topology_backoff.succeeded()
            await self._reconcile()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._topology_interval):
                    await self._look_again.wait()
            # Many signals come at once (a resharding moves slots one by one): one read for them.
            await asyncio.sleep(0.05)

    async def _read_slot_map(self) -> None:
        assert self._client is not None
        async with asyncio.timeout(self._subscribe_timeout):
            slots: dict[tuple[int, int], dict[str, Any]] = await self._client.cluster_slots(
                target_nodes=RedisCluster.RANDOM
            )  # type: ignore[assignment]  # redis-py's stub says list; the cluster client parses a dict
        ranges = sorted((first, last, (str(node["primary"][0]), int(node["primary"][1])))
                        for (first, last), node in slots.items())  # fmt: skip
        self._range_starts = [first for first, _last, _master in ranges]
        self._range_owners = [(master, last) for _first, last, master in ranges]
        self._refreshes += 1
        self._mapped.set()

    async def _reconcile(self) -> None:
        """Move every channel not on the master serving it now; close connections no longer used."""
        # Placed but no longer wanted (an unsubscribe that ran while a move was under way): drop them.
        stale: dict[tuple[str, int], list[str]] = {}
        for channel in [channel for channel in self._placed if channel not in self._wanted]:
            stale.setdefault(self._placed.pop(channel), []).append(channel)
        for master, channels in stale.items():
            if (shard := self._shards.get(master)) is not None:
                await shard.remove(channels)
        moving: dict[tuple[str, int] | None, list[str]] = {}
        for channel in self._wanted:
            now = self._master_of(channel)
            placed = self._placed.get(channel)
            if placed != now or (now is not None and now not in self._shards):
                moving.setdefault(placed, []).append(channel)
        if not moving:
            self._retire_idle_shards()
            return
        for old, channels in moving.items():
            self._moves += len(channels) if old is not None else 0
            for channel in channels:
                self._placed.pop(channel, None)
                self._live.discard(channel)
            shard = self._shards.get(old) if old is not None else None
            if shard is not None:
                await shard.remove(channels)
            await self._place(channels)
        self._retire_idle_shards()


def _ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("closing a Redis Cluster subscriber failed", exc_info=task.exception())
