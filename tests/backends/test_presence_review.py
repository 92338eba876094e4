"""A review of presence with connection state recovery's history in the backend (Redis streams,
the MongoDB stand-in's capped collection): control messages beside the kept casts, and a socket that
recovers on another instance joining presence there again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from tests.apps import Card, User, echo_server, make_app
from tests.backends.redis_server import RedisServer
from tests.mongo_standin import MongoStandIn
from tests.support import connect_client, eventually, running
from tests.test_presence import join, presence_events
from tests.test_recovery import drop, recovery_path
from typed_ss import Presence, Recovery, Server
from typed_ss.backends import Backend
from typed_ss.backends.mongo import MongoBackend
from typed_ss.backends.redis import RedisBackend


@pytest.fixture(params=["redis", "mongo"])
async def backends(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Backend]]:
    """Makes backends sharing one Redis (or MongoDB stand-in)."""
    if request.param == "mongo":
        async with MongoStandIn() as standin:
            yield lambda: MongoBackend(standin.url)
        return
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        yield lambda: RedisBackend(redis.url, group="presence")
    finally:
        await redis.kill()


def recovering_presence_server(backend: Backend) -> Server[Any]:
    """A server with presence in ``chat:`` rooms and connection state recovery on, whose sockets say
    who they are in ``?user=``."""
    presence = Presence(
        Card, lambda sock: Card(sock.identity.name), tracked=lambda room: room.startswith("chat:")
    )
    ss = echo_server(backend=backend, presence=presence, recovery=Recovery())

    @ss.authenticate
    async def auth(request: HTTPConnection) -> User:
        return User(request.query_params.get("user", "anon"))

    return ss


async def test_a_socket_recovered_on_another_instance_joins_presence_there(
    backends: Callable[[], Backend],
) -> None:
    first, second = (recovering_presence_server(backends()) for _ in range(2))
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(running(make_app(first), first))
        two = await stack.enter_async_context(running(make_app(second), second))
        await eventually(lambda: len(first.cluster.peers) == 1 and len(second.cluster.peers) == 1, within=10)
        bob = await stack.enter_async_context(connect_client(two, "/socket?user=bob"))
        await join(bob, "chat:1")
        ann = await stack.enter_async_context(connect_client(one, "/socket?user=ann"))
        await join(ann, "chat:1")
        assert await presence_events(bob, 1) == [("joined", ann.id, {"name": "ann"})]
        drop(ann)
        assert await presence_events(bob, 1) == [("left", ann.id, {"name": "ann"})]
        path = recovery_path(ann.hello) + "&user=ann"
        back = await stack.enter_async_context(connect_client(two, path))
        assert (back.id, back.hello["recovered"]) == (ann.id, True)
        assert await presence_events(bob, 1) == [("joined", ann.id, {"name": "ann"})]
        while (frame := await back.recv()).event != "__presence":
            pass  # its replay (no offsets given: everything kept since it joined)
        assert (frame.json()["change"], frame.json()["socket"]) == ("joined", ann.id)
        for ss in (first, second):
            members = await ss.cluster.members("chat:1")
            assert sorted((m.socket, m.instance) for m in members.value) == sorted(
                [(ann.id, second.cluster.instance_id), (bob.id, second.cluster.instance_id)]
            )
        assert (first.health().cluster.tracked_rooms, second.health().cluster.presence_entries) == (0, 2)
