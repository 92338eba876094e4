"""One subscriber connection to one Redis Cluster master, for :mod:`typed_ss.backends.redis_cluster`.

A :class:`ShardSubscriber` holds the sharded channels its master serves (the backend decides which),
SSUBSCRIBEs them, and hands what arrives to the backend. Its connection is kept by a
:class:`~typed_ss.backends._support.Link` under a :class:`~typed_ss.supervision.Supervised` task,
like every backend's: lost, it is logged, backed off and made again, every channel subscribed anew.

- Connected once the master answered a PING; then every channel is subscribed, one SSUBSCRIBE per
  hash slot (a command may not name channels of several slots), so that the backend's hash-tag
  partitions make a resubscription of thousands of rooms a few commands.
- A PING every ``probe_interval`` on the subscribed connection: a pong late while nothing else
  arrives marks the master ``unresponsive``; none within ``probe_timeout`` replaces the connection
  (a hung master, or a connection that looks healthy and delivers nothing).
- When a slot leaves the master (resharding, or the master demoted), Redis unsubscribes its
  channels itself (an ``sunsubscribe`` nobody asked for): the subscriber forgets them and tells the
  backend, which places them on their new master. A ``MOVED`` answer to an SSUBSCRIBE sent with an
  out-of-date map is reported the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from typed_ss.backends._support import Link
from typed_ss.supervision import Supervised, raise_if_cancelled

try:
    import redis.asyncio as aioredis
    from redis.crc import key_slot
    from redis.exceptions import RedisClusterException, RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from typed_ss.errors import MissingDependencyError

    raise MissingDependencyError("redis", "redis") from exc

__all__ = ["GONE", "ShardSubscriber", "by_slot", "describe"]

logger = logging.getLogger("typed_ss.backends.redis_cluster")

GONE = (RedisError, RedisClusterException, OSError, TimeoutError)
"""What a lost or unreachable master, or a cluster none of whose nodes answers, raises."""
_PUBSUB_GONE = (*GONE, AttributeError)
"""What a (un)subscribe raises when the connection is closed under it (redis-py then finds its
writer gone)."""


def describe(exc: BaseException) -> str:
    """An error for the log and ``last_error``: its kind and message (redis-py's repr of some of its
    errors leaves the message out)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Starved(Exception):
    """The subscriber connection stopped answering: a probe did not come back in time."""


def by_slot(channels: Iterable[str]) -> list[list[str]]:
    """``channels`` grouped by hash slot: one SSUBSCRIBE or SUNSUBSCRIBE each."""
    groups: defaultdict[int, list[str]] = defaultdict(list)
    for channel in channels:
        groups[key_slot(channel.encode())].append(channel)
    return list(groups.values())


