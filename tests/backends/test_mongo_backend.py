"""The MongoDB backend on its own: against the stand-in (with its fault switches), and the tests that
need no fault also against a real MongoDB when ``TYPED_SS_MONGO_URL`` is set."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from tests.backends.mongo_bus import REAL_MONGO_URL, RUN_DATABASE, real_collection
from tests.mongo_standin import MongoStandIn
from tests.support import eventually, free_port
from typed_ss import ConfigurationError
from typed_ss.backends.mongo import MongoBackend
from typed_ss.errors import BackendError

pytestmark = pytest.mark.timeout(60)

Doc = dict[str, Any]


# pymongo 4.20 leaks the socket of a monitor check that client.close() cancels mid-connect
# (PYTHON-5867), which happens when a client is closed while MongoDB is down. The tests that do so
# collect that socket themselves, with its ResourceWarning ignored; everywhere else it stays an error.
PYMONGO_5867 = pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")


@dataclass
class Target:
    """Where the backends under test meet: a URL, a database and a collection."""

    url: str
    database: str
    collection: str

    def backend(self, **options: Any) -> MongoBackend:
        return MongoBackend(self.url, database=self.database, collection=self.collection, **options)

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[AsyncCollection[Doc]]:
        """The collection through a plain pymongo client (another writer, or a look inside)."""
        client: AsyncMongoClient[Doc] = AsyncMongoClient(self.url, serverSelectionTimeoutMS=5000)
        try:
            yield client[self.database][self.collection]
        finally:
            await client.close()


@pytest.fixture
async def standin() -> AsyncIterator[MongoStandIn]:
    server = MongoStandIn()
    server.port = free_port()  # the fault tests restart it on its port: one no other process takes
    async with server:
        yield server


@pytest.fixture
def on_standin(standin: MongoStandIn) -> Target:
    return Target(standin.url, "typed_ss", "multihome")


@pytest.fixture(params=["standin", *(["real"] if REAL_MONGO_URL else [])])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The stand-in, and a real MongoDB when ``TYPED_SS_MONGO_URL`` is set."""
    if request.param == "standin":
        async with MongoStandIn() as server:
            yield Target(server.url, "typed_ss", "multihome")
        return
    assert REAL_MONGO_URL is not None
    async with real_collection("backend") as collection:
        yield Target(REAL_MONGO_URL, RUN_DATABASE, collection)


@asynccontextmanager
async def started(*backends: MongoBackend, topics: tuple[str, ...] = ("t",)) -> AsyncIterator[None]:
    """Start the backends and subscribe each to ``topics`` (as the bridge does); stop them on exit."""
    try:
        for backend in backends:
            await backend.start()
            for topic in topics:
                await backend.subscribe(topic)
        yield
    finally:
        for backend in backends:
            await backend.stop()


class Inbox:
    """Collects what a backend delivers."""

    def __init__(self, backend: MongoBackend) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._task = asyncio.create_task(self._collect(backend))

    async def _collect(self, backend: MongoBackend) -> None:
        async for message in backend.messages():
            self.received.append(message)

    async def wait_for(self, count: int, within: float = 10) -> list[tuple[str, bytes]]:
        await eventually(lambda: len(self.received) >= count, within=within)
        return self.received

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def inbox(backend: MongoBackend) -> AsyncIterator[Inbox]:
    box = Inbox(backend)
    try:
        yield box
    finally:
        await box.close()


def connected(backend: MongoBackend) -> Callable[[], bool]:
    return lambda: backend.health().state == "connected"


# --- against the stand-in and a real MongoDB ---------------------------------------------------------


async def test_messages_go_to_the_other_instances_not_back_to_their_sender(target: Target) -> None:
    a, b = target.backend(), target.backend()
    async with started(a, b), inbox(a) as on_a, inbox(b) as on_b:
        await a.publish("t", b"from a")
        await b.publish("t", b"from b")
        assert await on_b.wait_for(1) == [("t", b"from a")]
        assert await on_a.wait_for(1) == [("t", b"from b")]
        await a.publish("t", b"again")
        assert await on_b.wait_for(2) == [("t", b"from a"), ("t", b"again")]
        assert on_a.received == [("t", b"from b")]  # its own never came back


async def test_it_starts_after_the_newest_document_present(target: Target) -> None:
    writer = target.backend()
    async with started(writer):
        await writer.publish("t", b"old")  # there before the reader starts
        reader = target.backend()
        async with started(reader), inbox(reader) as box:
            await writer.publish("t", b"new")
            assert await box.wait_for(1) == [("t", b"new")]
            await asyncio.sleep(0.2)
            assert box.received == [("t", b"new")]


