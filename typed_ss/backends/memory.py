"""An in-process backend: several :class:`~typed_ss.Server` instances in one process share a broker.

Used by the conformance suite and for in-process tests of multi-instance apps::

    broker = MemoryBroker()
    first = Server(backend=MemoryBackend(broker))
    second = Server(backend=MemoryBackend(broker))
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from typed_ss.backends._support import Inbox
from typed_ss.backends.base import BackendHealth
from typed_ss.errors import BackendError

__all__ = ["MemoryBackend", "MemoryBroker"]


class MemoryBroker:
    """The shared topic table the memory backends of one process publish through."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[MemoryBackend]] = {}

    def subscribers(self, topic: str) -> frozenset[MemoryBackend]:
        """The backends subscribed to ``topic`` (tests check interest routing with it)."""
        return frozenset(self._subscribers.get(topic, ()))

    def publish(self, topic: str, data: bytes) -> None:
        """Deliver ``data`` to every backend subscribed to ``topic``."""
        for backend in self._subscribers.get(topic, ()):
            backend.deliver(topic, data)

    def subscribe(self, backend: MemoryBackend, topic: str) -> None:
        """Add ``backend`` to ``topic``'s subscribers."""
        self._subscribers.setdefault(topic, set()).add(backend)

    def unsubscribe(self, backend: MemoryBackend, topic: str) -> None:
        """Remove ``backend`` from ``topic``'s subscribers."""
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
        self._inbox: Inbox[tuple[str, bytes]] = Inbox(max_pending)
        self._running = False

    async def start(self) -> None:
        self._running = True
        self._inbox.open()

    async def stop(self) -> None:
        for topic in list(self._topics):
            self._broker.unsubscribe(self, topic)
        self._topics.clear()
        self._running = False
        self._inbox.close()

    async def publish(self, topic: str, data: bytes) -> None:
        if not self._running:
            raise BackendError("the memory backend is not started")
        self._broker.publish(topic, data)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        self._broker.subscribe(self, topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        self._broker.unsubscribe(self, topic)

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._inbox.messages()

    def health(self) -> BackendHealth:
        return BackendHealth(
            name="memory",
            state="connected" if self._running else "stopped",
            detail={"pending": len(self._inbox), "dropped": self._inbox.dropped},
        )

    def deliver(self, topic: str, data: bytes) -> None:
        """A message for this backend, from its broker."""
        self._inbox.put((topic, data))
