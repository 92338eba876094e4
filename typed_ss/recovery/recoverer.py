"""The decisions of connection state recovery: what a reconnecting client gets, and the sessions'
life in between (the history and the sessions are kept by their own modules).

At a reconnect (:meth:`Recoverer.claim`), the client's token names a session; the session is taken up
only if the client authenticated as the same identity and, for every stream of the session (its
rooms, its own stream, the broadcasts), everything after the client's offset (or after the socket
joined, for a stream it was sent nothing from) is still kept, and fits the socket's send queue.
Anything less is a fresh start: never stale rooms, never a partial replay.

Where the history and the sessions live: in this instance's memory
(:class:`~typed_ss.recovery.history.MemoryHistory`, :class:`~typed_ss.recovery.sessions.MemorySessions`),
or, when the multihome backend keeps history (:class:`~typed_ss.backends.base.HistoryBackend`:
Redis, MongoDB), in the backend, shared by every instance: :meth:`Recoverer.share` switches to it
once the backend has started. The sessions this instance holds are then also kept in memory, as the
ones to write through to the backend's :class:`~typed_ss.backends.base.SessionStore`; a token this
instance does not know is looked up there.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple

from starlette.requests import HTTPConnection

from typed_ss.backends.base import Departure, HistoryBackend, SessionRecord, SessionStore
from typed_ss.errors import BackendError, CloseCode, EncodeError
from typed_ss.logs import ClientLog
from typed_ss.protocol import (
    BROADCAST_STREAM,
    MAX_OFFSETS,
    OFFSETS_QUERY_PARAMETER,
    SESSION_QUERY_PARAMETER,
    Frame,
    encode_json,
    frame_offset,
    offset_flag,
    stream_tag,
    with_flag,
)
from typed_ss.recovery import Recovery
from typed_ss.recovery.history import MemoryHistory
from typed_ss.recovery.sessions import MemorySessions, Session
from typed_ss.supervision import Supervised

if TYPE_CHECKING:
    from typed_ss.multihome import Multihome
    from typed_ss.socket import Socket

__all__ = ["Claim", "Recoverer", "Replay", "identity_key"]

logger = logging.getLogger("typed_ss")

ENDS_SESSION: Final = frozenset({1000, 1001, 1009})
"""The client's close codes after which its session is dropped: it left on purpose (1000, 1001), or
a frame was too big for it (1009), which a replay would send again."""
KEPT_AFTER: Final = frozenset({CloseCode.SLOW_CONSUMER, CloseCode.SERVICE_RESTART, CloseCode.GOING_AWAY})
"""The server's own close codes after which a session is kept: the client did not choose to leave."""


BACKEND_TIMEOUT: Final = 2.0
"""Seconds recovery waits for the backend that keeps the history; past them a reconnect starts
afresh, and a socket connecting or joining is not recoverable (the backend is down or hung)."""


class Claim(NamedTuple):
    """What a connection's upgrade request asked of recovery, and what it gets."""

    session: Session | None
    """The session taken up; ``None``: the socket starts afresh."""
    attempted: bool
    """Whether the client reconnected with a token (``__hello`` then says how it went)."""
    positions: dict[str, int]
    """The client's last offset of each stream, by stream tag."""
    left: Departure | None = None
    """Where the backend's history stood when the session's last connection ended."""


_FRESH: Final = Claim(None, False, {})


