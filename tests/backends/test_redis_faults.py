"""Redis faults during a stream: the subscriber connection killed, redis-server crashed and restarted.

A stream of sequenced broadcasts runs from instance A; a client on A (local delivery) and a client on
B (cross-instance) record what arrives. The checks, none of which times anything: local delivery
never stops; every broadcast call finishes without suspending once (so it cannot have waited on
Redis, up or down) and leaves its message in A's outbox; B loses only messages it had not received
when the fault struck and that were sent before B reported its subscriber connected again, and gets
every message sent after that; and the losses B counts from the envelopes' sequence numbers equal the
messages that really never arrived.
"""

from __future__ import annotations

import asyncio
import functools
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
TAIL = 50
"""Messages the stream sends, at least, after B reported it had recovered from the last fault."""
MAX_EXTRA = 5000
"""Messages the stream may add to its count while waiting for B to recover, before it gives up."""

Faults = dict[int, Callable[[], Awaitable[None]]]


@dataclass
class Stream:
    """What one stream sent and what each side received, and where in it the fault and recovery were."""

    sent: int = 0
    local: list[int] = field(default_factory=list)
    remote: list[int] = field(default_factory=list)
    had_before_fault: int | None = None
    """How many messages B had received when the first fault struck."""
    recovered_at: int | None = None
    """The first message sent after B reported it had recovered from the last fault."""


async def record(client: Client, into: list[int]) -> None:
    while True:
        into.append(int((await client.expect("seq", within=60)).payload))


def health(server: Server) -> dict[str, Any]:
    multihome: dict[str, Any] | None = server.health()["multihome"]
    assert multihome is not None
    return multihome


def backend_connected(server: Server) -> bool:
    return bool(health(server)["backend"]["state"] == "connected")


def queued(server: Server) -> int:
    """Messages the bridge has taken into its outbox: those still in it and those it dropped."""
    state = health(server)
    return int(state["outbox"]) + int(state["outbox_dropped"])


def broadcast_without_waiting(server: Server, i: int) -> None:
    """Broadcast message ``i``, and check the call cannot have waited on the backend: its coroutine
    finishes on its first step, without suspending once, having queued the message in the outbox."""
    before = queued(server)
    call = server.broadcast("seq", str(i))
    try:
        suspended_on = call.send(None)
    except StopIteration:
        pass
    else:
        call.close()
        raise AssertionError(f"broadcast {i} suspended (on {suspended_on!r}): it waited on something")
    assert queued(server) == before + 1, "the broadcast must leave its message in the outbox"


def subscriber_back(server: Server) -> bool:
    """The server's subscriber failed at least once and is connected (subscribed) again."""
    backend = health(server)["backend"]
    return bool(backend["reconnects"] >= 1 and backend["state"] == "connected")


async def run_stream(
    a: Server, count: int, faults: Faults, recovered: Callable[[], bool], stream: Stream
) -> None:
    """Broadcast sequenced messages from ``a``, running ``faults[i]`` before message i: ``count`` of
    them, and more if needed until ``TAIL`` were sent after ``recovered()`` held past the last fault."""
    last_fault = max(faults)
    i = 0
    while i < count or stream.recovered_at is None or i - stream.recovered_at < TAIL:
        assert i < count + MAX_EXTRA, "B never reported that it had recovered"
        if i in faults:
            if stream.had_before_fault is None:
                stream.had_before_fault = len(stream.remote)
            await faults[i]()
        if stream.recovered_at is None and i >= last_fault and recovered():
            stream.recovered_at = i
        broadcast_without_waiting(a, i)
        i += 1
        stream.sent = i
        await asyncio.sleep(INTERVAL)


def backend(redis: RedisServer) -> RedisBackend:
    return RedisBackend(redis.url, group="faults")


async def stream_between_two_instances(
    redis: RedisServer, count: int, faults: Faults
) -> tuple[Stream, dict[str, Any]]:
    """Run the stream from A to B; returns it with B's multihome health at the end."""
    a, b = echo_server(backend=backend(redis)), echo_server(backend=backend(redis))
    async with running(make_app(a), a) as url_a, running(make_app(b), b) as url_b:
        async with connect_client(url_a) as on_a, connect_client(url_b) as on_b:
            stream = Stream()
            readers = [
                asyncio.create_task(record(on_a, stream.local)),
                asyncio.create_task(record(on_b, stream.remote)),
            ]
            try:
                await run_stream(a, count, faults, lambda: subscriber_back(b), stream)
                # Everything still on its way arrives, or is counted lost, once the stream is over.
                await eventually(lambda: len(stream.local) == stream.sent, within=20)
                await eventually(
                    lambda: (
                        bool(stream.remote)
                        and stream.remote[-1] == stream.sent - 1
                        and health(b)["outbox"] == 0
                    ),
                    within=20,
                )
                await eventually(lambda: health(a)["outbox"] == 0, within=20)
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            # Both end up connected (re-read on every check: the state may pass through another,
            # such as a late self-probe under load, on the way).
            for server in (a, b):
                await eventually(functools.partial(backend_connected, server), within=20)
            return stream, health(b)


def check_stream(stream: Stream, on_b: dict[str, Any]) -> None:
    count = stream.sent
    assert stream.local == list(range(count)), "local delivery must never stop or reorder"
    assert stream.remote == sorted(set(stream.remote)), "no duplicates, per-publisher order kept"
    missing = set(range(count)) - set(stream.remote)
    assert on_b["lost"] == len(missing), "every lost message is counted, and nothing else"
    assert on_b["delivered"] == len(stream.remote), "what B's bridge delivered reached its client once"
    assert on_b["received"] == on_b["delivered"] + on_b["duplicates"], "nothing else dropped on B"
    assert stream.had_before_fault is not None
    assert stream.recovered_at is not None
    # Losses only around the fault: none among as many messages as B had when the fault struck
    # (nothing was lost before it), and none sent once B reported it was back.
    window = range(stream.had_before_fault, stream.recovered_at)
    assert missing <= set(window), (sorted(missing - set(window)), window)
    assert count - stream.recovered_at >= TAIL  # and all of those arrived


async def test_subscriber_connection_killed_during_a_stream(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis_server.client()

    async def kill_subscribers() -> None:
        killed = await admin.client_kill_filter(_type="pubsub")
        assert int(killed) >= 2

    try:
        stream, on_b = await stream_between_two_instances(redis_server, 600, {200: kill_subscribers})
    finally:
        await admin.aclose()
    check_stream(stream, on_b)
    assert on_b["backend"]["reconnects"] >= 1
    lost = "lost the connection to Redis"
    loud = [r for r in caplog.records if r.levelname == "ERROR" and lost in r.message]
    assert loud, "losing the subscriber connection must be logged as an error"


async def test_redis_killed_and_restarted_during_a_stream(redis_server: RedisServer) -> None:
    # Killed, then restarted on the same port.
    faults: Faults = {200: redis_server.kill, 500: redis_server.start}
    stream, on_b = await stream_between_two_instances(redis_server, 1000, faults)
    # Every broadcast during the outage returned at once (checked as it was made), and
    # cross-instance delivery resumed: everything sent once B was subscribed again reached it.
    check_stream(stream, on_b)
    assert on_b["backend"]["reconnects"] >= 1
