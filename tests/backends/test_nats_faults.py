"""NATS faults during a stream: nats-server killed and restarted on its port, and one node of a
3-node NATS cluster killed.

A stream of sequenced broadcasts runs from instance A; a client on A (local delivery) and a client on
B (cross-instance) record what arrives (``tests/backends/fault_stream.py``). The checks, none of which
times anything: local delivery never stops; every broadcast call finishes without suspending once (so
it cannot have waited on NATS, up or down) and leaves its message in A's outbox; B loses only
messages it had not received when the fault struck and that were sent before B reported its
connection made again (and its subscriptions confirmed), and gets every message sent after that; and
the losses B counts from the envelopes' sequence numbers equal the messages that really never
arrived.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.backends.fault_stream import (
    Faults,
    check_losses_only_around_the_faults,
    check_stream,
    reconnected,
    stream_between_two_instances,
)
from tests.backends.nats_server import NatsCluster, NatsServer
from typed_ss.backends import Backend
from typed_ss.backends.nats import NatsBackend

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster", size=3)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.kill()


async def test_nats_killed_and_restarted_during_a_stream(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Killed (SIGKILL, by its PID), then started again on the same port.
    faults: Faults = {200: nats_server.kill, 500: nats_server.start}
    stream, on_b = await stream_between_two_instances(
        lambda: NatsBackend(nats_server.url, group="faults"), 1000, faults, recovered=reconnected
    )
    # Every broadcast during the outage returned at once (checked as it was made), and
    # cross-instance delivery resumed: everything sent once B was subscribed again reached it.
    check_losses_only_around_the_faults(stream, check_stream(stream, on_b))
    assert on_b["backend"]["reconnects"] >= 1
    lost = "lost the connection to NATS"
    loud = [r for r in caplog.records if r.levelname == "ERROR" and lost in r.message]
    assert loud, "losing the connection must be logged as an error"
    back = [r for r in caplog.records if r.levelname == "WARNING" and "reconnected to NATS" in r.message]
    assert back, "the reconnection is logged as a warning"


async def test_a_cluster_node_killed_during_a_stream(nats_cluster: NatsCluster) -> None:
    # A is given node 0 first, B node 1, each with every node's URL and no shuffling: A connects to
    # node 0 and B to node 1. Node 1 is killed: B moves to another node (node 0, the next in its
    # list), subscribes again there, and the stream reaches it again through that node.
    made: list[NatsBackend] = []

    def backend_on(first: int) -> Callable[[], Backend]:
        def make() -> Backend:
            backend = NatsBackend(nats_cluster.urls(first), group="faults", dont_randomize=True)
            made.append(backend)
            return backend

        return make

    makers = iter([backend_on(0), backend_on(1)])
    b_node = nats_cluster.nodes[1]

    async def kill_b_node() -> None:
        a, b = made
        assert a.health().detail["server"] == f"127.0.0.1:{nats_cluster.nodes[0].port}"
        assert b.health().detail["server"] == f"127.0.0.1:{b_node.port}"
        await b_node.kill()

    stream, on_b = await stream_between_two_instances(
        lambda: next(makers)(), 600, {200: kill_b_node}, recovered=reconnected
    )
    check_losses_only_around_the_faults(stream, check_stream(stream, on_b))
    assert on_b["backend"]["reconnects"] >= 1
    assert on_b["backend"]["detail"]["server"] != f"127.0.0.1:{b_node.port}"
    on_a = made[0].health()
    assert on_a.reconnects == 0, "A's node stayed up: A kept its connection"
