"""A hung Redis (SIGSTOP): local service goes on, health says Redis is not answering, and
cross-instance delivery comes back when it answers again."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from tests.apps import echo_server, make_app
from tests.backends.redis_server import RedisServer
from tests.support import Client, connect_client, eventually, running
from typed_ss import Server
from typed_ss.backends.redis import RedisBackend

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@contextmanager
def stopped(redis: RedisServer) -> Iterator[None]:
    """redis-server stopped with SIGSTOP (it keeps its connections and answers nothing), then SIGCONT."""
    assert redis.process is not None
    redis.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        redis.process.send_signal(signal.SIGCONT)


def state(ss: Server) -> str:
    multihome = ss.health().multihome
    assert multihome is not None
    return multihome.backend.state


@asynccontextmanager
async def two_instances(redis: RedisServer) -> AsyncIterator[tuple[Server, str, Server, str]]:
    backend_options = {"group": "hang", "probe_interval": 0.2, "probe_timeout": 2.0}
    a = echo_server(backend=RedisBackend(redis.url, **backend_options))  # type: ignore[arg-type]
    b = echo_server(backend=RedisBackend(redis.url, **backend_options))  # type: ignore[arg-type]
    async with running(make_app(a), a) as url_a, running(make_app(b), b) as url_b:
        yield a, url_a, b, url_b


async def roomcast_until_received(sender: Server, room: str, receiver: Client) -> None:
    """Roomcast from ``sender`` until ``receiver`` (on another instance) gets one: bounded attempts."""
    for attempt in range(40):
        await sender.roomcast(room, "chat", {"room": room, "text": str(attempt)})
        try:
            frame = await receiver.recv(within=0.5)
        except TimeoutError:
            continue
        assert frame.event == "chat"
        return
    raise AssertionError(f"casts to {room!r} never reached the other instance")


async def test_a_hung_redis_is_reported_and_does_not_hold_up_local_service(redis_server: RedisServer) -> None:
    async with two_instances(redis_server) as (a, url_a, _, url_b):
        async with connect_client(url_b) as on_b:
            await on_b.send("join", "tea")
            await on_b.expect("joined")
            with stopped(redis_server):
                await eventually(lambda: state(a) in ("unresponsive", "reconnecting"), within=10)
                backend = a.backend
                assert isinstance(backend, RedisBackend)
                # Structurally: a subscription asked for now is recorded and returns without
                # waiting for Redis (the coroutine finishes on its first step).
                coro = backend.subscribe("r:while-hung")
                with pytest.raises(StopIteration):
                    coro.send(None)
                # New sockets get their __hello, join rooms and talk locally meanwhile.
                for n in range(10):
                    async with connect_client(url_a) as client, connect_client(url_a) as peer:
                        await peer.send("join", f"room-{n}")
                        await peer.expect("joined")
                        await client.send("roomcast", f'{{"room": "room-{n}", "text": "hi"}}')
                        assert (await peer.expect("chat")).json() == {"room": f"room-{n}", "text": "hi"}
            # Redis answers again: the health says so and cross-instance casts arrive again.
            await eventually(lambda: state(a) == "connected", within=20)
            await roomcast_until_received(a, "tea", on_b)


async def test_rooms_joined_while_redis_hung_get_casts_once_it_answers(redis_server: RedisServer) -> None:
    async with two_instances(redis_server) as (a, _, b, url_b), connect_client(url_b) as on_b:
        with stopped(redis_server):
            await eventually(lambda: state(b) in ("unresponsive", "reconnecting"), within=10)
            await on_b.send("join", "late-room")  # subscribed on Redis once it answers
            await on_b.expect("joined")
        await eventually(lambda: state(b) == "connected", within=20)
        await roomcast_until_received(a, "late-room", on_b)
