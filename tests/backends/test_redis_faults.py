"""Redis faults during a stream: the subscriber connection killed, redis-server crashed and restarted.

A stream of sequenced broadcasts runs from instance A; a client on A (local delivery) and a client on
B (cross-instance) record what arrives. The checks: local delivery never stops, cross-instance
delivery resumes within 2 s of Redis being back, no broadcast call waits on Redis, and the losses B
counts from the envelopes' sequence numbers equal the messages that really never arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.apps import echo_server, make_app
from tests.backends.redis_server import RedisServer
from tests.support import Client, connect_client, eventually, running
from typed_ss import Server
from typed_ss.backends.redis import RedisBackend

pytestmark = pytest.mark.timeout(90)

INTERVAL = 0.005  # seconds between broadcasts: about 200 a second


@dataclass
class Stream:
    """What one stream sent, when, and what each side received."""

    sent_at: list[float] = field(default_factory=list)
    local: list[int] = field(default_factory=list)
    remote: list[int] = field(default_factory=list)
    remote_at: list[float] = field(default_factory=list)
    slowest_broadcast: float = 0.0


async def record(client: Client, into: list[int], times: list[float] | None = None) -> None:
    while True:
        into.append(int((await client.expect("seq", within=60)).payload))
        if times is not None:
            times.append(time.monotonic())


async def run_stream(
    a: Server, count: int, faults: dict[int, Callable[[], Awaitable[None]]], stream: Stream
) -> Stream:
    """Broadcast ``count`` sequenced messages from ``a``, running ``faults[i]`` before message i."""
    for i in range(count):
        if i in faults:
            await faults[i]()
        started = time.monotonic()
        await a.broadcast("seq", str(i))
        stream.slowest_broadcast = max(stream.slowest_broadcast, time.monotonic() - started)
        stream.sent_at.append(started)
        await asyncio.sleep(INTERVAL)
    return stream


def backend(redis: RedisServer) -> RedisBackend:
    return RedisBackend(redis.url, group="faults")


async def stream_between_two_instances(
    redis: RedisServer, count: int, faults: dict[int, Callable[[], Awaitable[None]]]
) -> tuple[Stream, dict[str, Any]]:
    """Run the stream from A to B; returns it with B's multihome health at the end."""
    a, b = echo_server(backend=backend(redis)), echo_server(backend=backend(redis))
    async with running(make_app(a), a) as url_a, running(make_app(b), b) as url_b:
        async with connect_client(url_a) as on_a, connect_client(url_b) as on_b:
            stream = Stream()
            readers = [
                asyncio.create_task(record(on_a, stream.local)),
                asyncio.create_task(record(on_b, stream.remote, stream.remote_at)),
            ]
            try:
                stream = await run_stream(a, count, faults, stream)
                # Everything still on its way arrives, or is counted lost, once the stream is over.
                await eventually(lambda: len(stream.local) == count, within=20)
                await eventually(
                    lambda: (
                        bool(stream.remote) and stream.remote[-1] == count - 1 and health(b)["outbox"] == 0
                    ),
                    within=20,
                )
                await eventually(lambda: health(a)["outbox"] == 0, within=20)
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            for server in (a, b):
                assert health(server)["backend"]["state"] == "connected"
            return stream, health(b)


def health(server: Server) -> dict[str, Any]:
    multihome: dict[str, Any] | None = server.health()["multihome"]
    assert multihome is not None
    return multihome


def check_stream(stream: Stream, lost_counted: int, outage: tuple[float, float]) -> None:
    count = len(stream.sent_at)
    assert stream.local == list(range(count)), "local delivery must never stop or reorder"
    assert stream.remote == sorted(set(stream.remote)), "no duplicates, per-publisher order kept"
    missing = set(range(count)) - set(stream.remote)
    assert lost_counted == len(missing), "every lost message is counted, and nothing else"
    fault_at, back_at = outage
    for i in missing:
        # Losses only around the outage: nothing lost once Redis has been back for 2 s.
        assert fault_at - 0.5 <= stream.sent_at[i] <= back_at + 2.0, (i, stream.sent_at[i] - fault_at)
    assert stream.slowest_broadcast < 0.05, "a broadcast must never wait on Redis"


async def test_subscriber_connection_killed_during_a_stream(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis_server.client()
    kill_time = 0.0

    async def kill_subscribers() -> None:
        nonlocal kill_time
        kill_time = time.monotonic()
        killed = await admin.client_kill_filter(_type="pubsub")
        assert int(killed) >= 2

    try:
        stream, on_b = await stream_between_two_instances(redis_server, 600, {200: kill_subscribers})
    finally:
        await admin.aclose()
    check_stream(stream, on_b["lost"], (kill_time, kill_time))
    assert on_b["backend"]["reconnects"] >= 1
    loud = [r for r in caplog.records if r.levelname == "ERROR" and "lost the Redis subscriber" in r.message]
    assert loud, "losing the subscriber connection must be logged as an error"


async def test_redis_killed_and_restarted_during_a_stream(redis_server: RedisServer) -> None:
    times: dict[str, float] = {}

    async def crash() -> None:
        times["down"] = time.monotonic()
        await redis_server.kill()

    async def restart() -> None:
        await redis_server.start()  # same port
        times["up"] = time.monotonic()

    stream, on_b = await stream_between_two_instances(redis_server, 1000, {200: crash, 500: restart})
    check_stream(stream, on_b["lost"], (times["down"], times["up"]))
    resumed = min(at for at in stream.remote_at if at > times["up"]) - times["up"]
    assert resumed <= 2.0, f"cross-instance delivery resumed {resumed:.2f} s after Redis came back"
    assert on_b["backend"]["reconnects"] >= 1
    # Messages published after Redis came back reached B.
    assert any(stream.sent_at[i] > times["up"] for i in stream.remote)
