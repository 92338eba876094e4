"""The MongoDB backend: one capped collection that every instance tails, with its own reconnects.

``MongoBackend(url="mongodb://127.0.0.1:27017")`` or ``MongoBackend(client=AsyncMongoClient(...))``
(pymongo's asyncio client; extra ``mongo``). ``database`` (``"typed_ss"``) and ``collection``
(``"multihome"``) name the capped collection, created with ``size_bytes`` (16 MiB) if missing; apps
sharing a MongoDB use different collections.

- **Publishing** inserts one document, ``{_id, origin, topic, data}``: ``origin`` is this backend's
  random id, ``data`` the bridge's envelope. ``publish`` gives up after ``publish_timeout`` (1 s) and
  raises :class:`~typed_ss.errors.BackendError`; the bridge keeps the message and retries.
- **Reading**: one tailable, awaitData cursor per instance, over the documents of the other
  instances (``{origin: {$ne: <own id>}}``), in insertion order. A ``getMore`` waits up to
  ``await_time`` (1 s) on the server for new documents, so an idle instance sends about one request a
  second and never spins. The topic filter is applied here, as each document is read: the collection
  carries every topic to every instance (MongoDB has no per-topic subscriptions), and a topic
  subscribed now sees every document read from now on, without opening a new cursor.
- **Where it starts**: after the newest document present when the backend starts, so nothing older
  is delivered.
- **Resuming**: after a dead cursor (``CursorNotFound`` and the like) or a lost connection, the
  backend opens a new cursor and reads on after the last document it saw. It identifies that
  document by ``_id`` but never compares ``_id`` values: ObjectIds are made by each inserting
  client, from its own clock and counter, so they are not in insertion order across instances, and
  ``{_id: {$gt: last}}`` would skip a slower instance's documents. The new cursor reads the capped
  collection in its natural (insertion) order from the start and skips up to and including the last
  seen document, after first checking that the document is still there. That rereads at most
  ``size_bytes`` per resume, which only happens after a fault.
- **Gaps**: when the collection wrapped past the reader (``CappedPositionLost``, or the last seen
  document is gone), messages were lost: the backend logs it as an error, counts it
  (``position_lost`` in its health), and reads on from the newest document. The bridge's sequence
  numbers count the lost messages themselves.
- With connection state recovery on, the capped collection is also the history, every instance
  reads its own documents too (with their RecordIds as offsets), and the sessions are kept in
  ``<collection>_sessions`` (:mod:`typed_ss.backends.mongo_history`): a client recovers on any
  instance.
- Reconnects use a backoff capped at ``max_backoff`` (1 s). Losing the connection is logged at error
  level, each reconnection at warning level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from typed_ss.backends._support import Inbox, Link
from typed_ss.backends.base import BackendHealth, Departure
from typed_ss.backends.mongo_history import MongoSessions, record_id, replay_complete
from typed_ss.errors import BackendError, ConfigurationError, MissingDependencyError
from typed_ss.supervision import Backoff, Supervised

try:
    import pymongo
    from bson import Int64
    from bson.errors import InvalidDocument
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase
    from pymongo.errors import (
        ConnectionFailure,
        DuplicateKeyError,
        OperationFailure,
        PyMongoError,
        WriteError,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError("pymongo", "mongo") from exc

__all__ = ["MongoBackend"]

logger = logging.getLogger("typed_ss.backends.mongo")

_GONE = (PyMongoError, OSError, TimeoutError)
"""What a lost or unreachable MongoDB raises."""

NAMESPACE_EXISTS = 48
CAPPED_POSITION_LOST = 136
CURSOR_GONE = frozenset({43, 175, 237})
"""CursorNotFound, QueryPlanKilled, CursorKilled: the server dropped the cursor; open another."""

Document = dict[str, Any]


class _CursorGone(Exception):
    """The server no longer has the cursor; reading resumes on a new one."""


class _PositionLost(Exception):
    """The capped collection wrapped past the reader: messages were lost."""


class MongoBackend:
    """A :class:`~typed_ss.backends.base.Backend` over a capped MongoDB collection (extra ``mongo``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: AsyncMongoClient[Document] | None = None,
        database: str = "typed_ss",
        collection: str = "multihome",
        size_bytes: int = 16 * 1024 * 1024,
        publish_timeout: float = 1.0,
        command_timeout: float = 2.0,
        subscribe_timeout: float = 2.0,
        await_time: float = 1.0,
        max_backoff: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("MongoBackend needs either url=... or client=..., not both")
        if not database or not collection:
            raise ConfigurationError("MongoBackend needs a database and a collection name")
        if size_bytes < 4096:
            raise ConfigurationError(
                f"size_bytes must be at least 4096 (MongoDB's minimum), not {size_bytes}"
            )
        if await_time <= 0:
            raise ConfigurationError("await_time must be positive")
        self._url = url
        self._client = client
        self._owns_client = client is None
        self._database_name = database
        self._collection_name = collection
        self._size_bytes = size_bytes
        self._publish_timeout = publish_timeout
        self._command_timeout = command_timeout
        self._subscribe_timeout = subscribe_timeout
        self._await_ms = max(1, round(await_time * 1000))
        self._max_backoff = max_backoff
        self._origin = secrets.token_hex(8)
        """Tags this backend's documents; its cursor leaves them out."""
        self._topics: set[str] = set()
        self._position: object | None = None
        """The ``_id`` of the last document read (``None``: read from the start of the collection)."""
        self._positioned = asyncio.Event()  # set once the start position is known
        self._followed = False  # whether the current cursor answered a getMore
        self._collection_ready = False
        self._inbox: Inbox[tuple[str, bytes]] = Inbox(max_pending)
        # With history kept (keep_history): the messages with their offsets, and the sessions.
        self._kept: Inbox[tuple[str, bytes, int]] | None = None
        self._sessions: MongoSessions | None = None
        self._examined = 0  # the RecordId of the last document the reader looked at (history kept)
        # The lowest RecordId the reader took from the collection and never handed on (dropped from a
        # full inbox, skipped after the collection wrapped past it): read_position() stays below it.
        self._unhanded: int | None = None
        self._link = Link(
            "MongoDB", self._tail, gone=_GONE, log=logger, max_backoff=max_backoff, describe=_describe
        )
        self._reader = Supervised("mongo reader", self._link.run, log=logger)
        self._running = False
        self._position_lost = 0
        self._cursor_restarts = 0
        self._rejected = 0

    @property
    def namespace(self) -> str:
        """``database.collection``."""
        return f"{self._database_name}.{self._collection_name}"

    @property
    def subscriptions(self) -> frozenset[str]:
        """The topics this backend passes on (it reads every topic and filters by these)."""
        return frozenset(self._topics)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is None:
            # Fail fast while MongoDB is unreachable; retries are this backend's job.
            timeout_ms = round(max(self._publish_timeout, self._command_timeout) * 1000)
            self._client = AsyncMongoClient(
                self._url,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                appname="typed-ss",
            )
        self._running = True
        self._inbox.open()
        if self._kept is not None:
            self._kept.open()
        if self._sessions is not None:
            database = self._client[self._database_name]
            await self._sessions.start(database[f"{self._collection_name}_sessions"])
        self._reader.start()

    async def stop(self) -> None:
        self._running = False
        await self._reader.stop()
        if self._sessions is not None:
            await self._sessions.stop()
        self._link.stopped()
        if self._owns_client and self._client is not None:
            # close() ends the client's sessions on the server first: bound how long it looks for
            # one, or a stop while MongoDB is down would give up before the client is closed.
            with contextlib.suppress(*_GONE), pymongo.timeout(0.5):
                async with asyncio.timeout(self._command_timeout + 1):
                    await self._client.close()
            self._client = None
        self._topics.clear()
        self._inbox.close()
        if self._kept is not None:
            self._kept.close()

    # --- the Backend interface ---------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        await self._insert({"origin": self._origin, "topic": topic, "data": data})

    async def append(self, topic: str, data: bytes, publisher: str, seq: int) -> None:
        """:meth:`publish`, once per ``publisher`` and ``seq``: the document's ``_id`` is made of
        them, so a retried insert that had worked is refused as a duplicate (and counts as done)."""
        await self._insert(
            {"_id": f"{publisher}:{seq}:{topic}", "origin": self._origin, "topic": topic, "data": data}
        )

    async def _insert(self, document: Document) -> None:
        client = self._client
        if client is None or not self._running:
            raise BackendError("the MongoDB backend is not started")
        database = client[self._database_name]
        data = document["data"]
        topic = document["topic"]
        try:
            async with asyncio.timeout(self._publish_timeout):
                if not self._collection_ready:
                    # Before the reader made it, an insert would create an ordinary collection.
                    await self._ensure_collection(database)
                await database[self._collection_name].insert_one(document)
        except DuplicateKeyError:
            pass  # kept already: an earlier attempt worked, its answer was lost
        except (WriteError, InvalidDocument) as exc:
            # A document MongoDB will never take (larger than the capped collection, or than 16 MiB):
            # retrying would block every later message. Dropped; the receivers count the gap.
            self._rejected += 1
            logger.error("MongoDB refused a %d-byte message on %r, dropped: %s", len(data), topic, exc)
        except _GONE as exc:
            raise BackendError(f"publishing to MongoDB failed: {_describe(exc)}") from exc

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        if self._link.state != "connecting" or self._positioned.is_set():
            return  # documents are filtered as they are read: active at once
        # The first connection is being made: wait until the start position is fixed, so that a
        # message published after this returns is after it (and delivered).
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                await self._positioned.wait()
        except TimeoutError:
            logger.warning("subscribing to %r: MongoDB is not reachable yet", topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._inbox.messages()

    # --- history (connection state recovery) -------------------------------------------------------

    def keep_history(self, *, max_entries: int, max_age: float, session_ttl: float) -> MongoSessions:
        """Keep the history in the capped collection (bounded by its size, not by ``max_entries`` or
        ``max_age``) and the sessions in ``<collection>_sessions`` (see
        :mod:`typed_ss.backends.mongo_history`). Called once, before :meth:`start`."""
        if self._running:
            raise ConfigurationError("keep_history() must be called before the backend starts")
        self._kept = Inbox(self._inbox.max_pending)
        self._sessions = MongoSessions(held_ttl=session_ttl, max_backoff=self._max_backoff)
        return self._sessions

    def kept_messages(self) -> AsyncIterator[tuple[str, bytes, int]]:
        if self._kept is None:
            raise ConfigurationError("kept_messages() needs keep_history() first")
        return self._kept.messages()

    async def position(self, topic: str) -> int:
        """The newest document's RecordId (of any topic: what comes after it is after now)."""
        return await self._edge(-1)

    def read_position(self) -> int:
        waiting = None if self._kept is None else self._kept.oldest()
        position = self._examined if waiting is None else waiting[2] - 1
        return position if self._unhanded is None else min(position, self._unhanded - 1)

    def _never_handed(self, offset: int) -> None:
        self._unhanded = offset if self._unhanded is None else min(self._unhanded, offset)

    async def epoch(self) -> str:
        """The primary's election (``electionId``; a standalone server has none): RecordIds are
        numbered by each node, so after a failover the offsets given before mean nothing."""
        client = self._client
        if client is None:
            raise BackendError("the MongoDB backend is not started")
        async with asyncio.timeout(self._command_timeout):
            hello: Document = await client.admin.command("hello")
        return f"{hello.get('setName', 'standalone')}/{hello.get('electionId', '')}"

    async def since(
        self, after: dict[str, int], left: Departure | None = None
    ) -> list[tuple[str, int, bytes]] | None:
        collection = self._history()
        async with asyncio.timeout(self._command_timeout):
            documents: list[Document] = await collection.find(
                {"topic": {"$in": list(after)}}, show_record_id=True
            ).to_list(None)
        # Read after the documents: had the oldest moved past an offset before, it still has now.
        oldest = await self._edge(1)
        if not all(replay_complete(oldest, offset, topic, left) for topic, offset in after.items()):
            return None
        found: list[tuple[str, int, bytes]] = []
        for document in documents:
            topic, data, offset = document.get("topic"), document.get("data"), record_id(document)
            if isinstance(topic, str) and isinstance(data, bytes) and offset > after.get(topic, offset):
                found.append((topic, offset, data))
        return found

    async def _edge(self, direction: int) -> int:
        """The RecordId of the oldest (1) or newest (-1) document; 0 when there is none."""
        collection = self._history()
        async with asyncio.timeout(self._command_timeout):
            documents: list[Document] = await collection.find(
                {}, {"_id": 1}, sort=[("$natural", direction)], limit=1, show_record_id=True
            ).to_list(None)
        return record_id(documents[0]) if documents else 0

    def _history(self) -> AsyncCollection[Document]:
        if self._client is None or self._kept is None:
            raise BackendError(
                "the MongoDB backend keeps no history (not started, or keep_history() not called)"
            )
        return self._client[self._database_name][self._collection_name]

    def _reading(self) -> dict[str, Any]:
        """What the reader's finds select: the other instances' documents, or with the history kept
        every document, with its RecordId."""
        if self._kept is None:
            return {"filter": {"origin": {"$ne": self._origin}}}
        return {"filter": {}, "showRecordId": True}

    def health(self) -> BackendHealth:
        return BackendHealth(
            name="mongo",
            state=self._link.state if self._running else "stopped",
            reconnects=self._link.reconnects,
            detail={
                "collection": self.namespace,
                "topics": len(self._topics),
                "position_lost": self._position_lost,
                "cursor_restarts": self._cursor_restarts,
                "rejected": self._rejected,
                # With the history kept, messages come through the other inbox.
                "pending": len(self._inbox) if self._kept is None else len(self._kept),
                "dropped": self._inbox.dropped if self._kept is None else self._kept.dropped,
                "last_error": self._link.last_error,
            },
            tasks=[
                self._reader.health(),
                *([] if self._sessions is None else [self._sessions.writer.health()]),
            ],
        )

    # --- the reader --------------------------------------------------------------------------------

    async def _tail(self) -> None:
        """One connection's worth of reading: open a cursor at the position and follow it."""
        assert self._client is not None
        database = self._client[self._database_name]
        async with self._client.start_session(causal_consistency=False) as session:
            await self._ensure_collection(database)
            if not self._positioned.is_set():
                self._position = await self._newest(database, session)
                self._positioned.set()
            # Cursors that keep failing before any getMore are retried with a backoff, not hammered.
            quick_restarts = Backoff(cap=self._max_backoff)
            while True:
                self._followed = False
                try:
                    await self._follow(database, session)
                except _CursorGone as exc:
                    if self._followed:
                        quick_restarts.succeeded()
                    quick_restarts.failed()
                    self._cursor_restarts += 1
                    logger.warning("MongoDB dropped the tailing cursor (%s): opening another", exc)
                except _PositionLost as exc:
                    if self._followed:
                        quick_restarts.succeeded()
                    quick_restarts.failed()
                    self._position_lost += 1
                    logger.error(
                        "the capped collection %s wrapped past this instance's read position (%s): "
                        "messages were lost; reading on from the newest document",
                        self.namespace,
                        exc,
                    )
                    self._never_handed(self._examined + 1)  # what lies between is skipped
                    self._position = await self._newest(database, session)
                if quick_restarts.failures > 3:
                    await asyncio.sleep(quick_restarts.delay())

    async def _follow(self, database: AsyncDatabase[Document], session: AsyncClientSession) -> None:
        """Open a tailable cursor, skip to just after ``self._position``, and deliver from there."""
        cursor_id = 0
        connection_lost = False
        try:
            for _attempt in range(3):
                reply = await self._command(
                    database,
                    {
                        "find": self._collection_name,
                        **self._reading(),
                        "tailable": True,
                        "awaitData": True,
                    },
                    session,
                )
                cursor_id = int(reply["cursor"]["id"])
                first_batch: list[Document] = reply["cursor"]["firstBatch"]
                if cursor_id or first_batch:
                    break
                # MongoDB keeps no tailable cursor on an empty capped collection (SERVER-13955).
                # One document of our own makes it non-empty for good; our filter skips it. The
                # collection may be missing (dropped): an insert would create an ordinary one.
                await self._ensure_collection(database)
                await self._command(
                    database,
                    {
                        "insert": self._collection_name,
                        "documents": [{"origin": self._origin, "marker": True}],
                    },
                    session,
                )
            else:
                raise _CursorGone("MongoDB keeps no cursor on the collection")
            skipping = self._position is not None
            if skipping and not await self._exists(database, session, self._position):
                raise _PositionLost(f"the last document read, {self._position}, is gone")
            if self._link.state != "connected":
                self._link.connected()
            skipping = self._take(first_batch, skipping)
            while cursor_id:
                try:
                    reply = await self._command(
                        database,
                        {
                            "getMore": Int64(cursor_id),
                            "collection": self._collection_name,
                            "maxTimeMS": self._await_ms,
                        },
                        session,
                        wait=self._await_ms / 1000,
                    )
                except OperationFailure as exc:
                    if exc.code in CURSOR_GONE or exc.code == CAPPED_POSITION_LOST:
                        cursor_id = 0  # the server killed it
                    if exc.code == CAPPED_POSITION_LOST:
                        raise _PositionLost(exc.details.get("errmsg") if exc.details else str(exc)) from exc
                    if exc.code in CURSOR_GONE:
                        raise _CursorGone(f"code {exc.code}") from exc
                    raise
                self._followed = True
                cursor_id = int(reply["cursor"]["id"])
                batch: list[Document] = reply["cursor"]["nextBatch"]
                if skipping and not batch:
                    raise _PositionLost(f"the last document read, {self._position}, was not found")
                skipping = self._take(batch, skipping)
            raise _CursorGone("the server closed it")
        except ConnectionFailure:
            connection_lost = True  # the cursor went with it, or times out on the server
            raise
        finally:
            if cursor_id and not connection_lost:
                await self._kill(database, session, cursor_id)

    def _take(self, documents: list[Document], skipping: bool) -> bool:
        """Deliver the documents of subscribed topics; returns whether it is still skipping."""
        for document in documents:
            if skipping:
                skipping = document.get("_id") != self._position
                continue
            self._position = document.get("_id")
            if self._kept is not None:
                self._examined = max(self._examined, record_id(document))
            topic, data = document.get("topic"), document.get("data")
            if isinstance(topic, str) and isinstance(data, bytes) and topic in self._topics:
                if self._kept is not None:
                    dropped = self._kept.put((topic, data, record_id(document)))
                    if dropped is not None:
                        self._never_handed(dropped[2])
                else:
                    self._inbox.put((topic, data))
        return skipping

    # --- commands ----------------------------------------------------------------------------------

    async def _command(
        self,
        database: AsyncDatabase[Document],
        command: dict[str, Any],
        session: AsyncClientSession | None,
        wait: float = 0.0,
    ) -> Document:
        async with asyncio.timeout(self._command_timeout + wait):
            reply: Document = await database.command(command, session=session)
            return reply

    async def _ensure_collection(self, database: AsyncDatabase[Document]) -> None:
        try:
            await self._command(
                database, {"create": self._collection_name, "capped": True, "size": self._size_bytes}, None
            )
            logger.info("MongoDB: using the capped collection %s", self.namespace)
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:
                raise
            # It exists with other options (another size, say): used as it is. Not capped, the
            # tailable find fails, and says so.
        self._collection_ready = True

    async def _newest(self, database: AsyncDatabase[Document], session: AsyncClientSession) -> object | None:
        """The ``_id`` of the newest document of another instance (``None``: there is none)."""
        reply = await self._command(
            database,
            {
                "find": self._collection_name,
                **self._reading(),
                "sort": {"$natural": -1},
                "projection": {"_id": 1},
                "limit": 1,
                "singleBatch": True,
            },
            session,
        )
        batch: list[Document] = reply["cursor"]["firstBatch"]
        return batch[0]["_id"] if batch else None

    async def _exists(
        self, database: AsyncDatabase[Document], session: AsyncClientSession, key: object
    ) -> bool:
        reply = await self._command(
            database,
            {
                "find": self._collection_name,
                "filter": {"_id": key},
                "projection": {"_id": 1},
                "limit": 1,
                "singleBatch": True,
            },
            session,
        )
        return bool(reply["cursor"]["firstBatch"])

    async def _kill(
        self, database: AsyncDatabase[Document], session: AsyncClientSession, cursor_id: int
    ) -> None:
        """Best effort: a cursor left open on the server times out by itself."""
        with contextlib.suppress(*_GONE):
            async with asyncio.timeout(0.5):
                await database.command(
                    {"killCursors": self._collection_name, "cursors": [Int64(cursor_id)]}, session=session
                )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time (TimeoutError)"
    return repr(exc)
