"""The MongoDB buses of the conformance suite: over the stand-in always, over a real mongod on request.

``mongo`` runs every conformance test against :class:`~tests.mongo_standin.MongoStandIn` (no MongoDB
server can be installed here). With ``TYPED_SS_MONGO_URL=mongodb://...`` set, ``mongo-real`` runs
them again against that server, in a database of this test run's own (``typed_ss_test_<random>``),
one collection per test, dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo import AsyncMongoClient

from tests.mongo_standin import MongoStandIn
from typed_ss.backends import Backend
from typed_ss.backends.mongo import MongoBackend

__all__ = ["MONGO_BUSES", "REAL_MONGO_URL", "RUN_DATABASE", "MongoBus", "mongo_bus", "real_collection"]

REAL_MONGO_URL = os.environ.get("TYPED_SS_MONGO_URL") or None
MONGO_BUSES = ["mongo", *(["mongo-real"] if REAL_MONGO_URL else [])]
"""The ``bus`` fixture's MongoDB parameters: ``mongo-real`` only exists when a URL is given."""
RUN_DATABASE = f"typed_ss_test_{secrets.token_hex(4)}"
_collections = itertools.count(1)


class MongoBus:
    """Linked MongoDB backends on one capped collection.

    MongoDB has no per-topic subscriptions: every instance reads every document and its backend
    passes on only the topics it subscribed to, so :meth:`subscribers` counts those backends.
    """

    name = "mongo"

    def __init__(self, url: str, database: str, collection: str) -> None:
        self.url = url
        self.database = database
        self.collection = collection
        self.made: list[MongoBackend] = []

    def backends(self, count: int) -> list[Backend]:
        made = [
            MongoBackend(self.url, database=self.database, collection=self.collection) for _ in range(count)
        ]
        self.made.extend(made)
        return list(made)

    async def subscribers(self, topic: str) -> int:
        return sum(topic in backend.subscriptions for backend in self.made)


@asynccontextmanager
async def real_collection(prefix: str) -> AsyncIterator[str]:
    """A fresh collection name in this run's database on the real MongoDB, dropped on exit."""
    assert REAL_MONGO_URL is not None
    name = f"{prefix}_{next(_collections)}"
    try:
        yield name
    finally:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            REAL_MONGO_URL, serverSelectionTimeoutMS=5000
        )
        try:
            await client[RUN_DATABASE].drop_collection(name)
        finally:
            await client.close()


@asynccontextmanager
async def mongo_bus(kind: str) -> AsyncIterator[MongoBus]:
    """The bus for one of :data:`MONGO_BUSES`."""
    if kind == "mongo":
        async with MongoStandIn() as standin:
            yield MongoBus(standin.url, "typed_ss", "conformance")
        return
    assert kind == "mongo-real"
    assert REAL_MONGO_URL is not None
    async with real_collection("conformance") as collection:
        yield MongoBus(REAL_MONGO_URL, RUN_DATABASE, collection)
