"""The Redis backend: Redis pub/sub, one channel per topic, with its own reconnects and a self-probe.

``RedisBackend(url="redis://127.0.0.1:6379/0")`` or ``RedisBackend(client=redis.asyncio.Redis(...))``;
``group`` (default ``"typed-ss"``) prefixes every channel, so separate apps can share a Redis.

- Interest-based routing: the bridge subscribes only to the broadcast channel and to the channels of
  rooms with local members; ``PUBSUB CHANNELS <group>:*`` shows exactly that.
- One subscriber connection, kept by a :class:`~typed_ss.backends._support.Link`. When it fails, the
  backend logs it as an error, reconnects with a backoff capped at ``max_backoff`` (1 s), and
  subscribes every channel again. It counts as connected once Redis has confirmed a subscription.
  Messages published meanwhile are lost (Redis pub/sub keeps nothing); the bridge's sequence numbers
  count them.
- A self-probe: every ``probe_interval`` the backend publishes to a channel only it listens to. A
  probe that is late while nothing else arrives marks Redis ``unresponsive`` (subscriptions then stop
  waiting for it); one that does not come back within ``probe_timeout`` restarts the subscriber. That
  catches a hung Redis, and a subscriber connection that looks healthy but receives nothing.
- ``publish`` gives up after ``publish_timeout`` and raises; the bridge keeps the message in its
  bounded outbox and retries, so neither handlers nor the event loop wait on Redis.
- With connection state recovery on, it also keeps each topic's messages in a Redis stream, and the
  sessions (:mod:`typed_ss.backends.redis_history`): a client recovers on any instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from typed_ss.backends._support import Inbox, Link
from typed_ss.backends.base import BackendHealth, Departure
from typed_ss.backends.redis_history import RedisHistory, RedisSessions
from typed_ss.errors import BackendError, ConfigurationError, MissingDependencyError
from typed_ss.supervision import Supervised

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError("redis", "redis") from exc

__all__ = ["RedisBackend"]

logger = logging.getLogger("typed_ss.backends.redis")

_GONE = (RedisError, OSError, TimeoutError)
"""What a lost or unreachable Redis raises."""
_PUBSUB_GONE = (*_GONE, AttributeError)
"""What a (un)subscribe raises when the subscriber's connection is closed under it by a reconnection:
redis-py then finds the connection's writer gone (``None``)."""


class _Starved(Exception):
    """The subscriber connection stopped delivering: the self-probe did not come back."""


