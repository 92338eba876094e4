"""The decisions of connection state recovery: what a reconnecting client gets, and the sessions'
life in between (the history and the sessions are kept by their own modules).

At a reconnect (:meth:`Recoverer.claim`), the client's token names a session; the session is taken up
only if the client authenticated as the same identity, its offsets are well formed, and for every
stream of the session (its rooms, its own stream, the broadcasts) everything after the client's
offset (or after the socket joined, for a stream it was sent nothing from) is still kept. Anything
less is a fresh start: never stale rooms, never a partial replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

from starlette.requests import HTTPConnection

from typed_ss.errors import CloseCode, EncodeError
from typed_ss.logs import ClientLog
from typed_ss.protocol import (
    BROADCAST_STREAM,
    OFFSETS_QUERY_PARAMETER,
    SESSION_QUERY_PARAMETER,
    Frame,
    encode_json,
    stream_tag,
)
from typed_ss.recovery import Recovery
from typed_ss.recovery.history import MemoryHistory
from typed_ss.recovery.sessions import MemorySessions, Session
from typed_ss.supervision import Supervised

if TYPE_CHECKING:
    from typed_ss.socket import Socket

__all__ = ["Claim", "Recoverer"]

logger = logging.getLogger("typed_ss")

KEPT_AFTER: Final = frozenset({CloseCode.SLOW_CONSUMER, CloseCode.SERVICE_RESTART, CloseCode.GOING_AWAY})
"""The server's own close codes after which a session is kept: the client did not choose to leave."""
CLEAN_CLIENT_CLOSES: Final = frozenset({1000, 1001})
"""The client's close codes that end its session: it left on purpose."""


class Claim(NamedTuple):
    """What a connection's upgrade request asked of recovery, and what it gets."""

    session: Session | None
    """The session taken up; ``None``: the socket starts afresh."""
    attempted: bool
    """Whether the client reconnected with a token (``__hello`` then says how it went)."""
    positions: dict[str, int]
    """The client's last offset of each stream, by stream tag."""


_FRESH: Final = Claim(None, False, {})


