"""Presence and cluster-wide rooms (docs/presence.md), in one process: instances sharing a memory
broker, real uvicorn (or native) servers, real WebSocket clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from tests.apps import User, echo_server, make_app, presence_server
from tests.support import Client, connect_client, eventually, running
from tests.test_calls import call
from typed_ss import EncodeError, Server
from typed_ss.backends.base import BackendHealth
from typed_ss.backends.memory import MemoryBackend, MemoryBroker
from typed_ss.cluster import HEARTBEAT_INTERVAL, PEER_TIMEOUT, control


class CutOff(MemoryBackend):
    """A memory backend whose messages can be lost on their way out: all of them (``cut``: the
    instance is cut off from the others) or the next ``lose_changes`` on presence topics."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.cut = False
        self.lose_changes = 0
        self.lose_arriving_changes = 0
        self.count_losses = False
        self.changes_sent = 0
        self.reconnects = 0

    def deliver(self, topic: str, data: bytes) -> None:
        if self.lose_arriving_changes and topic.startswith("p:"):
            # As a Redis subscriber that reconnects: what was published meanwhile is lost, and the
            # backend counts the reconnection.
            self.lose_arriving_changes -= 1
            self.reconnects += 1
            return
        super().deliver(topic, data)

    def health(self) -> BackendHealth:
        health = super().health()
        health.reconnects = self.reconnects
        return health

    async def publish(self, topic: str, data: bytes) -> None:
        if self.cut:
            return
        if topic.startswith("p:"):
            self.changes_sent += 1
        if self.lose_changes and topic.startswith("p:"):
            self.lose_changes -= 1
            self.reconnects += self.count_losses  # as a backend whose connection broke under it
            return
        await super().publish(topic, data)


def presence_on(broker: MemoryBroker | None, **presence: Any) -> Server[Any]:
    """:func:`~tests.apps.presence_server` on ``broker`` (``None``: alone), through a :class:`CutOff`."""
    return presence_server(backend=None if broker is None else CutOff(broker), **presence)


@asynccontextmanager
async def instances(count: int, **presence: Any) -> AsyncIterator[list[tuple[Server[Any], str]]]:
    broker = MemoryBroker()
    async with AsyncExitStack() as stack:
        servers = [presence_on(broker, **presence) for _ in range(count)]
        urls = [await stack.enter_async_context(running(make_app(ss), ss)) for ss in servers]
        # Every instance has heard every other before the test starts.
        await eventually(lambda: all(len(ss.cluster.peers) == count - 1 for ss in servers))
        yield list(zip(servers, urls, strict=True))


@asynccontextmanager
async def ann_and_bob() -> AsyncIterator[tuple[Server[Any], Server[Any], Client, Client]]:
    """Two instances, ann on the first (in ``chat:1``) and bob on the second (in no room yet)."""
    async with instances(2) as [(first, one), (second, two)]:
        async with (
            connect_client(one, "/socket?user=ann") as ann,
            connect_client(two, "/socket?user=bob") as bob,
        ):
            await join(ann, "chat:1")
            yield first, second, ann, bob


async def join(client: Client, room: str) -> list[tuple[str, str, Any]]:
    """Join ``room``; returns the presence events that arrived before the join's answer (the
    joiner's own ``joined`` comes first: the join returns once the cluster knows of it)."""
    await client.send("join", room)
    events = []
    while (frame := await client.recv()).event != "joined":
        assert frame.event == "__presence", frame
        body = frame.json()
        events.append((body["change"], body["socket"], body["presence"]))
    return events


async def presence_events(client: Client, count: int) -> list[tuple[str, str, Any]]:
    events = []
    for _ in range(count):
        frame = await client.expect("__presence")
        body = frame.json()
        events.append((body["change"], body["socket"], body["presence"]))
    return events


async def test_members_counts_and_identities_across_three_instances() -> None:
    async with instances(3) as nodes, AsyncExitStack() as stack:
        clients = []
        for index, (_, url) in enumerate(nodes):
            for tab in range(2):
                client = await stack.enter_async_context(connect_client(url, f"/socket?user=u{index}"))
                if tab == 0 or index == 0:
                    await join(client, "lobby")
                clients.append(client)
        ss = nodes[1][0]
        members = await ss.cluster.members("lobby")
        assert members.complete
        assert sorted(m.socket for m in members.value) == sorted(
            c.id for i, c in enumerate(clients) if i % 2 == 0 or i < 2
        )
        assert {m.presence.name for m in members.value} == {"u0", "u1", "u2"}
        assert (await ss.cluster.count("lobby")).value == 4
        of_u0 = await ss.cluster.sockets_of(User("u0"))
        assert sorted(m.socket for m in of_u0.value) == sorted(c.id for c in clients[:2])
        assert {m.instance for m in of_u0.value} == {nodes[0][0].cluster.instance_id}


