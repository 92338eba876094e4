"""The control plane: heartbeats, and questions every instance answers, on publish/subscribe.

Built on the bridge's own outbox and subscription (:class:`Bus`, implemented by
:class:`~typed_ss.multihome.Multihome`), so every backend carries it without code of its own. A
question is published once on the control topic (or on one instance's topic); each instance answers
on the asker's topic. The asker waits for the instances it knows to be alive (see
:mod:`typed_ss.cluster.peers`) until they all answered or the timeout passed, and names the ones
that did not answer, so that a partial answer is never taken for a whole one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from typed_ss.cluster.peers import HEARTBEAT_INTERVAL, PEER_TIMEOUT, Peers
from typed_ss.cluster.roster import Answered, Roster
from typed_ss.cluster.wire import (
    CONTROL_TOPIC,
    UNDECODABLE,
    Ask,
    Change,
    Entry,
    Heartbeat,
    Part,
    Parts,
    Query,
    Reply,
    decode,
    encode,
    instance_topic,
    presence_topic,
)
from typed_ss.health import ClusterHealth
from typed_ss.supervision import Supervised, TaskHealth

__all__ = ["MAX_ANSWERING", "REPLY_CHUNK", "Bus", "ControlPlane", "Gathered"]

logger = logging.getLogger("typed_ss.cluster")

BUILD_TIMEOUT: Final = 1.0
"""Seconds a new presence table waits for every instance's part (the late ones are asked again)."""
REPLY_CHUNK: Final = 500
"""Members per reply message (presence parts' included): a large answer travels in several messages."""
MAX_ANSWERING: Final = 256
"""Questions from other instances answered at once; more wait their turn."""
MAX_WAITING: Final = 10_000
"""Questions this instance asks at once (more fail at once): each holds its replies until done.
Presence's own (at most one per table being built, and one per instance asked again) are never
refused: queries from clients must not keep presence tables from being built."""


class Bus(Protocol):
    """How control messages travel (the bridge to the backend implements it)."""

    def send(self, topic: str, data: bytes) -> None:
        """Queue a message for ``topic``; never waits."""
        ...

    async def watch_topic(self, topic: str) -> None:
        """Receive ``topic``; returns once the subscription is active."""
        ...

    def unwatch_topic(self, topic: str) -> None:
        """Stop receiving ``topic``."""
        ...

    def losses(self) -> int:
        """A count that grows each time messages may have been lost on this instance's side (sent
        or received): dropped by the outbox or the backend's inbox, or a reconnection of the backend."""
        ...


@dataclass(slots=True)
class Gathered:
    """The answers to one question: each instance's, and the instances that did not answer."""

    answers: dict[str, Answered]
    missing: frozenset[str]


