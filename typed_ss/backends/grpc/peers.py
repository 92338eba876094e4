"""Per-peer bookkeeping: what this node keeps about each peer, on each side of the mesh.

- :class:`Peer`: what this node knows about one listed peer, for its link to it: who answers there
  (name and boot number), the topics it wants, its bounded outbox
  (:class:`~typed_ss.outbox.Outbox`, drop-oldest, counted) and the control messages that go before
  it, and counters. The link itself (:mod:`.outbound`) moves the messages.
- :class:`InboundStream`: a stream a peer opened to this node (:mod:`.inbound`): its publishes
  arrive on it, this node's interest changes leave on it, and the peer's acknowledgements of them
  come back on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from typed_ss.backends._grpc import multihome_pb2 as pb
from typed_ss.backends.grpc.config import PeerAddress
from typed_ss.outbox import Outbox

__all__ = ["BATCH_MESSAGES", "InboundStream", "Peer"]

logger = logging.getLogger("typed_ss.backends.grpc")

BATCH_MESSAGES = 512
"""The most messages one batch (one gRPC message) carries."""


class Peer:
    """What this node keeps about one peer it links to: its outbox and what it said about itself.

    Args:
        address: where the peer listens.
        max_messages: the outbox's bound in messages.
        max_bytes: the outbox's bound in bytes.
    """

    def __init__(self, address: PeerAddress, max_messages: int, max_bytes: int) -> None:
        self.address = address
        self.node = ""
        """The peer's name, from its welcome."""
        self.boot: int | None = None
        """The peer's boot number, from its welcome (``None`` until the first one)."""
        self.interest: set[str] = set()
        """The topics the peer wants: only those are queued for it."""
        self.outbox: Outbox[str] = Outbox(
            f"outbox for peer {address.target}", max_messages=max_messages, max_bytes=max_bytes, log=logger
        )
        self.control: deque[pb.Upstream] = deque()
        """Acknowledgements to send, ahead of the outbox."""
        self.wake = asyncio.Event()
        """Set when there is something to send."""
        self.attempted = asyncio.Event()
        """Set once the first attempt to link to the peer has ended, either way."""
        self.is_self = False
        """The peer is this node itself (listed by mistake): it is ignored."""
        self.sent = 0
        self.discarded_on_restart = 0
        self.restarts_seen = 0
        self.last_seen = 0.0
        """When the peer last sent anything on the link (monotonic)."""

    def queue(self, topic: str, data: bytes) -> None:
        """Queue a message for the peer (the oldest are dropped, and counted, past the bounds)."""
        self.outbox.append(topic, data)
        self.wake.set()

    def take_batch(self, max_bytes: int) -> list[tuple[str, bytes]]:
        """The next messages to send, at most ``max_bytes`` of them (at least one)."""
        batch: list[tuple[str, bytes]] = []
        size = 0
        outbox = self.outbox
        while (
            outbox
            and (not batch or size + len(outbox.peek()[1]) <= max_bytes)
            and len(batch) < BATCH_MESSAGES
        ):
            topic, data = outbox.popleft()
            size += len(data)
            if topic in self.interest:  # the peer may have unsubscribed since it was queued
                batch.append((topic, data))
        return batch

    def welcomed(self, node: str, boot: int, topics: Iterable[str]) -> int | None:
        """Record the peer's welcome on a new link: its name, boot number and the topics it wants.

        Returns how many queued messages were discarded because the peer restarted (a boot number
        other than the last one: they were meant for sockets that no longer exist), or ``None`` if
        it did not restart (the outbox is then sent on the new link).
        """
        discarded = None
        if self.boot is not None and self.boot != boot:
            self.restarts_seen += 1
            discarded = self.outbox.clear()
            self.discarded_on_restart += discarded
        self.node, self.boot = node, boot
        self.interest = set(topics)
        self.control.clear()
        self.last_seen = time.monotonic()
        return discarded

    def interest_changed(self, subscribe: Iterable[str], unsubscribe: Iterable[str]) -> None:
        """The peer subscribed or unsubscribed topics."""
        self.interest.update(subscribe)
        self.interest.difference_update(unsubscribe)

    def acknowledge(self, change_id: int) -> None:
        """Queue the acknowledgement of the peer's interest change ``change_id`` (its welcome's too)."""
        ack = pb.Upstream()
        ack.ack.id = change_id
        self.control.append(ack)
        self.wake.set()

    def itself(self) -> None:
        """The peer turned out to be this node: nothing is ever sent to it."""
        self.is_self = True
        self.outbox.clear()
        self.interest.clear()


@dataclass
class InboundStream:
    """A stream a peer opened to this node: its publishes arrive on it, our interest leaves on it."""

    node: str
    boot: int
    control: asyncio.Queue[pb.Downstream | None] = field(default_factory=asyncio.Queue)
    """What to write to the peer; ``None`` ends the stream."""
    acked: int = 0
    """The highest interest change the peer acknowledged."""
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    lagging: bool = False
    """Missed an acknowledgement deadline: subscribes do not wait for it until it answers again."""
    token_expires: float = float("inf")
    last_seen: float = field(default_factory=time.monotonic)
    received: int = 0
    connected_at: float = field(default_factory=time.monotonic)

    def acknowledge(self, ack_id: int) -> None:
        """The peer applied our interest changes up to ``ack_id``."""
        self.acked = max(self.acked, ack_id)
        if self.lagging:
            self.lagging = False
            logger.warning("peer %s answers again", self.node)
        still = []
        for wanted, future in self.waiters:
            if wanted <= self.acked:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((wanted, future))
        self.waiters = still

    def wait_for(self, change_id: int) -> asyncio.Future[None]:
        """A future done once the peer acknowledged ``change_id`` (or the stream ended)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((change_id, future))
        return future

    def release(self) -> None:
        """The stream ended: nobody waits for this peer's acknowledgements any more."""
        for _, future in self.waiters:
            if not future.done():
                future.set_result(None)
        self.waiters = []

    def end(self) -> None:
        """End the stream (superseded, or this node stops): release the waiters, stop writing."""
        self.release()
        self.control.put_nowait(None)