async def test_only_subscribed_topics_are_passed_on(target: Target) -> None:
    a, b = target.backend(), target.backend()
    async with started(a, b, topics=()), inbox(b) as box:
        await b.subscribe("x")
        await a.publish("y", b"not for b")
        await a.publish("x", b"one")
        assert await box.wait_for(1) == [("x", b"one")]
        await b.unsubscribe("x")
        await a.publish("x", b"after unsubscribe")
        await b.subscribe("z")  # active at once: the very next message on it arrives
        await a.publish("z", b"two")
        assert await box.wait_for(2) == [("x", b"one"), ("z", b"two")]
        assert b.subscriptions == {"z"}


async def test_many_messages_keep_their_order(target: Target) -> None:
    a, b = target.backend(), target.backend()
    async with started(a, b), inbox(b) as box:
        sent = [str(i).encode() for i in range(500)]
        for data in sent:
            await a.publish("t", data)
        assert [data for _, data in await box.wait_for(500)] == sent


async def test_health_reports_the_collection_and_counters(target: Target) -> None:
    backend = target.backend()
    assert backend.health().state == "stopped"
    async with started(backend):
        await eventually(connected(backend))
        health = backend.health()
        assert health.name == "mongo"
        assert health.detail["collection"] == f"{target.database}.{target.collection}"
        assert (health.detail["position_lost"], health.detail["rejected"], health.reconnects) == (0, 0, 0)
    assert backend.health().state == "stopped"


async def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        MongoBackend()
    client: AsyncMongoClient[Doc] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    try:
        with pytest.raises(ConfigurationError):
            MongoBackend("mongodb://127.0.0.1:1", client=client)
    finally:
        await client.close()
    with pytest.raises(ConfigurationError):
        MongoBackend("mongodb://127.0.0.1:1", size_bytes=100)
    with pytest.raises(ConfigurationError):
        MongoBackend("mongodb://127.0.0.1:1", collection="")


async def test_a_client_can_be_given(target: Target) -> None:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(target.url, serverSelectionTimeoutMS=2000)
    try:
        a = MongoBackend(client=client, database=target.database, collection=target.collection)
        b = target.backend()
        async with started(a, b), inbox(b) as box:
            await a.publish("t", b"shared client")
            assert await box.wait_for(1) == [("t", b"shared client")]
        await client.admin.command("ping")  # stopping the backend left the client open
    finally:
        await client.close()


# --- against the stand-in: what only a stand-in can show or provoke -----------------------------------


async def test_start_creates_the_capped_collection(on_standin: Target, standin: MongoStandIn) -> None:
    backend = on_standin.backend(size_bytes=1_000_000)
    async with started(backend):
        await eventually(connected(backend))
        assert standin.collection_options("typed_ss", "multihome") == {"capped": True, "size": 1_000_192}
        # MongoDB keeps no tailable cursor on an empty collection: the backend put one marker of its own.
        (marker,) = standin.documents("typed_ss", "multihome")
        assert marker["marker"] is True
        assert standin.open_cursors == 1
    assert standin.open_cursors == 0  # stop() killed its cursor
    assert standin.commands["killCursors"] == 1


async def test_a_message_larger_than_the_collection_is_dropped_and_counted(
    on_standin: Target, caplog: pytest.LogCaptureFixture
) -> None:
    # MongoDB refuses a document larger than a capped collection (a write error, jstests/server2639).
    a, b = on_standin.backend(size_bytes=8192), on_standin.backend(size_bytes=8192)
    async with started(a, b), inbox(b) as box:
        await a.publish("t", b"x" * 10_000)  # returns: retrying could never succeed
        await a.publish("t", b"small")
        assert await box.wait_for(1) == [("t", b"small")]
        assert a.health().detail["rejected"] == 1
    assert any(r.levelname == "ERROR" and "refused" in r.message for r in caplog.records)


async def test_an_existing_capped_collection_of_another_size_is_used(
    on_standin: Target, standin: MongoStandIn
) -> None:
    async with on_standin.raw() as collection:
        await collection.database.command("create", on_standin.collection, capped=True, size=50_000)
    a, b = on_standin.backend(), on_standin.backend()
    async with started(a, b), inbox(b) as box:
        await a.publish("t", b"fits")
        assert await box.wait_for(1) == [("t", b"fits")]
    assert standin.collection_options("typed_ss", "multihome") == {"capped": True, "size": 50_176}


async def test_a_collection_that_is_not_capped_is_reported(
    on_standin: Target, caplog: pytest.LogCaptureFixture
) -> None:
    async with on_standin.raw() as collection:
        await collection.insert_one({"an": "ordinary collection"})
    backend = on_standin.backend(subscribe_timeout=0.5)
    async with started(backend):
        await eventually(lambda: "non capped" in str(backend.health().detail["last_error"]))
        assert backend.health().state != "connected"
    assert any(r.levelname == "ERROR" and "non capped" in r.message for r in caplog.records)


