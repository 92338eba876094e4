"""The hub: which sockets are connected, which rooms they are in, and fan-out.

A cast encodes its frame once and pushes it to every local recipient; a push never waits for a socket
(see :mod:`typed_ss.socket`). Other instances are reached through one seam, :class:`Relay`: the hub
hands it every locally started cast, and delivers what other instances started with
:meth:`Hub.deliver`. Without a relay everything stays local.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from typed_ss.protocol import BROADCAST_STREAM, SOCKET_ROOM_PREFIX, Frame, socket_room, stream_tag

if TYPE_CHECKING:
    from typed_ss.cluster.roster import Roster
    from typed_ss.socket import Socket

__all__ = ["SETTLE_TIMEOUT", "Hub", "Recorder", "Relay"]

SETTLE_TIMEOUT = 2.0
"""Seconds a socket's close waits for its frames on their way back from the backend's history."""


class Relay(Protocol):
    """Carries casts between instances (implemented by :class:`typed_ss.multihome.Multihome`)."""

    def publish(self, room: str | None, frame: Frame) -> None:
        """Pass a locally started cast on to other instances; ``room`` is ``None`` for a broadcast.
        Must not wait on the network."""
        ...

    async def watch(self, room: str) -> None:
        """Receive ``room``'s casts from other instances; returns once they will arrive."""
        ...

    def unwatch(self, room: str) -> None:
        """Stop receiving ``room``'s casts: no local socket is in it any more. Must not wait."""
        ...

    async def settled(self, rooms: Iterable[str | None], within: float) -> None:
        """Return once this instance's casts to ``rooms`` (``None``: the broadcasts) came back from a
        backend that keeps the history (they are delivered then), or after ``within`` seconds."""
        ...


class Recorder(Protocol):
    """Keeps what is sent, for connection state recovery (implemented by
    :class:`typed_ss.recovery.recoverer.Recoverer`)."""

    def record(self, stream: str, frame: Frame) -> Frame | None:
        """Keep ``frame``, sent to ``stream`` (a room, or the broadcasts); returns the frame as every
        recipient gets it (flagged with its offset), or ``None`` when the backend keeps the history:
        the frame is then delivered here too once it comes back from the backend, with its offset."""
        ...

    def kept(self, stream: str, frame: Frame, offset: int) -> Frame:
        """A frame the backend kept at ``offset`` of ``stream``, as every recipient gets it."""
        ...

    async def joined(self, sock: Socket, room: str) -> None:
        """``sock`` joined ``room``: with the history in memory, called before it is a member (no
        wait); with the history in the backend, once the room's casts reach this instance."""
        ...

    def left(self, sock: Socket, room: str) -> None:
        """``sock`` left ``room``."""
        ...

    def leaving(self, sock: Socket) -> None:
        """``sock`` is being detached (its connection is ending), still in its rooms."""
        ...

    def refers_to(self, room: str) -> bool:
        """Whether a session (of a connected socket or one away) refers to ``room``: its casts from
        other instances must still arrive, to be kept."""
        ...

    @property
    def shares_history(self) -> bool:
        """Whether the backend keeps the history: casts are delivered when they come back from it."""
        ...


_NO_ROOMS: frozenset[str] = frozenset()
_NO_MEMBERS: frozenset[Socket] = frozenset()


