"""MongoDB faults during a stream, over the stand-in: a killed cursor, dropped connections, a server
restart, and the capped collection wrapping past a reader.

A stream of sequenced broadcasts runs from instance A; a client on A (local delivery) and a client on
B (cross-instance) record what arrives. Everywhere, and without timing anything: local delivery never
stops; every broadcast call finishes without suspending once (so it cannot have waited on MongoDB)
and leaves its message in A's outbox; nothing reaches a client twice or out of order; and the losses
B counts from the envelopes' sequence numbers equal the messages that really never arrived. A killed
cursor, dropped connections and a restart lose nothing at all: the collection keeps the messages, the
reader resumes after the last one it read, and the bridge's outbox holds what could not be published
meanwhile. A publish that failed after its insert happened is published again, and B drops the copy
as a counted duplicate: that is correct, and allowed. A wrap loses messages, one contiguous run of
them around the wrap, and B reports the gap.
"""

from __future__ import annotations

import asyncio
import functools
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
TAIL = 50
"""Messages the stream sends, at least, after ``recovered()`` first held past the last fault."""
MAX_EXTRA = 5000
"""Messages the stream may add to its count while waiting for ``recovered()``, before it gives up."""

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
    """The first message sent after ``recovered()`` held past the last fault (if it was asked)."""


@pytest.fixture
async def standin() -> Any:
    async with MongoStandIn() as server:
        yield server


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


async def record(client: Client, into: list[int]) -> None:
    while True:
        into.append(int((await client.expect("seq", within=60)).payload))


async def stream_between_two_instances(
    standin: MongoStandIn,
    count: int,
    faults: Faults,
    recovered: Callable[[Server, Stream], bool] | None = None,
) -> tuple[Stream, dict[str, Any]]:
    """Broadcast sequenced messages from A, running ``faults[i]`` before message i: ``count`` of them,
    and with ``recovered`` (given B and the stream so far) more if needed, until ``TAIL`` were sent
    after it held past the last fault. Returns what arrived where, and B's multihome health once
    everything arrived or was counted lost."""
    a = echo_server(backend=MongoBackend(standin.url, collection="faults"))
    b = echo_server(backend=MongoBackend(standin.url, collection="faults"))
    stream = Stream()
    last_fault = max(faults)
    async with running(make_app(a), a) as url_a, running(make_app(b), b) as url_b:
        async with connect_client(url_a) as on_a, connect_client(url_b) as on_b:
            readers = [
                asyncio.create_task(record(on_a, stream.local)),
                asyncio.create_task(record(on_b, stream.remote)),
            ]
            try:
                i = 0
                while i < count or (
                    recovered is not None and (stream.recovered_at is None or i - stream.recovered_at < TAIL)
                ):
                    assert i < count + MAX_EXTRA, "B never recovered"
                    if i in faults:
                        if stream.had_before_fault is None:
                            stream.had_before_fault = len(stream.remote)
                        await faults[i]()
                    if (
                        recovered is not None
                        and stream.recovered_at is None
                        and i >= last_fault
                        and recovered(b, stream)
                    ):
                        stream.recovered_at = i
                    broadcast_without_waiting(a, i)
                    i += 1
                    stream.sent = i
                    await asyncio.sleep(INTERVAL)
                await eventually(lambda: len(stream.local) == stream.sent, within=20)
                await eventually(
                    lambda: (
                        bool(stream.remote)
                        and stream.remote[-1] == stream.sent - 1
                        and health(a)["outbox"] == 0
                    ),
                    within=20,
                )
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            # Both end up connected (re-read on every check: the state may pass through another,
            # such as a late self-probe under load, on the way).
            for server in (a, b):
                await eventually(functools.partial(backend_connected, server), within=20)
            return stream, health(b)


def check_stream(stream: Stream, on_b: dict[str, Any]) -> set[int]:
    """The checks every fault shares; returns the messages B never got.

    Not checked: that B counted no duplicate. A publish that timed out or lost its connection after
    MongoDB took the insert is published again (the bridge cannot tell), and B drops the second copy
    by its sequence number and counts it: a correct system can count duplicates, but must never
    deliver one.
    """
    count = stream.sent
    assert stream.local == list(range(count)), "local delivery must never stop or reorder"
    assert stream.remote == sorted(set(stream.remote)), "no duplicates delivered, per-publisher order kept"
    missing = set(range(count)) - set(stream.remote)
    assert on_b["lost"] == len(missing), "every lost message is counted, and nothing else"
    assert on_b["delivered"] == len(stream.remote), "what B's bridge delivered reached its client once"
    # Every envelope B read was delivered once or dropped as a duplicate of one delivered.
    assert on_b["received"] == on_b["delivered"] + on_b["duplicates"]
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
        r for r in caplog.records if r.levelname == "ERROR" and "lost the connection to MongoDB" in r.message
    ]
    assert loud, "losing the connection must be logged as an error"


def reader_back(b: Server, _stream: Stream) -> bool:
    """B's reader lost its connection at least once and is connected (reading) again."""
    backend = health(b)["backend"]
    return bool(backend["reconnects"] >= 1 and backend["state"] == "connected")


async def test_mongo_restarted_during_a_stream_loses_nothing(standin: MongoStandIn) -> None:
    # Stop: same port, the data kept, the connections and cursors gone; then a mongod restart.
    stream, on_b = await stream_between_two_instances(
        standin, 1000, {200: standin.stop, 500: standin.start}, recovered=reader_back
    )
    # The outbox held what could not be published; and cross-instance delivery resumed: the stream
    # went on past B reporting its reader connected again, and all of it arrived.
    assert check_stream(stream, on_b) == set()
    assert stream.recovered_at is not None
    assert stream.sent - stream.recovered_at >= TAIL
    assert on_b["backend"]["reconnects"] >= 1


async def test_a_wrap_during_a_stream_is_a_counted_gap_and_the_stream_goes_on(
    standin: MongoStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    async def wrap() -> None:
        # Other writers fill the collection past B's read position before B reads again.
        standin.wrap("typed_ss", "faults")

    def read_past_the_wrap(_b: Server, stream: Stream) -> bool:
        # B read a message A sent after the wrap: its reader is past the gap, so it reads on after
        # that message, and gets everything sent from now on.
        return bool(stream.remote) and stream.remote[-1] >= 200

    stream, on_b = await stream_between_two_instances(standin, 600, {200: wrap}, recovered=read_past_the_wrap)
    missing = check_stream(stream, on_b)
    assert stream.had_before_fault is not None
    assert stream.recovered_at is not None
    # One gap, around the wrap: none among as many messages as B had when the wrap came (nothing was
    # lost before it), and none sent once B read past the wrap.
    if missing:
        assert missing == set(range(min(missing), max(missing) + 1)), sorted(missing)
        assert stream.had_before_fault <= min(missing)
        assert max(missing) < stream.recovered_at
    assert on_b["backend"]["detail"]["position_lost"] >= 1
    assert any(r.levelname == "ERROR" and "wrapped past" in r.message for r in caplog.records)
    # Delivery went on: past the wrap, to the last message.
    assert stream.sent - stream.recovered_at >= TAIL
    assert stream.remote[-1] == stream.sent - 1
