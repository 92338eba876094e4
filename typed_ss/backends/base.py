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

__all__ = ["Backend", "BackendHealth", "BackendState"]

BackendState: TypeAlias = Literal["stopped", "connecting", "connected", "unresponsive", "reconnecting"]
"""``unresponsive``: connected, but the broker stopped answering (a hung process, a black-holed
network path). Subscriptions made meanwhile do not wait for it; they are made, or made again, once
it answers."""


class BackendHealth(msgspec.Struct, kw_only=True):
    """What a backend reports about itself (``ss.health()`` includes it)."""

    name: str
    """The backend's kind: ``memory``, ``redis``, ``mongo``, ``grpc``."""
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