@dataclass(slots=True)
class _Waiting:
    expected: set[str]
    """The instances still waited for: the live ones when asked, less those gone since."""
    answers: dict[str, Answered] = field(default_factory=dict)
    partial: dict[str, list[Reply]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if self.expected <= self.answers.keys():
            self.done.set()


class ControlPlane:
    """Heartbeats, the peers they reveal, and questions asked of every instance (module docstring)."""

    def __init__(self, roster: Roster) -> None:
        self.roster: Final = roster
        self.peers: Final = Peers()
        self.instance_id = ""
        self.epoch = 0
        self.bus: Bus | None = None
        self._ids = itertools.count(secrets.randbits(40))
        self._waiting: dict[int, _Waiting] = {}
        self._answering = asyncio.Semaphore(MAX_ANSWERING)
        self._tasks: set[asyncio.Task[None]] = set()
        self._beats = 0  # heartbeats sent on the control topic
        self._losses = 0  # the bus's count of possible losses, as last seen
        self._same_id_epoch = 0  # the boot epoch of another instance with this one's id, once told
        self._beat = Supervised("cluster heartbeat", self._heartbeat_loop, log=logger)
        self.counters: dict[str, int] = dict.fromkeys(
            ("asked", "answered", "unanswered", "malformed", "peers_lost", "resyncs"), 0
        )
        roster.send_change = self._send_change
        roster.ask_parts = self._ask_parts
        roster.watch_room = self._watch_room
        roster.unwatch_room = self._unwatch_room

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self, bus: Bus, instance_id: str, epoch: int) -> None:
        """Join the control plane on ``bus``: subscribe, say hello, and start the heartbeat."""
        self.bus, self.instance_id, self.epoch = bus, instance_id, epoch
        self.roster.instance_id = instance_id
        self._beats = 0
        self._losses = bus.losses()
        # Started again: the peers of the last run are heard again, or are not peers (one that
        # stopped meanwhile said goodbye to no one here, and must not be waited for, nor missing).
        self.peers.forget()
        await bus.watch_topic(CONTROL_TOPIC)
        await bus.watch_topic(instance_topic(instance_id))
        self._beat.start()

    def name(self, instance_id: str) -> None:
        """This instance's id; until :meth:`start` (or without a backend) it is the whole cluster."""
        self.instance_id = instance_id
        self.roster.instance_id = instance_id

    async def stop(self) -> None:
        """Say goodbye (peers forget this instance at once) and stop the heartbeat."""
        await self._beat.stop()
        if self.bus is not None:
            self.bus.send(CONTROL_TOPIC, encode(Heartbeat(self.instance_id, self.epoch, 0, bye=True)))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiting in self._waiting.values():
            waiting.done.set()
        await self.roster.stop()
        self.bus = None

    def health(self) -> ClusterHealth:
        """The peers, the counters, and the presence tables' size."""
        return ClusterHealth(
            peers=sorted(self.peers.live),
            suspect=sorted(self.peers.suspect),
            tracked_rooms=len(self.roster.tracked_rooms),
            presence_entries=self.roster.presence_count(),
            **self.counters,
        )

    def tasks(self) -> list[TaskHealth]:
        """The heartbeat's supervised task."""
        return [self._beat.health()] if self.bus is not None else []

    # --- asking ------------------------------------------------------------------------------------

    async def ask(
        self, query: Query, timeout: float, only: str | None = None, *, capped: bool = True
    ) -> Gathered:
        """Ask every live instance (or ``only`` one) and this one; wait for them at most ``timeout``
        seconds.

        Raises:
            RuntimeError: ``capped``, and :data:`MAX_WAITING` questions wait already (before
                anything is done: an action is not carried out here either).
        """
        bus = self.bus
        if bus is not None and capped and len(self._waiting) >= MAX_WAITING:
            raise RuntimeError(f"{MAX_WAITING} cluster questions are waiting for answers already")
        if only is None:
            local = await self.roster.answer(query)
            if bus is None:
                return Gathered({self.instance_id: local}, frozenset())
        if bus is None:
            return Gathered({}, frozenset({only}) if only else frozenset())
        request_id = next(self._ids)
        expected = {only} if only is not None else set(self.peers.live)
        waiting = self._waiting[request_id] = _Waiting(expected)
        self.counters["asked"] += 1
        try:
            bus.send(
                CONTROL_TOPIC if only is None else instance_topic(only),
                encode(Ask(self.instance_id, self.epoch, request_id, query)),
            )
            if only is None:
                waiting.answers[self.instance_id] = local
            waiting.check()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiting.done.wait()
        finally:
            del self._waiting[request_id]
        # Not answered: the live ones that did not in time, and (asking everyone) the ones gone
        # unheard lately, which may be cut off with their clients rather than dead.
        missing = waiting.expected - waiting.answers.keys()
        if only is None:
            missing |= self.peers.suspect - waiting.answers.keys()
        if missing:
            self.counters["unanswered"] += 1
        return Gathered(dict(waiting.answers), frozenset(missing))

    async def _ask_parts(
        self, origin: str | None, rooms: list[str]
    ) -> tuple[list[tuple[str, Part]], frozenset[str]]:
        if origin is not None and self.bus is None:
            return [], frozenset()  # stopped: no one to ask (nor to ask again)
        self.counters["resyncs"] += origin is not None
        timeout = BUILD_TIMEOUT if origin is None else PEER_TIMEOUT
        gathered = await self.ask(Parts(rooms), timeout, only=origin, capped=False)
        parts = [(instance, part) for instance, answer in gathered.answers.items() for part in answer.parts]
        return parts, gathered.missing

    # --- receiving ---------------------------------------------------------------------------------

    def receive(self, topic: str, data: bytes) -> None:
        """One control message from the backend."""
        try:
            message = decode(data)
        except UNDECODABLE:
            self.counters["malformed"] += 1
            logger.warning("cluster: dropped an undecodable control message on %r", topic)
            return
        if not isinstance(message, Heartbeat) and message.origin != self.instance_id:
            self.peers.touch(message.origin)
        if isinstance(message, Change):
            self.roster.apply_change(message)
        elif isinstance(message, Reply):
            self._replied(message)
        elif message.origin == self.instance_id:
            if isinstance(message, Heartbeat) and message.epoch != self.epoch and not message.bye:
                self._same_id(message.epoch)
            return  # our own heartbeat or question, back from the backend
        elif isinstance(message, Heartbeat):
            self._heard(message)
        else:
            self._spawn(self._answer(message))

    def _heard(self, beat: Heartbeat) -> None:
        if beat.bye:
            if self.peers.said_bye(beat.origin):
                self.roster.drop_origin(beat.origin)
            for waiting in self._waiting.values():  # stopped cleanly: not missing, just gone
                waiting.expected.discard(beat.origin)
                waiting.check()
            return
        sighting = self.peers.heard(beat.origin, beat.epoch, beat.seq, beat.losses)
        if sighting == "known":
            return
        if sighting == "new":
            self.roster.drop_origin(beat.origin)  # a restart: its sockets of the last boot are gone
            if self.bus is not None and beat.seq == 1:
                # Greet a newcomer at once, so that it knows this instance before its next beat.
                # The last one again: a number of its own would look like a lost beat to the others.
                self.bus.send(instance_topic(beat.origin), encode(self._heartbeat()))
        self.roster.resync(beat.origin)

    def _same_id(self, epoch: int) -> None:
        # Each of the two takes the other's messages for its own and drops them: the other's sockets
        # are missing from every answer, named nowhere. Nothing else would tell.
        if epoch != self._same_id_epoch:
            self._same_id_epoch = epoch
            logger.error(
                "cluster: another instance runs with this instance's id %s (boot epoch %d): neither "
                "hears the other, and answers leave the other's sockets out; give each its own instance_id",
                self.instance_id,
                epoch,
            )

    def _replied(self, reply: Reply) -> None:
        waiting = self._waiting.get(reply.id)
        if waiting is None:
            return  # too late, or not ours
        if not reply.done:
            waiting.partial.setdefault(reply.origin, []).append(reply)
            return
        pieces = [*waiting.partial.pop(reply.origin, []), reply]
        waiting.answers[reply.origin] = Answered(
            count=reply.count,
            entries=[entry for piece in pieces for entry in piece.entries],
            parts=_merged_parts(part for piece in pieces for part in piece.parts),
            truncated=reply.truncated,
        )
        waiting.check()

    async def _answer(self, ask: Ask) -> None:
        async with self._answering:
            answered = await self.roster.answer(ask.query)
        if self.bus is None:
            return
        self.counters["answered"] += 1
        for reply in _replies(self.instance_id, ask.id, answered, REPLY_CHUNK):
            self.bus.send(instance_topic(ask.origin), encode(reply))

    # --- heartbeats --------------------------------------------------------------------------------

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(self.instance_id, self.epoch, max(self._beats, 1), losses=self._losses)

    async def _heartbeat_loop(self) -> None:
        ticked = time.monotonic()
        while True:
            bus = self.bus
            if bus is not None:
                losses = bus.losses()
                if losses > self._losses:
                    # Messages may have been lost here: what the others sent (their changes) is
                    # asked for again, and the heartbeat tells them to do the same with ours.
                    self._losses = losses
                    for origin in self.peers.live:
                        self.roster.resync(origin)
                self._beats += 1
                bus.send(CONTROL_TOPIC, encode(self._heartbeat()))
            now = time.monotonic()
            if now - ticked > PEER_TIMEOUT:
                # This instance did not run for a while (paused, a blocked event loop): what the
                # others sent meanwhile is still to be read. Not hearing them says nothing of them.
                self.peers.pardon()
            ticked = now
            for origin in self.peers.expire():
                self.counters["peers_lost"] += 1
                logger.warning(
                    "cluster: instance %s unheard for %.0f s: its sockets leave presence",
                    origin,
                    PEER_TIMEOUT,
                )
                self.roster.drop_origin(origin)
            self._peer_changed()
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    def _peer_changed(self) -> None:
        """Questions stop waiting for peers that are gone (they are named as missing)."""
        live = self.peers.live
        for waiting in self._waiting.values():
            if waiting.expected - live:
                waiting.expected &= live
                waiting.check()

    # --- presence topics ---------------------------------------------------------------------------

    def _send_change(self, change: Change) -> None:
        if self.bus is not None:
            self.bus.send(presence_topic(change.room), encode(change))

    def _watch_room(self, room: str) -> asyncio.Future[None]:
        bus = self.bus
        if bus is None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        return asyncio.ensure_future(bus.watch_topic(presence_topic(room)))

    def _unwatch_room(self, room: str) -> None:
        if self.bus is not None:
            self.bus.unwatch_topic(presence_topic(room))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("cluster: answering a question failed", exc_info=task.exception())


