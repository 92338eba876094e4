"""Connection state recovery with the history and the sessions in the backend, shared by every
instance: Redis (a real redis-server: streams and keys) and MongoDB (the stand-in: the capped
collection and a sessions collection). A client recovers on another instance than the one it left,
even one that was killed; what the backend no longer has is a fresh start, never a partial replay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from tests.apps import echo_server, make_app
from tests.backends.cluster import Node, cast, serving
from tests.backends.fault_proxy import FaultProxy
from tests.backends.redis_server import RedisServer
from tests.mongo_standin import MongoStandIn
from tests.support import Client, ServerFrame, connect_client, eventually, running
from tests.test_recovery import offsets_of
from tests.test_recovery import recovery_path as path_with_offsets
from typed_ss import Recovery, Server, Socket
from typed_ss.backends import Backend
from typed_ss.backends._sessions import Change, SessionWriter
from typed_ss.backends._sessions import _merge as merge
from typed_ss.backends._support import Inbox
from typed_ss.backends.base import HistoryBackend, SessionRecord, SessionStore
from typed_ss.backends.mongo import MongoBackend
from typed_ss.backends.redis import RedisBackend
from typed_ss.client import Client as TypedClient
from typed_ss.client import Reconnected, ReconnectPolicy, connect
from typed_ss.logs import ClientLog
from typed_ss.multihome import Envelope, Multihome, room_topic
from typed_ss.protocol import stream_tag
from typed_ss.recovery.recoverer import Claim, Recoverer
from typed_ss.recovery.sessions import Session

FAST = ReconnectPolicy(base=0.01, cap=0.05)
GROUP = "recovery"


class Store(Protocol):
    """A backend that keeps the history, under test."""

    env: dict[str, str]
    """The environment of a server process on it (``tests.backends.cluster_app``)."""

    def backend(self) -> Backend: ...

    async def kept(self, room: str) -> list[bytes]:
        """The envelopes the backend keeps of ``room``, in its order."""
        ...

    async def trim(self) -> None:
        """Make the backend drop what it keeps (as sending far more than it keeps would)."""
        ...


class RedisStore:
    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.env = {"TYPED_SS_TEST_BACKEND": "redis", "TYPED_SS_TEST_REDIS_URL": redis.url}

    def backend(self) -> Backend:
        return RedisBackend(self.redis.url, group=GROUP)

    async def kept(self, room: str) -> list[bytes]:
        admin = self.redis.client()
        try:
            entries: Any = await admin.xrange(f"{GROUP}:history:{room_topic(room)}")
        finally:
            await admin.aclose()
        return [fields[b"d"] for _, fields in entries]

    async def trim(self) -> None:
        # As the backend's own trimming does it: the entries go, and the newest one gone is noted.
        admin = self.redis.client()
        try:
            for key in await admin.keys(f"{GROUP}:history:*"):
                newest: Any = await admin.xrevrange(key, count=1)
                await admin.xtrim(key, maxlen=0)
                meta = key.replace(b":history:", b":history-meta:") if isinstance(key, bytes) else key
                await admin.hset(meta, "trimmed", newest[0][0])
        finally:
            await admin.aclose()


class MongoStore:
    def __init__(self, standin: MongoStandIn) -> None:
        self.standin = standin
        self.env = {"TYPED_SS_TEST_BACKEND": "mongo", "TYPED_SS_TEST_MONGO_URL": standin.url}

    def backend(self) -> Backend:
        return MongoBackend(self.standin.url)

    async def kept(self, room: str) -> list[bytes]:
        documents = self.standin.documents("typed_ss", "multihome")
        return [document["data"] for document in documents if document.get("topic") == room_topic(room)]

    async def trim(self) -> None:
        self.standin.wrap("typed_ss", "multihome")


@pytest.fixture(params=["redis", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "mongo":
        async with MongoStandIn() as standin:
            yield MongoStore(standin)
        return
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        yield RedisStore(redis)
    finally:
        await redis.kill()


@asynccontextmanager
async def instances(store: Store, count: int, **recovery: Any) -> AsyncIterator[list[tuple[Server, str]]]:
    """``count`` servers in this process on one backend, recovery on; each with its URL."""
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            ss = echo_server(backend=store.backend(), recovery=Recovery(**recovery))
            started.append((ss, await stack.enter_async_context(running(make_app(ss), ss))))
        yield started


@asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[FaultProxy]:
    """A proxy to ``url`` that can cut its connections, and be pointed at another server."""
    host, port = url.removeprefix("ws://").split(":")
    proxy = FaultProxy(host, int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def point(proxy: FaultProxy, url: str) -> None:
    """New connections through ``proxy`` go to ``url`` from now on."""
    host, port = url.removeprefix("ws://").split(":")
    proxy.target = (host, int(port))


def numbered(client: TypedClient) -> list[int]:
    received: list[int] = []
    client.on("n", received.append, payload_type=int)
    return received


async def stream_order(store: Store, room: str) -> list[int]:
    """The numbers the backend keeps in ``room``'s history, in its order."""
    envelopes = [msgspec.msgpack.decode(data, type=Envelope) for data in await store.kept(room)]
    return [msgspec.json.decode(envelope.payload, type=int) for envelope in envelopes]


