"""Emits made while the client is not connected, held in order until it is, and bounded.

Each emit is held encoded (what it will send is fixed when it is made, as in the JS client). At most
``limit`` are held: one more drops the oldest, with a warning, because the newest are the likeliest
to still matter when the connection is back. A limit of 0 holds none.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import NamedTuple

from typed_ss.protocol import Frame

__all__ = ["Outbox", "Pending"]

logger = logging.getLogger("typed_ss.client")


class Pending(NamedTuple):
    """One held emit: its event (for messages) and its encoded client frame."""

    event: str
    frame: Frame


class Outbox:
    """The held emits, oldest first."""

    __slots__ = ("_held", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: deque[Pending] = deque()
        self.dropped = 0
        """Emits dropped so far, because the outbox was full or the client closed for good."""

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, event: str, frame: Frame) -> None:
        """Hold one more emit, dropping the oldest when full."""
        if self.limit == 0:
            self.dropped += 1
            logger.warning("emit of %r dropped: not connected and max_queue is 0", event)
            return
        if len(self._held) >= self.limit:
            oldest = self._held.popleft()
            self.dropped += 1
            logger.warning(
                "%d emits held while not connected (max_queue): dropped the oldest, of %r",
                self.limit,
                oldest.event,
            )
        self._held.append(Pending(event, frame))

    def take(self) -> Pending | None:
        """The oldest held emit, removed; ``None`` when there is none."""
        return self._held.popleft() if self._held else None

    def put_back(self, pending: Pending) -> None:
        """Return an emit :meth:`take` gave, which could not be sent, to the front."""
        self._held.appendleft(pending)

    def clear(self) -> int:
        """Drop every held emit (the client closed for good); returns how many there were."""
        count = len(self._held)
        self._held.clear()
        self.dropped += count
        return count