class Replay(NamedTuple):
    """What a recovered socket is sent before it goes live."""

    frames: list[Frame]
    """Every frame its client missed, in the order they were sent."""
    upto: dict[str, int]
    """The last offset replayed of each stream, by stream tag."""

    def holds(self, frame: Frame) -> bool:
        """Whether ``frame`` (a kept one) is in the replay, or was sent before it."""
        kept = frame_offset(frame)
        return kept is not None and kept[1] <= self.upto.get(kept[0], -1)


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
        self._sweep_period = min(5.0, config.window / 4)
        # How often the sessions held here are refreshed in a shared store: a crashed instance's
        # sessions last up to one and a half windows there.
        self._refresh_period = config.window / 4
        self._warned_full = False
        self._warned_unreadable = False
        # Set while the multihome backend keeps the history (see share()).
        self._store: SessionStore | None = None
        self._shared: Multihome | None = None

    # --- where the history lives -------------------------------------------------------------------

    def prepare(self, backend: object) -> bool:
        """Ask the multihome backend, before it starts, to keep the history and the sessions, if it
        can (:class:`~typed_ss.backends.base.HistoryBackend`); returns whether it will."""
        if not isinstance(backend, HistoryBackend):
            return False
        if self._store is not None:
            return True  # asked at an earlier startup of the server
        self._store = backend.keep_history(
            max_entries=self.config.history,
            max_age=self.config.window,
            session_ttl=self.config.window + 2 * self._refresh_period,
        )
        return True

    def share(self, bridge: Multihome | None) -> None:
        """From now on the history is the one ``bridge``'s backend keeps (``None``: the backend
        stopped; back to this instance's memory)."""
        self._shared = bridge if bridge is not None and bridge.keeps_history else None

    @property
    def shares_history(self) -> bool:
        """Whether the history is the backend's, shared by every instance."""
        return self._shared is not None

    # --- what the hub and the sockets report -------------------------------------------------------

    def record(self, stream: str, frame: Frame) -> Frame | None:
        """Keep a frame sent to ``stream``; returns it as it must go out (with its offset), or
        ``None`` when the backend keeps it (it is delivered once the backend has)."""
        if self._shared is not None:
            return None
        return self.history.record(stream, frame)

    def kept(self, stream: str, frame: Frame, offset: int) -> Frame:
        """A frame the backend kept at ``offset`` of ``stream``, flagged with it."""
        return with_flag(frame, offset_flag(stream_tag(stream), str(offset)))

    async def joined(self, sock: Socket, room: str) -> None:
        session = sock.session
        if session is None or room in session.rooms:
            return
        position = await self._position(room)
        if position is None:  # the session cannot say where its client's room began: it ends
            self._drop(session)
            sock.session = None
            return
        self.sessions.joined(session, room, position)
        self._save(session)

    def left(self, sock: Socket, room: str) -> None:
        session = sock.session
        # A leave once the connection ended (the disconnect hook cleaning up) leaves the kept
        # session as it was: the client comes back to its rooms.
        if session is not None and sock.connected and room in session.rooms:
            self.sessions.left(session, room)
            self._save(session)

    def leaving(self, sock: Socket) -> None:
        """Note where the backend's history stands for the socket, while the hub still receives its
        rooms (see :class:`~typed_ss.backends.base.Departure`)."""
        session = sock.session
        shared = self._shared
        if session is not None and shared is not None and session.holder is sock:
            session.left = shared.departure(session.rooms | {BROADCAST_STREAM: 0})

    def refers_to(self, room: str) -> bool:
        """Whether a session refers to ``room``: the hub keeps receiving its casts from other
        instances, so that what a client misses while away is kept here too (not needed when the
        backend keeps the history)."""
        return self._shared is None and self.sessions.refers_to(room)

    # --- a connection's life -----------------------------------------------------------------------

    async def claim(self, request: HTTPConnection, identity: object) -> Claim:
        """The session a new connection takes up, if it may (see the module docstring). The socket
        that holds the session (the client moved before its old connection was noticed to be gone,
        or is still being torn down) is ended first, and its teardown waited for."""
        query = request.query_params
        token = query.get(SESSION_QUERY_PARAMETER)
        if token is None:
            return _FRESH
        found = await self._find(token, identity)
        if isinstance(found, str):
            return self._refused(found)
        session, loaded = found
        positions = _positions(query.get(OFFSETS_QUERY_PARAMETER, ""))
        if positions is None:
            claim = self._refused("malformed offsets")
        else:
            claim = await self._take_up(session, positions, loaded=loaded)
        if claim.session is None and loaded:
            self.sessions.drop(session)  # read from the store for this claim only: the store keeps it
        return claim

    async def opened(self, sock: Socket, claim: Claim, identity: object) -> Session | None:
        """The session of a socket about to be attached: the claimed one, or a new one (``None`` when
        ``max_sessions`` are all held, or the backend keeping the history does not answer)."""
        session = claim.session
        if session is None:
            start = await self._position(BROADCAST_STREAM)
            epoch = await self._epoch()
            if start is None or epoch is None:
                return None
            key = identity_key(identity)
            session = Session(
                secrets.token_urlsafe(24), sock.id, key, identity if key is None else None, start, epoch=epoch
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
            self._save(session, new=True)
        session.holder = sock
        return session

    async def replay(self, claim: Claim) -> Replay | None:
        """Every frame the claim's client missed, in the order they were sent; ``None`` when some are
        no longer kept (or no longer fit the send queue). Called once the socket is back in its
        rooms, so nothing falls between the replay and what goes live."""
        missed = await self._missed(claim)
        if missed is None or _size(missed) > self._send_queue_bytes:
            return None
        missed.sort(key=_offset)
        # What the client had of each stream counts as replayed too: a cast at or before it that
        # reaches this instance late is not sent again.
        upto = {stream_tag(stream): after for stream, after in self._after(claim).items()}
        for offset, frame in missed:
            kept = frame_offset(frame)
            if kept is not None:
                upto[kept[0]] = max(offset, upto.get(kept[0], 0))
        return Replay([frame for _, frame in missed], upto)

    def failed(self, sock: Socket) -> None:
        """The socket's recovery could not be completed: its session is dropped."""
        if sock.session is not None:
            self._drop(sock.session)

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
        if self._store is not None and session.identity_key is not None:
            if keep:
                self._save(session)  # with where it left, and its expiry
            else:
                self._store.delete(session.token)

    # --- inside ------------------------------------------------------------------------------------

    async def _find(self, token: str, identity: object) -> tuple[Session, bool] | str:
        """The session of ``token``, and whether it was read from the shared store for this claim;
        or why this client has none."""
        session = self.sessions.get(token)
        loaded = False
        if session is None and self._store is not None and self._shared is not None:
            record = await self._load(token)
            if isinstance(record, str):
                return record
            session = self.sessions.get(token)  # another reconnect with this token read it meanwhile
            if session is None and record is not None:
                session = Session(
                    token,
                    record.socket_id,
                    record.identity_key,
                    None,
                    record.start,
                    dict(record.rooms),
                    epoch=record.epoch,
                    left=record.left,
                )
                if not self.sessions.add(session):
                    return "Recovery.max_sessions are held here"
                self.sessions.ended(session, keep=True)  # expires here unless taken up
                loaded = True
        if session is None:
            return "no session of this token (unknown, or its window passed)"
        if not _same_identity(session, identity):
            return "the session belongs to another identity"  # not this client's to end
        return session, loaded

    async def _take_up(self, session: Session, positions: dict[str, int], *, loaded: bool) -> Claim:
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
            epoch = await self._epoch()
            if epoch is None:
                return self._refused("the backend keeping the history does not answer")
            if epoch != session.epoch:
                self._drop(session)
                return self._refused("the backend's history began anew (its epoch changed)")
            claim = Claim(session, True, positions, session.left)
            missed = await self._missed(claim)
            if missed is None or _size(missed) > self._send_queue_bytes:
                self._drop(session)
                return self._refused("what it missed is no longer all kept, or more than its send queue")
            new_token = secrets.token_urlsafe(24)
            if self._store is not None and session.identity_key is not None:
                try:
                    async with asyncio.timeout(BACKEND_TIMEOUT):
                        taken = await self._store.take(session.token, new_token)
                except Exception as exc:
                    self.sessions.drop(session)
                    return self._refused(f"the backend could not hand the session over ({exc!r})")
                if taken is None:  # expired there, or taken up on another instance meanwhile
                    self.sessions.drop(session)
                    return self._refused("the session is gone from the backend")
                if loaded:  # its holder was elsewhere: the store's state is the latest
                    for room in set(session.rooms) - set(taken.rooms):
                        self.sessions.left(session, room)
                    for room, position in taken.rooms.items():
                        self.sessions.joined(session, room, position)
            if not self.sessions.revive(session, new_token):
                return self._refused("the session ended meanwhile")
            session.left = None  # where the old connection left means nothing to the new one
            self._save(session)  # this instance's state, under the new token
            session.holder = None  # until opened(): nothing awaits in between
            return claim

    async def _load(self, token: str) -> SessionRecord | str | None:
        """A session another instance held, from the shared store; or why it cannot be read."""
        assert self._store is not None
        if not self._backend_answers():
            return "the backend keeping the sessions does not answer"
        try:
            async with asyncio.timeout(BACKEND_TIMEOUT):
                return await self._store.load(token)
        except Exception as exc:
            return f"the backend could not be read ({exc!r})"

    async def _position(self, stream: str) -> int | None:
        """The history's position in ``stream`` now; ``None`` when the backend keeping it does not
        answer (at once when it is known not to, else within :data:`BACKEND_TIMEOUT`)."""
        shared = self._shared
        if shared is None:
            return self.history.position
        try:
            if not self._backend_answers():
                raise BackendError("it is not connected")
            async with asyncio.timeout(BACKEND_TIMEOUT):
                position = await shared.position(stream)
        except Exception as exc:
            if not self._warned_unreadable:
                self._warned_unreadable = True
                logger.warning(
                    "connection state recovery: the backend's history cannot be read (%r); sockets "
                    "connecting or joining rooms meanwhile are not recoverable",
                    exc,
                )
            return None
        self._warned_unreadable = False
        return position

    async def _epoch(self) -> str | None:
        """The epoch of the backend's history ("" with the history in memory); ``None`` when the
        backend does not answer."""
        shared = self._shared
        if shared is None:
            return ""
        if not self._backend_answers():
            return None
        try:
            async with asyncio.timeout(BACKEND_TIMEOUT):
                return await shared.history_epoch()
        except Exception:
            return None

    def _backend_answers(self) -> bool:
        """Whether the backend may answer: not while it is known to be down or hung (nothing waits
        for it then); while its first connection is being made, a read waits for it, bounded."""
        return self._shared is not None and self._shared.backend.health().state in ("connected", "connecting")

    async def _missed(self, claim: Claim) -> list[tuple[int, Frame]] | None:
        after = self._after(claim)
        session = claim.session
        assert session is not None
        shared = self._shared
        if shared is not None:
            if not self._backend_answers():
                return None
            try:
                async with asyncio.timeout(BACKEND_TIMEOUT):
                    found = await shared.since(after, claim.left)
            except Exception as exc:
                self._client_log.info("recovery", "reading the backend's history failed: %r", exc)
                return None
            if found is None:
                return None
            return [(offset, self.kept(stream, frame, offset)) for stream, offset, frame in found]
        missed: list[tuple[int, Frame]] = []
        for stream, offset in after.items():
            frames = self.history.since(stream, offset)
            if frames is None:
                return None
            missed += frames
        return missed

    @staticmethod
    def _after(claim: Claim) -> dict[str, int]:
        """Each stream of the claim's session, with the offset its replay starts after: the client's
        own, or the socket's join for a stream it received nothing from."""
        session = claim.session
        assert session is not None
        streams = {BROADCAST_STREAM: session.start, **session.rooms}
        return {
            stream: max(joined, claim.positions.get(stream_tag(stream), 0))
            for stream, joined in streams.items()
        }

    def _save(self, session: Session, *, new: bool = False) -> None:
        if self._store is not None and session.identity_key is not None and self.sessions.kept(session):
            record = SessionRecord(
                session.socket_id,
                session.identity_key,
                session.start,
                dict(session.rooms),
                session.epoch,
                session.left,
            )
            # A session no connection holds keeps its expiry; a held one lasts until refreshed again.
            ttl = None if session.expires is None else max(0.001, session.expires - time.monotonic())
            self._store.save(session.token, record, new=new, ttl=ttl)

    def _drop(self, session: Session) -> None:
        if self._store is not None and self.sessions.kept(session):
            self._store.delete(session.token)
        self.sessions.drop(session)

    def _refused(self, why: str) -> Claim:
        self._client_log.info(
            "recovery", "a client reconnected with its session token; starts afresh: %s", why
        )
        return Claim(None, True, {})

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self._refresh_period
        while True:
            await asyncio.sleep(self._sweep_period)
            self.sessions.expire()
            self.history.trim(self._in_use)
            if self._store is not None and loop.time() >= next_refresh:
                next_refresh = loop.time() + self._refresh_period
                self._store.refresh(self.sessions.held_tokens())

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


def _size(frames: list[tuple[int, Frame]]) -> int:
    return sum(len(frame) for _, frame in frames)
