"""A MongoDB stand-in that pymongo talks to over a real TCP socket: OP_MSG, a standalone server.

It implements what ``typed_ss.backends.mongo`` uses, the way MongoDB documents it: ``hello`` (and the
legacy ``isMaster`` pymongo opens a connection with), ``ping``, ``create`` (capped options),
``insert``, ``find`` (tailable and awaitData included, ``showRecordId``), ``getMore``,
``killCursors``, ``endSessions``, and for ordinary collections ``update``, ``delete`` and
``createIndexes`` (accepted; a TTL index is not enforced: what reads the documents checks their
expiry). Any other command gets ``CommandNotFound`` (59), an option it does not implement
gets ``NotImplemented`` (238) and an unknown field ``40415``: it never answers with a fake success.
It describes itself as a standalone MongoDB 7.0 (wire version 21) with sessions and without the
streaming ``hello`` protocol (no ``topologyVersion``), so pymongo polls it like any server that
does not stream.

Fault switches for the tests: :meth:`MongoStandIn.kill_cursors` (the next ``getMore`` on each gets
``CursorNotFound``), :meth:`MongoStandIn.wrap` (other writers fill the capped collection past every
reader: the next ``getMore`` gets ``CappedPositionLost``), :meth:`MongoStandIn.drop_collection`,
:meth:`MongoStandIn.drop_connections`,
and :meth:`MongoStandIn.stop` / :meth:`MongoStandIn.start` (a restart on the same port that keeps the
data and loses the cursors, like a mongod restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import Int64, ObjectId

from tests.mongo_standin.storage import (
    MAX_BSON_SIZE,
    Collection,
    CommandError,
    Cursor,
    compile_filter,
    compile_projection,
    not_implemented,
    round_capped_size,
    with_record_id,
)
from tests.mongo_standin.wire import (
    HEADER,
    MAX_MESSAGE_SIZE,
    MORE_TO_COME,
    OP_MSG,
    Request,
    WireError,
    encode_reply,
    parse_op_msg,
)

__all__ = ["MongoStandIn"]

logger = logging.getLogger("tests.mongo_standin")

MAX_WIRE_VERSION = 21  # MongoDB 7.0
DEFAULT_BATCH_SIZE = 101
DEFAULT_AWAIT_MS = 1000
"""How long an awaitData getMore waits for new documents when it sets no ``maxTimeMS``."""

GENERIC_FIELDS = frozenset(
    {"$db", "lsid", "$readPreference", "$clusterTime", "comment", "readConcern", "writeConcern", "maxTimeMS"}
)
"""Fields every command accepts (pymongo adds ``lsid``, ``$db`` and sometimes the others)."""
TRANSACTION_FIELDS = frozenset({"txnNumber", "autocommit", "startTransaction"})


@dataclass
class _Connection:
    id: int
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None
    dropped: bool = False


@dataclass
class _Database:
    collections: dict[str, Collection] = field(default_factory=dict)


Handler = Callable[[Request, dict[str, Any], _Connection], Any]


class MongoStandIn:
    """One stand-in server on 127.0.0.1, on a port the OS picks (kept across :meth:`stop`/:meth:`start`)."""

    def __init__(self) -> None:
        self.port = 0
        self.commands: Counter[str] = Counter()
        """How many times each command was received (faults and the idle test read it)."""
        self.errors: list[Exception] = []
        """The stand-in's own failures; ``async with`` raises them on exit, so none goes unnoticed."""
        self._server: asyncio.Server | None = None
        self._connections: dict[int, _Connection] = {}
        self._connection_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._databases: dict[str, _Database] = {}
        self._cursors: dict[int, Cursor] = {}
        self._busy: set[int] = set()
        self._inserted: dict[str, asyncio.Event] = {}  # ns -> set (then replaced) on every insert
        self._handlers: dict[str, tuple[Handler, frozenset[str]]] = {
            "hello": (self._hello, frozenset()),
            "ismaster": (self._hello, frozenset()),
            "isMaster": (self._hello, frozenset()),
            "ping": (self._ping, frozenset()),
            "create": (self._create, frozenset({"capped", "size", "max"})),
            "insert": (self._insert, frozenset({"documents", "ordered", "bypassDocumentValidation"})),
            "find": (
                self._find,
                frozenset(
                    {
                        "filter",
                        "projection",
                        "sort",
                        "limit",
                        "singleBatch",
                        "batchSize",
                        "tailable",
                        "awaitData",
                        "skip",
                        "hint",
                        "noCursorTimeout",
                        "allowDiskUse",
                        "showRecordId",
                    }
                ),
            ),
            "getMore": (self._get_more, frozenset({"collection", "batchSize"})),
            "update": (self._update, frozenset({"updates", "ordered", "bypassDocumentValidation"})),
            "delete": (self._delete, frozenset({"deletes", "ordered"})),
            "createIndexes": (self._create_indexes, frozenset({"indexes"})),
            "killCursors": (self._kill_cursors, frozenset({"cursors"})),
            "endSessions": (self._end_sessions, frozenset()),
        }

    @property
    def url(self) -> str:
        """A connection string for pymongo (a direct connection to this one server)."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (again, on the same port after :meth:`stop`)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection; the data stays, the cursors are gone."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.drop_connections()
        self._cursors.clear()

    async def __aenter__(self) -> MongoStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
        if self.errors:
            raise AssertionError(f"the MongoDB stand-in failed: {self.errors!r}") from self.errors[0]

    # --- fault switches and inspection -------------------------------------------------------------

    def kill_cursors(self) -> int:
        """Kill every open cursor, as ``killCursors`` or a killOp would: the next ``getMore`` on
        each gets ``CursorNotFound`` (43). A ``getMore`` already waiting finishes normally."""
        killed = len(self._cursors)
        self._cursors.clear()
        return killed

    def wrap(self, database: str, collection: str) -> int:
        """Other writers fill the capped collection ``database.collection`` in one go, so every
        document present now is removed, and every tailable cursor on it has lost its position:
        its next ``getMore`` gets ``CappedPositionLost`` (136). Returns the documents inserted."""
        target = self._databases[database].collections[collection]
        assert target.capped, "only a capped collection wraps"
        before = target.next_rid
        pad = b"\x00" * max(1, target.size // 8 - 100)
        inserted = 0
        while target.first_rid < before:
            target.insert(bson.encode({"_id": ObjectId(), "filler": inserted, "pad": pad}))
            inserted += 1
        self._notify(f"{database}.{collection}")
        return inserted

    def drop_collection(self, database: str, collection: str) -> None:
        """Someone dropped ``database.collection``: a ``getMore`` on a cursor over it fails with
        ``QueryPlanKilled`` (175, "collection dropped"), and the next insert creates an ordinary
        collection again."""
        del self._databases[database].collections[collection]
        ns = f"{database}.{collection}"
        for cursor in self._cursors.values():
            if cursor.ns == ns:
                cursor.killed = "collection dropped"
        self._notify(ns)

    async def drop_connections(self) -> int:
        """Close every client connection at once (a network failure, or a mongod that went away)."""
        connections = list(self._connections.values())
        for connection in connections:
            connection.dropped = True
            connection.writer.transport.abort()
            if connection.task is not None:
                connection.task.cancel()
        await asyncio.gather(*(c.task for c in connections if c.task is not None), return_exceptions=True)
        return len(connections)

    def documents(self, database: str, collection: str) -> list[dict[str, Any]]:
        """The documents of a collection, in natural order."""
        target = self._databases.get(database, _Database()).collections.get(collection)
        return [] if target is None else [record.doc for record in target.records]

    def collection_options(self, database: str, collection: str) -> dict[str, Any] | None:
        target = self._databases.get(database, _Database()).collections.get(collection)
        return None if target is None else target.options()

    @property
    def open_cursors(self) -> int:
        return len(self._cursors)

    @property
    def connections(self) -> int:
        return len(self._connections)

    # --- the connection loop -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(next(self._connection_ids), writer, asyncio.current_task())
        self._connections[connection.id] = connection
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                length, request_id, _response_to, op_code = HEADER.unpack(header)
                if not HEADER.size < length <= MAX_MESSAGE_SIZE:
                    raise WireError(f"bad message length {length}")
                payload = await reader.readexactly(length - HEADER.size)
                if op_code != OP_MSG:
                    # MongoDB 6.0+ accepts commands only as OP_MSG (and OP_COMPRESSED, not offered).
                    raise WireError(f"unsupported opCode {op_code}")
                request = parse_op_msg(request_id, payload)
                reply = await self._dispatch(request, connection)
                if not request.flags & MORE_TO_COME:
                    writer.write(encode_reply(request_id, next(self._request_ids), reply))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # drop_connections() cancelled it. Ending normally rather than cancelled: Python 3.11's
            # start_server logs a cancelled connection task as an error.
            if not connection.dropped:
                raise
        except WireError as exc:
            logger.warning("mongo stand-in: closing connection %d: %s", connection.id, exc)
        except Exception as exc:  # a bug in the stand-in: remembered, and raised when it stops
            logger.exception("mongo stand-in: internal error on connection %d", connection.id)
            self.errors.append(exc)
        finally:
            self._connections.pop(connection.id, None)
            writer.transport.abort()

    async def _dispatch(self, request: Request, connection: _Connection) -> dict[str, Any]:
        body = request.body
        name = next(iter(body), "")
        self.commands[name] = self.commands[name] + 1
        try:
            entry = self._handlers.get(name)
            if entry is None:
                raise CommandError(59, f"no such command: '{name}'")
            handler, fields = entry
            if "$db" not in body:
                raise CommandError(40571, "OP_MSG requests require a $db argument")
            if TRANSACTION_FIELDS & body.keys():
                raise CommandError(
                    20, "Transaction numbers are only allowed on a replica set member or mongos"
                )
            if name not in {"hello", "ismaster", "isMaster"}:
                for key in body:
                    if key != name and key not in fields and key not in GENERIC_FIELDS:
                        raise CommandError(40415, f"BSON field '{name}.{key}' is an unknown field.")
                for identifier in request.sequences:
                    if identifier not in fields:
                        raise CommandError(40415, f"BSON field '{name}.{identifier}' is an unknown field.")
            result: dict[str, Any] = await handler(request, body, connection)
        except CommandError as exc:
            return exc.reply()
        return {**result, "ok": 1.0}

    # --- commands ----------------------------------------------------------------------------------

    async def _hello(self, request: Request, body: dict[str, Any], connection: _Connection) -> dict[str, Any]:
        reply: dict[str, Any] = {}
        if body.get("helloOk"):
            reply["helloOk"] = True
        reply["isWritablePrimary" if next(iter(body)) == "hello" else "ismaster"] = True
        reply.update(
            maxBsonObjectSize=MAX_BSON_SIZE,
            maxMessageSizeBytes=MAX_MESSAGE_SIZE,
            maxWriteBatchSize=100_000,
            localTime=datetime.datetime.now(datetime.UTC),
            logicalSessionTimeoutMinutes=30,
            connectionId=connection.id,
            minWireVersion=0,
            maxWireVersion=MAX_WIRE_VERSION,
            readOnly=False,
        )
        return reply

    async def _ping(self, request: Request, body: dict[str, Any], connection: _Connection) -> dict[str, Any]:
        return {}

    async def _create(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        name = _collection_name(body, "create")
        database = self._databases.setdefault(body["$db"], _Database())
        capped = body.get("capped", False)
        if not isinstance(capped, bool):
            raise CommandError(14, "BSON field 'create.capped' is the wrong type, expected type 'bool'")
        wanted = Collection(f"{body['$db']}.{name}")
        if capped:
            size, most = body.get("size"), body.get("max", 0)
            if size is None:
                raise CommandError(72, "the 'size' field is required when 'capped' is true")
            if not isinstance(size, int | float) or isinstance(size, bool) or size <= 0:
                raise CommandError(72, "the 'size' field must be a positive number")
            if not isinstance(most, int | float) or isinstance(most, bool) or most < 0:
                raise CommandError(72, "the 'max' field must be a non-negative number")
            wanted = Collection(wanted.name, capped=True, size=round_capped_size(int(size)), max=int(most))
        existing = database.collections.get(name)
        if existing is not None:
            # Since SERVER-60064 a create with the same options as the existing collection succeeds.
            if existing.options() == wanted.options():
                return {}
            raise CommandError(
                48,
                f"namespace {wanted.name} already exists, but with different options: {existing.options()}",
            )
        database.collections[name] = wanted
        return {}

    async def _insert(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        name = _collection_name(body, "insert")
        if "documents" in request.sequences:
            if "documents" in body:
                raise CommandError(40413, "Duplicate field 'documents' in the body and a document sequence")
            documents = request.sequences["documents"]
        elif isinstance(body.get("documents"), list):
            documents = [bson.encode(doc) for doc in body["documents"]]
        else:
            raise CommandError(40414, "BSON field 'insert.documents' is missing but a required field")
        database = self._databases.setdefault(body["$db"], _Database())
        # An insert into a collection that does not exist creates an ordinary (uncapped) one.
        target = database.collections.setdefault(name, Collection(f"{body['$db']}.{name}"))
        ordered = body.get("ordered", True)
        inserted = 0
        errors: list[dict[str, Any]] = []
        for index, data in enumerate(documents):
            try:
                if len(data) > MAX_BSON_SIZE:
                    raise CommandError(10334, f"BSONObj size: {len(data)} is invalid")
                document = bson.decode(data)
                if "_id" not in document:
                    data = bson.encode({"_id": ObjectId(), **document})
                target.insert(data)
                inserted += 1
            except CommandError as exc:
                errors.append({"index": index, "code": exc.code, "errmsg": exc.message})
                if ordered:
                    break
        if inserted:
            self._notify(target.name)
        reply: dict[str, Any] = {"n": inserted}
        if errors:
            reply["writeErrors"] = errors
        return reply

    async def _find(self, request: Request, body: dict[str, Any], connection: _Connection) -> dict[str, Any]:
        name = _collection_name(body, "find")
        ns = f"{body['$db']}.{name}"
        tailable = _flag(body, "tailable")
        await_data = _flag(body, "awaitData")
        single_batch = _flag(body, "singleBatch")
        limit = _count(body, "limit")
        batch_size = _count(body, "batchSize", DEFAULT_BATCH_SIZE)
        if await_data and not tailable:
            raise CommandError(9, "Cannot set 'awaitData' without also setting 'tailable'")
        if tailable and single_batch:
            raise CommandError(2, "cannot use tailable option with the 'singleBatch' option")
        if tailable and limit:
            raise CommandError(2, "cannot use tailable option with a limit")
        if _count(body, "skip"):
            raise not_implemented("skip")
        sort = body.get("sort") or {}
        if sort not in ({}, {"$natural": 1}, {"$natural": -1}):
            if tailable:
                raise CommandError(2, "cannot use tailable option with a sort other than {$natural: 1}")
            raise not_implemented("sorts other than $natural")
        if tailable and sort == {"$natural": -1}:
            raise CommandError(2, "cannot use tailable option with a sort other than {$natural: 1}")
        if body.get("hint") not in (None, {"$natural": 1}, {"$natural": -1}):
            raise not_implemented("index hints")
        matches = compile_filter(body.get("filter"))
        project = compile_projection(body.get("projection"))
        if _flag(body, "showRecordId"):
            project = with_record_id(project)
        collection = self._databases.get(body["$db"], _Database()).collections.get(name)
        if tailable and collection is not None and not collection.capped:
            raise CommandError(
                2, f"error processing query: ns={ns} tailable cursor requested on non capped collection"
            )
        cursor = Cursor(ns, collection, body.get("lsid"), matches, project, tailable, await_data)
        if not tailable and collection is not None:
            records = [r for r in collection.records if matches(r.doc)]
            if sort == {"$natural": -1}:
                records.reverse()
            cursor.remaining = deque(records)
            cursor.limit = limit
        first = [] if body.get("batchSize") == 0 else cursor.next_batch(batch_size)
        if single_batch:
            keep = False
        elif tailable:
            # SERVER-13955: no tailable cursor is kept on an empty (or missing) collection.
            keep = collection is not None and bool(collection.records)
        else:
            keep = not cursor.exhausted
        if keep:
            self._cursors[cursor.id] = cursor
        return {"cursor": {"firstBatch": first, "id": Int64(cursor.id if keep else 0), "ns": ns}}

    async def _get_more(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        cursor_id = body["getMore"]
        if not isinstance(cursor_id, int) or isinstance(cursor_id, bool):
            raise CommandError(14, "BSON field 'getMore.getMore' is the wrong type, expected type 'long'")
        name = body.get("collection")
        if not isinstance(name, str):
            raise CommandError(40414, "BSON field 'getMore.collection' is missing but a required field")
        cursor = self._cursors.get(cursor_id)
        if cursor is None:
            raise CommandError(43, f"cursor id {cursor_id} not found")
        ns = f"{body['$db']}.{name}"
        if ns != cursor.ns:
            raise CommandError(
                13,
                f"Requested getMore on namespace '{ns}', but cursor belongs to a different namespace "
                + cursor.ns,
            )
        lsid = body.get("lsid")
        if lsid is not None and cursor.lsid is None:
            raise CommandError(
                50736,
                f"Cannot run getMore on cursor {cursor_id}, which was not created in a session, in session",
            )
        if lsid is None and cursor.lsid is not None:
            raise CommandError(
                50737,
                f"Cannot run getMore on cursor {cursor_id}, which was created in session, without an lsid",
            )
        if lsid != cursor.lsid:
            raise CommandError(
                50738,
                f"Cannot run getMore on cursor {cursor_id}, which was created in session, in session",
            )
        if "maxTimeMS" in body and not cursor.await_data:
            raise CommandError(2, "cannot set maxTimeMS on getMore command for a non-awaitData cursor")
        if cursor_id in self._busy:
            raise CommandError(292, f"cursor id {cursor_id} is already in use")
        batch_size = _count(body, "batchSize")
        self._busy.add(cursor_id)
        try:
            batch = cursor.next_batch(batch_size)
            if not batch and cursor.await_data:
                deadline = time.monotonic() + _count(body, "maxTimeMS", DEFAULT_AWAIT_MS) / 1000
                while not batch and (left := deadline - time.monotonic()) > 0:
                    inserted = self._inserted.setdefault(cursor.ns, asyncio.Event())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(inserted.wait(), left)
                    batch = cursor.next_batch(batch_size)
        except CommandError:
            self._cursors.pop(cursor_id, None)  # a getMore that fails kills its cursor
            raise
        except asyncio.CancelledError:
            self._cursors.pop(cursor_id, None)  # interrupted (the client went away): killed too
            raise
        finally:
            self._busy.discard(cursor_id)
        if cursor.exhausted:
            self._cursors.pop(cursor_id, None)
            cursor_id = 0
        # A cursor killed while this getMore waited still answers it; the next getMore finds it gone.
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.ns}}

    async def _kill_cursors(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        _collection_name(body, "killCursors")
        ids = body.get("cursors")
        if not isinstance(ids, list):
            raise CommandError(40414, "BSON field 'killCursors.cursors' is missing but a required field")
        killed: list[Int64] = []
        not_found: list[Int64] = []
        for cursor_id in ids:
            (killed if self._cursors.pop(cursor_id, None) is not None else not_found).append(Int64(cursor_id))
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
        }

    async def _end_sessions(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        if not isinstance(body["endSessions"], list):
            raise CommandError(14, "BSON field 'endSessions' is the wrong type, expected type 'array'")
        return {}  # sessions are not tracked beyond the lsid a cursor was created in

    async def _update(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        target = self._ordinary_collection(body, "update")
        matched = modified = 0
        upserted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, statement in enumerate(_statements(request, body, "updates")):
            if statement.get("multi") or not isinstance(statement.get("u"), dict):
                raise not_implemented("updates other than one document by a replacement or $set")
            matches = compile_filter(statement.get("q"))
            found = next((record for record in target.records if matches(record.doc)), None)
            change: dict[str, Any] = statement["u"]
            operators = [key for key in change if key.startswith("$")]
            if operators and operators != ["$set"]:
                raise not_implemented("update operators other than $set")
            if found is not None:
                matched += 1
                if operators:
                    doc = {**found.doc, **change["$set"]}
                else:
                    doc = {"_id": found.doc["_id"], **{k: v for k, v in change.items() if k != "_id"}}
                target.replace(found, doc)
                modified += 1
            elif statement.get("upsert"):
                query = statement.get("q") or {}
                base = {"_id": query["_id"]} if "_id" in query else {"_id": ObjectId()}
                doc = {**base, **(change["$set"] if operators else change)}
                try:
                    target.insert(bson.encode(doc))
                except CommandError as exc:  # a duplicate _id: this statement fails, not the command
                    errors.append({"index": index, "code": exc.code, "errmsg": exc.message})
                    if body.get("ordered", True):
                        break
                    continue
                upserted.append({"index": index, "_id": doc["_id"]})
        reply: dict[str, Any] = {"n": matched + len(upserted), "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return reply

    async def _delete(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        target = self._ordinary_collection(body, "delete")
        deleted = 0
        for statement in _statements(request, body, "deletes"):
            matches = compile_filter(statement.get("q"))
            for record in [record for record in target.records if matches(record.doc)]:
                target.remove(record)
                deleted += 1
                if statement.get("limit") == 1:
                    break
        return {"n": deleted}

    async def _create_indexes(
        self, request: Request, body: dict[str, Any], connection: _Connection
    ) -> dict[str, Any]:
        target = self._ordinary_collection(body, "createIndexes")
        before = 1 + len(target.indexes)
        for index in body.get("indexes") or []:
            target.indexes[index["name"]] = index
        return {
            "numIndexesBefore": before,
            "numIndexesAfter": 1 + len(target.indexes),
            "createdCollectionAutomatically": False,
        }

    def _ordinary_collection(self, body: dict[str, Any], command: str) -> Collection:
        name = _collection_name(body, command)
        database = self._databases.setdefault(body["$db"], _Database())
        target = database.collections.setdefault(name, Collection(f"{body['$db']}.{name}"))
        if target.capped:
            raise not_implemented(f"{command} on a capped collection")
        return target

    def _notify(self, ns: str) -> None:
        event = self._inserted.pop(ns, None)
        if event is not None:
            event.set()


def _collection_name(body: dict[str, Any], command: str) -> str:
    name = body[command]
    if not isinstance(name, str):
        raise CommandError(73, f"collection name has invalid type {type(name).__name__}")
    if not name or "$" in name or "\x00" in name:
        raise CommandError(73, f"Invalid namespace specified '{body['$db']}.{name}'")
    return name


def _statements(request: Request, body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """An update's or a delete's statements: a document sequence, or an array in the body."""
    if key in request.sequences:
        return [bson.decode(data) for data in request.sequences[key]]
    statements = body.get(key)
    if not isinstance(statements, list):
        raise CommandError(40414, f"BSON field '{key}' is missing but a required field")
    return statements


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise CommandError(14, f"BSON field '{key}' is the wrong type, expected type 'bool'")
    return value


def _count(body: dict[str, Any], key: str, default: int = 0) -> int:
    value = body.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CommandError(14, f"BSON field '{key}' is the wrong type, expected a number")
    if value < 0:
        raise CommandError(2, f"{key} value must be non-negative, but received: {value}")
    return int(value)