async def test_resuming_follows_insertion_order_not_objectid_order(
    on_standin: Target, standin: MongoStandIn
) -> None:
    # Instances make their ObjectIds from their own clocks and counters, so a document inserted later
    # can carry a smaller _id. Resuming with {_id: {$gt: last}} would skip such documents for good.
    reader = on_standin.backend()
    ids = sorted((ObjectId() for _ in range(40)), reverse=True)  # every insert has a smaller _id
    async with started(reader), inbox(reader) as box, on_standin.raw() as other_instance:
        await eventually(connected(reader))
        for n in range(20):
            await other_instance.insert_one({"_id": ids[n], "origin": "x", "topic": "t", "data": b"%d" % n})
        await box.wait_for(20)
        assert standin.kill_cursors() == 1
        for n in range(20, 40):
            await other_instance.insert_one({"_id": ids[n], "origin": "x", "topic": "t", "data": b"%d" % n})
        received = [int(data) for _, data in await box.wait_for(40)]
        await asyncio.sleep(0.2)
        assert [int(data) for _, data in box.received] == received == list(range(40))  # all, once, in order
        assert reader.health().detail["cursor_restarts"] == 1


async def test_a_killed_cursor_is_replaced_without_a_loss(on_standin: Target, standin: MongoStandIn) -> None:
    a, b = on_standin.backend(), on_standin.backend()
    async with started(a, b), inbox(b) as box:
        await a.publish("t", b"1")
        await box.wait_for(1)
        standin.kill_cursors()
        for n in (b"2", b"3"):
            await a.publish("t", n)
        assert [data for _, data in await box.wait_for(3)] == [b"1", b"2", b"3"]
        assert b.health().detail["cursor_restarts"] == 1
        assert b.health().detail["position_lost"] == 0


