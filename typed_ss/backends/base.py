"""The contract every multihome backend implements: bytes and topics, nothing about sockets.

A backend moves opaque messages between server instances. The hub's bridge
(:mod:`typed_ss.multihome`) owns everything else: the envelope, which topics to subscribe, the
per-publisher sequence numbers that detect loss, duplicate and self-message filtering, and the
bounded outbox that keeps publishing off the handlers' path.

Guarantees a backend should give: messages from one publisher on one topic arrive in the order they
were published; delivery is at most once (a message may be lost during a fault, and the bridge counts
the loss); ``subscribe`` returns once messages published to the topic from then on will be delivered,
while the backend is connected. A backend that cannot route by topic may deliver everything it
receives; the bridge drops what it did not subscribe to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

from typed_ss.supervision import TaskHealth

__all__ = [
    "Backend",
    "BackendHealth",
    "BackendState",
    "Departure",
    "HistoryBackend",
    "SessionRecord",
    "SessionStore",
]

BackendState: TypeAlias = Literal["stopped", "connecting", "connected", "unresponsive", "reconnecting"]
"""``unresponsive``: connected, but the broker stopped answering (a hung process, a black-holed
network path). Subscriptions made meanwhile do not wait for it; they are made, or made again, once
it answers."""


class BackendHealth(msgspec.Struct, kw_only=True):
    """What a backend reports about itself (``ss.health()`` includes it)."""

    name: str
    """The backend's kind: ``memory``, ``redis``, ``redis-cluster``, ``nats``, ``mongo``, ``grpc``."""
    state: BackendState
    reconnects: int = 0
    """How many times the backend lost its connection and made a new one."""
    detail: dict[str, object] = {}
    """Backend-specific figures (per-peer states, probe results, ...)."""
    tasks: list[TaskHealth] = []
    """The backend's supervised background tasks (see :mod:`typed_ss.supervision`)."""


@runtime_checkable
class Backend(Protocol):
    """Carries bytes between server instances, by topic."""

    async def start(self) -> None:
        """Connect. Called once by the server at startup, before any other method."""
        ...

    async def stop(self) -> None:
        """Disconnect and release everything; the message stream ends. Safe to call twice."""
        ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to every instance subscribed to ``topic`` (this one included, if it is, unless
        the backend leaves out its own messages: the bridge ignores them anyway).

        Must return within a short time (seconds) even when the backend is unreachable.

        Raises:
            BackendError: the message could not be handed to the backend; the caller may retry.
        """
        ...

    async def subscribe(self, topic: str) -> None:
        """Receive ``topic`` from now on; returns once the subscription is active (or, during an
        outage or while the broker does not answer, once it is recorded to be made when it answers
        again): a broker that hangs must not make every new socket wait. Subscribing twice is
        harmless."""
        ...

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``. Unsubscribing from a topic not subscribed is harmless."""
        ...

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """The stream of received ``(topic, data)``; it ends when the backend stops."""
        ...

    def health(self) -> BackendHealth:
        """The backend's state and counters."""
        ...


class Departure(msgspec.Struct):
    """Where the history stood for a socket when its connection ended, as its instance saw it: a
    backend that cannot tell which messages of a topic it trimmed (MongoDB) uses it to recover a
    client whose stream was quiet (see :meth:`HistoryBackend.since`)."""

    delivered: dict[str, int]
    """By topic: the offset of the last message delivered to the socket (0: none since it joined)."""
    read: int
    """The offset up to which the instance had read the history, every topic (its messages of the
    socket's topics up to there were delivered to it)."""


class SessionRecord(msgspec.Struct):
    """A connection state recovery session as a shared store keeps it (see :class:`SessionStore`)."""

    socket_id: str
    identity_key: str
    """The fingerprint of the identity the session belongs to (its JSON's hash)."""
    start: int
    """The broadcasts' offset when the socket connected."""
    rooms: dict[str, int]
    """The rooms the socket is in (its own room included), each with its stream's offset when it
    joined."""
    epoch: str = ""
    """The history's epoch when the session began (:meth:`HistoryBackend.epoch`)."""
    left: Departure | None = None
    """Where the history stood for the socket when its connection ended (``None``: it has not, or
    its instance died first)."""


