"""Connection state recovery's history and sessions in MongoDB, shared by every instance of a
:class:`~typed_ss.backends.mongo.MongoBackend` (docs/recovery.md, "Where the history lives").

**History.** The capped collection the backend publishes through is the history: every instance
reads it in its natural (insertion) order, the same for all, its own documents included, and a
frame's offset is its document's RecordId (``showRecordId``), which grows in that order. How much
it keeps is the collection's size (``size_bytes``): ``Recovery.history`` and ``window`` do not trim
it. A replay reads the session's topics after the client's offsets, and is refused when the
collection's oldest document is past the first one the client may have missed: MongoDB removes a
capped collection's documents oldest first, so everything after an offset is still there when the
oldest RecordId is at most the offset plus one (RecordIds that skip a number make it refuse, never
accept, a replay that might have a hole); or, for a topic of which the client had everything
delivered to it, when the oldest is at most one past how far its instance had read when the
connection ended (:class:`~typed_ss.backends.base.Departure`).

**Sessions.** One document per session in ``<collection>_sessions``, ``{_id: token, ..., expires}``,
written by the :class:`~typed_ss.backends._sessions.SessionWriter` task; a TTL index on
``expires`` removes them, and reads treat an expired one as gone (the TTL monitor runs once a
minute). Taking one up marks it taken (``taken: true``, which only one of two concurrent takes can
do) and writes it again under the new token; the taken document stays as a tombstone until it
expires, so a write to the old token that was on its way (retried after its answer was lost) cannot
bring it back.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any, Final

from pymongo import DeleteOne, ReplaceOne, UpdateOne  # imported by typed_ss.backends.mongo only
from pymongo.errors import BulkWriteError

from typed_ss.backends._sessions import Change, SessionWriter
from typed_ss.backends.base import Departure, SessionRecord
from typed_ss.errors import BackendError

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["MongoSessions", "record_id", "replay_complete"]

logger = logging.getLogger("typed_ss.backends.mongo")

Document = dict[str, Any]


def record_id(document: Document) -> int:
    """A document's RecordId, as ``showRecordId`` adds it; 0 when it has none."""
    value = document.get("$recordId")
    return int(value) if isinstance(value, int) else 0


def replay_complete(oldest: int, after: int, topic: str = "", left: Departure | None = None) -> bool:
    """Whether every document of ``topic`` after RecordId ``after`` is still in a capped collection
    whose oldest document is ``oldest`` (0: empty). MongoDB removes the oldest first, so everything
    after ``after`` is there when the oldest is at most ``after + 1``. When the client had every
    document of the topic its instance delivered before its connection ended (``left``), the ones it
    missed came after the instance's read position then, so it is enough that the oldest is at most
    that position plus one: a quiet topic's old offset does not matter."""
    if oldest == 0 or oldest <= after + 1:
        return True
    return left is not None and after >= left.delivered.get(topic, 0) and oldest <= left.read + 1


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


_LIVE: Final[Document] = {"taken": {"$ne": True}}
"""Matches a session not taken up (a taken one is a tombstone)."""
DUPLICATE_KEY: Final = 11000


def _gone(document: Document | None) -> bool:
    """Whether a session document is missing, taken up or expired."""
    return document is None or document.get("taken") is True or _expired(document)


def _expired(document: Document) -> bool:
    expires = document.get("expires")
    if not isinstance(expires, datetime.datetime):
        return True
    if expires.tzinfo is None:  # pymongo returns naive UTC unless the client is tz_aware
        expires = expires.replace(tzinfo=datetime.UTC)
    return expires <= _now()


def _document(token: str, record: SessionRecord, ttl: float) -> Document:
    return {
        "_id": token,
        "socket_id": record.socket_id,
        "identity_key": record.identity_key,
        "start": record.start,
        # A list, not a document: a room's name may hold "." or start with "$".
        "rooms": [[room, position] for room, position in record.rooms.items()],
        "epoch": record.epoch,
        # Pairs, not a document, as the rooms: a topic's name may hold "." or start with "$".
        "left": None
        if record.left is None
        else [record.left.read, [[topic, offset] for topic, offset in record.left.delivered.items()]],
        "expires": _now() + datetime.timedelta(seconds=ttl),
    }


def _departure(stored: Any) -> Departure | None:
    if stored is None:
        return None
    read, delivered = stored
    return Departure({str(topic): int(offset) for topic, offset in delivered}, int(read))


def _record(document: Document) -> SessionRecord:
    return SessionRecord(
        str(document["socket_id"]),
        str(document["identity_key"]),
        int(document["start"]),
        {str(room): int(position) for room, position in document["rooms"]},
        str(document.get("epoch", "")),
        _departure(document.get("left")),
    )


class MongoSessions(SessionWriter):
    """Sessions by token in a MongoDB collection (see the module docstring)."""

    def __init__(self, *, held_ttl: float, max_backoff: float) -> None:
        super().__init__("MongoDB", held_ttl=held_ttl, max_backoff=max_backoff, log=logger)
        self._collection: AsyncCollection[Document] | None = None

    async def start(self, collection: AsyncCollection[Document]) -> None:
        """Start writing to ``collection`` (the backend started); makes its TTL index if it can."""
        self._collection = collection
        try:
            await collection.create_index("expires", expireAfterSeconds=0)
        except Exception as exc:  # MongoDB down at start: reads check the expiry themselves
            logger.warning("cannot create the TTL index of %s yet: %r", collection.full_name, exc)
        self.writer.start()

    async def stop(self) -> None:
        await self.close()

    async def load(self, token: str) -> SessionRecord | None:
        document = await self._sessions().find_one({"_id": token})
        return None if document is None or _gone(document) else _record(document)

    async def _take(self, token: str, new_token: str) -> SessionRecord | None:
        sessions = self._sessions()
        for _attempt in range(3):
            document = await sessions.find_one({"_id": token})
            if document is None or _gone(document):
                return None
            expires = _now() + datetime.timedelta(seconds=self.held_ttl)
            # Taken only as it was read: if its holder changed it meanwhile (a leave), read it again.
            unchanged = _LIVE | {"_id": token, "rooms": document["rooms"], "start": document["start"]}
            taken = await sessions.update_one(unchanged, {"$set": {"taken": True, "expires": expires}})
            if taken.modified_count == 1:
                record = _record(document)
                await sessions.insert_one(_document(new_token, record, self.held_ttl))
                return record
        return None  # it keeps changing, or another reconnect took it

    async def _write(self, batch: dict[str, Change]) -> None:
        operations: list[Any] = []
        for token, change in batch.items():
            live = _LIVE | {"_id": token}
            if change.what in ("create", "update"):
                assert change.record is not None
                document = _document(token, change.record, change.ttl)
                operations.append(ReplaceOne(live, document, upsert=change.what == "create"))
            elif change.what == "expire":
                expires = _now() + datetime.timedelta(seconds=change.ttl)
                operations.append(UpdateOne(live, {"$set": {"expires": expires}}))
            else:
                operations.append(DeleteOne(live))
        if not operations:
            return
        try:
            await self._sessions().bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            # A create over a tombstone fails as a duplicate _id: the session was taken up, the
            # write is not to be made. Any other error is retried.
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise

    def _sessions(self) -> AsyncCollection[Document]:
        if self._collection is None:
            raise BackendError("the MongoDB backend has not started")
        return self._collection
