"""What every multihome backend must do, run over each of them (the ``bus`` fixture's parameters)."""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
import pytest

from tests.apps import User, presence_server
from tests.backends.conftest import Bus, Linked
from tests.support import Client, connect_client, connect_clients, eventually
from typed_ss import MultihomeHealth, Recovery, Server
from typed_ss.multihome import BROADCAST_TOPIC, ENVELOPE_VERSION, Envelope, room_topic

pytestmark = pytest.mark.timeout(60)

DATA = [("S", "héllo"), ("B", b"\x00\xffbin"), ("J", {"n": 1, "s": "x"})]


def multihome(ss: Server) -> MultihomeHealth:
    health = ss.health().multihome
    assert health is not None
    return health


async def test_broadcast_reaches_every_socket_on_every_instance_once(linked: Linked) -> None:
    async with linked(3) as (a, b, c):
        async with (
            connect_client(a.url) as on_a,
            connect_client(b.url) as on_b,
            connect_client(c.url) as on_c,
        ):
            for letter, value in DATA:
                await a.server.broadcast("news", value)
                for client in (on_a, on_b, on_c):
                    frame = await client.expect("news")
                    assert frame.letter == letter
                    assert (frame.json() if letter == "J" else frame.payload) == value
            for client in (on_a, on_b, on_c):
                await client.nothing_within(0.2)  # exactly once


async def test_roomcast_reaches_members_on_every_instance_and_no_one_else(linked: Linked) -> None:
    async with linked(3) as (a, b, c):
        async with (
            connect_client(a.url) as sender,
            connect_client(b.url) as member,
            connect_client(c.url) as outsider,
        ):
            for client in (sender, member):
                await client.send("join", "room")
                await client.expect("joined")
            for letter, value in DATA:
                await a.server.roomcast("room", "chat", value)
                for client in (sender, member):
                    frame = await client.expect("chat")
                    assert frame.letter == letter
            await member.send("roomcast", '{"room": "room", "text": "from b"}')
            for client in (sender, member):
                assert (await client.expect("chat")).json()["text"] == "from b"
            await outsider.nothing_within(0.2)


async def test_socketcast_reaches_one_socket_on_another_instance(linked: Linked) -> None:
    async with linked(2) as (a, b):
        async with connect_client(a.url) as on_a, connect_client(b.url) as on_b:
            for letter, value in DATA:
                await a.server.socketcast(on_b.id, "direct", value)
                assert (await on_b.expect("direct")).letter == letter
            await on_a.send("socketcast", on_b.id)
            assert (await on_b.expect("direct")).payload == f"from {on_a.id}"
            await on_a.nothing_within(0.2)


async def test_order_per_publisher_is_kept(linked: Linked) -> None:
    async with linked(3) as (a, b, c):
        async with connect_clients(c.url, 3) as receivers:
            count = 300
            for i in range(count):
                await a.server.broadcast("seq", f"a{i}")
                await b.server.broadcast("seq", f"b{i}")
            for client in receivers:
                got = [str((await client.expect("seq")).payload) for _ in range(2 * count)]
                for origin in "ab":
                    assert [p for p in got if p[0] == origin] == [f"{origin}{i}" for i in range(count)]
        for instance in (a, b, c):
            assert multihome(instance.server).lost == 0


async def test_after_join_returns_every_later_roomcast_arrives(linked: Linked) -> None:
    async with linked(2) as (a, b):
        async with connect_client(b.url) as client:
            sock = b.server.get_socket(client.id)
            assert sock is not None
            for i in range(20):
                await sock.join(f"fresh-{i}")
                await a.server.roomcast(f"fresh-{i}", "ping", str(i))  # published right after the join
                assert (await client.expect("ping")).payload == str(i)


