"""Presence and cluster-wide rooms (docs/presence.md) across three server processes on one backend
(Redis, a gRPC mesh with mutual TLS, the MongoDB stand-in): members, counts and identities asked
on every instance agree after joins, leaves and disconnects; presence events reach the members on
the other instances; actions reach the sockets of other processes; a SIGKILLed instance's members
leave within the documented bound; a paused (SIGSTOPped) instance is named as not answering, and
comes back.

Each node runs ``tests.backends.cluster_app``: a socket is the user of its ``?user=`` query, its
presence payload ``{"name": user}``, the ``chat:`` rooms tracked. A test client asks its node's
``ss.cluster`` with calls (``cluster_members``, ``cluster_act``...), answered in JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from websockets.exceptions import ConnectionClosed

from tests.backends.cluster import KINDS, Node, cluster, serving
from tests.backends.fault_proxy import FaultProxy
from tests.support import Client, ServerFrame, connect_client, eventually, parse_server_frame
from typed_ss.cluster import HEARTBEAT_INTERVAL, PEER_TIMEOUT

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

MARGIN = 3.0
"""Seconds added to a documented bound before a test gives up waiting (a deadline, never measured):
the delivery of the messages and a busy machine."""
GONE_BOUND = PEER_TIMEOUT + HEARTBEAT_INTERVAL
"""docs/presence.md: a dead instance's members leave within 3 s and one more heartbeat interval."""
SETTLE = 15.0
"""Seconds a test waits for what has no documented bound (a link coming back, a resumed process)."""

Notice = tuple[str, str, str, str]
"""A ``__presence`` event as a client saw it: room, change, socket, the payload's name."""


class Agent:
    """A client of one node, reading in the background: the replies to its calls, its presence
    events (in order) and its other frames."""

    def __init__(self, client: Client, node: Node, instance: str, user: str) -> None:
        self.client = client
        self.node = node
        self.instance = instance
        """The instance id of its node."""
        self.user = user
        self.notices: list[Notice] = []
        """Its presence events, in the order they came."""
        self.told_so_far = 0
        """How many of them :meth:`told` checked."""
        self.frames: list[ServerFrame] = []
        self.closed = asyncio.Event()
        self._calls: dict[int, asyncio.Future[ServerFrame]] = {}
        self._ids = itertools.count(1)
        self.reader = asyncio.create_task(self._read())

    @property
    def id(self) -> str:
        return self.client.id

    @property
    def member(self) -> dict[str, Any]:
        """How an answer of ``cluster_app`` lists this socket."""
        return {"socket": self.id, "instance": self.instance, "name": self.user}

    async def call_frame(self, event: str, payload: str = "", within: float = 10.0) -> ServerFrame:
        """Call ``event`` with ``payload`` (text); the answer's frame (a reply or an error reply)."""
        call_id = next(self._ids)
        future = self._calls[call_id] = asyncio.get_running_loop().create_future()
        try:
            await self.client.ws.send(f"{event}\x01c{call_id}\x02{payload}")
            return await asyncio.wait_for(future, within)
        finally:
            self._calls.pop(call_id, None)

    async def call(self, event: str, payload: str = "", within: float = 10.0) -> Any:
        """Call ``event``; its reply, JSON-decoded (an error reply fails the test)."""
        frame = await self.call_frame(event, payload, within)
        assert frame.letter.startswith("Jr"), f"{event}: {frame}"
        return json.loads(frame.payload)

    async def ask(self, event: str, **question: Any) -> Any:
        """Call one of ``cluster_app``'s ``cluster_*`` handlers with ``question`` as its JSON."""
        return await self.call(event, json.dumps(question))

    async def join(self, room: str) -> None:
        await self.call("join", room)

    async def leave(self, room: str) -> None:
        await self.call("leave", room)

    async def told(self, *expected: Notice, within: float = SETTLE) -> None:
        """Wait until the presence events that came since the last check are ``expected`` (in any
        order: they may come from several instances at once)."""
        wanted = sorted(expected)
        try:
            await eventually(
                lambda: sorted(self.notices[self.told_so_far :]) == wanted, within=within, interval=0.02
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: {self.user} on {self.node.name} was to be told {wanted}, "
                f"was told {self.notices[self.told_so_far :]}"
            ) from None
        self.told_so_far = len(self.notices)

    async def told_of(self, expected: Notice, within: float = SETTLE) -> None:
        """Wait until ``expected`` is among the presence events this client was told."""
        try:
            await eventually(lambda: expected in self.notices, within=within, interval=0.02)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.user} was not told {expected}: {self.notices}") from None

    async def _read(self) -> None:
        try:
            async for message in self.client.ws:
                frame = parse_server_frame(message)
                flags = frame.letter[1:]
                if flags[:1] in ("r", "e"):
                    future = self._calls.get(int(flags[1:]))
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif frame.event == "__presence":
                    body = frame.json()
                    name = "" if body["presence"] is None else body["presence"]["name"]
                    self.notices.append((body["room"], body["change"], body["socket"], name))
                else:
                    self.frames.append(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self._calls.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.user}'s connection closed"))


