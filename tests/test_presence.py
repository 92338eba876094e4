"""Presence and cluster-wide rooms (docs/presence.md), in one process: instances sharing a memory
broker, real uvicorn (or native) servers, real WebSocket clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
import pytest

from tests.apps import echo_server, make_app
from tests.support import Client, connect_client, eventually, running
from typed_ss import Presence, Server, Socket
from typed_ss.backends.memory import MemoryBackend, MemoryBroker


class Card(msgspec.Struct):
    name: str


class User(msgspec.Struct, frozen=True):
    name: str


def presence_server(broker: MemoryBroker | None, **presence: Any) -> Server[Any]:
    """An echo server whose sockets say who they are in the ``?user=`` query; presence tracked in
    rooms starting with ``chat:``."""
    options: dict[str, Any] = {"tracked": lambda room: room.startswith("chat:"), **presence}
    ss = echo_server(
        backend=None if broker is None else MemoryBackend(broker),
        presence=Presence(Card, lambda sock: Card(sock.identity.name), **options),
    )

    @ss.authenticate
    async def auth(request: Any) -> User:
        return User(request.query_params.get("user", "anon"))

    return ss


@asynccontextmanager
async def instances(count: int, **presence: Any) -> AsyncIterator[list[tuple[Server[Any], str]]]:
    broker = MemoryBroker()
    async with AsyncExitStack() as stack:
        servers = [presence_server(broker, **presence) for _ in range(count)]
        urls = [await stack.enter_async_context(running(make_app(ss), ss)) for ss in servers]
        # Every instance has heard every other before the test starts.
        for ss in servers:
            await eventually(lambda ss=ss: len(ss.cluster.peers) == count - 1)
        yield list(zip(servers, urls, strict=True))


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
    ss = presence_server(None)
    async with running(make_app(ss), ss) as url, connect_client(url, "/socket?user=x") as x:
        assert await join(x, "chat:solo") == [("joined", x.id, {"name": "x"})]
        members = await ss.cluster.members("chat:solo")
        assert [m.socket for m in members.value] == [x.id]
        assert members.complete
