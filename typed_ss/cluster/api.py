"""The application's view of the cluster: queries and actions across every instance, and presence.

``ss.cluster`` (:class:`Cluster`) asks every instance that shares the backend (and this one) and
returns an :class:`Answer`: the value, and the instances that did not answer in time. Without a
backend the instance is the whole cluster. ``Server(presence=Presence(...))`` chooses each socket's
presence payload, the rooms whose members are told of joins and leaves (``__presence``), whether per
socket or per identity, and who may list a room's members from a client (``__members``). See
docs/presence.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import msgspec

from typed_ss.cluster.roster import identity_fingerprint
from typed_ss.cluster.wire import Action, Count, Entry, Members, Target
from typed_ss.errors import CloseCode, ConfigurationError, HandlerError

if TYPE_CHECKING:
    from typed_ss.cluster.control import ControlPlane, Gathered
    from typed_ss.cluster.roster import Roster
    from typed_ss.socket import Socket

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_LISTED",
    "Answer",
    "Cluster",
    "Listed",
    "ListedMember",
    "Member",
    "MembersQuestion",
    "Presence",
]

P = TypeVar("P")
T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 1.0
"""Seconds a query or action waits for the other instances by default."""
MAX_LISTED: Final = 1000
"""Members a client's ``__members`` call lists at most, by default (``Presence(max_listed=...)``)."""


