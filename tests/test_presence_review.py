"""A review of presence and cluster-wide rooms (issue #16, docs/presence.md): races between joins,
leaves and table building, lost messages, cancelled joiners, restarts. Instances share a memory
broker in one process, each served by a real server, with real WebSocket clients."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.apps import echo_server, make_app, presence_server
from tests.support import Client, connect_client, eventually, running
from tests.test_presence import join
from typed_ss import Server
from typed_ss.backends.memory import MemoryBackend, MemoryBroker
from typed_ss.cluster import control, wire


class Faulty(MemoryBackend):
    """A memory backend that notes the answers it sends (``replies``), with faults the tests turn
    on: its next ``lose_replies`` messages on instance topics (answers to questions) and its next
    ``lose_changes`` on presence topics are lost, and while ``slow_rooms`` is clear a subscription
    to a room's casts waits for it (a backend slow to confirm)."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.lose_replies = 0
        self.lose_changes = 0
        self.replies: list[wire.Reply] = []  # every answer sent
        self.slow_rooms = asyncio.Event()
        self.slow_rooms.set()

    async def publish(self, topic: str, data: bytes) -> None:
        if self.lose_changes and topic.startswith("p:"):
            self.lose_changes -= 1
            return
        if topic.startswith("i:"):
            message = wire.decode(data)
            if isinstance(message, wire.Reply):
                self.replies.append(message)
            if self.lose_replies:
                self.lose_replies -= 1
                return
        await super().publish(topic, data)

    async def subscribe(self, topic: str) -> None:
        if topic.startswith("r:"):
            await self.slow_rooms.wait()
        await super().subscribe(topic)


async def presence_events(client: Client, count: int, within: float = 5.0) -> list[tuple[str, str, Any]]:
    """The next ``count`` ``__presence`` events of ``client``, each within ``within`` seconds."""
    events = []
    for _ in range(count):
        body = (await client.expect("__presence", within)).json()
        events.append((body["change"], body["socket"], body["presence"]))
    return events


def faulty(ss: Server[Any]) -> Faulty:
    assert isinstance(ss.backend, Faulty)
    return ss.backend


async def test_a_socket_that_leaves_while_its_join_subscribes_leaves_no_table_behind() -> None:
    backend = Faulty(MemoryBroker())
    ss = presence_server(backend=backend)
    async with running(make_app(ss), ss) as url, connect_client(url, "/socket?user=ann") as ann:
        multihome = ss.health().multihome
        assert multihome is not None
        subscriptions = multihome.subscriptions
        backend.slow_rooms.clear()
        await ann.send("join", "chat:1")
        sock = ss.get_socket(ann.id)
        assert sock is not None
        await eventually(lambda: sock.in_room("chat:1"))  # a member; its join waits for the backend
        assert (await ss.cluster.leave("chat:1", sockets=[ann.id])).value == 1
        backend.slow_rooms.set()
        await ann.expect("joined")
        # No table kept for a room without a local member, nor its presence topic.
        await eventually(lambda: ss.health().cluster.tracked_rooms == 0)
        await eventually(lambda: ss.health().multihome.subscriptions == subscriptions)  # type: ignore[union-attr]


async def two_faulty(
    stack: AsyncExitStack, **presence: Any
) -> tuple[tuple[Server[Any], str], tuple[Server[Any], str]]:
    """Two instances of :func:`~tests.apps.presence_server` on :class:`Faulty` backends, each having
    heard the other; ``presence`` goes to :class:`~typed_ss.Presence`."""
    broker = MemoryBroker()
    first, second = (presence_server(backend=Faulty(broker), **presence) for _ in range(2))
    one = await stack.enter_async_context(running(make_app(first), first))
    two = await stack.enter_async_context(running(make_app(second), second))
    await eventually(lambda: len(first.cluster.peers) == 1 and len(second.cluster.peers) == 1)
    return (first, one), (second, two)


async def test_a_part_lost_again_when_asked_again_is_asked_until_it_arrives() -> None:
    async with AsyncExitStack() as stack:
        (first, one), (second, two) = await two_faulty(stack)
        bob = await stack.enter_async_context(connect_client(two, "/socket?user=bob"))
        await join(bob, "chat:1")
        faulty(second).lose_replies = 2  # the part asked for as the table is built, and asked again
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann"))
        assert await join(ann, "chat:1") == [("joined", ann.id, {"name": "ann"})]
        assert await presence_events(ann, 1, within=15) == [("joined", bob.id, {"name": "bob"})]
        assert first.health().cluster.presence_entries == 2


async def test_a_joiner_cancelled_while_the_table_builds_is_a_member_all_the_same() -> None:
    async with AsyncExitStack() as stack:
        (first, one), (second, two) = await two_faulty(stack)
        bob = await stack.enter_async_context(connect_client(two, "/socket?user=bob"))
        await join(bob, "chat:1")
        faulty(second).lose_replies = 1  # the table waits for the part asked for as it is built
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann"))
        sock = first.get_socket(ann.id)
        assert sock is not None
        joining = asyncio.ensure_future(sock.join("chat:1"))
        await eventually(lambda: "chat:1" in first.cluster.roster.tracked_rooms)
        joining.cancel()
        # The hub keeps it in the room (as a cancelled join always did): presence announces it too.
        assert sock.in_room("chat:1")
        assert await presence_events(bob, 1) == [("joined", ann.id, {"name": "ann"})]
        assert await presence_events(ann, 2) == [
            ("joined", ann.id, {"name": "ann"}),
            ("joined", bob.id, {"name": "bob"}),
        ]