class Recoverer:
    """Connection state recovery for one server: the history, the sessions, the live sockets'
    sessions, and the loop that expires and trims them."""

    def __init__(self, config: Recovery, client_log: ClientLog, max_streams: int) -> None:
        self.config = config
        self._client_log = client_log
        self._max_positions = max_streams  # a socket's rooms, its own stream and the broadcasts
        self.history = MemoryHistory(
            secrets.token_urlsafe(8), max_entries=config.history, max_age=config.window
        )
        self.sessions = MemorySessions(window=config.window, max_sessions=config.max_sessions)
        self._live: dict[str, Session] = {}  # connected sockets' sessions, by socket id
        self.sweeper = Supervised("recovery sweeper", self._sweep, log=logger)

    # --- what the hub and the sockets report -------------------------------------------------------

    def record(self, stream: str, frame: Frame) -> Frame:
        """Keep a frame sent to ``stream``; returns it as it must go out (with its offset)."""
        return self.history.record(stream, frame)

    def joined(self, sock: Socket, room: str) -> None:
        session = self._live.get(sock.id)
        if session is not None:
            self.sessions.joined(session, room, self.history.position)

    def left(self, sock: Socket, room: str) -> None:
        session = self._live.get(sock.id)
        if session is not None:
            self.sessions.left(session, room)

    # --- a connection's life -----------------------------------------------------------------------

    async def claim(self, request: HTTPConnection, identity: object, sockets: Mapping[str, Socket]) -> Claim:
        """The session a new connection takes up, if it may (see the module docstring). A socket of
        that session still connected here (the client moved before its old connection was noticed
        to be gone) is ended first."""
        query = request.query_params
        token = query.get(SESSION_QUERY_PARAMETER)
        if token is None:
            return _FRESH
        session = self.sessions.get(token)
        if session is None:
            return self._refused("no session of this token (unknown, or its window passed)")
        if session.identity_key != identity_key(identity):
            return self._refused("the session belongs to another identity")  # not this client's to end
        positions = self._positions(query.get(OFFSETS_QUERY_PARAMETER, ""))
        if positions is None:
            return self._refused("malformed offsets")
        old = sockets.get(session.socket_id)
        if old is not None:
            # The client moved before its old connection was noticed to be gone: that one ends first,
            # its session kept (live sessions do not expire), and the id is free again.
            self._live.pop(session.socket_id, None)
            await old.end_for_takeover()
        claim = Claim(session, True, positions)
        if self._replay(claim) is None:
            self.sessions.drop(session)
            return self._refused("what it missed is no longer all kept")
        self.sessions.revive(session)
        return claim

    def opened(self, sock: Socket, claim: Claim, identity: object) -> Session:
        """Register the session of a socket about to be attached: the claimed one, or a new one."""
        session = claim.session
        if session is None:
            session = Session(
                secrets.token_urlsafe(24), sock.id, identity_key(identity), self.history.position
            )
            self.sessions.add(session)
        self._live[sock.id] = session
        return session

    def replay(self, claim: Claim) -> list[Frame] | None:
        """Every frame the claim's client missed, in the order they were sent; ``None`` when some are
        no longer kept. Called once the socket is back in its rooms, so nothing falls between the
        replay and what goes live."""
        frames = self._replay(claim)
        return None if frames is None else [frame for _, frame in sorted(frames, key=_offset)]

    def failed(self, sock: Socket) -> None:
        """The socket's recovery could not be completed: its session is dropped."""
        session = self._live.pop(sock.id, None)
        if session is not None:
            self.sessions.drop(session)

    def ended(self, sock: Socket, client_code: int | None) -> None:
        """The socket's connection ended: its session is kept for the window unless the client closed
        cleanly or the application closed the socket."""
        session = self._live.pop(sock.id, None)
        if session is None:
            return
        closed_by_server = sock.close_code
        keep = client_code not in CLEAN_CLIENT_CLOSES and (
            closed_by_server is None or closed_by_server in KEPT_AFTER
        )
        self.sessions.ended(session, keep=keep)

    # --- inside ------------------------------------------------------------------------------------

    def _replay(self, claim: Claim) -> list[tuple[int, Frame]] | None:
        session = claim.session
        assert session is not None
        streams = {BROADCAST_STREAM: session.start, **session.rooms}
        missed: list[tuple[int, Frame]] = []
        for stream, joined_at in streams.items():
            after = max(joined_at, claim.positions.get(stream_tag(stream), 0))
            frames = self.history.since(stream, after)
            if frames is None:
                return None
            missed += frames
        return missed

    def _positions(self, text: str) -> dict[str, int] | None:
        positions: dict[str, int] = {}
        if not text:
            return positions
        entries = text.split(",")
        if len(entries) > self._max_positions:
            return None
        for entry in entries:
            tag, dot, offset = entry.partition(".")
            if not (dot and _decimal(tag) and _decimal(offset)):
                return None
            positions[tag] = int(offset)
        return positions

    def _refused(self, why: str) -> Claim:
        self._client_log.info(
            "recovery", "a client reconnected with a session token: starts afresh (%s)", why
        )
        return Claim(None, True, {})

    async def _sweep(self) -> None:
        period = min(5.0, self.config.window / 4)
        while True:
            await asyncio.sleep(period)
            self.sessions.expire()
            self.history.trim(self._in_use)

    def _in_use(self, stream: str) -> bool:
        return stream == BROADCAST_STREAM or self.sessions.refers_to(stream)


def identity_key(identity: object) -> str:
    """A fingerprint of an identity: the hash of its JSON, or of its ``repr`` when it has none."""
    try:
        data = encode_json(identity)
    except EncodeError:
        data = repr(identity).encode()
    return hashlib.sha256(data).hexdigest()


def _decimal(text: str) -> bool:
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit()


def _offset(entry: tuple[int, Frame]) -> int:
    return entry[0]
