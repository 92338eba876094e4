"""The bridge between the hub and a multihome backend: envelopes, sequence numbers, topics.

Every cast started on this instance is wrapped in an :class:`Envelope` and published on its topic:
``b`` for broadcasts, ``r:<room>`` for roomcasts (a socketcast is a roomcast to the socket's own
room). The instance subscribes only to the broadcast topic and to the topics of rooms that have
local members, so an instance with no member of a room gets none of its traffic.

Delivery is at most once. Each publisher numbers its messages per topic; a receiver that sees a
number skipped counts the messages as lost and logs it, and drops repeated numbers as duplicates. A
new boot epoch, or a new stream number after the publisher recreated its counter, starts the count
afresh. With a backend that keeps history for connection state recovery
(:class:`~typed_ss.backends.base.HistoryBackend`, ``keeps_history=True``), every message arrives with
its offset in its topic's history, and an instance delivers its own casts when they come back from
the backend, so that every instance delivers a topic's casts in the history's order (see
docs/recovery.md). Publishing goes through a bounded outbox drained by one task, so no handler ever waits on
the backend and messages leave in order; during an outage the outbox keeps the newest
``outbox_size`` messages, at most ``outbox_bytes`` of them, and counts the ones it drops. The
publisher and the reader are supervised tasks: if one fails it is logged, restarted, and counted in
``health()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Literal, cast

import msgspec

from typed_ss.backends.base import Departure
from typed_ss.cluster.wire import UNDECODABLE, is_control_topic
from typed_ss.errors import ProtocolError
from typed_ss.health import MultihomeHealth
from typed_ss.outbox import Outbox
from typed_ss.protocol import (
    BROADCAST_STREAM,
    SOCKET_ROOM_PREFIX,
    Frame,
    frame_from_parts,
    frame_parts,
    gap_frame,
)
from typed_ss.supervision import Backoff, Supervised, TaskHealth, raise_if_cancelled

if TYPE_CHECKING:
    from typed_ss.backends.base import Backend, HistoryBackend
    from typed_ss.cluster.control import ControlPlane
    from typed_ss.hub import Hub

__all__ = ["BROADCAST_TOPIC", "ENVELOPE_VERSION", "Envelope", "Multihome", "room_topic"]

logger = logging.getLogger("typed_ss.multihome")

ENVELOPE_VERSION: Final = 1
BROADCAST_TOPIC: Final = "b"
MAX_PUBLISH_BACKOFF: Final = 1.0
"""Seconds between attempts to publish while the backend is failing, at most."""
REPAIR_TIMEOUT: Final = 2.0
"""Seconds the reader waits for the history to read back what was lost on the way (past them, the
loss is told as a gap)."""
MAX_STREAMS: Final = 100_000
"""Per-topic counters the publisher keeps before forgetting the least recently used."""


def room_topic(room: str) -> str:
    """The topic a room's casts travel on."""
    return "r:" + room


def _stream_topic(stream: str) -> str:
    return BROADCAST_TOPIC if stream == BROADCAST_STREAM else room_topic(stream)


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    """One cast on the bus, encoded with MessagePack (never pickle)."""

    v: int
    """Envelope version; a receiver drops versions it does not know, and counts them."""
    origin: str
    """The publishing instance."""
    epoch: int
    """The publishing instance's boot epoch: a restarted instance has a new one."""
    stream: int
    """Identifies the publisher's counter for this topic (it changes if the counter is recreated)."""
    seq: int
    """1, 2, 3... per (origin, epoch, stream)."""
    kind: Literal["broadcast", "roomcast"]
    """A socketcast is a roomcast to the socket's own room."""
    room: str | None
    """The room of a roomcast, ``None`` for a broadcast."""
    event: str
    letter: str
    """The frame's type letter: S, B or J."""
    payload: bytes


class _Version(msgspec.Struct, array_like=True):
    v: int


class _Publication(msgspec.Struct, array_like=True):
    """The head of an :class:`Envelope`: who published it, and its number."""

    v: int
    origin: str
    epoch: int
    stream: int
    seq: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)