async def test_a_server_started_again_does_not_wait_for_peers_of_its_last_run() -> None:
    broker = MemoryBroker()
    first, second = (presence_server(backend=Faulty(broker)) for _ in range(2))
    async with running(make_app(second), second):
        async with running(make_app(first), first):
            await eventually(lambda: len(first.cluster.peers) == 1)
    # The second stopped after the first: its goodbye reached no one.
    async with running(make_app(first), first) as one, connect_client(one, "/socket?user=ann") as ann:
        await join(ann, "lobby")
        members = await first.cluster.members("lobby")
        assert [m.socket for m in members.value] == [ann.id]
        assert members.complete, members.missing


async def unanswered_question(ss: Server[Any]) -> asyncio.Task[Any]:
    """A question of ``ss`` that waits (its peer's answer is lost), until the task is cancelled."""
    asked = ss.health().cluster.asked
    waiting = asyncio.ensure_future(ss.cluster.count("anything", timeout=60))
    await eventually(lambda: ss.health().cluster.asked == asked + 1)
    return waiting


async def test_an_action_refused_for_too_many_questions_is_not_carried_out_here_either(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "MAX_WAITING", 1)
    async with AsyncExitStack() as stack:
        (first, one), (second, _) = await two_faulty(stack)
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann"))
        faulty(second).lose_replies = 1
        waiting = await unanswered_question(first)
        with pytest.raises(RuntimeError):
            await first.cluster.join("lobby", sockets=[ann.id])
        sock = first.get_socket(ann.id)
        assert sock is not None
        assert not sock.in_room("lobby")
        waiting.cancel()


async def test_questions_waiting_do_not_keep_a_presence_table_from_being_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "MAX_WAITING", 1)  # as 10,000 clients' __members calls would
    async with AsyncExitStack() as stack:
        (first, one), (second, two) = await two_faulty(stack)
        bob = await stack.enter_async_context(connect_client(two, "/socket?user=bob"))
        await join(bob, "chat:1")
        faulty(second).lose_replies = 1
        waiting = await unanswered_question(first)
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann"))
        assert await join(ann, "chat:1") == [("joined", ann.id, {"name": "ann"})]
        assert first.health().cluster.presence_entries == 2  # bob's too: the table was built
        waiting.cancel()


async def test_a_large_presence_part_travels_in_messages_of_the_bounded_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "REPLY_CHUNK", 2)
    async with AsyncExitStack() as stack:
        (first, one), (second, two) = await two_faulty(stack)
        for index in range(5):
            client = await stack.enter_async_context(connect_client(two, f"/socket?user=u{index}"))
            await join(client, "chat:1")
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann"))
        await join(ann, "chat:1")  # its table: the other instance's part of 5 members, in pieces
        assert first.health().cluster.presence_entries == 6
        members = await first.cluster.members("chat:1")
        assert len(members.value) == 6
        sent = faulty(second).replies
        assert any(reply.parts for reply in sent)
        assert all(len(reply.entries) + sum(len(part.entries) for part in reply.parts) <= 2 for reply in sent)
        # Asked again (as after a lost change), the part arrives whole again, in pieces.
        answers = len(sent)
        first.cluster.roster.resync(second.cluster.instance_id)
        await eventually(lambda: len(sent) == answers + 3)
        await ann.nothing_within(0.5)  # no event: the same members
        assert first.health().cluster.presence_entries == 6


async def test_two_instances_with_one_instance_id_are_told_of_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    first, second = (echo_server(backend=Faulty(broker), instance_id="same") for _ in range(2))
    async with running(make_app(first), first), running(make_app(second), second):
        # Each takes the other's messages for its own: nothing else would ever tell.
        await eventually(lambda: any("runs with this instance's id" in r.message for r in caplog.records))


async def test_an_identity_whose_socket_changed_unseen_neither_leaves_nor_joins_again() -> None:
    async with AsyncExitStack() as stack:
        (_, one), (second, two) = await two_faulty(stack, per_identity=True)
        bob = await stack.enter_async_context(connect_client(one, "/socket?user=bob"))
        await join(bob, "chat:1")
        tab = await stack.enter_async_context(connect_client(two, "/socket?user=ann"))
        await join(tab, "chat:1")
        assert await presence_events(bob, 1) == [("joined", tab.id, {"name": "ann"})]
        faulty(second).lose_changes = 1
        async with connect_client(two, "/socket?user=ann") as other_tab:
            await join(other_tab, "chat:1")  # lost on its way to bob's instance
            await tab.send("leave", "chat:1")  # skips a number: bob's instance asks again
            await tab.expect("left")
            # Ann was in the room all along: nothing to tell bob. The next event is cy's.
            cy = await stack.enter_async_context(connect_client(two, "/socket?user=cy"))
            await join(cy, "chat:1")
            assert await presence_events(bob, 1) == [("joined", cy.id, {"name": "cy"})]
