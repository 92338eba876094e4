"""This instance's part of the cluster's rooms: the answers it gives, and presence.

The :class:`Roster` watches the hub (the one owner of membership) and keeps what the cluster needs
beside it: each socket's identity fingerprint (to find an identity's sockets) and presence payload,
and for each room whose presence is tracked and that has a local member, a table of every
instance's members of it.

**Presence tables.** Each instance numbers the changes of its own members of a tracked room
(``stream``, ``version``) and publishes each change on the room's presence topic. An instance that
gets its first member of the room subscribes to that topic and asks every instance for its part,
then applies the changes as they come: a change that skips a version (one was lost), or one of a
stream it does not know, makes it ask the sender for its part again. A peer that is gone (no
heartbeat within the bound) has its part removed; one heard again is asked again. Each instance
decides the presence events of its own local members from its own table, so an instance without a
member of the room neither receives nor computes anything for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import msgspec

from typed_ss.cluster.wire import (
    Action,
    Change,
    Count,
    Entry,
    Members,
    Part,
    Parts,
    Query,
    Target,
)
from typed_ss.errors import EncodeError, InvalidName, LimitExceeded
from typed_ss.protocol import PRESENCE_EVENT, RESERVED_PREFIX, Frame, encode_frame, encode_json
from typed_ss.recovery.recoverer import identity_key

if TYPE_CHECKING:
    from typed_ss.cluster.api import Presence
    from typed_ss.hub import Hub
    from typed_ss.socket import Socket

__all__ = ["Answered", "PresenceNotice", "Roster"]

logger = logging.getLogger("typed_ss.cluster")

NULL: Final = b"null"
MAX_HELD: Final = 10_000
"""Changes of a room kept while the part they change is being asked for (past it, the oldest go,
and the part is asked for again)."""

AskParts: TypeAlias = Callable[
    [str | None, list[str]], Coroutine[Any, Any, tuple[list[tuple[str, Part]], frozenset[str]]]
]
"""Asks one instance (``None``: every one) for its parts of some tracked rooms: the parts by
instance, and the instances that did not answer."""


class PresenceNotice(msgspec.Struct, frozen=True):
    """The ``__presence`` payload: a member joined or left ``room``."""

    room: str
    change: Literal["joined", "left"]
    socket: str
    """The socket that joined or left (per identity: the identity's first to join, last to leave)."""
    presence: msgspec.Raw
    """Its presence payload (``null`` without one)."""


@dataclass(slots=True)
class Answered:
    """This instance's answer to one question (see :class:`~typed_ss.cluster.wire.Reply`)."""

    count: list[int] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    truncated: bool = False


@dataclass(slots=True)
class _Part:
    stream: int
    version: int
    entries: dict[str, Entry]


class _Table:
    """Every instance's members of one tracked room, as this instance knows them."""

    __slots__ = ("asking", "built", "counts", "joining", "parts")

    def __init__(self) -> None:
        self.parts: dict[str, _Part] = {}
        self.counts: dict[str, int] = {}  # presence key -> sockets with it, every instance
        self.built: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Local sockets that joined while the table was being built: announced once it is.
        self.joining: list[Socket[Any]] = []
        # The instances asked for their part (None: every one, while the table is built), with the
        # changes of theirs that arrived meanwhile: applied, in order, once the part is.
        self.asking: dict[str | None, deque[Change]] = {None: deque(maxlen=MAX_HELD)}

    def hold(self, change: Change) -> bool:
        """Keep ``change`` for later if its sender's part is being asked for."""
        held = self.asking.get(None)
        if held is None:
            held = self.asking.get(change.origin)
        if held is None:
            return False
        held.append(change)  # past MAX_HELD the oldest go: a gap, noticed when they are applied
        return True


class Roster:
    """This instance's sockets as the cluster sees them (see the module docstring).

    The control plane sets how it reaches the other instances: ``send_change`` publishes a change
    of a tracked room, ``ask_parts`` asks one instance (or every one) for its parts of some rooms,
    ``watch_room``/``unwatch_room`` subscribe a room's presence topic.
    """

    def __init__(self, hub: Hub, presence: Presence[Any] | None) -> None:
        self.hub: Final = hub
        self.presence: Final = presence
        self.instance_id = ""
        self._keys: dict[Socket[Any], str] = {}
        self._by_key: dict[str, set[Socket[Any]]] = {}
        self._payloads: dict[Socket[Any], bytes] = {}
        self._tables: dict[str, _Table] = {}
        self._own: dict[str, _Part] = {}  # tracked room -> this instance's own part
        self._streams = itertools.count(time.time_ns())  # grows across restarts too
        self._tasks: set[asyncio.Task[None]] = set()
        # Changes of this instance's parts not published yet (see _changed), by room.
        self._unsent: dict[str, tuple[_Part, dict[str, Entry | None]]] = {}
        self._flushing = False
        # Set by the control plane: how changes leave, and how parts are asked for.
        self.send_change: Callable[[Change], None] = lambda change: None
        self.ask_parts: AskParts | None = None
        self.watch_room: Callable[[str], asyncio.Future[None]] | None = None
        self.unwatch_room: Callable[[str], None] = lambda room: None

    # --- the hub's observer ------------------------------------------------------------------------

    def attached(self, sock: Socket[Any]) -> None:
        """A socket connected: index it by its identity (a socket without one is not indexed)."""
        if sock.identity is None:
            return
        key = self._key_of(sock)
        self._keys[sock] = key
        self._by_key.setdefault(key, set()).add(sock)

    def detached(self, sock: Socket[Any], rooms: Iterable[str]) -> None:
        """A socket's connection is ending; ``rooms``: the rooms it is still in."""
        for room in rooms:
            self.left(sock, room, remaining=self.hub.room_size(room) - 1)
        key = self._keys.pop(sock, None)
        if key is not None:
            sockets = self._by_key.get(key)
            if sockets is not None:
                sockets.discard(sock)
                if not sockets:
                    del self._by_key[key]
        self._payloads.pop(sock, None)

    async def joined(self, sock: Socket[Any], room: str) -> None:
        """``sock`` joined ``room``, a tracked room (it is a member, and the room's casts reach this
        instance)."""
        if not self._in_room(sock, room):
            # It left (or is gone) while its join waited for the backend: its leave found no table
            # to drop, so none may be made for it now.
            return
        table = self._tables.get(room)
        if table is None:
            table = self._tables[room] = _Table()
            self._spawn(self._build(room, table))
        if table.built.done():
            self._announce(sock, room, table)
            return
        # The build announces it, not this call: a joiner cancelled meanwhile is still a member of
        # the room (the hub keeps it), so it must be announced all the same.
        table.joining.append(sock)
        await asyncio.shield(table.built)

    def _in_room(self, sock: Socket[Any], room: str) -> bool:
        return self.hub.sockets.get(sock.id) is sock and room in self.hub.rooms_of(sock)

    def _announce(self, sock: Socket[Any], room: str, table: _Table) -> None:
        """``sock`` joins this instance's part of the built ``table``: every instance hears of it."""
        if self._tables.get(room) is not table or not self._in_room(sock, room):
            return  # the room's last local member left meanwhile, or this one left (or is gone)
        own = self._own.get(room)
        if own is None:
            own = self._own[room] = _Part(next(self._streams), 0, {})
            table.parts[self.instance_id] = own
        if sock.id in own.entries:
            return
        entry = self._entry(sock)
        self._changed(room, own, sock.id, entry)
        self._add(room, table, entry, own)

    def left(self, sock: Socket[Any], room: str, *, remaining: int | None = None) -> None:
        """``sock`` left ``room`` (or is leaving it as its connection ends): ``remaining`` local
        members stay (by default, the hub's count)."""
        table = self._tables.get(room)
        if table is None:
            return
        own = self._own.get(room)
        entry = None if own is None else own.entries.get(sock.id)
        if own is not None and entry is not None:
            self._changed(room, own, sock.id, None)
            self._remove(room, table, own, sock.id)
        if (self.hub.room_size(room) if remaining is None else remaining) <= 0:
            self._drop(room)

    def _changed(self, room: str, own: _Part, socket_id: str, entry: Entry | None) -> None:
        """This instance's part of ``room`` changed (``entry``: the socket joined or has a new
        payload; ``None``: it left). The changes of one moment go out together, as one numbered
        change per room: a burst of joins is a handful of messages, not one per socket."""
        unsent = self._unsent.get(room)
        if unsent is None or unsent[0] is not own:
            if unsent is not None:
                self._send(room, *unsent)  # of an earlier part of the room: it goes first
            unsent = self._unsent[room] = (own, {})
        unsent[1][socket_id] = entry
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send the changes not sent yet."""
        self._flushing = False
        unsent, self._unsent = self._unsent, {}
        for room, (own, changes) in unsent.items():
            self._send(room, own, changes)

    def _send(self, room: str, own: _Part, changes: dict[str, Entry | None]) -> None:
        own.version += 1
        joined = [entry for entry in changes.values() if entry is not None]
        left = [socket_id for socket_id, entry in changes.items() if entry is None]
        self.send_change(Change(self.instance_id, room, own.stream, own.version, joined, left))

    # --- presence payloads -------------------------------------------------------------------------

    def payload(self, sock: Socket[Any]) -> bytes:
        """``sock``'s presence payload as JSON, made once (by the application's ``of``)."""
        presence = self.presence
        if presence is None or presence.of is None:
            return self._payloads.get(sock, NULL)
        payload = self._payloads.get(sock)
        if payload is None:
            try:
                payload = encode_json(presence.of(sock))
            except Exception:  # the application's function: its failure costs the payload only
                logger.exception("the presence payload of socket %s could not be made", sock.id)
                payload = NULL
            self._payloads[sock] = payload
        return payload

    def set_payload(self, sock: Socket[Any], value: object) -> None:
        """Change ``sock``'s presence payload; the tracked rooms it is in see the new one (no event).

        Raises:
            EncodeError: ``value`` has no JSON form.
        """
        payload = encode_json(value)
        if self.hub.sockets.get(sock.id) is not sock:
            return  # gone
        self._payloads[sock] = payload
        for room, own in self._own.items():
            entry = own.entries.get(sock.id)
            if entry is not None:
                updated = Entry(entry.socket, entry.key, payload)
                own.entries[sock.id] = updated
                self._changed(room, own, sock.id, updated)

    def tracks(self, room: str) -> bool:
        """Whether ``room``'s presence is tracked (events are sent to its members)."""
        presence = self.presence
        if presence is None or room.startswith(RESERVED_PREFIX):
            return False
        try:
            return presence.tracks(room)
        except Exception:  # the application's predicate: its failure must not fail the join
            logger.exception("presence: tracked() failed for room %r; taken as not tracked", room)
            return False

    # --- answers -----------------------------------------------------------------------------------

    async def answer(self, query: Query) -> Answered:
        """This instance's answer to ``query`` (actions are carried out)."""
        if isinstance(query, Members):
            return self._members(query)
        if isinstance(query, Count):
            return Answered(count=[self.hub.room_size(room) for room in query.rooms])
        if isinstance(query, Parts):
            return Answered(parts=[self.own_part(room) for room in query.rooms])
        return Answered(count=[await self._act(query)])

    def _members(self, query: Members) -> Answered:
        if query.key is not None:
            sockets: Iterable[Socket[Any]] = self._by_key.get(query.key, ())
        elif query.room is not None:
            sockets = self.hub.members(query.room)
        else:
            sockets = ()
        entries: list[Entry] = []
        for sock in sockets:
            if len(entries) >= query.limit:
                return Answered(entries=entries, truncated=True)
            entries.append(self._entry(sock))
        return Answered(entries=entries)

    def own_part(self, room: str) -> Part:
        """This instance's members of the tracked ``room`` (stream 0: none)."""
        own = self._own.get(room)
        if own is None:
            return Part(room, 0, 0, [])
        return Part(room, own.stream, own.version, list(own.entries.values()))

    def _targets(self, target: Target) -> list[Socket[Any]]:
        """The local sockets ``target`` names."""
        if target.kind == "sockets":
            found = (self.hub.sockets.get(socket_id) for socket_id in target.values)
            return [sock for sock in found if sock is not None]
        if target.kind == "room":
            return [sock for room in target.values for sock in self.hub.members(room)]
        return [sock for key in target.values for sock in self._by_key.get(key, ())]

    async def _act(self, action: Action) -> int:
        sockets = self._targets(action.target)
        if action.kind == "disconnect":
            closing = [sock for sock in sockets if sock.connected]
            await asyncio.gather(*(sock.close(action.code, action.room) for sock in closing))
            return len(closing)
        done = 0
        for sock in sockets:
            try:
                if action.kind == "join":
                    if not sock.in_room(action.room):
                        await sock.join(action.room)
                        done += sock.in_room(action.room)
                elif sock.in_room(action.room):
                    await sock.leave(action.room)
                    done += 1
            except (InvalidName, LimitExceeded) as exc:
                logger.warning("cluster %s of socket %s: %s", action.kind, sock.id, exc)
        return done

    # --- presence tables ---------------------------------------------------------------------------

    async def _build(self, room: str, table: _Table) -> None:
        """Subscribe to the room's changes, then ask every instance for its part."""
        missing: frozenset[str] = frozenset()
        try:
            if self.watch_room is not None:
                await self.watch_room(room)
            if self.ask_parts is not None and self._tables.get(room) is table:
                parts, missing = await self.ask_parts(None, [room])
                for origin, part in parts:
                    self.apply_part(origin, part)  # no events: the table is not built yet
        except Exception:
            logger.exception("building the presence of room %r failed; changes will complete it", room)
        finally:
            if not table.built.done():
                table.built.set_result(None)
            joining, table.joining = table.joining, []
            for sock in joining:  # each sees its own joined before its join returns
                self._announce(sock, room, table)
            self._release(table, None)
        for origin in missing:  # asked again, alone: its members arrive when it answers
            self._resync(origin, [room])

    def apply_change(self, change: Change) -> None:
        """A change another instance published."""
        table = self._tables.get(change.room)
        if table is None or change.origin == self.instance_id or table.hold(change):
            return
        part = table.parts.get(change.origin)
        if part is None or part.stream != change.stream:
            if part is not None and change.stream < part.stream:
                return  # of a stream that ended before the one known
            if change.version != 1:  # changes of this stream were missed: its whole part is needed
                self._resync(change.origin, [change.room])
                return
            self.apply_part(change.origin, Part(change.room, change.stream, 0, []))
            part = table.parts.get(change.origin)
            if part is None or part.stream != change.stream:
                return
        if change.version <= part.version:
            return  # seen already
        if change.version > part.version + 1:
            logger.info(
                "cluster: presence changes of room %r from instance %s were lost; asking again",
                change.room,
                change.origin,
            )
            self._resync(change.origin, [change.room])
            return
        part.version = change.version
        for socket_id in change.left:
            self._remove(change.room, table, part, socket_id)
        for entry in change.joined:
            self._add(change.room, table, entry, part)

    def apply_part(self, origin: str, part: Part) -> None:
        """``origin``'s whole part of a tracked room, as it answered: what differs from what was known
        is told to the local members as events (none while the table is being built)."""
        table = self._tables.get(part.room)
        if table is None or origin == self.instance_id:
            return
        known = table.parts.get(origin)
        if known is not None and (known.stream, known.version) > (part.stream, part.version) and part.stream:
            return  # older than what arrived meanwhile
        if part.stream == 0:
            self.drop_origin(origin, [part.room])
            return
        if known is None:
            known = table.parts[origin] = _Part(part.stream, part.version, {})
        known.stream, known.version = part.stream, part.version
        wanted = {entry.socket: entry for entry in part.entries}
        gone = [socket_id for socket_id in known.entries if socket_id not in wanted]
        # The new entries first: an identity whose socket was replaced unseen (one tab closed,
        # another opened) stays counted throughout, and is told neither left nor joined again.
        for entry in wanted.values():
            self._add(part.room, table, entry, known)
        for socket_id in gone:
            self._remove(part.room, table, known, socket_id)

    def drop_origin(self, origin: str, rooms: Iterable[str] | None = None) -> None:
        """``origin``'s members leave the tracked ``rooms`` (every one by default): it is gone."""
        for room in list(self._tables if rooms is None else rooms):
            table = self._tables.get(room)
            part = None if table is None else table.parts.get(origin)
            if table is None or part is None:
                continue
            for socket_id in list(part.entries):
                self._remove(room, table, part, socket_id)
            del table.parts[origin]

    @property
    def tracked_rooms(self) -> list[str]:
        """The tracked rooms this instance keeps a table of (it has a member of each)."""
        return list(self._tables)

    def resync(self, origin: str) -> None:
        """Ask ``origin`` again for its parts of every tracked room with a table here; what changed
        since is told to the local members as events (they did not know it either)."""
        self._resync(origin, self.tracked_rooms)

    def _resync(self, origin: str, rooms: list[str]) -> None:
        asked = []
        for room in rooms:
            table = self._tables.get(room)
            if table is not None and origin not in table.asking:  # once at a time
                table.asking[origin] = deque(maxlen=MAX_HELD)
                asked.append(room)
        if asked and self.ask_parts is not None:
            self._spawn(self._apply_asked(origin, asked))

    async def _apply_asked(self, origin: str, rooms: list[str]) -> None:
        assert self.ask_parts is not None
        tables = {room: self._tables.get(room) for room in rooms}
        parts: list[tuple[str, Part]] = []
        missing: frozenset[str] = frozenset()
        try:
            parts, missing = await self.ask_parts(origin, rooms)
        except Exception:
            logger.exception("cluster: asking for presence parts failed")
        finally:
            for answered_by, part in parts:
                if self._tables.get(part.room) is tables.get(part.room):
                    self.apply_part(answered_by, part)
            for table in tables.values():
                if table is not None:
                    self._release(table, origin)
        if missing:
            # Alive, yet its answer did not come (lost, or late): nothing else would ask again until
            # its next change of the room, which may never come. Asked until it answers or is gone.
            self._resync(origin, [room for room, table in tables.items() if self._tables.get(room) is table])

    def _release(self, table: _Table, origin: str | None) -> None:
        """Stop holding ``origin``'s changes (``None``: everyone's) and apply those held, in order."""
        held = table.asking.pop(origin, None)
        for change in held or ():
            self.apply_change(change)

    def _add(self, room: str, table: _Table, entry: Entry, part: _Part) -> None:
        previous = part.entries.get(entry.socket)
        part.entries[entry.socket] = entry
        if previous is not None:
            if previous.key == entry.key:
                return  # a new payload: no event
            self._count(room, table, previous, -1)
        self._count(room, table, entry, +1)

    def _remove(self, room: str, table: _Table, part: _Part, socket_id: str) -> None:
        entry = part.entries.pop(socket_id, None)
        if entry is not None:
            self._count(room, table, entry, -1)

    def _count(self, room: str, table: _Table, entry: Entry, delta: int) -> None:
        presence = self.presence
        per_identity = presence is not None and presence.per_identity
        key = entry.key if per_identity else entry.socket
        before = table.counts.get(key, 0)
        after = before + delta
        if after > 0:
            table.counts[key] = after
        else:
            table.counts.pop(key, None)
        if not table.built.done():  # the table's first state: the joiner asks for it instead
            return
        if before == 0 and after > 0:
            self._notify(room, "joined", entry)
        elif before > 0 and after <= 0:
            self._notify(room, "left", entry)

    def _notify(self, room: str, change: Literal["joined", "left"], entry: Entry) -> None:
        frame = presence_frame(PresenceNotice(room, change, entry.socket, msgspec.Raw(entry.presence)))
        self.hub.notify(room, frame)

    def _drop(self, room: str) -> None:
        """No local member is left in ``room``: forget its table and stop receiving its changes."""
        table = self._tables.pop(room, None)
        self._own.pop(room, None)
        if table is not None:
            if not table.built.done():
                table.built.set_result(None)
            self.unwatch_room(room)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Send the changes not sent yet; cancel what is on its way (tables being built, parts
        being asked for)."""
        self.flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _entry(self, sock: Socket[Any]) -> Entry:
        key = self._keys.get(sock)
        return Entry(sock.id, key if key is not None else self._key_of(sock), self.payload(sock))

    def _key_of(self, sock: Socket[Any]) -> str:
        if sock.identity is not None:
            with contextlib.suppress(EncodeError):  # no JSON form: grouped as a socket of its own
                return identity_fingerprint(sock.identity)
        return "s:" + sock.id

    def presence_count(self) -> int:
        """Entries held in the presence tables, every instance's (for health)."""
        return sum(len(part.entries) for table in self._tables.values() for part in table.parts.values())


def presence_frame(notice: PresenceNotice) -> Frame:
    """A ``__presence`` frame."""
    return encode_frame(PRESENCE_EVENT, notice)


def identity_fingerprint(identity: object) -> str:
    """What :class:`~typed_ss.cluster.wire.Target` names an identity by, and presence groups its
    sockets by: 128 bits of the hash of its JSON (a third of what an entry holds, at the full 256).

    Raises:
        EncodeError: the identity has no JSON form (it cannot be found across instances).
    """
    key = identity_key(identity)
    if key is None:
        raise EncodeError(f"an identity of type {type(identity).__qualname__} has no JSON form")
    return key[:32]
