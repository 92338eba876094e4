"""What ``ss.health()`` returns: typed structs with documented fields.

Every struct is a ``msgspec.Struct``: ``msgspec.json.encode(ss.health())`` is the JSON for a health
endpoint, ``msgspec.to_builtins(ss.health())`` the plain dict. docs/running.md and docs/multihome.md
describe each field.
"""

from __future__ import annotations

import msgspec

from typed_ss.backends.base import BackendHealth
from typed_ss.supervision import TaskHealth

__all__ = ["BackendHealth", "ClusterHealth", "MultihomeHealth", "ServerHealth", "TaskHealth"]


class MultihomeHealth(msgspec.Struct, kw_only=True):
    """The bridge to the other instances (``ServerHealth.multihome``)."""

    instance: str
    """This instance's id on the backend."""
    epoch: int
    """This instance's boot epoch: a restarted instance has a new one."""
    backend: BackendHealth
    """The backend's own state, reconnects and details."""
    outbox: int
    """Casts waiting to be published (the backend is slow or unreachable)."""
    outbox_bytes: int
    outbox_dropped: int
    """Casts the outbox dropped (the oldest) because it was full."""
    subscriptions: int
    """Topics this instance receives: the broadcast topic and one per room with local members."""
    published: int
    publish_failures: int
    received: int
    """Messages the backend delivered, this instance's own and malformed ones included."""
    delivered: int
    """Messages delivered to local sockets."""
    lost: int
    """Messages other instances published that never arrived (gaps in their sequence numbers)."""
    duplicates: int
    malformed: int
    oversized: int
    unknown_version: int
    restarts_seen: int
    """Restarts of other instances noticed (a new boot epoch under a known id)."""
    repaired: int = 0
    """Messages lost on the way here and read back from the backend's history instead (with
    connection state recovery and a backend that keeps history)."""


class ClusterHealth(msgspec.Struct, kw_only=True):
    """The control plane: the other instances and the questions asked of them (docs/presence.md)."""

    peers: list[str]
    """The other instances heard from within the bound (3 s)."""
    suspect: list[str]
    """Instances unheard for longer, not forgotten yet (named as missing in answers for 30 s)."""
    asked: int
    """Questions this instance asked (queries, actions, presence parts)."""
    answered: int
    """Questions of other instances this instance answered."""
    unanswered: int
    """Questions of this instance that some instance did not answer in time."""
    peers_lost: int
    """Instances declared gone for want of heartbeats."""
    resyncs: int
    """Times this instance asked one instance again for its presence (a change was lost, or it was
    heard again)."""
    malformed: int
    """Control messages that could not be decoded (dropped)."""
    tracked_rooms: int
    """Rooms whose presence this instance keeps a table of (tracked, with a local member)."""
    presence_entries: int
    """Members held in those tables, every instance's."""


class ServerHealth(msgspec.Struct, kw_only=True):
    """``ss.health()``."""

    accepting: bool
    """Whether new connections are accepted (``False`` from shutdown on)."""
    connections: int
    """Connections being served, handshakes included."""
    sockets: int
    """Connected sockets on this instance."""
    rooms: int
    """Rooms with at least one local member."""
    multihome: MultihomeHealth | None
    """``None`` without a backend (or before it started)."""
    tasks: list[TaskHealth]
    """Every supervised background task of the server: the bridge's and the backend's."""
    cluster: ClusterHealth
    """The control plane (queries across instances, presence)."""
