"""MongoDB faults during a stream, over the stand-in: a killed cursor, dropped connections, a server
restart, and the capped collection wrapping past a reader.

A stream of sequenced broadcasts runs from instance A; a client on A (local delivery) and a client on
B (cross-instance) record what arrives. Everywhere: local delivery never stops, no broadcast call
waits on MongoDB, nothing arrives twice or out of order, and the losses B counts from the envelopes'
sequence numbers equal the messages that really never arrived. A killed cursor, dropped connections
and a restart lose nothing at all: the collection keeps the messages, the reader resumes after the
last one it read, and the bridge's outbox holds what could not be published meanwhile. A wrap loses
messages, and B reports the gap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.apps import echo_server, make_app
from tests.mongo_standin import MongoStandIn
from tests.support import Client, connect_client, eventually, running
from typed_ss import Server
from typed_ss.backends.mongo import MongoBackend

pytestmark = pytest.mark.timeout(90)

INTERVAL = 0.005  # seconds between broadcasts: about 200 a second


@dataclass
class Stream:
    sent_at: list[float] = field(default_factory=list)
    local: list[int] = field(default_factory=list)
    remote: list[int] = field(default_factory=list)
    remote_at: list[float] = field(default_factory=list)
    slowest_broadcast: float = 0.0


@pytest.fixture
async def standin() -> Any:
    async with MongoStandIn() as server:
        yield server


def health(server: Server) -> dict[str, Any]:
    multihome: dict[str, Any] | None = server.health()["multihome"]
    assert multihome is not None
    return multihome


async def record(client: Client, into: list[int], times: list[float] | None = None) -> None:
    while True:
        into.append(int((await client.expect("seq", within=60)).payload))
        if times is not None:
            times.append(time.monotonic())


async def stream_between_two_instances(
    standin: MongoStandIn, count: int, faults: dict[int, Callable[[], Awaitable[None]]]
) -> tuple[Stream, dict[str, Any]]:
    """Broadcast ``count`` sequenced messages from A, running ``faults[i]`` before message i; returns
    what arrived where, and B's multihome health once everything arrived or was counted lost."""
    a = echo_server(backend=MongoBackend(standin.url, collection="faults"))
    b = echo_server(backend=MongoBackend(standin.url, collection="faults"))
    stream = Stream()
    async with running(make_app(a), a) as url_a, running(make_app(b), b) as url_b:
        async with connect_client(url_a) as on_a, connect_client(url_b) as on_b:
            readers = [
                asyncio.create_task(record(on_a, stream.local)),
                asyncio.create_task(record(on_b, stream.remote, stream.remote_at)),
            ]
            try:
                for i in range(count):
                    if i in faults:
                        await faults[i]()
                    began = time.monotonic()
                    await a.broadcast("seq", str(i))
                    stream.slowest_broadcast = max(stream.slowest_broadcast, time.monotonic() - began)
                    stream.sent_at.append(began)
                    await asyncio.sleep(INTERVAL)
                await eventually(lambda: len(stream.local) == count, within=20)
                await eventually(
                    lambda: (
                        bool(stream.remote) and stream.remote[-1] == count - 1 and health(a)["outbox"] == 0
                    ),
                    within=20,
                )
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            for server in (a, b):
                assert health(server)["backend"]["state"] == "connected"
            return stream, health(b)


def check_stream(stream: Stream, on_b: dict[str, Any]) -> set[int]:
    """The checks every fault shares; returns the messages B never got."""
    count = len(stream.sent_at)
    assert stream.local == list(range(count)), "local delivery must never stop or reorder"
    assert stream.remote == sorted(set(stream.remote)), "no duplicates, per-publisher order kept"
    missing = set(range(count)) - set(stream.remote)
    assert on_b["lost"] == len(missing), "every lost message is counted, and nothing else"
    assert on_b["duplicates"] == 0
    assert stream.slowest_broadcast < 0.05, "a broadcast must never wait on MongoDB"
    return missing


async def test_cursors_killed_during_a_stream_lose_nothing(standin: MongoStandIn) -> None:
    async def kill() -> None:
        assert standin.kill_cursors() >= 2

    stream, on_b = await stream_between_two_instances(standin, 600, {200: kill, 400: kill})
    assert check_stream(stream, on_b) == set()
    assert on_b["backend"]["detail"]["cursor_restarts"] >= 2
    assert on_b["backend"]["detail"]["position_lost"] == 0


async def test_connections_dropped_during_a_stream_lose_nothing(
    standin: MongoStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    async def drop() -> None:
        assert await standin.drop_connections() >= 2

    stream, on_b = await stream_between_two_instances(standin, 600, {200: drop})
    assert check_stream(stream, on_b) == set()
    assert on_b["backend"]["reconnects"] >= 1
    loud = [
        r for r in caplog.records if r.levelname == "ERROR" and "lost the MongoDB connection" in r.message
    ]
    assert loud, "losing the connection must be logged as an error"


async def test_mongo_restarted_during_a_stream_loses_nothing(standin: MongoStandIn) -> None:
    times: dict[str, float] = {}

    async def crash() -> None:
        times["down"] = time.monotonic()
        await standin.stop()

    async def restart() -> None:
        await standin.start()  # same port, the data kept: a mongod restart
        times["up"] = time.monotonic()

    stream, on_b = await stream_between_two_instances(standin, 1000, {200: crash, 500: restart})
    assert check_stream(stream, on_b) == set()  # the outbox held what could not be published
    resumed = min(at for at in stream.remote_at if at > times["up"]) - times["up"]
    assert resumed <= 2.0, f"cross-instance delivery resumed {resumed:.2f} s after MongoDB came back"
    assert on_b["backend"]["reconnects"] >= 1


async def test_a_wrap_during_a_stream_is_a_counted_gap_and_the_stream_goes_on(
    standin: MongoStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    wrapped_at = 0.0

    async def wrap() -> None:
        nonlocal wrapped_at
        wrapped_at = time.monotonic()
        # Other writers fill the collection past B's read position before B reads again.
        standin.wrap("typed_ss", "faults")

    stream, on_b = await stream_between_two_instances(standin, 600, {200: wrap})
    missing = check_stream(stream, on_b)
    for i in missing:  # only around the wrap
        assert wrapped_at - 0.5 <= stream.sent_at[i] <= wrapped_at + 2.0, (i, stream.sent_at[i] - wrapped_at)
    assert on_b["backend"]["detail"]["position_lost"] >= 1
    assert any(r.levelname == "ERROR" and "wrapped past" in r.message for r in caplog.records)
    assert stream.remote[-1] == 599  # and delivery went on
