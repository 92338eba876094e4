"""What the server sent to each stream lately, kept so that a reconnecting client can be sent what it
missed: a bounded in-memory history per instance.

A stream is a room (the sockets' own ``__socket_id:`` rooms included: what is emitted to one socket)
or :data:`~typed_ss.protocol.BROADCAST_STREAM`. Each kept frame gets the next offset of one counter
shared by every stream of the instance, so offsets only grow, even for a stream that is forgotten and
used again. A frame goes to clients with its stream's tag and its offset in its header flags
(``o<tag>.<offset>``); a client reports the last offset it saw of each stream when it reconnects.

What is kept is bounded twice: ``max_entries`` frames per stream, and nothing older than ``max_age``
seconds (the recovery window: no session outlives it). Each stream remembers the highest offset it no
longer keeps, so :meth:`MemoryHistory.since` can tell "nothing was sent" from "what was sent is gone".
A stream left empty is forgotten only once no session refers to it (the caller says which do): a
stream a session refers to and that does not exist has been sent nothing since the session began.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from typed_ss.protocol import Frame, offset_flag, stream_tag, with_flag

__all__ = ["MemoryHistory"]

_NOW: Final = time.monotonic


@dataclass(slots=True)
class _Stream:
    tag: str
    entries: deque[tuple[int, float, Frame]] = field(default_factory=deque)
    """``(offset, when, flagged frame)``, oldest first."""
    dropped: int = 0
    """The highest offset of this stream no longer kept (0: none was dropped)."""


class MemoryHistory:
    """The frames each stream was sent lately, in this instance's memory."""

    __slots__ = ("_last", "_max_age", "_max_entries", "_streams", "epoch")

    def __init__(self, epoch: str, *, max_entries: int, max_age: float) -> None:
        self.epoch = epoch
        """Names this history: a session recorded against another one cannot be recovered here."""
        self._max_entries = max_entries
        self._max_age = max_age
        self._streams: dict[str, _Stream] = {}
        self._last = 0  # the offset given last, in any stream

    @property
    def position(self) -> int:
        """The offset given last: a stream's frames from now on have higher offsets."""
        return self._last

    def record(self, stream: str, frame: Frame) -> Frame:
        """Keep ``frame`` as the next frame of ``stream``; returns it flagged with its offset, as
        every recipient gets it."""
        kept = self._streams.get(stream)
        if kept is None:
            kept = self._streams[stream] = _Stream(stream_tag(stream))
        self._last += 1
        flagged = with_flag(frame, offset_flag(kept.tag, str(self._last)))
        entries = kept.entries
        entries.append((self._last, _NOW(), flagged))
        if len(entries) > self._max_entries:
            kept.dropped = entries.popleft()[0]
        return flagged

    def since(self, stream: str, offset: int) -> list[tuple[int, Frame]] | None:
        """The frames of ``stream`` after ``offset`` with their offsets, oldest first; ``None`` when
        some of them are no longer kept (trimmed), or ``offset`` was never given here (another
        history's). For a stream a session refers to (see :meth:`trim`), no stream means nothing was
        sent."""
        if offset > self._last:
            return None  # from another history (this instance restarted): nothing here is comparable
        kept = self._streams.get(stream)
        if kept is None:
            return []
        if offset < kept.dropped:
            return None
        return [(at, frame) for at, _, frame in kept.entries if at > offset]

    def trim(self, in_use: Callable[[str], bool]) -> None:
        """Drop what is older than ``max_age``; forget the streams left empty that no session refers
        to (``in_use``)."""
        horizon = _NOW() - self._max_age
        for name in list(self._streams):
            kept = self._streams[name]
            entries = kept.entries
            while entries and entries[0][1] < horizon:
                kept.dropped = entries.popleft()[0]
            if not entries and not in_use(name):
                del self._streams[name]

    def __len__(self) -> int:
        """How many frames are kept, over all streams."""
        return sum(len(kept.entries) for kept in self._streams.values())