@dataclass
class Deployment:
    """Three nodes serving, each heard by the others; one ``admin`` agent per node, in no room."""

    nodes: list[Node]
    instances: list[str]
    """The instance id of each node, in node order."""
    admins: list[Agent]
    stack: AsyncExitStack
    proxy: FaultProxy | None = None
    """Between one node and the broker, when one was asked for (:func:`deploy`)."""

    async def agent(self, index: int, user: str) -> Agent:
        """A client of node ``index`` as ``user``, closed when the deployment ends."""
        return await self.stack.enter_async_context(_agent(self.nodes[index], self.instances[index], user))


@asynccontextmanager
async def _agent(node: Node, instance: str, user: str) -> AsyncIterator[Agent]:
    async with connect_client(node.url, f"/socket?user={user}") as client:
        agent = Agent(client, node, instance, user)
        try:
            yield agent
        finally:
            agent.reader.cancel()
            await asyncio.gather(agent.reader, return_exceptions=True)


URL_VARIABLES = {"redis": "TYPED_SS_TEST_REDIS_URL", "mongo": "TYPED_SS_TEST_MONGO_URL"}
"""The variable of ``tests.backends.cluster_app`` that says where a node's broker is."""


@asynccontextmanager
async def deploy(
    kind: str, directory: Path, *, proxied: int | None = None, **env: str
) -> AsyncIterator[Deployment]:
    """Three nodes on a backend of ``kind``, with ``env`` added to their environment (the variables
    of ``tests.backends.cluster_app``), serving once each has heard the other two. ``proxied``: the
    node that reaches the broker (Redis, MongoDB) through a :class:`FaultProxy` (``.proxy``)."""
    async with cluster(kind, directory, 3) as started, AsyncExitStack() as stack:
        proxy = None
        if proxied is not None:
            variable = URL_VARIABLES[kind]
            node = started.nodes[proxied]
            url = urlsplit(node.env[variable])
            assert url.hostname is not None
            assert url.port is not None
            proxy = FaultProxy(url.hostname, url.port)
            await proxy.start()
            stack.push_async_callback(proxy.stop)  # after the nodes stopped
            node.env[variable] = urlunsplit(url._replace(netloc=f"127.0.0.1:{proxy.port}"))
        for node in started.nodes:
            node.env.update(env)
        nodes = await stack.enter_async_context(serving(started.nodes))
        admins = [await stack.enter_async_context(_agent(node, "", "admin")) for node in nodes]
        instances = [(await admin.call("cluster_whoami"))["instance"] for admin in admins]
        for admin, instance in zip(admins, instances, strict=True):
            admin.instance = instance
        for admin in admins:
            others = sorted(set(instances) - {admin.instance})
            await until(
                admin, "cluster_whoami", None, lambda me, others=others: me["cluster"]["peers"] == others
            )
        yield Deployment(nodes, instances, admins, stack, proxy)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """A backend of :data:`~tests.backends.cluster.KINDS`."""
    kind: str = request.param
    return kind