@pytest.mark.parametrize("per_identity", [False, True])
async def test_presence_events_reach_members_on_every_instance(per_identity: bool) -> None:
    async with instances(2, per_identity=per_identity) as nodes:
        (_, one), (_, two) = nodes
        async with connect_client(one, "/socket?user=ann") as ann:
            assert await join(ann, "chat:1") == [("joined", ann.id, {"name": "ann"})]
            async with connect_client(two, "/socket?user=bob") as bob:
                assert await join(bob, "chat:1") == [("joined", bob.id, {"name": "bob"})]
                assert await presence_events(ann, 1) == [("joined", bob.id, {"name": "bob"})]
                async with connect_client(two, "/socket?user=ann") as ann2:
                    mine = await join(ann2, "chat:1")
                    assert mine == ([] if per_identity else [("joined", ann2.id, {"name": "ann"})])
                    if not per_identity:
                        assert await presence_events(bob, 1) == [("joined", ann2.id, {"name": "ann"})]
                        assert await presence_events(ann, 1) == [("joined", ann2.id, {"name": "ann"})]
                if not per_identity:
                    assert await presence_events(bob, 1) == [("left", ann2.id, {"name": "ann"})]
                    assert await presence_events(ann, 1) == [("left", ann2.id, {"name": "ann"})]
                await bob.send("leave", "chat:1")
                assert await presence_events(ann, 1) == [("left", bob.id, {"name": "bob"})]
            await ann.nothing_within(0.2)


async def test_actions_join_leave_and_disconnect_across_instances() -> None:
    async with instances(2) as nodes:
        (first, one), (_, two) = nodes
        async with connect_client(one, "/socket?user=a") as a, connect_client(two, "/socket?user=b") as b:
            await join(a, "lobby")
            await join(b, "lobby")
            moved = await first.cluster.join("lobby-2", in_room="lobby")
            assert (moved.value, moved.complete) == (2, True)
            assert (await first.cluster.count("lobby-2")).value == 2
            left = await first.cluster.leave("lobby", sockets=[b.id])
            assert left.value == 1
            assert (await first.cluster.count("lobby")).value == 1
            closed = await first.cluster.disconnect(identity=User("b"), code=4000, reason="kicked")
            assert closed.value == 1
            await asyncio.wait_for(b.ws.wait_closed(), 5)
            assert b.ws.close_code == 4000
            await eventually(lambda: asyncio.ensure_future(first.cluster.count("lobby-2")))
            assert (await first.cluster.count("lobby-2")).value == 1


async def test_one_instance_without_a_backend_answers_alone() -> None:
    ss = presence_on(None)
    async with running(make_app(ss), ss) as url, connect_client(url, "/socket?user=x") as x:
        assert await join(x, "chat:solo") == [("joined", x.id, {"name": "x"})]
        members = await ss.cluster.members("chat:solo")
        assert [m.socket for m in members.value] == [x.id]
        assert members.complete


def cut_off(ss: Server[Any]) -> CutOff:
    assert isinstance(ss.backend, CutOff)
    return ss.backend


async def test_a_lost_change_is_noticed_at_the_next_and_the_table_asked_again() -> None:
    async with instances(2) as nodes:
        (first, one), (second, two) = nodes
        async with (
            connect_client(one, "/socket?user=ann") as ann,
            connect_client(two, "/socket?user=bob") as bob,
            connect_client(two, "/socket?user=cy") as cy,
        ):
            await join(ann, "chat:1")
            cut_off(second).lose_changes = 1
            await join(bob, "chat:1")  # ann's instance never hears of it...
            await join(cy, "chat:1")  # ...until this change skips a number
            seen = await presence_events(ann, 2)
            assert sorted(seen) == sorted(
                [("joined", bob.id, {"name": "bob"}), ("joined", cy.id, {"name": "cy"})]
            )
            health = first.health().cluster
            assert (health.resyncs, health.presence_entries) == (1, 3)


async def test_an_instance_cut_off_is_missing_its_members_leave_and_come_back() -> None:
    async with ann_and_bob() as (first, second, ann, bob):
        await join(bob, "chat:1")
        assert await presence_events(ann, 1) == [("joined", bob.id, {"name": "bob"})]
        cut_off(second).cut = True
        # Waited for until the timeout, then named; after the bound, its members leave.
        assert await presence_events(ann, 1) == [("left", bob.id, {"name": "bob"})]
        members = await first.cluster.members("chat:1", timeout=0.2)
        assert [m.socket for m in members.value] == [ann.id]
        assert members.missing == {second.cluster.instance_id}
        assert not members.complete
        cut_off(second).cut = False
        assert await presence_events(ann, 1) == [("joined", bob.id, {"name": "bob"})]
        await eventually(lambda: second.cluster.instance_id in first.cluster.peers)
        members = await first.cluster.members("chat:1")
        assert sorted(m.socket for m in members.value) == sorted([ann.id, bob.id])


