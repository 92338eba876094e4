"""The decisions of connection state recovery: what a reconnecting client gets, and the sessions'
life in between (the history and the sessions are kept by their own modules).

At a reconnect (:meth:`Recoverer.claim`), the client's token names a session; the session is taken up
only if the client authenticated as the same identity and, for every stream of the session (its
rooms, its own stream, the broadcasts), everything after the client's offset (or after the socket
joined, for a stream it was sent nothing from) is still kept, and fits the socket's send queue.
Anything less is a fresh start: never stale rooms, never a partial replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple

from starlette.requests import HTTPConnection

from typed_ss.errors import CloseCode, EncodeError
from typed_ss.logs import ClientLog
from typed_ss.protocol import (
    BROADCAST_STREAM,
    MAX_OFFSETS,
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

__all__ = ["Claim", "Recoverer", "identity_key"]

logger = logging.getLogger("typed_ss")

ENDS_SESSION: Final = frozenset({1000, 1001, 1009})
"""The client's close codes after which its session is dropped: it left on purpose (1000, 1001), or
a frame was too big for it (1009), which a replay would send again."""
KEPT_AFTER: Final = frozenset({CloseCode.SLOW_CONSUMER, CloseCode.SERVICE_RESTART, CloseCode.GOING_AWAY})
"""The server's own close codes after which a session is kept: the client did not choose to leave."""


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
    """Connection state recovery for one server: the history, the sessions, and the loop that
    expires and trims them. The hub's :class:`~typed_ss.hub.Recorder`."""

    def __init__(
        self, config: Recovery, client_log: ClientLog, send_queue_bytes: int, released: Callable[[str], None]
    ) -> None:
        self.config = config
        self._client_log = client_log
        self._send_queue_bytes = send_queue_bytes  # a larger replay would get its socket cut off
        self.history = MemoryHistory(
            secrets.token_urlsafe(8), max_entries=config.history, max_age=config.window
        )
        self.sessions = MemorySessions(
            window=config.window, max_sessions=config.max_sessions, released=released
        )
        self.sweeper = Supervised("recovery sweeper", self._sweep, log=logger)
        self._warned_full = False

    # --- what the hub and the sockets report -------------------------------------------------------

    def record(self, stream: str, frame: Frame) -> Frame:
        """Keep a frame sent to ``stream``; returns it as it must go out (with its offset)."""
        return self.history.record(stream, frame)

    def joined(self, sock: Socket, room: str) -> None:
        session = sock.session
        if session is not None:
            self.sessions.joined(session, room, self.history.position)

    def left(self, sock: Socket, room: str) -> None:
        session = sock.session
        if session is not None:
            self.sessions.left(session, room)

    def refers_to(self, room: str) -> bool:
        """Whether a session refers to ``room``: the hub keeps receiving its casts from other
        instances, so that what a client misses while away is kept here too."""
        return self.sessions.refers_to(room)

    # --- a connection's life -----------------------------------------------------------------------

    async def claim(self, request: HTTPConnection, identity: object) -> Claim:
        """The session a new connection takes up, if it may (see the module docstring). The socket
        that holds the session (the client moved before its old connection was noticed to be gone,
        or is still being torn down) is ended first, and its teardown waited for."""
        query = request.query_params
        token = query.get(SESSION_QUERY_PARAMETER)
        if token is None:
            return _FRESH
        session = self.sessions.get(token)
        if session is None:
            return self._refused("no session of this token (unknown, or its window passed)")
        if not _same_identity(session, identity):
            return self._refused("the session belongs to another identity")  # not this client's to end
        positions = _positions(query.get(OFFSETS_QUERY_PARAMETER, ""))
        if positions is None:
            return self._refused("malformed offsets")
        async with session.lock:  # a second reconnect with this token waits, then takes over from this one
            if not self.sessions.kept(session):
                return self._refused("the session ended meanwhile")
            holder: Socket | None = session.holder
            if holder is not None:
                try:
                    await holder.end_for_takeover()
                except BaseException:
                    self.sessions.ended(session, keep=True)  # cancelled (shutdown): left to expire
                    raise
                if not self.sessions.kept(session):  # its connection ended it (a clean close)
                    return self._refused("the session ended meanwhile")
            claim = Claim(session, True, positions)
            missed = self._replay(claim)
            if missed is None or sum(len(frame) for _, frame in missed) > self._send_queue_bytes:
                self.sessions.drop(session)
                return self._refused("what it missed is no longer all kept, or more than its send queue")
            self.sessions.revive(session)
            session.holder = None  # until opened(): nothing awaits in between
            return claim

    def opened(self, sock: Socket, claim: Claim, identity: object) -> Session | None:
        """The session of a socket about to be attached: the claimed one, or a new one (``None`` when
        ``max_sessions`` are all held)."""
        session = claim.session
        if session is None:
            key = identity_key(identity)
            session = Session(
                secrets.token_urlsafe(24),
                sock.id,
                key,
                identity if key is None else None,
                self.history.position,
            )
            if not self.sessions.add(session):
                if not self._warned_full:
                    self._warned_full = True
                    logger.warning(
                        "connection state recovery: %d sessions are held; new sockets get none "
                        "(Recovery.max_sessions)",
                        len(self.sessions),
                    )
                return None
        session.holder = sock
        return session

    def replay(self, claim: Claim) -> list[Frame] | None:
        """Every frame the claim's client missed, in the order they were sent; ``None`` when some are
        no longer kept. Called once the socket is back in its rooms, so nothing falls between the
        replay and what goes live."""
        frames = self._replay(claim)
        return None if frames is None else [frame for _, frame in sorted(frames, key=_offset)]

    def failed(self, sock: Socket) -> None:
        """The socket's recovery could not be completed: its session is dropped."""
        if sock.session is not None:
            self.sessions.drop(sock.session)

    def ended(self, sock: Socket, client_code: int | None) -> None:
        """The socket's connection ended: its session is kept for the window unless the client closed
        it on purpose or the application closed the socket (the server's own close code decides when
        the server closed first)."""
        session = sock.session
        if session is None or session.holder is not sock:
            return  # taken over by a reconnect already
        closed_by_server = sock.close_code
        if closed_by_server is not None:
            keep = closed_by_server in KEPT_AFTER
        else:
            keep = client_code not in ENDS_SESSION
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

    def _refused(self, why: str) -> Claim:
        self._client_log.info(
            "recovery", "a client reconnected with its session token; starts afresh: %s", why
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


def identity_key(identity: object) -> str | None:
    """A fingerprint of an identity: the hash of its JSON; ``None`` when it has no JSON form (it is
    then compared with ``==``)."""
    try:
        return hashlib.sha256(encode_json(identity)).hexdigest()
    except EncodeError:
        return None


def _same_identity(session: Session, identity: object) -> bool:
    key = identity_key(identity)
    if key is not None or session.identity_key is not None:
        return key == session.identity_key
    try:
        return bool(session.identity == identity)
    except Exception:  # an __eq__ that fails says no
        return False


def _positions(text: str) -> dict[str, int] | None:
    positions: dict[str, int] = {}
    if not text:
        return positions
    entries = text.split(",", MAX_OFFSETS)
    if len(entries) > MAX_OFFSETS:
        return None
    for entry in entries:
        tag, dot, offset = entry.partition(".")
        if not (dot and _decimal(tag) and _decimal(offset)):
            return None
        positions[tag] = int(offset)
    return positions


def _decimal(text: str) -> bool:
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit()


def _offset(entry: tuple[int, Frame]) -> int:
    return entry[0]