@pytest.fixture
async def deployment(kind: str, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deploy(kind, tmp_path) as started:
        yield started


# --- waiting for answers and events --------------------------------------------------------------


async def until(agent: Agent, event: str, question: dict[str, Any] | None, holds: Any) -> Any:
    """Ask ``agent``'s node ``event`` until ``holds(answer)``; returns that answer."""
    last: Any = None

    async def check() -> bool:
        nonlocal last
        last = await agent.call(event, "" if question is None else json.dumps(question))
        return bool(holds(last))

    try:
        await eventually(check, within=SETTLE, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {event} {question} on {agent.node.name}, last answer {last}") from None
    return last


async def everywhere(agents: Sequence[Agent], event: str, question: dict[str, Any], expected: Any) -> None:
    """Every agent's node answers ``event`` with ``expected`` (waiting for it to)."""
    for agent in agents:
        await until(agent, event, question, lambda answer: answer == expected)


def listing(members: Iterable[Agent], missing: Iterable[str] = ()) -> dict[str, Any]:
    """A ``cluster_members``/``cluster_sockets_of`` answer listing ``members``."""
    listed = sorted((m.member for m in members), key=lambda m: m["socket"])
    return {"members": listed, "missing": sorted(missing), "truncated": False}


async def agree(
    deployment: Deployment, room: str, members: Sequence[Agent], *, asking: Sequence[Agent] | None = None
) -> None:
    """Every node (or the ``asking`` agents' nodes) lists ``members`` in ``room`` and counts them,
    every instance answering."""
    asking = deployment.admins if asking is None else asking
    await everywhere(asking, "cluster_members", {"room": room}, listing(members))
    await everywhere(asking, "cluster_count", {"room": room}, {"value": len(members), "missing": []})


def notice(room: str, change: str, member: Agent) -> Notice:
    return (room, change, member.id, member.user)


# --- the tests -------------------------------------------------------------------------------------


async def test_members_counts_and_identities_agree_on_every_instance(deployment: Deployment) -> None:
    d = deployment
    ann = await d.agent(0, "ann")
    bob = await d.agent(1, "bob")
    cid = await d.agent(2, "cid")
    ann_too = await d.agent(2, "ann")  # ann's second tab, on another instance
    room = "chat:agree"
    for member in (ann, bob, cid, ann_too):
        await member.join(room)
    await ann_too.join("lobby")  # a room not tracked: queries see it all the same
    await agree(d, room, [ann, bob, cid, ann_too])
    await agree(d, "lobby", [ann_too])
    await everywhere(
        d.admins,
        "cluster_counts",
        {"rooms": [room, "lobby", "nowhere"]},
        {"value": {room: 4, "lobby": 1, "nowhere": 0}, "missing": []},
    )
    await everywhere(d.admins, "cluster_sockets_of", {"user": "ann"}, listing([ann, ann_too]))
    await everywhere(d.admins, "cluster_sockets_of", {"user": "nobody"}, listing([]))

    # A member lists the room from a client (__members), every instance's members in it; a socket
    # that is not a member may not.
    listed = await bob.call("__members", json.dumps({"room": room}))
    members = {(m["socket"], m["instance"], json.dumps(m["presence"])) for m in listed["members"]}
    expected = {(m.id, m.instance, json.dumps({"name": m.user})) for m in (ann, bob, cid, ann_too)}
    assert (members, len(listed["members"]), listed["missing"], listed["truncated"]) == (
        expected,
        4,
        [],
        False,
    )
    refused = await d.admins[1].call_frame("__members", json.dumps({"room": room}))
    assert refused.letter.startswith("Je"), refused
    assert json.loads(refused.payload)["code"] == "forbidden"

    await bob.leave(room)
    await agree(d, room, [ann, cid, ann_too])
    await cid.client.ws.close()  # a client that goes away
    await agree(d, room, [ann, ann_too])
    await everywhere(d.admins, "cluster_sockets_of", {"user": "cid"}, listing([]))
    await ann_too.leave("lobby")
    await agree(d, "lobby", [])
    await everywhere(d.admins, "cluster_sockets_of", {"user": "ann"}, listing([ann, ann_too]))
    await everywhere(d.admins, "cluster_sockets_of", {"user": "bob"}, listing([bob]))


async def join_one_by_one(room: str, members: Sequence[Agent]) -> None:
    """``members`` join ``room`` in turn, each once the ones before it were told of the last."""
    for at, member in enumerate(members):
        await member.join(room)
        for earlier in members[: at + 1]:
            await earlier.told(notice(room, "joined", member))


async def test_presence_events_reach_the_members_on_every_instance(deployment: Deployment) -> None:
    d = deployment
    room = "chat:events"
    ann = await d.agent(0, "ann")
    bob = await d.agent(1, "bob")
    cid = await d.agent(2, "cid")
    await join_one_by_one(room, [ann, bob, cid])
    await bob.leave(room)
    for member in (ann, cid):
        await member.told(notice(room, "left", bob))
    await cid.client.ws.close()  # a client that goes away
    await ann.told(notice(room, "left", cid))
    await agree(d, room, [ann])

    # Each event once, in order, with the member's presence payload; a joiner is told of itself
    # (the members before it it lists with __members), a leaver is not.
    assert ann.notices == [
        notice(room, "joined", ann),
        notice(room, "joined", bob),
        notice(room, "joined", cid),
        notice(room, "left", bob),
        notice(room, "left", cid),
    ]
    assert bob.notices == [notice(room, "joined", bob), notice(room, "joined", cid)]
    assert cid.notices == [notice(room, "joined", cid), notice(room, "left", bob)]
    # Rooms not tracked have no events; sockets in no tracked room heard nothing.
    await bob.join("lobby")
    await ann.join("lobby")
    await agree(d, "lobby", [ann, bob])
    await ann.leave("lobby")
    await agree(d, "lobby", [bob])
    assert len(ann.notices) == 5
    assert len(bob.notices) == 2
    assert [admin.notices for admin in d.admins] == [[], [], []]


async def test_actions_reach_the_sockets_of_other_processes(deployment: Deployment) -> None:
    d = deployment
    ann = await d.agent(0, "ann")
    bob = await d.agent(1, "bob")
    bob_too = await d.agent(2, "bob")
    cid = await d.agent(2, "cid")
    everyone = [ann, bob, bob_too, cid]
    for member in everyone:
        await member.join("lobby")
    await agree(d, "lobby", everyone)

    # Everyone in the lobby, on every instance, moves to a tracked room, by node1's ss.cluster.
    room = "chat:moved"
    moved = await d.admins[0].ask("cluster_act", kind="join", room=room, in_room="lobby", timeout=5)
    assert moved == {"value": 4, "missing": []}
    await agree(d, room, everyone)
    # Each is told of its own joining; of the others', those that joined after its instance's
    # table of the room was built (the members before it are listed, not told).
    for member in everyone:
        await member.told_of(notice(room, "joined", member))
    for member in everyone:
        joined = [n for n in member.notices if n[1] == "joined"]
        assert len(set(joined)) == len(joined) == len(member.notices), member.notices
        assert set(joined) <= {notice(room, "joined", m) for m in everyone}, member.notices
        member.told_so_far = len(member.notices)
    listed = await cid.call("__members", json.dumps({"room": room}))
    assert sorted(m["socket"] for m in listed["members"]) == sorted(m.id for m in everyone), listed

    # One socket of another process leaves it, by id; every member left is told.
    left = await d.admins[1].ask("cluster_act", kind="leave", room=room, sockets=[cid.id], timeout=5)
    assert left == {"value": 1, "missing": []}
    await agree(d, room, [ann, bob, bob_too])
    for member in (ann, bob, bob_too):
        await member.told(notice(room, "left", cid))
    await agree(d, "lobby", everyone)  # its other rooms are untouched

    # Every socket of an identity, on two other processes, is disconnected by node1.
    kicked = await d.admins[0].ask(
        "cluster_act", kind="disconnect", user="bob", code=4000, reason="kicked", timeout=5
    )
    assert kicked == {"value": 2, "missing": []}
    for gone in (bob, bob_too):
        await asyncio.wait_for(gone.closed.wait(), SETTLE)
        assert (gone.client.ws.close_code, gone.client.ws.close_reason) == (4000, "kicked")
    await ann.told(notice(room, "left", bob), notice(room, "left", bob_too))
    await agree(d, room, [ann])
    await agree(d, "lobby", [ann, cid])
    await everywhere(d.admins, "cluster_sockets_of", {"user": "bob"}, listing([]))
    assert not ann.closed.is_set()
    assert not cid.closed.is_set()
    assert cid.notices[cid.told_so_far :] == []  # no longer a member: told nothing more


async def test_a_killed_instances_members_leave_within_the_bound(deployment: Deployment) -> None:
    d = deployment
    room = "chat:killed"
    ann = await d.agent(0, "ann")
    bob = await d.agent(1, "bob")
    cid = await d.agent(2, "cid")
    cid_too = await d.agent(2, "cid")
    everyone = [ann, bob, cid, cid_too]
    await join_one_by_one(room, everyone)
    await agree(d, room, everyone)

    killed = d.nodes[2]
    assert killed.process is not None
    killed.signal(signal.SIGKILL)
    await killed.process.wait()
    # Its members leave the others' presence within the documented bound (waited for, not timed).
    for survivor in (ann, bob):
        await survivor.told(
            notice(room, "left", cid), notice(room, "left", cid_too), within=GONE_BOUND + MARGIN
        )
    # The answers leave them out and name the dead instance as not answering (for SUSPECT_FOR).
    survivors = d.admins[:2]
    dead = d.instances[2]
    await everywhere(survivors, "cluster_members", {"room": room}, listing([ann, bob], missing=[dead]))
    await everywhere(survivors, "cluster_count", {"room": room}, {"value": 2, "missing": [dead]})
    await everywhere(survivors, "cluster_sockets_of", {"user": "cid"}, listing([], missing=[dead]))
    for admin, other in zip(survivors, reversed(d.instances[:2]), strict=True):
        state = (await admin.call("cluster_whoami"))["cluster"]
        assert (state["peers"], state["suspect"], state["peers_lost"]) == ([other], [dead], 1), state
        assert (state["tracked_rooms"], state["presence_entries"]) == (1, 2), state  # ann and bob

    # Started again, it is a new instance: its members join as anyone's, and it answers; the dead
    # one is still named by the others (it might have been cut off rather than dead).
    await killed.start()
    dan = await d.agent(2, "dan")
    dan.instance = (await dan.call("cluster_whoami"))["instance"]
    assert dan.instance != dead
    await until(dan, "cluster_whoami", None, lambda me: me["cluster"]["peers"] == sorted(d.instances[:2]))
    await dan.join(room)
    for member in (ann, bob, dan):
        await member.told(notice(room, "joined", dan))
    await everywhere(survivors, "cluster_members", {"room": room}, listing([ann, bob, dan], missing=[dead]))
    await everywhere([dan], "cluster_members", {"room": room}, listing([ann, bob, dan]))


async def test_a_paused_instance_is_reported_as_not_answering_and_comes_back(deployment: Deployment) -> None:
    d = deployment
    room = "chat:paused"
    ann = await d.agent(0, "ann")
    bob = await d.agent(1, "bob")
    cid = await d.agent(2, "cid")
    everyone = [ann, bob, cid]
    await join_one_by_one(room, everyone)
    await agree(d, room, everyone)

    paused = d.nodes[1]
    others = [d.admins[0], d.admins[2]]
    not_answering = [d.instances[1]]
    paused.signal(signal.SIGSTOP)
    try:
        # Asked meanwhile: the paused instance is named as missing, never passed over in silence.
        for admin in others:
            answer = await admin.ask("cluster_members", room=room, timeout=0.5)
            assert answer == listing([ann, cid], missing=not_answering)
            answer = await admin.ask("cluster_count", room=room, timeout=0.5)
            assert answer == {"value": 2, "missing": not_answering}
            answer = await admin.ask("cluster_sockets_of", user="bob", timeout=0.5)
            assert answer == listing([], missing=not_answering)
        # Unheard past the bound: its members leave the others' presence; it is still named.
        for member in (ann, cid):
            await member.told(notice(room, "left", bob), within=GONE_BOUND + MARGIN)
        await everywhere(
            others, "cluster_members", {"room": room}, listing([ann, cid], missing=not_answering)
        )
    finally:
        paused.signal(signal.SIGCONT)

    # Answering again, and its members are back: in every answer, and told to the others' members.
    await agree(d, room, everyone)
    for member in (ann, cid):
        await member.told(notice(room, "joined", bob))
    await everywhere(d.admins, "cluster_sockets_of", {"user": "bob"}, listing([bob]))
    # The paused one's own member ends told that no one left: it may have found the others gone when
    # it woke (unheard for longer than the bound), then heard them again.
    await eventually(
        lambda: last_told(bob, room) <= {(cid.id, "joined"), (ann.id, "joined"), (bob.id, "joined")}
    )
    assert (cid.id, "joined") in last_told(bob, room)


def last_told(member: Agent, room: str) -> set[tuple[str, str]]:
    """The last change ``member`` was told of each socket in ``room``."""
    last = {socket_id: change for seen_room, change, socket_id, _ in member.notices if seen_room == room}
    return set(last.items())


async def test_a_stopped_instance_is_gone_at_once_and_never_missing(deployment: Deployment) -> None:
    d = deployment
    room = "chat:stopped"
    ann = await d.agent(0, "ann")
    bob = await d.agent(1, "bob")
    cid = await d.agent(2, "cid")
    everyone = [ann, bob, cid]
    await join_one_by_one(room, everyone)

    await d.nodes[2].stop()  # SIGTERM: its sockets are closed, and it says goodbye
    await asyncio.wait_for(cid.closed.wait(), SETTLE)
    for member in (ann, bob):
        await member.told(notice(room, "left", cid))
    survivors = d.admins[:2]
    await agree(d, room, [ann, bob], asking=survivors)  # every instance answering: none missing
    for admin in survivors:
        state = (await admin.call("cluster_whoami"))["cluster"]
        assert (len(state["peers"]), state["suspect"], state["peers_lost"]) == (1, [], 0), state


async def test_presence_per_identity_across_instances(kind: str, tmp_path: Path) -> None:
    async with deploy(kind, tmp_path, TYPED_SS_TEST_PER_IDENTITY="1") as d:
        room = "chat:identities"
        bob = await d.agent(1, "bob")
        ann = await d.agent(0, "ann")
        ann_too = await d.agent(2, "ann")  # ann's second tab, on another instance
        ann_three = await d.agent(2, "ann")  # and a third, beside it
        await bob.join(room)
        await bob.told(notice(room, "joined", bob))
        await ann.join(room)
        for member in (bob, ann):
            await member.told(notice(room, "joined", ann))
        # Her other tabs, on other instances, are the same member: nobody is told of them.
        await ann_too.join(room)
        await ann_three.join(room)
        await agree(d, room, [bob, ann, ann_too, ann_three])
        await ann_three.leave(room)
        await ann.client.ws.close()
        await agree(d, room, [bob, ann_too])
        # The instance of her last tab dies: she leaves, told by the last socket to leave.
        killed = d.nodes[2]
        assert killed.process is not None
        killed.signal(signal.SIGKILL)
        await killed.process.wait()
        await bob.told(notice(room, "left", ann_too), within=GONE_BOUND + MARGIN)
        assert bob.notices == [
            notice(room, "joined", bob),
            notice(room, "joined", ann),
            notice(room, "left", ann_too),
        ]
        assert ann_too.notices == ann_three.notices == []  # joined when ann was present already


@pytest.mark.parametrize("kind", sorted(URL_VARIABLES))
async def test_an_instance_cut_off_from_the_backend_is_missing_and_comes_back(
    kind: str, tmp_path: Path
) -> None:
    async with deploy(kind, tmp_path, proxied=1) as d:
        assert d.proxy is not None
        room = "chat:cut"
        ann = await d.agent(0, "ann")
        bob = await d.agent(1, "bob")
        cid = await d.agent(2, "cid")
        everyone = [ann, bob, cid]
        await join_one_by_one(room, everyone)
        await agree(d, room, everyone)

        cut_off = d.instances[1]
        others = [d.admins[0], d.admins[2]]
        d.proxy.refuse()
        d.proxy.cut()  # node2 and its clients go on, without the broker
        try:
            # The others: it does not answer; past the bound its members leave their presence.
            for admin in others:
                answer = await admin.ask("cluster_members", room=room, timeout=0.5)
                assert answer == listing([ann, cid], missing=[cut_off])
            for member in (ann, cid):
                await member.told(notice(room, "left", bob), within=GONE_BOUND + MARGIN)
            # It: the others do not answer, and past the bound their members leave its presence.
            answer = await d.admins[1].ask("cluster_members", room=room, timeout=0.5)
            assert answer == listing([bob], missing=[d.instances[0], d.instances[2]])
            await bob.told(notice(room, "left", ann), notice(room, "left", cid), within=GONE_BOUND + MARGIN)
        finally:
            d.proxy.admit()

        # Linked again: every instance answers, and every member is told of the others again.
        await agree(d, room, everyone)
        for member in (ann, cid):
            await member.told(notice(room, "joined", bob))
        await bob.told(notice(room, "joined", ann), notice(room, "joined", cid))