async def test_a_clean_stop_says_goodbye_its_members_leave_at_once_and_it_is_not_missing() -> None:
    broker = MemoryBroker()
    staying, going = presence_on(broker), presence_on(broker)
    async with running(make_app(staying), staying) as one, connect_client(one, "/socket?user=ann") as ann:
        await join(ann, "chat:1")
        async with running(make_app(going), going) as two:
            await eventually(lambda: len(staying.cluster.peers) == 1)
            async with connect_client(two, "/socket?user=bob") as bob:
                await join(bob, "chat:1")
                assert await presence_events(ann, 1) == [("joined", bob.id, {"name": "bob"})]
                gone = going.cluster.instance_id
        # The client closed first (left), then the instance stopped (goodbye).
        assert await presence_events(ann, 1) == [("left", bob.id, {"name": "bob"})]
        await eventually(lambda: gone not in staying.cluster.peers)
        members = await staying.cluster.members("chat:1")
        assert members.complete
        assert [m.socket for m in members.value] == [ann.id]


async def test_large_answers_travel_in_several_messages_and_limits_truncate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "REPLY_CHUNK", 2)
    async with instances(2) as nodes, AsyncExitStack() as stack:
        (first, _), (_, two) = nodes
        clients = [
            await stack.enter_async_context(connect_client(two, f"/socket?user=u{i}")) for i in range(5)
        ]
        for client in clients:
            await join(client, "lobby")
        members = await first.cluster.members("lobby")
        assert sorted(m.socket for m in members.value) == sorted(c.id for c in clients)
        assert (members.complete, members.truncated) == (True, False)
        limited = await first.cluster.members("lobby", limit=3)
        assert (len(limited.value), limited.truncated) == (3, True)


async def test_actions_count_what_they_did_and_bad_selections_are_refused() -> None:
    async with instances(1) as [(ss, url)], connect_client(url, "/socket?user=a") as a:
        assert (await ss.cluster.join("r1", sockets=[a.id])).value == 1
        assert (await ss.cluster.join("r1", sockets=[a.id])).value == 0  # in it already
        assert (await ss.cluster.join("r2", sockets=["no-such-socket"])).value == 0
        with pytest.raises(TypeError):
            await ss.cluster.join("r3")
        with pytest.raises(TypeError):
            await ss.cluster.join("r3", sockets=[a.id], in_room="r1")
        with pytest.raises(TypeError):
            await ss.cluster.leave("r3", sockets=a.id)
        with pytest.raises(EncodeError):
            await ss.cluster.sockets_of(object())


async def test_a_client_lists_members_when_allowed_and_is_refused_otherwise() -> None:
    async with instances(2, max_listed=2) as nodes:
        (_, one), (_, two) = nodes
        async with (
            connect_client(one, "/socket?user=ann") as ann,
            connect_client(two, "/socket?user=bob") as bob,
            connect_client(two, "/socket?user=cy") as cy,
            connect_client(one, "/socket?user=eve") as eve,
        ):
            await join(ann, "chat:1")
            await join(bob, "chat:1")
            await presence_events(ann, 1)
            flags, listed = await call(ann, "__members", 1, '{"room": "chat:1"}')
            assert flags == "Jr1"
            assert isinstance(listed, dict)
            assert sorted(m["socket"] for m in listed["members"]) == sorted([ann.id, bob.id])
            assert {m["presence"]["name"] for m in listed["members"]} == {"ann", "bob"}
            assert (listed["missing"], listed["truncated"]) == ([], False)
            await join(cy, "chat:1")
            await presence_events(ann, 1)
            flags, listed = await call(ann, "__members", 2, '{"room": "chat:1"}')
            assert isinstance(listed, dict)
            assert (len(listed["members"]), listed["truncated"]) == (2, True)  # max_listed
            # Not a member: refused (the default visible()); a reserved room: refused too.
            flags, refused = await call(eve, "__members", 3, '{"room": "chat:1"}')
            assert (flags, refused["code"]) == ("Je3", "forbidden")  # type: ignore[index]
            flags, refused = await call(eve, "__members", 4, f'{{"room": "__socket_id:{ann.id}"}}')
            assert (flags, refused["code"]) == ("Je4", "invalid_room")  # type: ignore[index]


async def test_without_presence_there_is_no_members_call_and_no_events() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        assert await join(client, "chat:1") == []
        flags, refused = await call(client, "__members", 1, '{"room": "chat:1"}')
        assert (flags, refused["code"]) == ("Je1", "unknown_event")  # type: ignore[index]
        members = await ss.cluster.members("chat:1")
        assert [(m.socket, m.presence) for m in members.value] == [(client.id, None)]


