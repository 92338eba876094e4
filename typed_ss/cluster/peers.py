"""Which other instances are alive, from their heartbeats.

Every instance publishes a heartbeat every :data:`HEARTBEAT_INTERVAL` seconds on the control topic.
A peer unheard for :data:`PEER_TIMEOUT` seconds is gone: its sockets leave presence, and questions
stop waiting for it. For :data:`SUSPECT_FOR` seconds after that, answers still name it as missing
(it may be cut off from the backend rather than dead, its clients still connected to it); then it
is forgotten. A peer that stops cleanly says so (``bye``) and is forgotten at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = ["HEARTBEAT_INTERVAL", "PEER_TIMEOUT", "SUSPECT_FOR", "Peers", "Sighting"]

HEARTBEAT_INTERVAL: Final = 1.0
"""Seconds between an instance's heartbeats."""
PEER_TIMEOUT: Final = 3.0
"""Seconds without a heartbeat after which a peer is gone."""
SUSPECT_FOR: Final = 30.0
"""Seconds a gone peer is still named in answers as missing, before it is forgotten."""

Sighting: TypeAlias = Literal["known", "new", "back", "gap"]
"""What a heartbeat told: nothing new; a peer not known (or restarted); a gone peer heard again; a
known peer whose heartbeats were lost in between, or that says it may have lost messages (other
messages of it may not have arrived)."""


@dataclass(slots=True)
class _Peer:
    epoch: int
    seq: int
    heard: float
    losses: int = 0
    gone_at: float | None = None


class Peers:
    """The other instances heard from, and when."""

    __slots__ = ("_clock", "_peers")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._peers: dict[str, _Peer] = {}
        self._clock = clock

    def heard(self, origin: str, epoch: int, seq: int, losses: int = 0) -> Sighting:
        """Note a heartbeat of ``origin`` (``losses``: its count of times it may have lost messages)."""
        now = self._clock()
        peer = self._peers.get(origin)
        if peer is None or peer.epoch != epoch:
            self._peers[origin] = _Peer(epoch, seq, now, losses)
            return "new"
        was_gone = peer.gone_at is not None
        lost = seq > peer.seq + 1 or losses > peer.losses
        peer.seq = max(seq, peer.seq)
        peer.losses = max(losses, peer.losses)
        peer.heard = now
        peer.gone_at = None
        if was_gone:
            return "back"
        return "gap" if lost else "known"

    def touch(self, origin: str) -> None:
        """Something else of ``origin`` arrived (a change, an answer, a question): it is alive, though
        its heartbeats may wait behind a burst of its messages."""
        peer = self._peers.get(origin)
        if peer is not None and peer.gone_at is None:
            peer.heard = self._clock()

    def pardon(self) -> None:
        """This instance was not running for a while (paused, or its event loop blocked): it heard
        nothing, which says nothing of the peers. Each is counted as heard now."""
        now = self._clock()
        for peer in self._peers.values():
            if peer.gone_at is None:
                peer.heard = now

    def forget(self) -> None:
        """Forget every peer (this instance starts again)."""
        self._peers.clear()

    def said_bye(self, origin: str) -> bool:
        """``origin`` stopped; returns whether it was alive."""
        peer = self._peers.pop(origin, None)
        return peer is not None and peer.gone_at is None

    def expire(self) -> list[str]:
        """Mark the peers unheard for :data:`PEER_TIMEOUT` gone, and forget the ones gone for
        :data:`SUSPECT_FOR`; returns the newly gone."""
        now = self._clock()
        gone = []
        for origin, peer in list(self._peers.items()):
            if peer.gone_at is None:
                if now - peer.heard > PEER_TIMEOUT:
                    peer.gone_at = now
                    gone.append(origin)
            elif now - peer.gone_at > SUSPECT_FOR:
                del self._peers[origin]
        return gone

    @property
    def live(self) -> frozenset[str]:
        """The peers heard from within :data:`PEER_TIMEOUT`."""
        return frozenset(origin for origin, peer in self._peers.items() if peer.gone_at is None)

    @property
    def suspect(self) -> frozenset[str]:
        """The peers gone (unheard) less than :data:`SUSPECT_FOR` seconds ago."""
        return frozenset(origin for origin, peer in self._peers.items() if peer.gone_at is not None)