async def test_an_instance_subscribes_only_to_rooms_with_local_members(linked: Linked, bus: Bus) -> None:
    async with linked(3) as (a, b, _c):
        topic = room_topic("interest")
        assert await bus.subscribers(topic) == 0
        assert await bus.subscribers(BROADCAST_TOPIC) == 3
        async with connect_client(b.url) as member:
            await member.send("join", "interest")
            await member.expect("joined")
            assert await bus.subscribers(topic) == 1  # b only: a and c have no member
            received_before = multihome(a.server).received
            await b.server.roomcast("interest", "chat", "for b's room")
            await member.expect("chat")
            await member.send("leave", "interest")
            await member.expect("left")

        async def nobody_subscribes() -> bool:
            return await bus.subscribers(topic) == 0

        await eventually(nobody_subscribes)
        assert multihome(a.server).received == received_before


async def test_bad_envelopes_are_dropped_and_counted(linked: Linked, bus: Bus) -> None:
    async with linked(2) as (a, b):
        async with connect_client(b.url) as client:
            backend = a.server.backend
            assert backend is not None
            good = Envelope(ENVELOPE_VERSION, "other", 1, 1, 1, "broadcast", None, "news", "S", b"ok")
            bad = [
                b"\x00not msgpack",
                msgspec.msgpack.encode([99, "future", "format"]),  # an unknown version
                msgspec.msgpack.encode(msgspec.structs.replace(good, letter="X")),
                msgspec.msgpack.encode(msgspec.structs.replace(good, event="a\x01b")),
                msgspec.msgpack.encode(msgspec.structs.replace(good, kind="roomcast")),  # without a room
                b"\x01" * (2 * 1024 * 1024),  # oversized
            ]
            for data in bad:
                await backend.publish(BROADCAST_TOPIC, data)
            await backend.publish(BROADCAST_TOPIC, msgspec.msgpack.encode(good))
            assert (await client.expect("news")).payload == "ok"
            health = multihome(b.server)
            assert (health.malformed, health.unknown_version, health.oversized) == (4, 1, 1)
            # A repeated sequence number is a duplicate; a skipped one is a counted loss, told to the
            # members (here: every socket, for broadcasts) before what came after it.
            await backend.publish(BROADCAST_TOPIC, msgspec.msgpack.encode(good))
            await backend.publish(
                BROADCAST_TOPIC, msgspec.msgpack.encode(msgspec.structs.replace(good, seq=5, payload=b"five"))
            )
            assert (await client.expect("__gap")).json() == {"room": None, "lost": 3}
            assert (await client.expect("news")).payload == "five"
            health = multihome(b.server)
            assert (health.duplicates, health.lost) == (1, 3)


async def test_health_reports_the_backend(linked: Linked, bus: Bus) -> None:
    async with linked(2) as (a, _b):
        health = multihome(a.server)
        assert health.backend.name == bus.name
        assert health.backend.state == "connected"
        # Drained (a heartbeat of the control plane may be on its way at any moment).
        await eventually(lambda: multihome(a.server).outbox == 0)
    assert a.server.health().multihome is None  # stopped with the server


async def test_many_sockets_on_many_instances(linked: Linked) -> None:
    async with linked(3) as instances:
        async with (
            connect_clients(instances[0].url, 10) as first,
            connect_clients(instances[2].url, 10) as third,
        ):
            everyone: list[Client] = [*first, *third]
            await instances[1].server.broadcast("all", b"x")
            for client in everyone:
                assert (await client.expect("all")).payload == b"x"


async def test_a_loss_in_a_room_is_told_to_its_members_only(linked: Linked) -> None:
    async with linked(2) as (a, b):
        async with connect_client(b.url) as member, connect_client(b.url) as outsider:
            await member.send("join", "room")
            await member.expect("joined")
            backend = a.server.backend
            assert backend is not None
            first = Envelope(ENVELOPE_VERSION, "other", 1, 1, 1, "roomcast", "room", "chat", "S", b"one")
            await backend.publish(room_topic("room"), msgspec.msgpack.encode(first))
            assert (await member.expect("chat")).payload == "one"
            later = msgspec.structs.replace(first, seq=4, payload=b"four")  # 2 and 3 never arrive
            await backend.publish(room_topic("room"), msgspec.msgpack.encode(later))
            assert (await member.expect("__gap")).json() == {"room": "room", "lost": 2}
            assert (await member.expect("chat")).payload == "four"
            await outsider.nothing_within(0.2)