class SessionStore(Protocol):
    """Connection state recovery's sessions, shared by every instance (see
    :meth:`HistoryBackend.keep_history`). Writes never wait: the store writes them in the
    background, only the latest change of each session while the backend does not answer."""

    def __len__(self) -> int:
        """Changes not written yet."""
        ...

    def save(self, token: str, record: SessionRecord, *, new: bool = False, ttl: float | None = None) -> None:
        """Write a session's state (``new``: just made; otherwise only if the store still has it),
        to last ``ttl`` seconds (by default as long as a held session's)."""
        ...

    def expire(self, token: str, after: float) -> None:
        """Make the session last ``after`` seconds more (the recoverer, at a connection's end, saves
        the whole record with its expiry instead)."""
        ...

    def delete(self, token: str) -> None:
        """The session ended."""
        ...

    def refresh(self, tokens: list[str]) -> None:
        """These sessions are still held: their expiry starts again."""
        ...

    async def load(self, token: str) -> SessionRecord | None:
        """The session of ``token``, if the store has it."""
        ...

    async def take(self, token: str, new_token: str) -> SessionRecord | None:
        """Move the session to ``new_token`` at once, returning its state; ``None`` when it is gone."""
        ...


@runtime_checkable
class HistoryBackend(Backend, Protocol):
    """A backend that can also keep what it carries, so that a client recovers its session on any
    instance (connection state recovery, docs/recovery.md). Redis (streams) and MongoDB (the capped
    collection) do.

    Once :meth:`keep_history` was called (before ``start``), every message given to :meth:`append`
    is kept in its topic's history with an offset (a number that grows with each message of the topic), every
    instance, the publisher included, receives a topic's messages in the history's order, and they
    arrive through :meth:`kept_messages` with their offsets instead of through ``messages()``.
    :meth:`Backend.publish` still sends a message without keeping it (the control plane's, which
    are never replayed): it arrives through :meth:`kept_messages` too, its offset meaningless (0
    where the backend keeps it nowhere)."""

    def keep_history(self, *, max_entries: int, max_age: float, session_ttl: float) -> SessionStore:
        """Keep each topic's last ``max_entries`` messages, none older than ``max_age`` seconds;
        returns the store of the sessions, whose holders refresh them at least every
        ``session_ttl`` seconds. Called once, before ``start``."""
        ...

    async def append(self, topic: str, data: bytes, publisher: str, seq: int) -> None:
        """:meth:`Backend.publish` with the history kept: the message is kept once per ``publisher``
        and ``seq`` (a retry of a publish that had worked, whose answer was lost, is not kept twice).

        Raises:
            BackendError: as ``publish``.
        """
        ...

    def kept_messages(self) -> AsyncIterator[tuple[str, bytes, int]]:
        """The stream of received ``(topic, data, offset)``; it ends when the backend stops."""
        ...

    async def position(self, topic: str) -> int:
        """The offset of ``topic``'s newest kept message (0: none)."""
        ...

    def read_position(self) -> int:
        """The offset up to which every message was handed to :meth:`kept_messages` and taken from
        it, or was not for this instance (0: the backend does not say)."""
        ...

    async def epoch(self) -> str:
        """Names the history's offsets: when it changes, offsets given before mean nothing any more
        (MongoDB: another primary numbers its records its own way). Sessions of another epoch are
        not recovered."""
        ...

    async def since(
        self, after: dict[str, int], left: Departure | None = None
    ) -> list[tuple[str, int, bytes]] | None:
        """Each topic's messages after its offset, as ``(topic, offset, data)`` in each topic's order;
        ``None`` when some are no longer kept. ``left``: where the history stood when the client's
        connection ended; a backend may use it to tell that nothing the client missed is gone."""
        ...