async def test_a_wrapped_collection_is_a_reported_gap_and_reading_goes_on(
    on_standin: Target, standin: MongoStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = on_standin.backend(), on_standin.backend()
    async with started(a, b), inbox(b) as box:
        await a.publish("t", b"before")
        await box.wait_for(1)
        standin.wrap("typed_ss", "multihome")  # other writers filled the collection past b's position
        # Both readers lost their place (CappedPositionLost) and read on from the newest document.
        await eventually(
            lambda: (a.health().detail["position_lost"], b.health().detail["position_lost"]) == (1, 1)
        )
        await eventually(lambda: standin.open_cursors == 2)
        await a.publish("t", b"after")
        assert [data for _, data in await box.wait_for(2)] == [b"before", b"after"]
    loud = [r for r in caplog.records if r.levelname == "ERROR" and "wrapped past" in r.message]
    assert loud, "a gap must be logged as an error"
    assert "CappedPositionLost" in loud[0].message or "CollectionScan died" in loud[0].message


@pytest.mark.slow
async def test_a_position_lost_while_disconnected_is_a_reported_gap(
    on_standin: Target, standin: MongoStandIn
) -> None:
    a, b = on_standin.backend(), on_standin.backend()
    async with started(a, b), inbox(b) as box:
        await a.publish("t", b"before")
        await box.wait_for(1)
        await standin.stop()
        await eventually(lambda: b.health().state == "reconnecting")
        standin.wrap("typed_ss", "multihome")  # while b is away, the collection wraps past its position
        await standin.start()
        await eventually(connected(b), within=10)
        assert b.health().detail["position_lost"] == 1
        assert b.health().reconnects == 1
        await eventually(lambda: a.health().state == "connected", within=10)

        async def published() -> bool:  # a's pooled connection died with the restart: the bridge retries
            try:
                await a.publish("t", b"after")
            except BackendError:
                return False
            return True

        await eventually(published, interval=0.1)
        assert [data for _, data in await box.wait_for(2)] == [b"before", b"after"]


async def test_a_dropped_collection_is_created_again_capped(
    on_standin: Target, standin: MongoStandIn
) -> None:
    a, b = on_standin.backend(size_bytes=50_000), on_standin.backend(size_bytes=50_000)
    async with started(a, b), inbox(b) as box:
        await a.publish("t", b"before")
        await box.wait_for(1)
        standin.drop_collection("typed_ss", "multihome")
        # Both readers' cursors die (QueryPlanKilled); the first to reopen creates it, capped, again.
        # The last document b read went with the collection: a gap, and b reads on from the newest.
        await eventually(lambda: b.health().detail["position_lost"] == 1)
        assert b.health().detail["cursor_restarts"] == 1
        await eventually(lambda: standin.open_cursors == 2)  # both tail the new collection
        assert standin.collection_options("typed_ss", "multihome") == {"capped": True, "size": 50_176}
        await a.publish("t", b"after")
        assert [data for _, data in await box.wait_for(2)] == [b"before", b"after"]


async def test_a_dropped_connection_resumes_after_the_last_document_read(
    on_standin: Target, standin: MongoStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    reader = on_standin.backend()
    async with started(reader), inbox(reader) as box, on_standin.raw() as other_instance:
        await eventually(connected(reader))
        await other_instance.insert_one({"origin": "x", "topic": "t", "data": b"0"})
        await box.wait_for(1)
        await standin.drop_connections()

        async def inserted() -> bool:  # while the reader is reconnecting (a fresh pooled connection)
            try:
                await other_instance.insert_one({"origin": "x", "topic": "t", "data": b"1"})
            except Exception:
                return False
            return True

        await eventually(inserted, interval=0.05)
        await other_instance.insert_one({"origin": "x", "topic": "t", "data": b"2"})
        assert [data for _, data in await box.wait_for(3)] == [b"0", b"1", b"2"]
        await eventually(connected(reader))
        assert reader.health().reconnects == 1
        assert reader.health().detail["position_lost"] == 0
    lost = "lost the connection to MongoDB"
    assert any(r.levelname == "ERROR" and lost in r.message for r in caplog.records)
    assert any(r.levelname == "WARNING" and "reconnected to MongoDB" in r.message for r in caplog.records)


@pytest.mark.slow
async def test_an_idle_reader_does_not_spin(on_standin: Target, standin: MongoStandIn) -> None:
    # Another instance's document first, so no reader inserts the marker that would wake the others'
    # cursors: from the start, nothing is written while they idle.
    async with on_standin.raw() as collection:
        await collection.database.command("create", collection.name, capped=True, size=1 << 20)
        await collection.insert_one({"origin": "x", "topic": "t", "data": b"old"})
    # An await time far longer than the test: an idle reader sends one getMore, which the server
    # holds, and nothing else. A reader that spun would send command after command.
    readers = [on_standin.backend(await_time=600) for _ in range(3)]
    async with started(*readers):
        for reader in readers:
            await eventually(connected(reader))
        await eventually(lambda: standin.commands["getMore"] >= len(readers))
        before = reader_commands(standin)
        assert before["getMore"] == len(readers), before  # one each, all held by the server
        await asyncio.sleep(1)  # idle
        assert reader_commands(standin) == before
        assert all(reader.health().state == "connected" for reader in readers)


def reader_commands(standin: MongoStandIn) -> dict[str, int]:
    """The commands the stand-in has served, but pymongo's own server monitoring (``hello``)."""
    return {name: n for name, n in standin.commands.items() if name not in {"hello", "ismaster", "isMaster"}}


@pytest.mark.slow
@PYMONGO_5867
async def test_publish_fails_fast_while_mongo_is_down(on_standin: Target, standin: MongoStandIn) -> None:
    backend = on_standin.backend(publish_timeout=0.5)
    async with started(backend):
        await eventually(connected(backend))
        await standin.stop()
        # Deadlines only: each publish gives up by itself, with the backend's own error (the
        # deadline's would be a TimeoutError), while MongoDB is still down.
        for _ in range(3):
            with pytest.raises(BackendError, match="publishing to MongoDB failed"):
                async with asyncio.timeout(20):
                    await backend.publish("t", b"x")
        # A subscription during the outage returns without waiting for MongoDB: it never suspends.
        subscribing = backend.subscribe("during-outage")
        with pytest.raises(StopIteration):
            subscribing.send(None)
        assert "during-outage" in backend.subscriptions
        await eventually(lambda: backend.health().state == "reconnecting")
    # Stopping while MongoDB is down completes (the pytest timeout is its deadline), and closes the
    # client all the same (an unclosed client warns when it is collected, and warnings fail the tests).
    assert backend.health().state == "stopped"
    gc.collect()  # here, under PYMONGO_5867


@pytest.mark.slow
@PYMONGO_5867
async def test_an_unreachable_mongo_at_start_delays_subscribe_only_briefly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    standin = MongoStandIn()
    standin.port = free_port()  # one no other process takes meanwhile
    await standin.start()
    url = standin.url
    await standin.stop()  # nothing listens on that port now
    backend = MongoBackend(url, subscribe_timeout=0.5, command_timeout=0.5)
    async with started(backend, topics=()):
        async with asyncio.timeout(20):  # a deadline, not a bound: subscribe gives up by itself
            await backend.subscribe("t")
        # It returned while MongoDB is still unreachable: it gave up waiting (and logged it, below).
        assert backend.health().state in {"connecting", "reconnecting"}
        with pytest.raises(BackendError):
            await backend.publish("t", b"x")
    gc.collect()
    with caplog.at_level(logging.WARNING):
        assert any("not reachable yet" in r.message for r in caplog.records)
