"""A bounded queue of messages waiting to leave for another instance: drop-oldest, counted.

Used wherever typed-ss queues messages for a backend or a peer while it is slow or unreachable. It is
bounded twice, in messages and in bytes, so an outage with large casts cannot pin more memory than
``max_bytes``; when either bound is passed the oldest messages are dropped (the newest matter most to
a live application), counted in ``dropped``, and logged at most once per 1,000 drops.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Outbox"]

K = TypeVar("K")


class Outbox(Generic[K]):
    """``(key, data)`` pairs in order, at most ``max_messages`` of them and ``max_bytes`` of data.

    ``key`` is whatever the owner routes by (a topic); only ``data`` counts against ``max_bytes``.
    The newest message is always kept, even alone over ``max_bytes``: a message the owner accepted is
    never refused here (size limits belong to whoever accepted it).
    """

    __slots__ = ("_items", "_log", "_name", "bytes", "dropped", "max_bytes", "max_messages")

    def __init__(self, name: str, *, max_messages: int, max_bytes: int, log: logging.Logger) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("an outbox holds at least one message and one byte")
        self._name = name
        self._log = log
        self._items: deque[tuple[K, bytes]] = deque()
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.bytes = 0
        """The size of the data queued now."""
        self.dropped = 0
        """Messages dropped because a bound was passed, since the outbox was made."""

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[tuple[K, bytes]]:
        return iter(self._items)

    def append(self, key: K, data: bytes) -> None:
        """Queue a message, dropping the oldest ones while a bound is passed."""
        self._items.append((key, data))
        self.bytes += len(data)
        while len(self._items) > self.max_messages or (self.bytes > self.max_bytes and len(self._items) > 1):
            _, old = self._items.popleft()
            self.bytes -= len(old)
            self.dropped += 1
            if self.dropped % 1000 == 1:
                self._log.warning(
                    "%s full (%d messages, %d bytes at most): dropping the oldest; %d dropped so far",
                    self._name,
                    self.max_messages,
                    self.max_bytes,
                    self.dropped,
                )

    def peek(self) -> tuple[K, bytes]:
        """The oldest message, left in place. Raises IndexError when empty."""
        return self._items[0]

    def popleft(self) -> tuple[K, bytes]:
        """Remove and return the oldest message. Raises IndexError when empty."""
        key, data = self._items.popleft()
        self.bytes -= len(data)
        return key, data

    def clear(self) -> int:
        """Empty the outbox; returns how many messages it held."""
        count = len(self._items)
        self._items.clear()
        self.bytes = 0
        return count
