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

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.backends.fault_stream import (
    TAIL,
    Faults,
    Recovered,
    Stream,
    check_stream,
    reconnected,
    stream_between_two_instances,
)
from tests.mongo_standin import MongoStandIn
from tests.support import free_port
from typed_ss import Server
from typed_ss.backends.mongo import MongoBackend

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@pytest.fixture
async def standin() -> AsyncIterator[MongoStandIn]:
    server = MongoStandIn()
    server.port = free_port()  # restarted on its port: one no other process takes meanwhile
    async with server:
        yield server


async def stream_on(
    standin: MongoStandIn, count: int, faults: Faults, recovered: Recovered | None = None
) -> tuple[Stream, dict[str, Any]]:
    """The stream from A to B (:func:`tests.backends.fault_stream.stream_between_two_instances`),
    both on one collection of the stand-in."""
    return await stream_between_two_instances(
        lambda: MongoBackend(standin.url, collection="faults"), count, faults, recovered
    )


async def test_cursors_killed_during_a_stream_lose_nothing(standin: MongoStandIn) -> None:
    async def kill() -> None:
        assert standin.kill_cursors() >= 2

    stream, on_b = await stream_on(standin, 600, {200: kill, 400: kill})
    assert check_stream(stream, on_b) == set()
    assert on_b["backend"]["detail"]["cursor_restarts"] >= 2
    assert on_b["backend"]["detail"]["position_lost"] == 0


async def test_connections_dropped_during_a_stream_lose_nothing(
    standin: MongoStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    async def drop() -> None:
        assert await standin.drop_connections() >= 2

    stream, on_b = await stream_on(standin, 600, {200: drop})
    assert check_stream(stream, on_b) == set()
    assert on_b["backend"]["reconnects"] >= 1
    loud = [
        r for r in caplog.records if r.levelname == "ERROR" and "lost the connection to MongoDB" in r.message
    ]
    assert loud, "losing the connection must be logged as an error"


async def test_mongo_restarted_during_a_stream_loses_nothing(standin: MongoStandIn) -> None:
    # Stop: same port, the data kept, the connections and cursors gone; then a mongod restart.
    stream, on_b = await stream_on(
        standin, 1000, {200: standin.stop, 500: standin.start}, recovered=reconnected
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

    stream, on_b = await stream_on(standin, 600, {200: wrap}, recovered=read_past_the_wrap)
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