class Hub:
    """Sockets by id, and room membership both ways: room name to its local members, and socket to
    its rooms (its own ``__socket_id:`` room included). The hub is the one owner of membership."""

    __slots__ = ("_catching_up", "_memberships", "_rooms", "_sockets", "recorder", "relay", "roster")

    def __init__(self) -> None:
        self._sockets: dict[str, Socket] = {}
        self._rooms: dict[str, set[Socket]] = {}
        # A detached socket keeps its rooms here until forget(): its disconnect hook still sees them.
        self._memberships: dict[Socket, set[str]] = {}
        self.relay: Relay | None = None
        self.recorder: Recorder | None = None
        """Set when connection state recovery is on: every cast is kept, and membership reported."""
        self.roster: Roster | None = None
        """The cluster's view of this instance's sockets (identities, presence), told of every change."""
        # Recovered sockets whose replay was read from the backend's history: stream tag -> the last
        # offset replayed. A cast that comes back from the backend at or before it was replayed.
        self._catching_up: dict[Socket, dict[str, int]] = {}

    @property
    def sockets(self) -> Mapping[str, Socket]:
        """A read-only live view of the local sockets by id."""
        return MappingProxyType(self._sockets)

    def room_size(self, room: str) -> int:
        """How many local sockets are in ``room``."""
        return len(self._rooms.get(room, ()))

    def members(self, room: str) -> Set[Socket]:
        """The local members of ``room`` (a read-only live view: copy it before awaiting)."""
        return self._rooms.get(room, _NO_MEMBERS)

    def rooms_of(self, sock: Socket) -> Set[str]:
        """The rooms ``sock`` is in, its own room included (a read-only live view); after
        :meth:`detach`, the rooms it was in, until :meth:`forget`."""
        return self._memberships.get(sock, _NO_ROOMS)

    @property
    def room_names(self) -> frozenset[str]:
        """The rooms that have at least one local member (internal per-socket rooms excluded)."""
        return frozenset(room for room in self._rooms if not room.startswith(SOCKET_ROOM_PREFIX))

    # --- membership --------------------------------------------------------------------------------

    async def attach(self, sock: Socket) -> None:
        """Add a newly accepted socket, in its own ``__socket_id:`` room."""
        self._sockets[sock.id] = sock
        self._memberships[sock] = set()
        if self.roster is not None:
            self.roster.attached(sock)
        await self.join(sock, socket_room(sock.id))

    def detach(self, sock: Socket) -> None:
        """Remove a socket from the index so that no cast reaches it. :meth:`rooms_of` still lists
        its rooms (the disconnect hook reads them) until :meth:`forget`."""
        if self._sockets.get(sock.id) is not sock:
            return  # detached already; its id may be another socket's by now (a recovered session)
        del self._sockets[sock.id]
        self._catching_up.pop(sock, None)
        if self.recorder is not None:
            self.recorder.leaving(sock)  # before its rooms go: what was delivered to them is still known
        if self.roster is not None:
            self.roster.detached(sock, self._memberships.get(sock, ()))
        for room in self._memberships.get(sock, ()):
            members = self._rooms.get(room)
            if members is not None:
                members.discard(sock)
                if not members:
                    self._drop_room(room)

    def forget(self, sock: Socket) -> None:
        """Drop what the hub still remembers of a detached socket (its rooms)."""
        self.detach(sock)
        self._memberships.pop(sock, None)

    async def join(self, sock: Socket, room: str) -> None:
        """Add ``sock`` to ``room``; with a relay, returns once casts to the room from other
        instances will arrive here too."""
        if self._sockets.get(sock.id) is not sock:  # detached: closing or gone
            return
        recorder = self.recorder
        shared = recorder is not None and recorder.shares_history
        if recorder is not None and not shared:
            await recorder.joined(sock, room)  # does not wait: the history's position now
        members = self._rooms.get(room)
        if members is None:
            members = self._rooms[room] = set()
        members.add(sock)
        self._memberships[sock].add(room)
        if self.relay is not None:
            # Every joiner waits, not only the first: a second socket joining while the first one's
            # subscription is on its way must not return before it is active either.
            await self.relay.watch(room)
        if recorder is not None and shared and self._sockets.get(sock.id) is sock:
            # The backend's position in the room, read once its casts reach this instance: what is
            # kept after it is the client's to receive (live, or in a replay).
            await recorder.joined(sock, room)
        roster = self.roster
        if roster is not None and roster.tracks(room):  # checked here: no coroutine for other rooms
            await roster.joined(sock, room)

    async def leave(self, sock: Socket, room: str) -> None:
        """Remove ``sock`` from ``room``, deleting the room once it is empty."""
        rooms = self._memberships.get(sock)
        if rooms is not None:
            rooms.discard(room)
            if self.recorder is not None:
                self.recorder.left(sock, room)
        members = self._rooms.get(room)
        if members is not None:
            members.discard(sock)
            if not members:
                self._drop_room(room)
        if self.roster is not None:
            self.roster.left(sock, room)

    def released(self, room: str) -> None:
        """No session refers to ``room`` any more: stop receiving its casts unless it has members."""
        if self.relay is not None and room not in self._rooms:
            self.relay.unwatch(room)

    def _drop_room(self, room: str) -> None:
        del self._rooms[room]
        if self.relay is not None and (self.recorder is None or not self.recorder.refers_to(room)):
            self.relay.unwatch(room)

    # --- fan-out -----------------------------------------------------------------------------------

    def broadcast(self, frame: Frame) -> None:
        """Push ``frame`` to every local socket, then hand it to the relay."""
        sent = frame if self.recorder is None else self.recorder.record(BROADCAST_STREAM, frame)
        if sent is not None:
            for sock in self._sockets.values():
                sock.push(sent)
        if self.relay is not None:
            self.relay.publish(None, frame)

    def roomcast(self, room: str, frame: Frame) -> None:
        """Push ``frame`` to every local member of ``room``, then hand it to the relay."""
        sent = frame if self.recorder is None else self.recorder.record(room, frame)
        members = self._rooms.get(room)
        if members and sent is not None:
            for sock in members:
                sock.push(sent)
        if self.relay is not None:
            self.relay.publish(room, frame)

    def notify(self, room: str, frame: Frame) -> None:
        """Push ``frame`` to the local members of ``room`` only: a notice of this instance's own (not
        a cast, not kept for recovery)."""
        for sock in self._rooms.get(room, ()):
            sock.push(frame)

    def send_kept(self, sock: Socket, frame: Frame) -> None:
        """Send ``frame`` to ``sock`` alone, kept for connection state recovery (the recorder is set)."""
        assert self.recorder is not None
        room = socket_room(sock.id)
        sent = self.recorder.record(room, frame)
        if sent is not None:
            sock.push(sent)
        elif self.relay is not None:
            self.relay.publish(room, frame)  # delivered to the socket once the backend kept it

    def deliver(self, room: str | None, frame: Frame, offset: int | None = None) -> None:
        """Deliver a cast that another instance started (or, with the history in the backend, any
        cast, ``offset`` its place in the history) to the local recipients only."""
        stream = BROADCAST_STREAM if room is None else room
        recorder = self.recorder
        if recorder is not None:
            kept = recorder.record(stream, frame) if offset is None else recorder.kept(stream, frame, offset)
            if kept is not None:  # None: a notice the backend's history does not hold, sent as it is
                frame = kept
        targets = self._sockets.values() if room is None else self._rooms.get(room, ())
        if offset is not None and self._catching_up:
            tag = stream_tag(stream)
            for sock in targets:
                replayed = self._catching_up.get(sock)
                if replayed is not None and tag in replayed:
                    if offset <= replayed[tag]:
                        continue  # in its replay already
                    # Caught up on this stream: a stream is delivered in order, nothing older follows.
                    del replayed[tag]
                    if not replayed:
                        del self._catching_up[sock]
                sock.push(frame)
            return
        for sock in targets:
            sock.push(frame)

    async def settle(self, sock: Socket) -> None:
        """Wait (up to :data:`SETTLE_TIMEOUT`) until what this instance sent ``sock`` (to it, to its
        rooms, to everyone) came back from a backend that keeps the history: a close started now
        goes after it."""
        if self.relay is not None and self.recorder is not None and self.recorder.shares_history:
            # Every stream the socket receives: its rooms (its own among them) and the broadcasts.
            await self.relay.settled([*self.rooms_of(sock), None], SETTLE_TIMEOUT)

    def caught_up(self, sock: Socket, replayed: dict[str, int]) -> None:
        """``sock`` was sent its replay, up to ``replayed`` (stream tag -> offset): the casts that come
        back from the backend's history at or before those offsets are not sent to it again."""
        if replayed and self._sockets.get(sock.id) is sock:
            self._catching_up[sock] = replayed
