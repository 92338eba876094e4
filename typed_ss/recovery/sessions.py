"""The sessions of connection state recovery, in this instance's memory: for each socket, what it
needs to be taken up again by a client that reconnects within the window.

A session is written when the socket connects and when its rooms change, never only at disconnect.
While its connection lives it does not expire; once the connection ended without a clean close it
lasts ``window`` seconds more. At most ``max_sessions`` are kept: past it, the one that would expire
first is dropped (its client then starts afresh).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Final

__all__ = ["MemorySessions", "Session"]

_NOW: Final = time.monotonic


@dataclass(slots=True)
class Session:
    """One socket's recoverable state."""

    token: str
    """Unguessable; the client reconnects with it."""
    socket_id: str
    identity_key: str
    """The fingerprint of the identity the authenticate hook gave: a recovering connection must
    authenticate as the same identity."""
    start: int
    """The history's position when the socket connected: its own and the broadcast stream are
    replayed from there at the earliest."""
    rooms: dict[str, int] = field(default_factory=dict)
    """The rooms it is in, each with the history's position when it joined."""
    expires: float | None = None
    """When it expires (monotonic seconds); ``None`` while its connection lives."""


class MemorySessions:
    """Sessions by token, with the rooms they refer to counted (the history keeps those streams)."""

    __slots__ = ("_expiring", "_max_sessions", "_references", "_sessions", "window")

    def __init__(self, *, window: float, max_sessions: int) -> None:
        self.window = window
        self._max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._references: dict[str, int] = {}  # stream name -> sessions referring to it
        self._expiring: list[tuple[float, str]] = []  # (expires, token), a heap; stale items skipped

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: Session) -> None:
        """Keep a new session (its socket just connected)."""
        if len(self._sessions) >= self._max_sessions:
            self._drop_one()
        self._sessions[session.token] = session
        for room in session.rooms:
            self._refer(room, 1)

    def get(self, token: str) -> Session | None:
        """The session of ``token``, unless it has expired."""
        session = self._sessions.get(token)
        if session is None or (session.expires is not None and session.expires <= _NOW()):
            return None
        return session

    def revive(self, session: Session) -> None:
        """A reconnect took the session up: it no longer expires while the new connection lives."""
        session.expires = None

    def drop(self, session: Session) -> None:
        """Forget the session (it cannot be taken up)."""
        self._remove(session)

    def joined(self, session: Session, room: str, position: int) -> None:
        """The session's socket joined ``room`` at the history's ``position``."""
        if room not in session.rooms:
            session.rooms[room] = position
            self._refer(room, 1)

    def left(self, session: Session, room: str) -> None:
        if session.rooms.pop(room, None) is not None:
            self._refer(room, -1)

    def ended(self, session: Session, *, keep: bool) -> None:
        """The session's connection ended: kept for ``window`` seconds, or dropped."""
        if self._sessions.get(session.token) is not session:
            return  # dropped already
        if not keep:
            self._remove(session)
            return
        session.expires = _NOW() + self.window
        heapq.heappush(self._expiring, (session.expires, session.token))

    def refers_to(self, stream: str) -> bool:
        """Whether a session refers to ``stream`` (a room it is in)."""
        return stream in self._references

    def expire(self) -> None:
        """Drop the sessions whose window has passed."""
        now = _NOW()
        while self._expiring and self._expiring[0][0] <= now:
            _, token = heapq.heappop(self._expiring)
            session = self._sessions.get(token)
            if session is not None and session.expires is not None and session.expires <= now:
                self._remove(session)

    def _drop_one(self) -> None:
        # The one that expires first; with none expiring, the oldest one (dicts keep insertion order).
        while self._expiring:
            _, token = heapq.heappop(self._expiring)
            session = self._sessions.get(token)
            if session is not None and session.expires is not None:
                self._remove(session)
                return
        self._remove(next(iter(self._sessions.values())))

    def _remove(self, session: Session) -> None:
        if self._sessions.pop(session.token, None) is None:
            return
        for room in session.rooms:
            self._refer(room, -1)

    def _refer(self, room: str, change: int) -> None:
        count = self._references.get(room, 0) + change
        if count > 0:
            self._references[room] = count
        else:
            self._references.pop(room, None)