class RedisBackend:
    """A :class:`~typed_ss.backends.base.Backend` over Redis pub/sub (extra ``redis``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        group: str = "typed-ss",
        publish_timeout: float = 1.0,
        subscribe_timeout: float = 2.0,
        probe_interval: float = 1.0,
        probe_timeout: float = 3.0,
        max_backoff: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisBackend needs either url=... or client=..., not both")
        if not group or ":" in group:
            raise ConfigurationError(f"group must be a non-empty name without ':', not {group!r}")
        self._url = url
        self._client = client
        self._owns_client = client is None
        self._prefix = f"{group}:"
        self._probe_channel = f"{self._prefix}probe:{secrets.token_hex(8)}"
        self._publish_timeout = publish_timeout
        self._subscribe_timeout = subscribe_timeout
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._channels: set[str] = set()  # wanted; subscribed again after every reconnect
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._pubsub: Any = None  # redis.asyncio.client.PubSub once its connection is up
        # Set while the subscriber connection is up. Nobody touches the PubSub before that: two
        # commands racing to open its connection would each take a pool connection, and the
        # subscriptions sent on the one nobody reads would be lost.
        self._connected = asyncio.Event()
        # Subscription changes recorded while Redis did not answer: channel -> wanted.
        self._unsent: dict[str, bool] = {}
        self._inbox: Inbox[tuple[str, bytes]] = Inbox(max_pending)
        # With history kept (keep_history): the messages with their offsets, and where they are kept.
        self._kept: Inbox[tuple[str, bytes, int]] | None = None
        self._history_settings: tuple[int, float] | None = None
        self._history: RedisHistory | None = None
        self._sessions: RedisSessions | None = None
        self._max_backoff = max_backoff
        self._link = Link("Redis", self._serve, gone=(*_GONE, _Starved), log=logger, max_backoff=max_backoff)
        self._subscriber = Supervised("redis subscriber", self._link.run, log=logger)
        self._running = False
        self._probe_failures = 0

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is None:
            # Retries are this backend's job (with its own backoff and logging), not redis-py's.
            self._client = aioredis.Redis.from_url(
                self._url or "", retry=Retry(NoBackoff(), 0), socket_connect_timeout=self._publish_timeout
            )
        if self._history_settings is not None:
            max_entries, max_age = self._history_settings
            self._history = RedisHistory(self._client, self._prefix, max_entries=max_entries, max_age=max_age)
        if self._sessions is not None:
            self._sessions.start(self._client)
        self._running = True
        self._inbox.open()
        if self._kept is not None:
            self._kept.open()
        self._subscriber.start()

    async def stop(self) -> None:
        self._running = False
        await self._subscriber.stop()
        if self._sessions is not None:
            await self._sessions.stop()
        self._link.stopped()
        await self._close_pubsub()
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        self._inbox.close()
        if self._kept is not None:
            self._kept.close()

    # --- the Backend interface ---------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        client = self._client
        if client is None:
            raise BackendError("the Redis backend is not started")
        try:
            async with asyncio.timeout(self._publish_timeout):
                if self._history is not None:
                    # Not kept: it arrives through kept_messages() with offset 0.
                    await client.publish(self._prefix + topic, RedisHistory.unkept(data))
                else:
                    await client.publish(self._prefix + topic, data)
        except _GONE as exc:
            if isinstance(exc, TimeoutError):
                self._link.unresponsive(f"a publish got no answer within {self._publish_timeout} s")
            raise BackendError(f"publishing to Redis failed: {exc!r}") from exc

    async def subscribe(self, topic: str) -> None:
        channel = self._prefix + topic
        self._channels.add(channel)
        if self._link.state in ("reconnecting", "unresponsive"):
            # Redis does not answer: the subscriber subscribes it once Redis does; nobody waits.
            self._unsent[channel] = True
            return
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                await self._connected.wait()  # at once, except while the first connection is made
                confirmed = self._confirmed.get(channel)
                if confirmed is None:
                    confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
                await self._pubsub.subscribe(channel)
                await asyncio.shield(confirmed)
        except _PUBSUB_GONE as exc:
            # The subscriber notices a broken connection and subscribes everything again; a hung one
            # is marked unresponsive so that later subscriptions do not wait for it.
            self._unsent[channel] = True
            self._link.unresponsive(f"subscribing to {channel} did not complete: {exc!r}")

    async def unsubscribe(self, topic: str) -> None:
        channel = self._prefix + topic
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is None or not self._connected.is_set() or self._link.state != "connected":
            # Applied once Redis answers (a reconnection subscribes only what is still wanted).
            self._unsent[channel] = False
            return
        with contextlib.suppress(*_PUBSUB_GONE):  # the reconnection subscribes only what is wanted
            async with asyncio.timeout(self._subscribe_timeout):
                await pubsub.unsubscribe(channel)

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._inbox.messages()

    # --- history (connection state recovery) -------------------------------------------------------

    def keep_history(self, *, max_entries: int, max_age: float, session_ttl: float) -> RedisSessions:
        """Keep each topic's messages in a Redis stream, and the sessions in Redis (see
        :mod:`typed_ss.backends.redis_history`). Called once, before :meth:`start`."""
        if self._running:
            raise ConfigurationError("keep_history() must be called before the backend starts")
        self._history_settings = (max_entries, max_age)
        self._kept = Inbox(self._inbox.max_pending)
        self._sessions = RedisSessions(self._prefix, held_ttl=session_ttl, max_backoff=self._max_backoff)
        return self._sessions

    async def append(self, topic: str, data: bytes, publisher: str, seq: int) -> None:
        """Keep and publish ``data`` (see :meth:`publish`), once per ``publisher`` and ``seq``."""
        try:
            async with asyncio.timeout(self._publish_timeout):
                await self._append(topic, data, publisher, seq)
        except _GONE as exc:
            if isinstance(exc, TimeoutError):
                self._link.unresponsive(f"a publish got no answer within {self._publish_timeout} s")
            raise BackendError(f"publishing to Redis failed: {exc!r}") from exc

    async def _append(self, topic: str, data: bytes, publisher: str, seq: int) -> None:
        # Only once this instance's subscriber is back and subscribed: a cast kept while it was not
        # would reach no local socket (it is delivered from the subscription, not at once).
        await self._connected.wait()
        await self._kept_history().append(topic, data, publisher, seq)

    def kept_messages(self) -> AsyncIterator[tuple[str, bytes, int]]:
        if self._kept is None:
            raise ConfigurationError("kept_messages() needs keep_history() first")
        return self._kept.messages()

    async def position(self, topic: str) -> int:
        return await self._kept_history().position(topic)

    async def since(
        self, after: dict[str, int], left: Departure | None = None
    ) -> list[tuple[str, int, bytes]] | None:
        return await self._kept_history().since(after)  # Redis notes what it trimmed: exact as it is

    def read_position(self) -> int:
        return 0  # not needed: Redis says exactly what it trimmed

    async def epoch(self) -> str:
        """Always the same: stream ids are the same on a replica and after a restart that kept the
        data (one that lost it lost the sessions too)."""
        return ""

    def _kept_history(self) -> RedisHistory:
        if self._history is None:
            raise BackendError(
                "the Redis backend keeps no history (not started, or keep_history() not called)"
            )
        return self._history

    def health(self) -> BackendHealth:
        return BackendHealth(
            name="redis",
            state=self._link.state if self._running else "stopped",
            reconnects=self._link.reconnects,
            detail={
                "channels": len(self._channels),
                "probe_failures": self._probe_failures,
                # With the history kept, messages come through the other inbox.
                "pending": len(self._inbox) if self._kept is None else len(self._kept),
                "dropped": self._inbox.dropped if self._kept is None else self._kept.dropped,
                "last_error": self._link.last_error,
                **({} if self._sessions is None else {"unwritten_sessions": len(self._sessions)}),
            },
            tasks=[
                self._subscriber.health(),
                *([] if self._sessions is None else [self._sessions.writer.health()]),
            ],
        )

    # --- the subscriber ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        """One subscriber connection, from its first subscription until it fails."""
        try:
            await self._run_connection()
        finally:
            await self._close_pubsub()

    async def _run_connection(self) -> None:
        assert self._client is not None
        pubsub = self._client.pubsub()
        self._pubsub = pubsub
        channels = set(self._channels)
        async with asyncio.timeout(self._subscribe_timeout):
            await pubsub.subscribe(self._probe_channel, *channels)  # opens the connection
            # Connected once Redis answers, not once the command is written: a hung Redis accepts
            # the connection and the command, and answers nothing.
            while not self._connected.is_set():
                message = await pubsub.get_message(timeout=self._subscribe_timeout)
                if message is not None:
                    self._handle(message)
            self._unsent.clear()
            late = self._channels - channels  # asked for while the connection was being made
            if late:
                await pubsub.subscribe(*late)
        probe_sent: float | None = None
        next_probe = answered = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=min(0.25, self._probe_interval))
            now = time.monotonic()
            if message is not None:
                answered = now
                if self._handle(message):
                    probe_sent = None
            if probe_sent is not None:
                late_by = now - probe_sent
                if late_by > self._probe_timeout:
                    self._probe_failures += 1
                    raise _Starved(f"the self-probe did not come back within {self._probe_timeout} s")
                # Late, and nothing else arrived meanwhile either: Redis is not answering. (A probe
                # stuck behind a busy stream is late too, but the stream shows that Redis answers.)
                silent_for = now - max(probe_sent, answered)
                if silent_for > self._probe_interval:
                    self._link.unresponsive(f"no answer for {silent_for:.1f} s")
            if self._unsent and self._link.state == "connected":
                await self._apply_unsent(pubsub)
            if probe_sent is None and now >= next_probe and self._link.state == "connected":
                next_probe = now + self._probe_interval
                probe_sent = now
                try:
                    async with asyncio.timeout(self._publish_timeout):
                        await self._client.publish(self._probe_channel, b"probe")
                except TimeoutError:
                    pass  # no answer: a Redis that does not take the probe is as late as one that loses it
                except _GONE:
                    # An error answer: the publishing connection failed (a pooled one, stale after a
                    # Redis restart), which says nothing about the subscriber. Probe again later.
                    probe_sent = None

    async def _apply_unsent(self, pubsub: Any) -> None:
        """Send the subscription changes recorded while Redis did not answer."""
        changes, self._unsent = self._unsent, {}
        subscribe = [channel for channel, wanted in changes.items() if wanted and channel in self._channels]
        unsubscribe = [channel for channel, wanted in changes.items() if not wanted]
        async with asyncio.timeout(self._subscribe_timeout):
            if subscribe:
                await pubsub.subscribe(*subscribe)
            if unsubscribe:
                await pubsub.unsubscribe(*unsubscribe)

    def _handle(self, message: dict[str, Any]) -> bool:
        """Route one pub/sub message; returns whether it was this backend's probe."""
        self._link.answered()
        kind = message["type"]
        channel = message["channel"].decode()
        if kind == "message":
            if channel == self._probe_channel:
                return True
            topic = channel.removeprefix(self._prefix)
            if self._kept is not None:
                offset, data = RedisHistory.split(message["data"])
                self._kept.put((topic, data, offset))
            else:
                self._inbox.put((topic, message["data"]))
        elif kind == "subscribe":
            if channel == self._probe_channel:
                self._link.connected()
                self._connected.set()
            else:
                confirmed = self._confirmed.pop(channel, None)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
        return False

    async def _close_pubsub(self) -> None:
        self._connected.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*_GONE):
                await pubsub.aclose()