async def test_a_client_cut_mid_stream_recovers_on_another_instance_missing_nothing(store: Store) -> None:
    async with instances(store, 2) as [(a, a_url), (b, b_url)], proxy_to(a_url) as proxy:
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=FAST)
        received = numbered(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client:
            await client.join("r")
            socket_id = client.id
            assert socket_id is not None

            async def send(i: int) -> None:
                # The room's stream from both instances (Redis orders them), the broadcasts from
                # one, the socket's own stream from the other.
                if i % 3 == 0:
                    await (a if i % 2 else b).roomcast("r", "n", i)
                elif i % 3 == 1:
                    await a.broadcast("n", i)
                else:
                    await b.socketcast(socket_id, "n", i)

            for i in range(300):
                await send(i)
            await eventually(lambda: len(received) == 300)
            for i in range(300, 400):
                await send(i)
            point(proxy, b_url)  # the client comes back through another instance
            assert proxy.cut() == 1
            for i in range(400, 1000):
                await send(i)
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
            await eventually(lambda: len(received) >= 1000, within=30)
            await asyncio.sleep(0.2)  # anything duplicated would arrive now
            assert sorted(received) == list(range(1000))  # none lost, none twice
            assert reconnects == [Reconnected(True, ("r",))]
            assert client.id == socket_id
            assert socket_id in b.sockets
            assert socket_id not in a.sockets
            # Each stream in one order on every instance: the room's, from two publishers, is the
            # order Redis kept it in; the others are their publisher's.
            in_room = [n for n in received if n % 3 == 0]
            assert in_room == await stream_order(store, "r")
            assert [n for n in received if n % 3 == 1] == list(range(1, 1000, 3))
            assert [n for n in received if n % 3 == 2] == list(range(2, 1000, 3))


async def test_a_client_of_a_killed_instance_recovers_on_another(store: Store) -> None:
    env = {**store.env, "TYPED_SS_TEST_RECOVERY": "1"}
    nodes = [Node("one", dict(env)), Node("two", dict(env))]
    async with serving(nodes) as (one, two), proxy_to(one.url) as proxy:
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=FAST)
        received = numbered_casts(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client, connect_client(two.url) as sender:
            await client.join("r")
            socket_id = client.id

            for i in range(50):
                await cast(sender, "roomcast", "r", "S", str(i))
            await eventually(lambda: len(received) == 50)
            point(proxy, two.url)
            one.signal(signal.SIGKILL)  # its sessions were written to the backend as they changed
            for i in range(50, 100):
                await cast(sender, "roomcast", "r", "S", str(i))
            await eventually(lambda: len(received) >= 100, within=30)
            await asyncio.sleep(0.2)
            assert received == [str(i) for i in range(100)]
            assert reconnects == [Reconnected(True, ("r",))]
            assert client.id == socket_id


def rooms_of(ss: Server, socket_id: str | None) -> frozenset[str]:
    sock = ss.sockets.get(socket_id or "")
    return frozenset() if sock is None else sock.rooms


def outbox_of(ss: Server) -> int:
    multihome = ss.health().multihome
    assert multihome is not None
    return multihome.outbox


def backend_state(ss: Server) -> str | None:
    multihome = ss.health().multihome
    return None if multihome is None else multihome.backend.state


def numbered_casts(client: TypedClient) -> list[str]:
    received: list[str] = []
    client.on("cast", received.append, payload_type=str)
    return received


async def test_after_a_redis_restart_a_returning_client_starts_afresh_and_works(
    redis_server: RedisServer,
) -> None:
    async with instances(RedisStore(redis_server), 2) as [(a, a_url), (b, b_url)], proxy_to(a_url) as proxy:
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=ReconnectPolicy(base=0.05, cap=0.2))
        received = numbered(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client:
            await client.join("r")
            first_id = client.id
            await b.roomcast("r", "n", 1)
            await eventually(lambda: received == [1])
            point(proxy, b_url)
            await redis_server.kill()  # Redis is down while the client is away, and loses what it held
            proxy.cut()
            await asyncio.sleep(0.3)  # the client retries against an instance whose Redis is down
            await redis_server.start()
            await eventually(lambda: len(reconnects) >= 1, within=30)
            # Fresh: a new socket, nothing replayed (the client joins the rooms it remembers again).
            assert reconnects[-1] == Reconnected(False, ("r",))
            assert client.id != first_id
            await eventually(lambda: backend_state(a) == backend_state(b) == "connected", within=30)
            await eventually(lambda: rooms_of(b, client.id) == {"r"})
            await a.roomcast("r", "n", 2)
            await eventually(lambda: received == [1, 2], within=10)


async def test_past_the_history_redis_keeps_a_client_starts_afresh(redis_server: RedisServer) -> None:
    async with (
        instances(RedisStore(redis_server), 2, history=5) as [(_, a_url), (b, b_url)],
        proxy_to(a_url) as proxy,
    ):
        client = connect(f"ws://127.0.0.1:{proxy.port}/socket", reconnect=ReconnectPolicy(base=0.5, cap=0.5))
        received = numbered(client)
        reconnects: list[Reconnected] = []
        client.on_reconnected(reconnects.append)
        async with client:
            await client.join("r")
            point(proxy, "ws://127.0.0.1:1")  # nothing listens there: the client retries meanwhile
            proxy.cut()
            for i in range(200):  # far past the 5 kept (Redis trims in steps of 100)
                await b.roomcast("r", "n", i)
            await eventually(lambda: outbox_of(b) == 0)  # all in Redis, trimmed to the last 5
            point(proxy, b_url)
            await eventually(lambda: len(reconnects) == 1, within=30)
            assert reconnects == [Reconnected(False, ("r",))]
            assert received == []


async def test_what_the_backend_no_longer_keeps_is_a_fresh_start(store: Store) -> None:
    async with instances(store, 2) as [(a, a_url), (b, b_url)]:
        async with connect_client(a_url) as first:
            await first.send("join", "r")
            joined = await first.expect("joined")
            first.ws.transport.abort()
        await eventually(lambda: first.id not in a.sockets)
        for i in range(20):
            await b.roomcast("r", "n", i)

        async def all_kept() -> bool:
            return len(await store.kept("r")) == 20

        await eventually(all_kept)
        await store.trim()
        tag, _, offset = joined.letter[2:].partition(".")
        path = f"/socket?ss_session={first.hello['session']}&ss_offsets={tag}.{offset}"
        async with connect_client(b_url, path) as again:
            assert again.hello["recovered"] is False
            assert again.id != first.id
            await again.nothing_within(0.2)  # no partial replay


async def test_a_session_taken_up_on_one_instance_cannot_be_taken_again_with_its_old_token(
    store: Store,
) -> None:
    async with instances(store, 2) as [(a, a_url), (_, b_url)]:
        async with connect_client(a_url) as first:
            await first.send("join", "r")
            await first.expect("joined")
            first.ws.transport.abort()
        await eventually(lambda: first.id not in a.sockets)
        path = f"/socket?ss_session={first.hello['session']}"
        async with connect_client(b_url, path) as again:
            assert again.hello["recovered"] is True
            assert again.id == first.id
            async with connect_client(a_url, path) as stale:  # the old token is dead everywhere
                assert stale.hello["recovered"] is False
                assert stale.id != first.id


# --- what a second pair of eyes found: each a test ----------------------------------------------------


async def test_a_close_after_an_emit_goes_after_it(store: Store) -> None:
    # The emit travels through the backend and back; the close waits for it.
    ss = echo_server(backend=store.backend(), recovery=Recovery())

    @ss.on("bye")
    async def bye(sock: Socket, text: str) -> None:
        await sock.emit("bye", "see you")
        await sock.close(4000, "done")

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("bye", "now")
        assert (await client.expect("bye")).payload == "see you"
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 4000


async def test_two_reconnects_with_one_token_on_an_instance_that_does_not_know_it(store: Store) -> None:
    async with instances(store, 2) as [(a, a_url), (_, b_url)]:
        first, _ = await away_from(a, a_url)
        path = f"/socket?ss_session={first.hello['session']}"
        hellos: list[dict[str, Any]] = []

        async def reconnect() -> None:
            try:
                async with connect_client(b_url, path) as client:
                    hellos.append(client.hello)
                    await client.expect("never", within=1.0)
            except Exception:
                pass  # taken over by the other one, or it took over this one: either way it ends

        await asyncio.gather(reconnect(), reconnect())
        recovered = [hello for hello in hellos if hello["recovered"]]
        assert recovered, hellos
        # Whichever holds the session now holds it under a new token, which works once more.
        latest = recovered[-1]["session"]
        assert latest != first.hello["session"]
        async with connect_client(a_url, f"/socket?ss_session={latest}") as again:
            assert again.hello["recovered"] is True
            assert again.id == first.id


async def away_from(ss: Server, url: str) -> tuple[Client, ServerFrame]:
    """A client joins room ``r`` on ``ss``, then its network fails; returns once ``ss`` let it go."""
    async with connect_client(url) as client:
        await client.send("join", "r")
        joined = await client.expect("joined")
        client.ws.transport.abort()
    await eventually(lambda: client.id not in ss.sockets)
    return client, joined


async def test_a_publish_retried_after_it_worked_is_kept_once(store: Store) -> None:
    async with keeping_history(store) as (backend, _):
        await backend.subscribe("r:once")
        for _ in range(2):  # the first answer was lost: the bridge sends it again
            await backend.append("r:once", b"payload", "origin:1:1", 1)
        await backend.append("r:once", b"next", "origin:1:1", 2)
        found = await backend.since({"r:once": 0})
        assert found is not None
        assert [data for _, _, data in found] == [b"payload", b"next"]


def recovery_path(hello: dict[str, Any], frames: list[ServerFrame]) -> str:
    """Where a client that received ``frames`` reconnects: its token, and its last offset of each
    stream."""
    return path_with_offsets(hello, offsets_of(frames))


def cast_history(backend: Backend) -> HistoryBackend:
    assert isinstance(backend, HistoryBackend)
    return backend


@asynccontextmanager
async def keeping_history(store: Store) -> AsyncIterator[tuple[HistoryBackend, SessionStore]]:
    """A started backend of ``store`` that keeps the history, and its sessions; stopped on exit."""
    backend = cast_history(store.backend())
    sessions = backend.keep_history(max_entries=100, max_age=60.0, session_ttl=60.0)
    await backend.start()
    try:
        yield backend, sessions
    finally:
        await backend.stop()


async def test_a_write_on_its_way_cannot_bring_a_taken_up_session_back(store: Store) -> None:
    async with keeping_history(store) as (_, sessions):
        record = SessionRecord("socket", "identity", 1, {"r": 1})
        sessions.save("old", record, new=True)
        await eventually(lambda: sessions_written(sessions))
        assert await sessions.take("old", "new") == record
        sessions.save("old", record, new=True)  # retried: its answer had been lost
        sessions.expire("old", 60.0)
        await eventually(lambda: sessions_written(sessions))
        assert await sessions.load("old") is None
        assert await sessions.load("new") == record
        assert await sessions.take("old", "other") is None


def sessions_written(sessions: SessionStore) -> bool:
    return len(sessions) == 0


async def test_a_session_ended_before_it_was_written_is_written_with_its_state(store: Store) -> None:
    async with keeping_history(store) as (_, sessions):
        record = SessionRecord("socket", "identity", 1, {"r": 1})
        sessions.save("token", record, new=True)
        sessions.expire("token", 30.0)  # the connection ended before the writer ran
        await eventually(lambda: sessions_written(sessions))
        assert await sessions.load("token") == record


def test_changes_not_written_yet_merge_into_one_with_the_same_effect() -> None:
    record = SessionRecord("socket", "identity", 1, {})
    create, update = Change("create", record, 60.0), Change("update", record, 60.0)
    expire, delete = Change("expire", None, 5.0), Change("delete", None, 0.0)
    assert merge(create, expire) == Change("create", record, 5.0)
    assert merge(update, expire) == Change("update", record, 5.0)
    assert merge(create, update) == Change("create", record, 60.0)
    assert merge(create, delete) == delete
    assert merge(delete, expire) == delete
    assert merge(expire, update) == update


async def test_a_cast_made_while_redis_is_down_reaches_the_local_members(redis_server: RedisServer) -> None:
    async with instances(RedisStore(redis_server), 1) as [(a, a_url)], connect_client(a_url) as client:
        await client.send("join", "r")
        await client.expect("joined")
        await redis_server.kill()
        await eventually(lambda: backend_state(a) != "connected")
        for i in range(3):
            await a.roomcast("r", "n", i)  # kept in the outbox until Redis is back
        await redis_server.start()
        assert [(await client.expect("n")).payload for _ in range(3)] == ["0", "1", "2"]


async def test_what_the_subscriber_lost_is_read_back_from_the_history(redis_server: RedisServer) -> None:
    async with (
        instances(RedisStore(redis_server), 2) as [(a, a_url), (b, _)],
        connect_client(a_url) as client,
    ):
        await client.send("join", "r")
        await client.expect("joined")
        for i in range(20):
            await b.roomcast("r", "n", i)
        assert [(await client.expect("n")).payload for _ in range(20)] == [str(i) for i in range(20)]
        admin = redis_server.client()
        try:
            await admin.client_kill_filter(_type="pubsub")  # every subscriber loses its connection
        finally:
            await admin.aclose()
        for i in range(20, 200):
            await b.roomcast("r", "n", i)
            if i % 20 == 0:
                await asyncio.sleep(0.01)
        # Whatever the subscriber missed shows as a gap when the next message arrives, and is read
        # back then: one more once it is surely back.
        await eventually(lambda: backend_state(a) == "connected")
        await b.roomcast("r", "n", 200)
        got = [(await client.expect("n", within=10)).payload for _ in range(20, 201)]
        assert got == [str(i) for i in range(20, 201)]  # none lost, none twice, in order
        await client.nothing_within(0.2)


async def test_more_than_history_missed_but_still_in_redis_is_replayed_whole(
    redis_server: RedisServer,
) -> None:
    async with instances(RedisStore(redis_server), 2, history=10) as [(a, a_url), (b, b_url)]:
        first, joined = await away_from(a, a_url)
        for i in range(50):  # past `history`, but Redis trims in steps of 100: all still kept
            await b.roomcast("r", "n", i)
        tag, _, offset = joined.letter[2:].partition(".")
        path = f"/socket?ss_session={first.hello['session']}&ss_offsets={tag}.{offset}"
        async with connect_client(b_url, path) as again:
            assert again.hello["recovered"] is True
            assert [(await again.expect("n")).payload for _ in range(50)] == [str(i) for i in range(50)]


async def test_a_quiet_room_trimmed_by_age_still_recovers_what_the_client_missed(
    redis_server: RedisServer,
) -> None:
    async with (
        instances(RedisStore(redis_server), 1, window=1.0) as [(a, a_url)],
        connect_client(a_url) as client,
    ):
        await client.send("join", "r")
        frames = [await client.expect("joined")]
        for i in range(3):
            await a.roomcast("r", "n", i)
        frames += [await client.expect("n") for _ in range(3)]
        await asyncio.sleep(1.2)  # the room stays quiet for longer than the window: all of it ages out
        client.ws.transport.abort()
        await eventually(lambda: client.id not in a.sockets)
        await a.roomcast("r", "n", "new")  # trims the old entries, which the client had
        path = recovery_path(client.hello, frames)
        async with connect_client(a_url, path) as again:
            assert again.hello["recovered"] is True
            assert (await again.expect("n")).payload == "new"


async def test_while_redis_does_not_answer_nothing_waits_for_it(redis_server: RedisServer) -> None:
    async with instances(RedisStore(redis_server), 1) as [(a, a_url)], connect_client(a_url) as client:
        await redis_server.kill()
        await eventually(lambda: backend_state(a) in ("reconnecting", "unresponsive"))
        recovery = a.recovery
        assert recovery is not None
        # The position of a room a socket joins is not waited for: the coroutine ends at its first step.
        step = recovery._position("r")
        with pytest.raises(StopIteration) as done:
            step.send(None)
        assert done.value.value is None
        await client.send("join", "r")  # its answer waits for Redis: it is a kept frame
        await eventually(lambda: a.sockets[client.id].rooms == {"r"})
        assert a.sockets[client.id].session is None  # its session ended: it cannot say where r began


def test_a_replay_counts_what_the_client_had_as_replayed() -> None:
    recovery = Recoverer(
        Recovery(), ClientLog(logging.getLogger("test")), 1 << 20, released=lambda room: None
    )
    for _ in range(7):
        recovery.record("elsewhere", "n\x01S\x02x")  # the history has given offsets 1 to 7
    session = Session("token", "socket", None, None, 0, {"r": 0})
    claim = Claim(session, True, {stream_tag("r"): 7})
    step = recovery.replay(claim)
    with pytest.raises(StopIteration) as done:
        step.send(None)
    replay = done.value.value
    assert replay is not None
    # A cast of r at or before offset 7 that reaches this instance late is not sent again.
    assert replay.upto[stream_tag("r")] == 7


async def test_a_close_after_a_roomcast_goes_after_it(store: Store) -> None:
    ss = echo_server(backend=store.backend(), recovery=Recovery())

    @ss.on("bye")
    async def bye(sock: Socket, text: str) -> None:
        await ss.roomcast("r", "news", "last words")
        await sock.close(4000, "done")

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("join", "r")
        await client.expect("joined")
        await client.send("bye", "now")
        assert (await client.expect("news")).payload == "last words"
        with pytest.raises(ConnectionClosed):
            await client.recv()


async def test_a_loss_that_cannot_be_read_back_in_order_is_told_as_a_gap(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # C's second cast is lost on its way to A; B's cast is delivered meanwhile, so C's lost one can no
    # longer be delivered in order (it would move the client's offset backwards): it is a gap.
    async with instances(store, 3) as [(a, a_url), (b, _), (c, _)], connect_client(a_url) as client:
        await client.send("join", "r")
        await client.expect("joined")
        bridge = a._multihome
        assert bridge is not None
        lose_on_a = bridge.backend._kept  # type: ignore[attr-defined]  # what a's backend hands the bridge
        assert c._multihome is not None
        from_c = c._multihome.instance_id
        deliver = Inbox.put
        lost: list[int] = []

        def put(inbox: Inbox[Any], message: Any) -> None:
            if inbox is lose_on_a:
                topic, data, offset = message
                envelope = msgspec.msgpack.decode(data, type=Envelope)
                if envelope.origin == from_c and envelope.seq == 2 and topic == room_topic("r"):
                    lost.append(offset)
                    return
            deliver(inbox, message)

        monkeypatch.setattr(Inbox, "put", put)
        await c.roomcast("r", "n", 1)
        assert (await client.expect("n")).payload == "1"
        await c.roomcast("r", "n", 2)
        await eventually(lambda: lost)
        await b.roomcast("r", "n", 3)
        assert (await client.expect("n")).payload == "3"
        await c.roomcast("r", "n", 4)
        assert (await client.expect("__gap")).json() == {"room": "r", "lost": 1}
        assert (await client.expect("n")).payload == "4"
        assert bridge.counters["lost"] == 1


async def test_a_session_of_another_epoch_of_the_history_is_not_recovered(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with instances(store, 2) as [(a, a_url), (b, b_url)]:
        first, _ = await away_from(a, a_url)
        bridge = b._multihome
        assert bridge is not None

        async def failed_over() -> str:
            return "another primary"  # MongoDB numbers records per node: offsets mean nothing now

        monkeypatch.setattr(bridge.backend, "epoch", failed_over)
        async with connect_client(b_url, f"/socket?ss_session={first.hello['session']}") as again:
            assert again.hello["recovered"] is False
            assert again.id != first.id


async def test_on_mongodb_a_quiet_stream_recovers_after_other_rooms_wrapped_the_collection() -> None:
    # MongoDB says only which document is now the oldest: where the history stood when the client
    # left tells that what it missed came after, and is all still there.
    async with MongoStandIn() as standin:
        ss = echo_server(backend=MongoBackend(standin.url, size_bytes=64 * 1024), recovery=Recovery())
        async with running(make_app(ss), ss) as url:
            async with connect_client(url) as client:
                await client.send("join", "r")
                frames = [await client.expect("joined")]
                await ss.roomcast("r", "n", 1)
                frames.append(await client.expect("n"))
                for _ in range(2000):  # other rooms' traffic: the collection wraps many times
                    await ss.roomcast("other", "n", "x" * 100)
                await eventually(lambda: outbox_of(ss) == 0)
                client.ws.transport.abort()
            await eventually(lambda: client.id not in ss.sockets)
            await ss.roomcast("r", "n", 2)  # missed while away
            async with connect_client(url, recovery_path(client.hello, frames)) as again:
                assert again.hello["recovered"] is True
                assert (await again.expect("n")).payload == "2"
                again.ws.transport.abort()
            await eventually(lambda: again.id not in ss.sockets)
            # Away while the collection wrapped past where it left: afresh, never partial.
            await ss.roomcast("r", "n", 3)
            for _ in range(2000):
                await ss.roomcast("other", "n", "x" * 100)
            await eventually(lambda: outbox_of(ss) == 0)
            async with connect_client(url, f"/socket?ss_session={again.hello['session']}") as last:
                assert last.hello["recovered"] is False


@pytest.mark.parametrize("alone", [True, False])
async def test_on_mongodb_a_frame_lost_in_flight_before_the_collection_wrapped_is_no_hole(
    alone: bool,
) -> None:
    # The client had r1; r2 reached its socket but was lost with the connection; other rooms then
    # wrapped the collection before the connection ended. Whether or not the socket was alone in r on
    # its instance, r2 is gone: a fresh start, never a replay without it.
    async with MongoStandIn() as standin:
        ss = echo_server(backend=MongoBackend(standin.url, size_bytes=64 * 1024), recovery=Recovery())
        async with running(make_app(ss), ss) as url, connect_client(url) as other:
            if not alone:
                await other.send("join", "r")
                await other.expect("joined")
            async with connect_client(url) as client:
                await client.send("join", "r")
                frames = [await client.expect("joined")]
                await ss.roomcast("r", "n", 1)
                frames.append(await client.expect("n"))
                await ss.roomcast("r", "n", 2)
                assert (await client.expect("n")).payload == "2"  # arrived, but not for the application
                for _ in range(2000):
                    await ss.roomcast("other", "n", "x" * 100)
                await eventually(lambda: outbox_of(ss) == 0)
                client.ws.transport.abort()
            await eventually(lambda: client.id not in ss.sockets)
            async with connect_client(url, recovery_path(client.hello, frames)) as again:
                assert again.hello["recovered"] is False


async def test_on_mongodb_a_message_dropped_on_its_way_to_the_bridge_is_no_hole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bridge stalls once: the reader's inbox (2 messages here) drops r2. A note of where the
    # client left must not count r2 as delivered.
    stalled = asyncio.Event()
    release = asyncio.Event()
    receive = Multihome._receive_kept

    async def stall_once(bridge: Multihome, topic: str, data: bytes, offset: int) -> None:
        if topic == "b" and not stalled.is_set():
            stalled.set()
            await release.wait()
        await receive(bridge, topic, data, offset)

    monkeypatch.setattr(Multihome, "_receive_kept", stall_once)
    async with MongoStandIn() as standin:
        backend = MongoBackend(standin.url, size_bytes=64 * 1024, max_pending=2)
        ss = echo_server(backend=backend, recovery=Recovery())
        async with running(make_app(ss), ss) as url, connect_client(url) as client:
            await client.send("join", "r")
            frames = [await client.expect("joined")]
            await ss.roomcast("r", "n", 1)
            frames.append(await client.expect("n"))
            await ss.broadcast("stall", 0)
            await eventually(stalled.is_set)
            await ss.roomcast("r", "n", 2)
            for i in range(5):
                await ss.broadcast("more", i)
            await eventually(lambda: backend.health().detail["dropped"] != 0)
            release.set()
            with contextlib.suppress(TimeoutError):  # the broadcasts that got through: the client has them
                while True:
                    frames.append(await client.recv(within=0.5))
            assert [frame.payload for frame in frames if frame.event == "n"] == ["1"]  # r2 never arrived
            for _ in range(2000):
                await ss.roomcast("other", "n", "x" * 100)
            await eventually(lambda: outbox_of(ss) == 0)
            client.ws.transport.abort()
            await eventually(lambda: client.id not in ss.sockets)
            async with connect_client(url, recovery_path(client.hello, frames)) as again:
                if again.hello["recovered"]:
                    replayed = []
                    with contextlib.suppress(TimeoutError):
                        while True:
                            frame = await again.recv(within=0.5)
                            replayed.append((frame.event, frame.payload))
                    assert ("n", "2") in replayed


async def test_changes_made_while_a_write_is_on_its_way_are_written_at_close() -> None:
    class Slow(SessionWriter):
        def __init__(self) -> None:
            super().__init__("a slow store", held_ttl=10.0, max_backoff=0.1, log=logging.getLogger("test"))
            self.written: dict[str, Change] = {}
            self.cancelled = 0

        async def _write(self, batch: dict[str, Change]) -> None:
            try:
                await asyncio.sleep(0.05)  # one round trip
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            self.written.update(batch)

        async def load(self, token: str) -> SessionRecord | None:
            return None

        async def _take(self, token: str, new_token: str) -> SessionRecord | None:
            return None

    store = Slow()
    store.writer.start()
    store.save("a", SessionRecord("socket", "identity", 0, {}), new=True)
    await eventually(lambda: not store._idle.is_set())  # "a" is on its way
    store.save("b", SessionRecord("socket", "identity", 0, {}), new=True)  # a connection ends meanwhile
    await store.close()
    assert (store.cancelled, sorted(store.written)) == (0, ["a", "b"])
