"""An in-process backend: several :class:`~typed_ss.Server` instances in one process share a broker.

Used by the conformance suite and for in-process tests of multi-instance apps::

    broker = MemoryBroker()
    first = Server(backend=MemoryBackend(broker))
    second = Server(backend=MemoryBackend(broker))
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from typed_ss.backends.base import BackendHealth, BackendState
from typed_ss.errors import BackendError

__all__ = ["MemoryBackend", "MemoryBroker"]


class MemoryBroker:
    """The shared topic table the memory backends of one process publish through."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[MemoryBackend]] = {}

    def subscribers(self, topic: str) -> frozenset[MemoryBackend]:
        """The backends subscribed to ``topic`` (tests check interest routing with it)."""
        return frozenset(self._subscribers.get(topic, ()))

    def _publish(self, topic: str, data: bytes) -> None:
        for backend in self._subscribers.get(topic, ()):
            backend._deliver(topic, data)

    def _subscribe(self, backend: MemoryBackend, topic: str) -> None:
        self._subscribers.setdefault(topic, set()).add(backend)

    def _unsubscribe(self, backend: MemoryBackend, topic: str) -> None:
        members = self._subscribers.get(topic)
        if members is not None:
            members.discard(backend)
            if not members:
                del self._subscribers[topic]


class MemoryBackend:
    """A :class:`~typed_ss.backends.base.Backend` over a :class:`MemoryBroker`.

    Each backend buffers at most ``max_pending`` received messages; past that it drops the oldest,
    which the bridge then reports as a gap, like a real broker dropping a slow subscriber.
    """

    def __init__(self, broker: MemoryBroker, *, max_pending: int = 100_000) -> None:
        self._broker = broker
        self._topics: set[str] = set()
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=max_pending)
        self._wakeup = asyncio.Event()
        self._state: BackendState = "stopped"

    async def start(self) -> None:
        self._state = "connected"

    async def stop(self) -> None:
        for topic in list(self._topics):
            self._broker._unsubscribe(self, topic)
        self._topics.clear()
        self._state = "stopped"
        self._wakeup.set()

    async def publish(self, topic: str, data: bytes) -> None:
        if self._state != "connected":
            raise BackendError("the memory backend is not started")
        self._broker._publish(topic, data)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        self._broker._subscribe(self, topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        self._broker._unsubscribe(self, topic)

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        while self._state != "stopped":
            while self._pending:
                yield self._pending.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()

    def health(self) -> BackendHealth:
        return BackendHealth(name="memory", state=self._state, detail={"pending": len(self._pending)})

    def _deliver(self, topic: str, data: bytes) -> None:
        self._pending.append((topic, data))
        self._wakeup.set()
