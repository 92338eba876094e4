"""The MongoDB stand-in, driven by pymongo's asyncio client over TCP: each behaviour the backend
relies on, as MongoDB documents it, and a refusal for everything it does not implement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import Int64, ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect, OperationFailure, WriteError

from tests.mongo_standin import MongoStandIn
from tests.support import eventually

pytestmark = pytest.mark.timeout(30)

Doc = dict[str, Any]


@pytest.fixture
async def standin() -> AsyncIterator[MongoStandIn]:
    async with MongoStandIn() as server:
        yield server


@pytest.fixture
async def client(standin: MongoStandIn) -> AsyncIterator[AsyncMongoClient[Doc]]:
    mongo: AsyncMongoClient[Doc] = AsyncMongoClient(standin.url, serverSelectionTimeoutMS=2000)
    try:
        yield mongo
    finally:
        await mongo.close()


@pytest.fixture
def db(client: AsyncMongoClient[Doc]) -> AsyncDatabase[Doc]:
    return client["test"]


async def failure(operation: Any) -> OperationFailure:
    with pytest.raises(OperationFailure) as caught:
        await operation
    return caught.value


async def test_pymongo_connects_and_sees_a_standalone_server(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    assert await db.command("ping") == {"ok": 1.0}
    hello = await db.command("hello")
    assert hello["isWritablePrimary"] is True
    assert hello["maxWireVersion"] >= 9
    assert hello["logicalSessionTimeoutMinutes"] == 30
    assert "setName" not in hello
    assert "topologyVersion" not in hello
    assert standin.commands["ismaster"] >= 1  # pymongo's handshake uses the legacy name, with helloOk


async def test_unknown_commands_fields_and_transactions_are_refused(db: AsyncDatabase[Doc]) -> None:
    assert (await failure(db.command("serverStatus"))).code == 59  # CommandNotFound
    assert (await failure(db.command("ping", 1, foo=1))).code == 40415  # unknown field
    assert (await failure(db.command("create", "c", validator={}))).code == 40415
    error = await failure(db.command("insert", "c", documents=[{}], txnNumber=Int64(1)))
    assert error.code == 20  # a standalone has no transactions


async def test_create_capped_rounds_the_size_and_is_idempotent(
    db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("create", "small", capped=True, size=100)
    assert standin.collection_options("test", "small") == {"capped": True, "size": 4096}
    await db.command("create", "big", capped=True, size=5000)
    assert standin.collection_options("test", "big") == {"capped": True, "size": 5120}
    await db.command("create", "big", capped=True, size=5000)  # same options: fine (SERVER-60064)
    assert (await failure(db.command("create", "big", capped=True, size=9000))).code == 48
    assert (await failure(db.command("create", "nosize", capped=True))).code == 72


async def test_a_capped_collection_drops_its_oldest_documents(
    db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("create", "bytes", capped=True, size=4096)
    for i in range(40):
        await db.bytes.insert_one({"i": i, "pad": b"x" * 200})
    kept = [doc["i"] for doc in standin.documents("test", "bytes")]
    assert kept == list(range(40 - len(kept), 40))
    assert 10 < len(kept) < 40
    await db.command("create", "count", capped=True, size=100_000, max=3)
    await db.count.insert_many([{"i": i} for i in range(5)])
    assert [doc["i"] async for doc in db.count.find()] == [2, 3, 4]
    with pytest.raises(WriteError, match="exceeds cappedMaxSize"):
        await db.bytes.insert_one({"pad": b"x" * 5000})


async def test_an_insert_creates_an_ordinary_collection(
    db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.plain.insert_one({"a": 1})
    assert standin.collection_options("test", "plain") == {}
    error = await failure(db.command("find", "plain", tailable=True))
    assert error.code == 2
    assert "non capped" in str(error)


async def test_find_filters_projects_and_sorts_in_natural_order(db: AsyncDatabase[Doc]) -> None:
    ids = [ObjectId() for _ in range(4)]
    ids.reverse()  # inserted in the opposite order of their ObjectIds
    await db.command("create", "c", capped=True, size=100_000)
    for n, key in enumerate(ids):
        await db.c.insert_one({"_id": key, "n": n, "origin": "a" if n % 2 else "b"})
    assert [d["n"] async for d in db.c.find()] == [0, 1, 2, 3]  # insertion order, not _id order
    assert [d["n"] async for d in db.c.find({"origin": {"$ne": "a"}})] == [0, 2]
    assert [d["n"] async for d in db.c.find({"missing": {"$ne": 1}})] == [0, 1, 2, 3]
    newest = await db.c.find_one({}, {"_id": 1}, sort=[("$natural", -1)])
    assert newest == {"_id": ids[3]}
    assert await db.c.find_one({"_id": ids[1]}, {"n": 1, "_id": 0}) == {"n": 1}
    assert (await failure(db.c.find_one({"n": {"$gt": 1}}))).code == 238  # not implemented here
    assert (await failure(db.c.find_one({"n": {"$bogus": 1}}))).code == 2
    assert (await failure(db.c.find_one({}, sort=[("n", 1)]))).code == 238


async def test_many_documents_come_in_batches(db: AsyncDatabase[Doc]) -> None:
    await db.many.insert_many([{"i": i} for i in range(250)])
    assert [d["i"] async for d in db.many.find()] == list(range(250))
    first = await db.command("find", "many")
    assert len(first["cursor"]["firstBatch"]) == 101
    assert first["cursor"]["id"] != 0


async def tail(db: AsyncDatabase[Doc], session: AsyncClientSession, **options: Any) -> Doc:
    reply: Doc = await db.command(
        {"find": "capped", "tailable": True, "awaitData": True, **options}, session=session
    )
    return reply


async def get_more(
    db: AsyncDatabase[Doc], session: AsyncClientSession | None, cursor_id: int, ms: int
) -> Doc:
    reply: Doc = await db.command(
        {"getMore": Int64(cursor_id), "collection": "capped", "maxTimeMS": ms}, session=session
    )
    return reply


async def test_a_tailable_find_on_a_missing_collection_keeps_no_cursor(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with client.start_session() as session:
        reply = await tail(db, session)
        assert reply["cursor"]["firstBatch"] == []
        assert reply["cursor"]["id"] == 0


async def test_no_tailable_cursor_is_kept_on_an_empty_collection(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.command("create", "capped", capped=True, size=100_000)
    async with client.start_session() as session:
        assert (await tail(db, session))["cursor"]["id"] == 0  # SERVER-13955
        await db.capped.insert_one({"origin": "me"})
        reply = await tail(db, session, filter={"origin": {"$ne": "me"}})
        assert reply["cursor"]["firstBatch"] == []
        assert reply["cursor"]["id"] != 0


async def test_await_data_waits_for_an_insert_or_the_time_limit(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("create", "capped", capped=True, size=100_000)
    await db.capped.insert_one({"n": 0})
    async with client.start_session() as session:
        reply = await tail(db, session)
        cursor_id = reply["cursor"]["id"]
        assert [d["n"] for d in reply["cursor"]["firstBatch"]] == [0]
        # Nothing new: the time limit ends the getMore, with an empty batch, and the cursor lives on.
        reply = await get_more(db, session, cursor_id, 300)
        assert reply["cursor"]["nextBatch"] == []
        assert reply["cursor"]["id"] == cursor_id

        # A time limit far beyond the test's (30 s): the getMore waits on the server, and only the
        # insert, made once the server holds it, can end it. Had the server answered at once, the
        # batch would be empty; had it waited for the limit, the test would time out.
        waiting = asyncio.create_task(get_more(db, session, cursor_id, 600_000))
        await eventually(lambda: standin.commands["getMore"] == 2)
        await db.capped.insert_one({"n": 1})
        reply = await waiting
        assert [d["n"] for d in reply["cursor"]["nextBatch"]] == [1]
        assert reply["cursor"]["id"] == cursor_id


async def test_get_more_belongs_to_the_cursors_session(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.command("create", "capped", capped=True, size=100_000)
    await db.capped.insert_one({"n": 0})
    async with client.start_session() as session:
        cursor_id = (await tail(db, session))["cursor"]["id"]
        assert (await failure(get_more(db, None, cursor_id, 10))).code == 50738  # an implicit session
        assert (await get_more(db, session, cursor_id, 10))["cursor"]["id"] == cursor_id  # still alive


async def test_kill_cursors_command_and_fault(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("create", "capped", capped=True, size=100_000)
    await db.capped.insert_one({"n": 0})
    async with client.start_session() as session:
        first = (await tail(db, session))["cursor"]["id"]
        second = (await tail(db, session))["cursor"]["id"]
        reply = await db.command(
            "killCursors", "capped", cursors=[Int64(first), Int64(12345)], session=session
        )
        assert (reply["cursorsKilled"], reply["cursorsNotFound"]) == ([first], [12345])
        assert (await failure(get_more(db, session, first, 10))).code == 43
        assert standin.kill_cursors() == 1
        assert (await failure(get_more(db, session, second, 10))).code == 43  # CursorNotFound


async def test_wrapping_past_a_cursor_loses_its_position(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("create", "capped", capped=True, size=8192)
    await db.capped.insert_one({"n": 0})
    async with client.start_session() as session:
        cursor_id = (await tail(db, session))["cursor"]["id"]
        assert standin.wrap("test", "capped") > 0
        error = await failure(get_more(db, session, cursor_id, 10))
        assert error.code == 136
        assert "CappedPositionLost" in str(error.details)
        assert (await failure(get_more(db, session, cursor_id, 10))).code == 43  # and the cursor is gone


async def test_dropping_the_collection_kills_its_cursors(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("create", "capped", capped=True, size=100_000)
    await db.capped.insert_one({"n": 0})
    async with client.start_session() as session:
        cursor_id = (await tail(db, session))["cursor"]["id"]
        waiting = asyncio.create_task(get_more(db, session, cursor_id, 5000))
        await eventually(lambda: standin.commands["getMore"] == 1)
        standin.drop_collection("test", "capped")
        error = await failure(waiting)  # a getMore under way is interrupted too
        assert error.code == 175
        assert "collection dropped" in str(error)
    await db.capped.insert_one({"n": 1})
    assert standin.collection_options("test", "capped") == {}  # an ordinary collection now


async def test_a_burst_of_inserts_wraps_past_a_reader(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    # The real mechanism behind the fault switch: one insert command larger than the collection.
    await db.command("create", "capped", capped=True, size=8192)
    await db.capped.insert_one({"n": 0})
    async with client.start_session() as session:
        cursor_id = (await tail(db, session))["cursor"]["id"]
        await db.capped.insert_many([{"n": i, "pad": b"x" * 500} for i in range(1, 40)])
        assert (await failure(get_more(db, session, cursor_id, 10))).code == 136


async def test_dropped_connections_fail_once_then_pymongo_reconnects(
    db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("ping")
    assert await standin.drop_connections() >= 1
    with pytest.raises(AutoReconnect):
        await db.command("ping")
    assert await db.command("ping") == {"ok": 1.0}


async def test_a_restart_keeps_the_data_and_loses_the_cursors(
    client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], standin: MongoStandIn
) -> None:
    await db.command("create", "capped", capped=True, size=100_000)
    await db.capped.insert_one({"n": 0})
    async with client.start_session() as session:
        cursor_id = (await tail(db, session))["cursor"]["id"]
        port = standin.port
        await standin.stop()
        with pytest.raises(AutoReconnect):
            await db.command("ping")
        await standin.start()
        assert standin.port == port
        for _ in range(50):  # the pool was cleared; pymongo finds the server again on its own
            try:
                await db.command("ping")
                break
            except AutoReconnect:
                await asyncio.sleep(0.1)
        assert (await failure(get_more(db, session, cursor_id, 10))).code == 43
        assert [d["n"] async for d in db.capped.find()] == [0]


async def test_closing_the_client_ends_its_sessions(
    client: AsyncMongoClient[Doc], standin: MongoStandIn
) -> None:
    async with client.start_session() as session:
        await client.test.command("ping", session=session)
    await client.close()
    assert standin.commands["endSessions"] == 1
