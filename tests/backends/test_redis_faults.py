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

import pytest

from tests.backends.fault_stream import (
    Faults,
    check_losses_only_around_the_faults,
    check_stream,
    reconnected,
    stream_between_two_instances,
)
from tests.backends.redis_server import RedisServer
from typed_ss.backends.redis import RedisBackend

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


def backend(redis: RedisServer) -> RedisBackend:
    return RedisBackend(redis.url, group="faults")


async def test_subscriber_connection_killed_during_a_stream(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis_server.client()

    async def kill_subscribers() -> None:
        killed = await admin.client_kill_filter(_type="pubsub")
        assert int(killed) >= 2

    try:
        stream, on_b = await stream_between_two_instances(
            lambda: backend(redis_server), 600, {200: kill_subscribers}, recovered=reconnected
        )
    finally:
        await admin.aclose()
    check_losses_only_around_the_faults(stream, check_stream(stream, on_b))
    assert on_b["backend"]["reconnects"] >= 1
    lost = "lost the connection to Redis"
    loud = [r for r in caplog.records if r.levelname == "ERROR" and lost in r.message]
    assert loud, "losing the subscriber connection must be logged as an error"


async def test_redis_killed_and_restarted_during_a_stream(redis_server: RedisServer) -> None:
    # Killed, then restarted on the same port.
    faults: Faults = {200: redis_server.kill, 500: redis_server.start}
    stream, on_b = await stream_between_two_instances(
        lambda: backend(redis_server), 1000, faults, recovered=reconnected
    )
    # Every broadcast during the outage returned at once (checked as it was made), and
    # cross-instance delivery resumed: everything sent once B was subscribed again reached it.
    check_losses_only_around_the_faults(stream, check_stream(stream, on_b))
    assert on_b["backend"]["reconnects"] >= 1