class ShardSubscriber:
    """The subscriber connection to one master. See the module docstring.

    Args:
        address: the master's ``(host, port)``.
        connect: makes a client for an address (the backend's connection settings: TLS, credentials).
        deliver: called with ``(channel, data)`` for every message.
        confirmed: called with a channel once the master confirmed its subscription.
        moved: called with the channels the master stopped serving (their slot moved away), or with
            none when the connection failed or the master refused a command: the slot map may have
            changed.
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        connect: Callable[[str, int], aioredis.Redis],
        deliver: Callable[[str, bytes], None],
        confirmed: Callable[[str], None],
        moved: Callable[[list[str]], None],
        subscribe_timeout: float,
        probe_interval: float,
        probe_timeout: float,
        max_backoff: float,
    ) -> None:
        self.address = address
        self._connect = connect
        self._deliver = deliver
        self._confirmed = confirmed
        self._moved = moved
        self._subscribe_timeout = subscribe_timeout
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self.channels: set[str] = set()
        """The channels wanted on this master; subscribed again on every new connection."""
        self._unsent: dict[str, bool] = {}  # changes not sent while the master did not answer
        # SUNSUBSCRIBEs sent and not answered yet, by channel: their answers are no slot moves (a room
        # left and joined again at once would look like one).
        self._leaving: Counter[str] = Counter()
        self._pubsub: Any = None  # redis.asyncio.client.PubSub while the connection is up
        self._up = asyncio.Event()  # set once the master answered on this connection
        host, port = address
        self.link = Link(
            f"Redis Cluster master {host}:{port}",
            self._serve,
            gone=(*GONE, _Starved),
            log=logger,
            describe=describe,
            max_backoff=max_backoff,
        )
        self.task = Supervised(f"redis cluster subscriber {host}:{port}", self.link.run, log=logger)
        self.probe_failures = 0

    def start(self) -> None:
        self.task.start()

    async def stop(self) -> None:
        await self.task.stop()
        self.link.stopped()
        await self._close()

    @property
    def answering(self) -> bool:
        """Whether the connection is up and the master answers (commands sent now are confirmed)."""
        return self._up.is_set() and self.link.state == "connected"

    async def add(self, channels: list[str]) -> None:
        """Subscribe ``channels`` here; the confirmations go to ``confirmed``. Sent at once while the
        master answers; otherwise once it does (a new connection subscribes every channel)."""
        self.channels.update(channels)
        if not self.answering:
            if self._up.is_set():
                self._unsent.update(dict.fromkeys(channels, True))
            return
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                for group in by_slot(channels):
                    await self._pubsub.ssubscribe(*group)
        except _PUBSUB_GONE as exc:
            self._unsent.update(dict.fromkeys(channels, True))
            self.link.unresponsive(f"subscribing did not complete: {describe(exc)}")

    async def remove(self, channels: list[str]) -> None:
        """Unsubscribe ``channels`` (best effort: a new connection subscribes only what is wanted)."""
        self.channels.difference_update(channels)
        if not self.answering:
            if self._up.is_set():
                self._unsent.update(dict.fromkeys(channels, False))
            return
        with contextlib.suppress(*_PUBSUB_GONE):
            async with asyncio.timeout(self._subscribe_timeout):
                for group in by_slot(channels):
                    self._leaving.update(group)
                    await self._pubsub.sunsubscribe(*group)

    # --- the connection ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            await self._run_connection()
        except GONE:
            self._moved([])  # the master may be gone for good: its replica may serve its slots now
            raise
        finally:
            await self._close()

    async def _run_connection(self) -> None:
        client = self._connect(*self.address)
        pubsub = client.pubsub()
        self._pubsub = pubsub
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                await pubsub.ping()  # opens the connection
                # Up once the master answers, not once the command is written (a hung master
                # accepts both and answers nothing).
                while not self._up.is_set():
                    message = await pubsub.get_message(timeout=self._subscribe_timeout)
                    if message is not None and message["type"] == "pong":
                        self._up.set()
                self._unsent.clear()
                self.link.connected()
                for group in by_slot(list(self.channels)):
                    await pubsub.ssubscribe(*group)
            await self._read(pubsub)
        finally:
            with contextlib.suppress(*GONE):
                await client.aclose()

    async def _read(self, pubsub: Any) -> None:
        probe_sent: float | None = None
        next_probe = answered = time.monotonic()
        while True:
            raise_if_cancelled()  # a client library may swallow the cancellation that stops this task
            try:
                message = await pubsub.get_message(timeout=min(0.25, self._probe_interval))
            except ResponseError as exc:
                # An error answer to one command (a MOVED for an SSUBSCRIBE sent with an out-of-date
                # map): the connection itself is fine. The backend reads the map again.
                logger.info("Redis Cluster master %s:%s refused a command: %s", *self.address, exc)
                self._moved([])
                continue
            now = time.monotonic()
            if message is not None:
                answered = now
                self.link.answered()
                if message["type"] == "pong":
                    probe_sent = None
                else:
                    self._handle(message)
            if probe_sent is not None:
                if now - probe_sent > self._probe_timeout:
                    self.probe_failures += 1
                    raise _Starved(f"no answer to a PING within {self._probe_timeout} s")
                silent_for = now - max(probe_sent, answered)
                if silent_for > self._probe_interval:
                    self.link.unresponsive(f"no answer for {silent_for:.1f} s")
            if self._unsent and self.link.state == "connected":
                await self._apply_unsent(pubsub)
            if probe_sent is None and now >= next_probe:
                next_probe = now + self._probe_interval
                probe_sent = now
                async with asyncio.timeout(self._subscribe_timeout):
                    await pubsub.ping()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"].decode()
        if kind == "smessage":
            self._deliver(channel, message["data"])
        elif kind == "ssubscribe":
            self._confirmed(channel)
        elif kind == "sunsubscribe":
            if self._leaving[channel] > 0:
                self._leaving[channel] -= 1  # the answer to one this subscriber sent
                if not self._leaving[channel]:
                    del self._leaving[channel]
            elif channel in self.channels:
                # Not asked for: the channel's slot left this master.
                self.channels.discard(channel)
                self._moved([channel])

    async def _apply_unsent(self, pubsub: Any) -> None:
        changes, self._unsent = self._unsent, {}
        subscribe = [channel for channel, wanted in changes.items() if wanted and channel in self.channels]
        unsubscribe = [channel for channel, wanted in changes.items() if not wanted]
        async with asyncio.timeout(self._subscribe_timeout):
            for group in by_slot(subscribe):
                await pubsub.ssubscribe(*group)
            for group in by_slot(unsubscribe):
                self._leaving.update(group)
                await pubsub.sunsubscribe(*group)

    async def _close(self) -> None:
        self._up.clear()
        self._leaving.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*GONE):
                await pubsub.aclose()