async def test_a_newcomer_is_asked_once_and_costs_the_others_nothing_more() -> None:
    broker = MemoryBroker()
    first, second, third = (presence_on(broker) for _ in range(3))
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(running(make_app(first), first))
        two = await stack.enter_async_context(running(make_app(second), second))
        await eventually(lambda: len(first.cluster.peers) == 1 and len(second.cluster.peers) == 1)
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann"))
        bob = await stack.enter_async_context(connect_client(two, "/socket?user=bob"))
        await join(ann, "chat:1")
        await join(bob, "chat:1")
        before = [ss.health().cluster for ss in (first, second)]
        await stack.enter_async_context(running(make_app(third), third))
        await eventually(lambda: all(len(ss.cluster.peers) == 2 for ss in (first, second, third)))
        await asyncio.sleep(2.5)  # two more heartbeats each: a greeting must not look like a lost one
        for ss, earlier in zip((first, second), before, strict=True):
            assert ss.health().cluster.resyncs - earlier.resyncs == 1  # the newcomer's members (none), once


async def test_a_change_lost_on_its_own_is_recovered_when_the_backend_says_it_lost_messages() -> None:
    async with ann_and_bob() as (first, _, ann, bob):
        cut_off(first).lose_arriving_changes = 1
        await join(bob, "chat:1")  # the only change of the room: nothing later reveals its loss
        assert await presence_events(ann, 1) == [("joined", bob.id, {"name": "bob"})]
        members = first.health().cluster.presence_entries
        assert members == 2


async def test_a_change_lost_on_its_way_out_is_asked_for_when_its_sender_says_it_lost_messages() -> None:
    async with ann_and_bob() as (first, second, ann, bob):
        cut_off(second).lose_changes = 1
        cut_off(second).count_losses = True
        await join(bob, "chat:1")  # the only change of the room, lost on its way out
        assert await presence_events(ann, 1) == [("joined", bob.id, {"name": "bob"})]
        assert first.health().cluster.presence_entries == 2


async def test_an_instance_that_did_not_run_for_a_while_does_not_take_the_others_for_gone() -> None:
    async with ann_and_bob() as (first, second, ann, bob):
        await join(bob, "chat:1")
        assert await presence_events(ann, 1) == [("joined", bob.id, {"name": "bob"})]
        time.sleep(PEER_TIMEOUT + 1)  # noqa: ASYNC251  # the whole process stops running: both instances
        await asyncio.sleep(2 * HEARTBEAT_INTERVAL + 0.5)  # two heartbeats' checks each
        await ann.nothing_within(0.1)
        await bob.nothing_within(0.1)
        assert [ss.health().cluster.peers_lost for ss in (first, second)] == [0, 0]


async def test_the_changes_of_one_moment_travel_as_one_message() -> None:
    async with instances(2) as nodes, AsyncExitStack() as stack:
        (_, one), (second, two) = nodes
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann", max_queue=None))
        await join(ann, "chat:1")
        # max_queue=None: these clients read none of the events, and one whose queue is full stops
        # reading, its close handshake included.
        crowd = [
            await stack.enter_async_context(connect_client(two, f"/socket?user=u{i}", max_queue=None))
            for i in range(20)
        ]
        for client in crowd:
            await join(client, "lobby")
        await join(crowd[0], "chat:1")  # the room's table on the crowd's instance
        assert await presence_events(ann, 1) == [("joined", crowd[0].id, {"name": "u0"})]
        before = cut_off(second).changes_sent
        moved = await second.cluster.join("chat:1", in_room="lobby")  # 19 joins in one moment
        assert moved.value == 19
        seen = await presence_events(ann, 19)
        assert sorted(socket for _, socket, _ in seen) == sorted(c.id for c in crowd[1:])
        assert cut_off(second).changes_sent - before < 19


async def test_a_tracked_predicate_that_fails_leaves_the_room_untracked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def tracked(room: str) -> bool:
        raise ValueError("bad predicate")

    ss = presence_server(tracked=tracked)
    async with running(make_app(ss), ss) as url, connect_client(url, "/socket?user=x") as x:
        assert await join(x, "chat:1") == []  # joined, untracked
        assert [m.socket for m in (await ss.cluster.members("chat:1")).value] == [x.id]
    assert "tracked() failed" in caplog.text


async def test_an_instance_has_its_id_before_its_backend_starts() -> None:
    ss = presence_on(MemoryBroker())
    assert ss.cluster.instance_id
    assert (await ss.cluster.count("lobby")).value == 0
    await ss.startup()
    try:
        multihome = ss.health().multihome
        assert multihome is not None
        assert multihome.instance == ss.cluster.instance_id
    finally:
        await ss.shutdown()
