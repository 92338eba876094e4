"""The sessions of connection state recovery, in this instance's memory: for each socket, what it
needs to be taken up again by a client that reconnects within the window.

A session is written when the socket connects and when its rooms change, never only at disconnect.
While a connection holds it, it does not expire; once its connection ended without a clean close it
lasts ``window`` seconds more. At most ``max_sessions`` are kept: past it, the one that would expire
first is dropped (its client then starts afresh); a session a connection holds is never dropped for
room, so when every kept session is held, a new socket gets none (no recovery for it).

The rooms the sessions refer to are counted: the history keeps their streams, and the hub keeps
receiving their casts from other instances, until no session refers to them (``released``).
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from typed_ss.backends.base import Departure

__all__ = ["MemorySessions", "Session"]

_NOW: Final = time.monotonic


@dataclass(slots=True, eq=False)
class Session:
    """One socket's recoverable state."""

    token: str
    """Unguessable; the client reconnects with it. A new one is issued at each recovery."""
    socket_id: str
    identity_key: str | None
    """The fingerprint of the identity the authenticate hook gave (its JSON's hash); ``None`` for an
    identity without a JSON form, which is then compared with ``==`` (:attr:`identity`)."""
    identity: object
    start: int
    """The history's position when the socket connected: its own and the broadcast stream are
    replayed from there at the earliest."""
    rooms: dict[str, int] = field(default_factory=dict)
    """The rooms it is in, each with the history's position when it joined."""
    epoch: str = ""
    """The epoch of the backend's history when it began (offsets of another epoch mean nothing)."""
    left: Departure | None = None
    """Where the backend's history stood for the socket when its connection ended."""
    expires: float | None = None
    """When it expires (monotonic seconds); ``None`` while a connection holds it."""
    holder: Any = None
    """The socket that holds the session (``typed_ss.Socket``), or last held it; a reconnect ends
    that socket's connection, and waits for its teardown, before taking the session up."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by a reconnect while it takes the session up: two reconnects with one token go one
    after the other."""


class MemorySessions:
    """Sessions by token, with the rooms they refer to counted."""

    __slots__ = ("_expiring", "_max_sessions", "_references", "_released", "_sessions", "window")

    def __init__(self, *, window: float, max_sessions: int, released: Callable[[str], None]) -> None:
        self.window = window
        self._max_sessions = max_sessions
        self._released = released  # no session refers to this room any more
        self._sessions: dict[str, Session] = {}
        self._references: dict[str, int] = {}  # room -> sessions referring to it
        self._expiring: list[tuple[float, str]] = []  # (expires, token), a heap; stale items skipped

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: Session) -> bool:
        """Keep a new session (its socket just connected); ``False`` when there is no room for it."""
        if len(self._sessions) >= self._max_sessions and not self._drop_expiring():
            return False
        self._sessions[session.token] = session
        for room in session.rooms:
            self._refer(room, 1)
        return True

    def get(self, token: str) -> Session | None:
        """The session of ``token``, unless it has expired."""
        session = self._sessions.get(token)
        if session is None or (session.expires is not None and session.expires <= _NOW()):
            return None
        return session

    def kept(self, session: Session) -> bool:
        """Whether ``session`` is still kept (not expired, dropped or given a new token)."""
        return self._sessions.get(session.token) is session

    def revive(self, session: Session, token: str | None = None) -> bool:
        """A reconnect took the session up: it gets a new token (``token``, or a new one: the old one,
        which travelled in a URL, is dead) and no longer expires while the new connection holds it.
        ``False`` when the session is no longer kept."""
        if not self.kept(session):
            return False
        del self._sessions[session.token]
        session.token = token or secrets.token_urlsafe(24)
        session.expires = None
        self._sessions[session.token] = session
        return True

    def drop(self, session: Session) -> None:
        """Forget the session (it cannot be taken up)."""
        if self.kept(session):
            self._remove(session)

    def joined(self, session: Session, room: str, position: int) -> None:
        """The session's socket joined ``room`` at the history's ``position``."""
        if self.kept(session) and room not in session.rooms:
            session.rooms[room] = position
            self._refer(room, 1)

    def left(self, session: Session, room: str) -> None:
        if self.kept(session) and session.rooms.pop(room, None) is not None:
            self._refer(room, -1)

    def ended(self, session: Session, *, keep: bool) -> None:
        """The connection holding the session ended: the session is kept for ``window`` seconds, or
        dropped."""
        if not self.kept(session):
            return
        if not keep:
            self._remove(session)
            return
        session.expires = _NOW() + self.window
        heapq.heappush(self._expiring, (session.expires, session.token))

    def held_tokens(self) -> list[str]:
        """The tokens of the sessions a connection holds (that do not expire meanwhile)."""
        return [token for token, session in self._sessions.items() if session.expires is None]

    def refers_to(self, room: str) -> bool:
        """Whether a session refers to ``room`` (a room it is in)."""
        return room in self._references

    def expire(self) -> None:
        """Drop the sessions whose window has passed."""
        now = _NOW()
        while self._expiring and self._expiring[0][0] <= now:
            _, token = heapq.heappop(self._expiring)
            session = self._sessions.get(token)
            if session is not None and session.expires is not None and session.expires <= now:
                self._remove(session)

    def _drop_expiring(self) -> bool:
        # The one that expires first (stale heap items, of sessions taken up or dropped, are skipped).
        while self._expiring:
            _, token = heapq.heappop(self._expiring)
            session = self._sessions.get(token)
            if session is not None and session.expires is not None:
                self._remove(session)
                return True
        return False

    def _remove(self, session: Session) -> None:
        del self._sessions[session.token]
        for room in session.rooms:
            self._refer(room, -1)

    def _refer(self, room: str, change: int) -> None:
        count = self._references.get(room, 0) + change
        if count > 0:
            self._references[room] = count
        else:
            del self._references[room]
            self._released(room)