_version_decoder = msgspec.msgpack.Decoder(_Version)
_publication_decoder = msgspec.msgpack.Decoder(_Publication)


class Multihome:
    """Connects a :class:`~typed_ss.hub.Hub` to a backend; the hub's relay while the server runs."""

    def __init__(
        self,
        hub: Hub,
        backend: Backend,
        *,
        max_envelope_size: int,
        outbox_size: int = 10_000,
        outbox_bytes: int = 64 * 1024 * 1024,
        instance_id: str | None = None,
        keeps_history: bool = False,
        control: ControlPlane | None = None,
    ) -> None:
        self.hub = hub
        self.control = control
        """Receives the control plane's messages (:mod:`typed_ss.cluster`), which this bridge carries."""
        self.backend = backend
        self.keeps_history: Final = keeps_history
        """Whether the backend keeps history (it was asked to with ``keep_history()``)."""
        self.instance_id: Final = instance_id or secrets.token_hex(8)
        self.epoch = 0
        self._max_envelope_size = max_envelope_size
        self._outbox: Outbox[str] = Outbox(
            "multihome outbox", max_messages=outbox_size, max_bytes=outbox_bytes, log=logger
        )
        self._outbox_ready = asyncio.Event()
        self._outbox_drained = asyncio.Event()
        self._streams: OrderedDict[str, list[int]] = OrderedDict()  # topic -> [stream, last seq]
        self._stream_ids = itertools.count(1)
        self._watched: set[str] = {BROADCAST_TOPIC}  # topics wanted, including ones on their way
        self._subscribed: set[str] = set()  # topics the backend confirmed
        self._subscription_ops: dict[str, asyncio.Task[None]] = {}
        # topic -> origin -> (epoch, stream, last seq seen)
        self._seen: dict[str, dict[str, tuple[int, int, int]]] = {}
        # With the history kept: topic -> the offset delivered last (lost messages are read back from
        # there), and a wake-up for settled() each time one of this instance's casts comes back.
        self._delivered_at: dict[str, int] = {}
        self._handling: int | None = None  # the offset of the message being handled, if any
        self._returned = asyncio.Event()
        self._tasks = (
            Supervised("multihome publisher", self._publish_loop, log=logger),
            Supervised("multihome reader", self._read_loop, log=logger),
        )
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "published",
                "publish_failures",
                "received",
                "delivered",
                "lost",
                "duplicates",
                "malformed",
                "oversized",
                "unknown_version",
                "restarts_seen",
                "repaired",
            ),
            0,
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend, subscribe to broadcasts, and start the publisher and reader tasks."""
        self.epoch = secrets.randbits(62)
        await self.backend.start()
        await self.backend.subscribe(BROADCAST_TOPIC)
        self._subscribed.add(BROADCAST_TOPIC)
        for task in self._tasks:
            task.start()
        if self.control is not None:
            await self.control.start(self, self.instance_id, self.epoch)

    async def stop(self, flush_timeout: float = 1.0) -> None:
        """Give the outbox ``flush_timeout`` seconds to drain, then stop the tasks and the backend."""
        if self.control is not None:
            await self.control.stop()  # its goodbye leaves with the outbox
        if self._outbox:
            self._outbox_drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    await self._outbox_drained.wait()
        for task in self._tasks:
            await task.stop()
        for op in self._subscription_ops.values():
            op.cancel()
        await asyncio.gather(*self._subscription_ops.values(), return_exceptions=True)
        self._subscription_ops.clear()
        await self.backend.stop()

    # --- the hub's relay ---------------------------------------------------------------------------

    def publish(self, room: str | None, frame: Frame) -> None:
        """Queue a locally started cast for the other instances; never waits."""
        topic = BROADCAST_TOPIC if room is None else room_topic(room)
        counter = self._streams.get(topic)
        if counter is None:
            counter = self._streams[topic] = [next(self._stream_ids), 0]
            if len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(topic)
        counter[1] += 1
        event, letter, payload = frame_parts(frame)
        stream, seq = counter
        envelope = Envelope(
            ENVELOPE_VERSION,
            self.instance_id,
            self.epoch,
            stream,
            seq,
            "broadcast" if room is None else "roomcast",
            room,
            event,
            letter,
            payload,
        )
        self._outbox.append(topic, _encoder.encode(envelope))
        self._outbox_ready.set()

    async def watch(self, room: str) -> None:
        """Receive the room's casts from other instances; returns once the subscription is active."""
        await self.watch_topic(room_topic(room))

    def unwatch(self, room: str) -> None:
        """Stop receiving the room's casts (no local member is left); returns at once."""
        self.unwatch_topic(room_topic(room))

    # --- the control plane's bus -------------------------------------------------------------------

    def send(self, topic: str, data: bytes) -> None:
        """Queue a control message (:mod:`typed_ss.cluster`) for ``topic``, behind the casts queued
        before it; never waits. It is never kept in a recovery history."""
        self._outbox.append(topic, data)
        self._outbox_ready.set()

    def losses(self) -> int:
        """How many times messages may have been lost on this instance's side: the outbox's drops,
        and the backend's reconnections and inbox drops (see :meth:`ControlPlane.losses
        <typed_ss.cluster.control.Bus.losses>`)."""
        backend = self.backend.health()
        dropped = backend.detail.get("dropped", 0)
        return self._outbox.dropped + backend.reconnects + (dropped if isinstance(dropped, int) else 0)

    async def watch_topic(self, topic: str) -> None:
        """Receive ``topic``; returns once the subscription is active."""
        self._watched.add(topic)
        if topic in self._subscribed and topic not in self._subscription_ops:
            return
        # Shielded: a joiner that is cancelled must not cancel a subscription others rely on.
        await asyncio.shield(self._change_subscription(topic, subscribe=True))

    def unwatch_topic(self, topic: str) -> None:
        """Stop receiving ``topic``; returns at once."""
        self._watched.discard(topic)
        self._seen.pop(topic, None)
        self._delivered_at.pop(topic, None)
        self._change_subscription(topic, subscribe=False).add_done_callback(_log_failure)

    def _change_subscription(self, topic: str, *, subscribe: bool) -> asyncio.Task[None]:
        # Changes for one topic run one after another, in the order they were asked for, so a leave
        # followed at once by a join never ends unsubscribed.
        previous = self._subscription_ops.get(topic)
        task = asyncio.create_task(self._apply_subscription(previous, topic, subscribe))
        self._subscription_ops[topic] = task
        task.add_done_callback(lambda done: self._forget_op(topic, done))
        return task

    async def _apply_subscription(
        self, previous: asyncio.Task[None] | None, topic: str, subscribe: bool
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        if subscribe:
            await self.backend.subscribe(topic)
            self._subscribed.add(topic)
        else:
            self._subscribed.discard(topic)
            await self.backend.unsubscribe(topic)

    def _forget_op(self, topic: str, done: asyncio.Task[None]) -> None:
        if self._subscription_ops.get(topic) is done:
            del self._subscription_ops[topic]

    # --- the two tasks -----------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        backoff = Backoff(cap=MAX_PUBLISH_BACKOFF, log_every=50)
        while True:
            # A backend's client library may swallow the cancellation that stops this task (redis-py's
            # cluster client does, now and then): the loop must not go on regardless.
            raise_if_cancelled()
            if not self._outbox:
                self._outbox_drained.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            topic, data = self._outbox.peek()
            try:
                if self.keeps_history and not is_control_topic(topic):
                    publication = _publication_decoder.decode(data)
                    publisher = f"{publication.origin}:{publication.epoch}:{publication.stream}"
                    await self._history_backend().append(topic, data, publisher, publication.seq)
                else:
                    await self.backend.publish(topic, data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters["publish_failures"] += 1
                delay = backoff.failed()
                if backoff.should_log():
                    logger.error(
                        "multihome publish failed (%d in a row), retrying: %s", backoff.failures, exc
                    )
                await asyncio.sleep(delay)
                continue
            failures = backoff.succeeded()
            if failures:
                logger.warning("multihome publishing works again after %d failures", failures)
            if self._outbox and self._outbox.peek()[1] is data:  # the outbox may have dropped it meanwhile
                self._outbox.popleft()
            self.counters["published"] += 1

    async def _read_loop(self) -> None:
        # The stream ends only when the backend stops, and the bridge stops this task first: an end
        # here is unexpected, and the supervisor restarts the loop.
        if self.keeps_history:
            async for topic, data, offset in self._history_backend().kept_messages():
                self._handling = offset
                try:
                    if is_control_topic(topic):
                        self._control(topic, data)
                    else:
                        await self._receive_kept(topic, data, offset)
                except Exception:  # one bad message must never stop the stream
                    logger.exception("multihome: failed to deliver a message on %r", topic)
                finally:
                    self._handling = None
            return
        async for topic, data in self.backend.messages():
            try:
                if is_control_topic(topic):
                    self._control(topic, data)
                else:
                    self.receive(topic, data)
            except Exception:  # one bad message must never stop the stream
                logger.exception("multihome: failed to deliver a message on %r", topic)

    def _control(self, topic: str, data: bytes) -> None:
        if self.control is not None and topic in self._watched:  # a backend may deliver everything
            self.control.receive(topic, data)

    def receive(self, topic: str, data: bytes, offset: int | None = None) -> None:
        """Check one message from the backend and deliver it to the local recipients (``offset``:
        its place in its topic's history, when the backend keeps one)."""
        checked = self._check(topic, data, offset)
        if checked is None:
            return
        envelope, frame = checked
        lost = self._in_sequence(topic, envelope)
        if lost < 0:
            return
        if lost:
            self._tell_gap(envelope.room, lost)
        self.counters["delivered"] += 1
        self.hub.deliver(envelope.room, frame, offset)

    async def _receive_kept(self, topic: str, data: bytes, offset: int) -> None:
        """:meth:`receive` for a backend that keeps history: messages lost on the way here (the
        subscriber reconnected, say) are read back from the history and delivered first, in order;
        what cannot be delivered in order any more (it is older than what was delivered since, or no
        longer kept) is told as a gap."""
        checked = self._check(topic, data, offset)
        if checked is None:
            return
        envelope, frame = checked
        origins = self._seen.setdefault(topic, {})
        before = origins.get(envelope.origin)
        lost = self._in_sequence(topic, envelope, quiet=True)
        if lost < 0:
            self._returned.set()
            return
        if lost:
            if topic in self._delivered_at:
                # What is read back came before this message: its origin's count resumes from before it.
                if before is not None:
                    origins[envelope.origin] = before
                await self._repair(topic, offset, origins)
                if self._seen.get(topic) is not origins:
                    return  # the room was left meanwhile: nothing of it is delivered here now
                reached = origins.get(envelope.origin)
                if reached is not None and reached[:2] == (envelope.epoch, envelope.stream):
                    lost = envelope.seq - 1 - reached[2]
                origins[envelope.origin] = (envelope.epoch, envelope.stream, envelope.seq)
            if lost > 0:
                self._count_lost(topic, envelope, lost)
                self._tell_gap(envelope.room, lost)
        self.counters["delivered"] += 1
        self._delivered_at[topic] = offset
        self.hub.deliver(envelope.room, frame, offset)
        self._returned.set()  # settled() checks again: this instance's casts may be back

    async def _repair(self, topic: str, before: int, origins: dict[str, tuple[int, int, int]]) -> None:
        """Deliver what the history holds of ``topic`` after the last message delivered and before
        ``before``, in order (the sequence numbers in ``origins`` move on with it), unless the topic
        is left meanwhile (its ``origins`` replaced)."""
        after = self._delivered_at[topic]
        try:
            async with asyncio.timeout(REPAIR_TIMEOUT):
                found = await self._history_backend().since({topic: after})
        except Exception as exc:
            logger.warning("multihome: reading back what was lost on %r failed: %r", topic, exc)
            return
        if found is None or self._seen.get(topic) is not origins:
            return
        for _, offset, data in found:
            if offset >= before:
                break
            checked = self._check(topic, data, offset, counted=False)
            if checked is None:
                continue
            envelope, frame = checked
            if self._in_sequence(topic, envelope, quiet=True) < 0:
                continue  # delivered already
            self.counters["repaired"] += 1
            self._delivered_at[topic] = offset
            self.hub.deliver(envelope.room, frame, offset)

    def _tell_gap(self, room: str | None, lost: int) -> None:
        # Told to the room's members before what came after the loss: they can refetch the room. A
        # socket's own room is internal: its loss is told as the broadcasts' are, without a room.
        told = None if room is None or room.startswith(SOCKET_ROOM_PREFIX) else room
        self.hub.deliver(room, gap_frame(told, lost))

    def _check(
        self, topic: str, data: bytes, offset: int | None, *, counted: bool = True
    ) -> tuple[Envelope, Frame] | None:
        """The envelope and frame of one message, if it is for this instance and well formed (what
        is not is counted and logged)."""
        if counted:
            self.counters["received"] += 1
        if len(data) > self._max_envelope_size:
            self._reject("oversized", f"{len(data)} bytes on {topic!r}")
            return None
        try:
            envelope = _decoder.decode(data)
        except UNDECODABLE:
            try:
                version = _version_decoder.decode(data).v
            except UNDECODABLE:
                version = ENVELOPE_VERSION
            if version != ENVELOPE_VERSION:
                self._reject("unknown_version", f"version {version} on {topic!r}")
            else:
                self._reject("malformed", f"undecodable message on {topic!r}")
            return None
        if envelope.v != ENVELOPE_VERSION:
            self._reject("unknown_version", f"version {envelope.v} on {topic!r}")
            return None
        if envelope.origin == self.instance_id and offset is None:
            return None  # our own cast, already delivered locally
        if (envelope.kind == "broadcast") != (envelope.room is None):
            self._reject("malformed", f"a {envelope.kind} with room {envelope.room!r} on {topic!r}")
            return None
        expected = BROADCAST_TOPIC if envelope.room is None else room_topic(envelope.room)
        if topic != expected:
            self._reject("malformed", f"a message for {expected!r} arrived on {topic!r}")
            return None
        if topic not in self._watched:
            return None  # a backend that delivers everything: not for this instance
        try:
            frame = frame_from_parts(envelope.event, envelope.letter, envelope.payload)
        except ProtocolError as exc:
            self._reject("malformed", f"{exc} on {topic!r}")
            return None
        return envelope, frame

    async def settled(self, rooms: Iterable[str | None], within: float) -> None:
        """Return once the casts this instance published to ``rooms`` (``None``: the broadcasts)
        came back from the backend (with the history kept, that is when they are delivered here), or
        after ``within`` seconds."""
        if not self.keeps_history:
            return
        waiting = []
        for room in rooms:
            topic = BROADCAST_TOPIC if room is None else room_topic(room)
            counter = self._streams.get(topic)
            if counter is not None:
                waiting.append((topic, counter[0], counter[1]))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not all(self._came_back(*published) for published in waiting):
                    self._returned.clear()
                    await self._returned.wait()

    def _came_back(self, topic: str, stream: int, seq: int) -> bool:
        seen = self._seen.get(topic, {}).get(self.instance_id)
        return seen is not None and seen[0] == self.epoch and seen[1] == stream and seen[2] >= seq

    # --- history (connection state recovery) -------------------------------------------------------

    async def position(self, stream: str) -> int:
        """The offset of the newest cast the backend keeps of ``stream`` (a room, or
        :data:`~typed_ss.protocol.BROADCAST_STREAM`); 0 when it keeps none."""
        return await self._history_backend().position(_stream_topic(stream))

    async def history_epoch(self) -> str:
        """The epoch of the backend's history (see :meth:`~typed_ss.backends.base.HistoryBackend.epoch`)."""
        return await self._history_backend().epoch()

    def departure(self, streams: Iterable[str]) -> Departure:
        """Where the history stands for a socket in ``streams`` whose connection ends now: the last
        offset delivered of each, and how far the reader got (see
        :class:`~typed_ss.backends.base.Departure`)."""
        topics = [_stream_topic(stream) for stream in streams]
        read = self._history_backend().read_position()
        if self._handling is not None:
            read = min(read, self._handling - 1)  # taken from the backend, not delivered yet
        return Departure({topic: self._delivered_at.get(topic, 0) for topic in topics}, read)

    async def since(
        self, after: dict[str, int], left: Departure | None = None
    ) -> list[tuple[str, int, Frame]] | None:
        """The casts the backend keeps of each stream after its offset, as ``(stream, offset,
        frame)``; ``None`` when some are no longer kept. A message the publisher sent twice (it
        retried a publish that had worked) is given once."""
        topics = {_stream_topic(stream): stream for stream in after}
        found = await self._history_backend().since(
            {topic: after[stream] for topic, stream in topics.items()}, left
        )
        if found is None:
            return None
        casts: list[tuple[str, int, Frame]] = []
        seen: set[tuple[str, int, int, int]] = set()
        for topic, offset, data in found:
            try:
                envelope = _decoder.decode(data)
                frame = frame_from_parts(envelope.event, envelope.letter, envelope.payload)
            except (*UNDECODABLE, ProtocolError):
                self._reject("malformed", f"an undecodable message kept on {topic!r}")
                continue
            publication = (envelope.origin, envelope.epoch, envelope.stream, envelope.seq)
            if publication not in seen:
                seen.add(publication)
                casts.append((topics[topic], offset, frame))
        return casts

    def _history_backend(self) -> HistoryBackend:
        assert self.keeps_history, "the backend was not asked to keep history"
        return cast("HistoryBackend", self.backend)

    def _in_sequence(self, topic: str, envelope: Envelope, *, quiet: bool = False) -> int:
        """How many messages of ``envelope``'s origin on ``topic`` were lost before it, or -1 when it
        is a duplicate (dropped). ``quiet``: a loss is neither counted nor logged (the caller reads
        it back from the history, or counts it)."""
        origins = self._seen.setdefault(topic, {})
        last = origins.get(envelope.origin)
        origins[envelope.origin] = (envelope.epoch, envelope.stream, envelope.seq)
        if last is None:
            return 0
        epoch, stream, seq = last
        if epoch != envelope.epoch:
            self.counters["restarts_seen"] += 1
            logger.info("multihome: instance %s restarted (new boot epoch)", envelope.origin)
            return 0
        if stream != envelope.stream:
            return 0
        if envelope.seq <= seq:
            origins[envelope.origin] = last
            self.counters["duplicates"] += 1
            return -1
        if envelope.seq > seq + 1:
            lost = envelope.seq - seq - 1
            if not quiet:
                self._count_lost(topic, envelope, lost)
            return lost
        return 0

    def _count_lost(self, topic: str, envelope: Envelope, lost: int) -> None:
        self.counters["lost"] += lost
        logger.warning(
            "multihome: lost %d message(s) from instance %s on %r (sequence %d to %d)",
            lost,
            envelope.origin,
            topic,
            envelope.seq - lost,
            envelope.seq - 1,
        )

    def _reject(self, counter: str, detail: str) -> None:
        self.counters[counter] += 1
        logger.warning("multihome: dropped a message (%s): %s", counter.replace("_", " "), detail)

    # --- health ------------------------------------------------------------------------------------

    def health(self) -> MultihomeHealth:
        """The bridge's counters, its outbox and subscriptions, and the backend's own health."""
        return MultihomeHealth(
            instance=self.instance_id,
            epoch=self.epoch,
            backend=self.backend.health(),
            outbox=len(self._outbox),
            outbox_bytes=self._outbox.bytes,
            outbox_dropped=self._outbox.dropped,
            subscriptions=len(self._watched),
            **self.counters,
        )

    def tasks(self) -> list[TaskHealth]:
        """The bridge's supervised tasks (the publisher and the reader)."""
        return [task.health() for task in self._tasks]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("multihome: changing a subscription failed", exc_info=task.exception())