class Member(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """One socket somewhere in the cluster."""

    # gc=False: a query makes one per member (10,000 for a room of 10,000), and the collector walking
    # them started full collections in a process holding thousands of connections (docs/benchmarks.md).
    # A member is never part of a cycle.

    socket: str
    """Its id (``ss.cluster`` actions take it)."""
    instance: str
    """The instance it is connected to."""
    presence: P
    """Its presence payload (``None`` without a :class:`Presence`)."""


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What the instances answered: ``value``, and the instances that did not answer in time.

    A query never passes a partial answer off as a whole one: when ``missing`` is not empty, the
    sockets of those instances are not in ``value``. An instance is missing when it is alive but
    did not answer within the timeout, or stopped being heard lately (within 30 s) without saying
    goodbye: cut off, or dead.
    """

    value: T
    missing: frozenset[str]
    """The instances that did not answer."""
    truncated: bool = False
    """Members past the query's ``limit`` were left out."""

    @property
    def complete(self) -> bool:
        """Whether every instance answered."""
        return not self.missing


class MembersQuestion(msgspec.Struct, frozen=True):
    """The payload of a client's ``__members`` call."""

    room: str


class ListedMember(msgspec.Struct, Generic[P], frozen=True):
    """One member, as a client's ``__members`` call lists it."""

    socket: str
    instance: str
    presence: P


class Listed(msgspec.Struct, Generic[P], frozen=True):
    """The reply to a client's ``__members`` call."""

    members: list[ListedMember[P]]
    missing: list[str]
    """The instances that did not answer: their members are not listed."""
    truncated: bool
    """More members than ``max_listed``: some were left out."""


Visible = Callable[["Socket[Any]", str], "bool | Awaitable[bool]"]


class Presence(Generic[P]):
    """How the application takes part in presence, and its typed queries.

    Args:
        payload: the type of each socket's presence payload (a msgspec Struct, a dataclass, a
            pydantic model, a TypedDict...): what other members see of it. Clients get it as JSON.
        of: makes a socket's payload (``lambda sock: Card(name=sock.identity.name)``), once, when the
            socket first joins a tracked room or is listed; ``set()`` changes it later. ``None``:
            the payload is ``null`` until set.
        tracked: the rooms whose members are told when a member joins or leaves (``__presence``
            events): a predicate on the room's name, or names. Default: none.
        per_identity: tell one ``joined`` when an identity's first socket joins and one ``left``
            when its last leaves, wherever they are, instead of one per socket (per tab).
        visible: ``async def visible(sock, room) -> bool`` (or a plain function): may ``sock`` list
            ``room``'s members with a ``__members`` call? Default: only a member of the room may.
        max_listed: the members a ``__members`` call lists at most.
    """

    def __init__(
        self,
        payload: type[P],
        of: Callable[[Socket[Any]], P] | None = None,
        *,
        tracked: Callable[[str], bool] | Iterable[str] = (),
        per_identity: bool = False,
        visible: Visible | None = None,
        max_listed: int = MAX_LISTED,
    ) -> None:
        self.payload: Final = payload
        self.of: Final = of
        if callable(tracked):
            self._tracked: Callable[[str], bool] = tracked
        else:
            names = frozenset(tracked)
            self._tracked = names.__contains__
        self.per_identity: Final = per_identity
        self.visible: Final = visible
        if max_listed < 1:
            raise ConfigurationError("max_listed must be at least 1")
        self.max_listed: Final = max_listed
        self._decoder = msgspec.json.Decoder(payload)
        self._cluster: Cluster | None = None

    def tracks(self, room: str) -> bool:
        """Whether ``room``'s members are told of joins and leaves."""
        return bool(self._tracked(room))

    def decode(self, payload: bytes) -> P:
        """A payload from its JSON (as another instance sent it)."""
        return self._decoder.decode(payload)

    def attach(self, cluster: Cluster) -> None:
        """Internal: the server this presence belongs to attaches its cluster."""
        if self._cluster is not None and self._cluster is not cluster:
            raise ConfigurationError("a Presence belongs to one Server")
        self._cluster = cluster

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise ConfigurationError("this Presence is not given to a Server (Server(presence=...))")
        return self._cluster

    def set(self, sock: Socket[Any], payload: P) -> None:
        """Change ``sock``'s presence payload: later queries, and the tracked rooms it is in, see
        the new one (no event is sent for the change).

        Raises:
            EncodeError: ``payload`` has no JSON form.
        """
        self.cluster.roster.set_payload(sock, payload)

    async def members(
        self, room: str, *, timeout: float = DEFAULT_TIMEOUT, limit: int | None = None
    ) -> Answer[list[Member[P]]]:
        """The members of ``room`` on every instance, with their payloads (see :meth:`Cluster.members`)."""
        return await self.cluster.members(room, timeout=timeout, limit=limit)

    async def sockets_of(
        self, identity: object, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Answer[list[Member[P]]]:
        """The sockets of ``identity`` on every instance (see :meth:`Cluster.sockets_of`)."""
        return await self.cluster.sockets_of(identity, timeout=timeout)

    async def listed(self, sock: Socket[Any], question: MembersQuestion) -> Listed[P]:
        """A client's ``__members`` call: the room's members, if ``visible`` allows it.

        Raises:
            HandlerError: ``forbidden``: the socket may not list the room.
        """
        if not await self.may_list(sock, question.room):
            raise HandlerError("forbidden", "this socket may not list the members of this room")
        answer = await self.members(question.room, limit=self.max_listed)
        members = answer.value[: self.max_listed]
        return Listed(
            [ListedMember(member.socket, member.instance, member.presence) for member in members],
            sorted(answer.missing),
            answer.truncated or len(answer.value) > self.max_listed,
        )

    async def may_list(self, sock: Socket[Any], room: str) -> bool:
        """Whether ``sock`` may list ``room``'s members (``visible``; by default, if it is in it)."""
        if self.visible is None:
            return sock.in_room(room)
        allowed = self.visible(sock, room)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return bool(allowed)


class Cluster:
    """Queries and actions across every instance that shares the backend (``ss.cluster``).

    Every method waits at most ``timeout`` seconds for the other instances, and returns an
    :class:`Answer` naming the ones that did not answer. Without a backend, this instance answers
    alone. Actions are carried out by each instance on its own sockets.
    """

    def __init__(self, control: ControlPlane, presence: Presence[Any] | None) -> None:
        self.control: Final = control
        self.roster: Final[Roster] = control.roster
        self.presence: Final = presence
        if presence is not None:
            presence.attach(self)

    @property
    def instance_id(self) -> str:
        """This instance's id on the backend."""
        return self.control.instance_id

    @property
    def peers(self) -> frozenset[str]:
        """The other instances heard from lately (their heartbeats)."""
        return self.control.peers.live

    # --- queries -----------------------------------------------------------------------------------

    async def members(
        self, room: str, *, timeout: float = DEFAULT_TIMEOUT, limit: int | None = None
    ) -> Answer[list[Member[Any]]]:
        """The sockets in ``room`` on every instance: id, instance and presence payload. ``limit``:
        at most this many from each instance (``truncated`` says some were left out)."""
        query = Members(room, None, _limit(limit))
        return self._members(await self.control.ask(query, timeout))

    async def count(self, room: str, *, timeout: float = DEFAULT_TIMEOUT) -> Answer[int]:
        """How many sockets are in ``room``, every instance (without listing them)."""
        counts = await self.counts([room], timeout=timeout)
        return Answer(counts.value[room], counts.missing)

    async def counts(
        self, rooms: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT
    ) -> Answer[dict[str, int]]:
        """How many sockets are in each of ``rooms``, every instance, in one question."""
        names = list(dict.fromkeys(rooms))
        gathered = await self.control.ask(Count(names), timeout)
        totals = dict.fromkeys(names, 0)
        for answered in gathered.answers.values():
            for room, count in zip(names, answered.count, strict=False):
                totals[room] += count
        return Answer(totals, gathered.missing)

    async def sockets_of(
        self, identity: object, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Answer[list[Member[Any]]]:
        """The sockets whose ``sock.identity`` equals ``identity`` (compared by its JSON), every
        instance.

        Raises:
            EncodeError: the identity has no JSON form.
        """
        query = Members(None, identity_fingerprint(identity), _limit(None))
        return self._members(await self.control.ask(query, timeout))

    # --- actions -----------------------------------------------------------------------------------

    async def join(
        self,
        room: str,
        *,
        sockets: Iterable[str] | None = None,
        in_room: str | None = None,
        identity: object = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Answer[int]:
        """Make the chosen sockets join ``room``, wherever they are: by id (``sockets``), every member
        of ``in_room``, or every socket of ``identity``. The value: how many joined."""
        return await self._act(Action("join", _target(sockets, in_room, identity), room), timeout)

    async def leave(
        self,
        room: str,
        *,
        sockets: Iterable[str] | None = None,
        in_room: str | None = None,
        identity: object = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Answer[int]:
        """Make the chosen sockets leave ``room`` (chosen as for :meth:`join`). The value: how many left."""
        return await self._act(Action("leave", _target(sockets, in_room, identity), room), timeout)

    async def disconnect(
        self,
        *,
        sockets: Iterable[str] | None = None,
        in_room: str | None = None,
        identity: object = None,
        code: int = CloseCode.NORMAL,
        reason: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Answer[int]:
        """Close the chosen sockets (chosen as for :meth:`join`) with ``code`` and ``reason``. The
        value: how many were closed."""
        return await self._act(
            Action("disconnect", _target(sockets, in_room, identity), reason, code), timeout
        )

    async def _act(self, action: Action, timeout: float) -> Answer[int]:
        gathered = await self.control.ask(action, timeout)
        return Answer(sum(sum(answered.count) for answered in gathered.answers.values()), gathered.missing)

    def _members(self, gathered: Gathered) -> Answer[list[Member[Any]]]:
        decode = self._payload_decoder()
        members = [
            Member(entry.socket, instance, decode(entry))
            for instance, answered in gathered.answers.items()
            for entry in answered.entries
        ]
        truncated = any(answered.truncated for answered in gathered.answers.values())
        return Answer(members, gathered.missing, truncated)

    def _payload_decoder(self) -> Callable[[Entry], Any]:
        presence = self.presence
        if presence is None:
            return lambda entry: None

        def decode(entry: Entry) -> Any:
            try:
                return presence.decode(entry.presence)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return None  # an instance with another payload type (a rolling upgrade)

        return decode


def _limit(limit: int | None) -> int:
    if limit is None:
        return 2**31
    if limit < 0:
        raise ValueError("limit must not be negative")
    return limit


def _target(sockets: Iterable[str] | None, in_room: str | None, identity: object) -> Target:
    chosen = [sockets is not None, in_room is not None, identity is not None]
    if sum(chosen) != 1:
        raise TypeError("choose the sockets with exactly one of sockets=, in_room= or identity=")
    if sockets is not None:
        if isinstance(sockets, str):
            raise TypeError("sockets= takes socket ids (a list), not one str")
        return Target("sockets", list(sockets))
    if in_room is not None:
        return Target("room", [in_room])
    return Target("identity", [identity_fingerprint(identity)])