def _replies(origin: str, request_id: int, answered: Answered, chunk: int) -> list[Reply]:
    """``answered`` as one or more replies of at most ``chunk`` entries each, the parts' included: a
    large part travels in pieces (each with its room, stream and version; see :func:`_merged_parts`)."""
    batches: list[tuple[list[Entry], list[Part]]] = [([], [])]
    space = chunk
    for part, entries in [(None, answered.entries), *((part, part.entries) for part in answered.parts)]:
        at = 0
        while True:
            if space <= 0:
                batches.append(([], []))
                space = chunk
            piece = entries[at : at + space]
            if part is None:
                batches[-1][0].extend(piece)
            else:  # an empty part goes too: it says the instance has no member of the room
                batches[-1][1].append(Part(part.room, part.stream, part.version, piece))
            at += len(piece)
            space -= len(piece)
            if at >= len(entries):
                break
    replies = [Reply(origin, request_id, False, [], entries, parts) for entries, parts in batches]
    last = replies[-1]
    replies[-1] = Reply(
        origin, request_id, True, answered.count, last.entries, last.parts, answered.truncated
    )
    return replies


def _merged_parts(parts: Iterable[Part]) -> list[Part]:
    """The pieces of one instance's parts (see :func:`_replies`), one part per room again."""
    heads: dict[str, Part] = {}
    entries: dict[str, list[Entry]] = {}
    for part in parts:
        heads.setdefault(part.room, part)
        entries.setdefault(part.room, []).extend(part.entries)
    return [Part(room, head.stream, head.version, entries[room]) for room, head in heads.items()]