async def test_a_client_away_from_its_instance_gets_what_the_others_sent_meanwhile(linked: Linked) -> None:
    # Connection state recovery keeps, per instance, what reaches its sockets' rooms; the rooms of a
    # client that is away stay subscribed, so what the other instances send meanwhile is kept too.
    async with linked(2, recovery=Recovery()) as (a, b):
        async with connect_client(a.url) as away:
            await away.send("join", "room")
            joined = await away.expect("joined")
            away.ws.transport.abort()  # the network fails: no close frame
        await eventually(lambda: away.id not in a.server.sockets)
        await b.server.roomcast("room", "chat", "to the room")
        await b.server.socketcast(away.id, "direct", "to the socket")
        await b.server.broadcast("news", "to everyone")
        tag, _, offset = joined.letter[2:].partition(".")
        query = urlencode({"ss_session": away.hello["session"], "ss_offsets": f"{tag}.{offset}"})
        async with connect_client(a.url, f"/socket?{query}") as again:
            assert again.hello["recovered"] is True
            got = {(await again.recv()).payload for _ in range(3)}
            assert got == {"to the room", "to the socket", "to everyone"}


async def test_presence_and_cluster_queries_over_the_backend(linked: Linked) -> None:
    """The control plane needs nothing of a backend but publish/subscribe: members, counts,
    identities, actions and presence events across three instances."""
    async with linked(3, make=presence_server, per_identity=True) as instances:
        servers = [instance.server for instance in instances]
        await eventually(lambda: all(len(ss.cluster.peers) == 2 for ss in servers), within=10)
        async with (
            connect_client(instances[0].url, "/socket?user=ann") as ann,
            connect_client(instances[1].url, "/socket?user=bob") as bob,
            connect_client(instances[2].url, "/socket?user=bob") as bob2,
        ):
            # One after the other: a member already there when a room's table is built is in the
            # state the joiner asks for (members), not an event.
            seen: list[tuple[str, str]] = []  # what ann is told
            for client in (ann, bob, bob2):
                await client.send("join", "chat:1")
                while (frame := await client.recv()).event != "joined":
                    if client is ann and frame.event == "__presence":
                        seen.append((frame.json()["change"], frame.json()["presence"]["name"]))
            while len(seen) < 2:  # ann's own joined, and bob's (once for his two sockets)
                frame = await ann.recv()
                if frame.event == "__presence":
                    seen.append((frame.json()["change"], frame.json()["presence"]["name"]))
            assert sorted(seen) == [("joined", "ann"), ("joined", "bob")]
            for ss in servers:
                members = await ss.cluster.members("chat:1")
                assert members.complete
                assert sorted(m.socket for m in members.value) == sorted(c.id for c in (ann, bob, bob2))
                assert (await ss.cluster.count("chat:1")).value == 3
            of_bob = await servers[0].cluster.sockets_of(User("bob"))
            assert sorted(m.socket for m in of_bob.value) == sorted([bob.id, bob2.id])
            closed = await servers[0].cluster.disconnect(identity=User("bob"), reason="bye")
            assert (closed.value, closed.complete) == (2, True)
            while (frame := await ann.recv()).event != "__presence":
                pass
            assert (frame.json()["change"], frame.json()["presence"]["name"]) == ("left", "bob")
            await eventually(
                lambda: all(len(ss.hub.members("chat:1")) == (i == 0) for i, ss in enumerate(servers))
            )
            assert (await servers[2].cluster.count("chat:1")).value == 1
