"""The fault-stream harness that the Redis and MongoDB fault tests share.

A stream of sequenced broadcasts runs from instance A; a client on A (local delivery) and a client on
B (cross-instance) record what arrives, while ``faults[i]`` strike before message ``i``. Nothing is
timed: every broadcast call must finish without suspending once (so it cannot have waited on the
broker, up or down) and leave its message in A's outbox; afterwards :func:`check_stream` holds what
arrived against what B's bridge counted.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tests.apps import echo_server, make_app
from tests.support import Client, connect_client, eventually, running
from typed_ss import Server
from typed_ss.backends import Backend

__all__ = [
    "INTERVAL",
    "MAX_EXTRA",
    "TAIL",
    "Faults",
    "Recovered",
    "Stream",
    "broadcast_without_waiting",
    "check_losses_only_around_the_faults",
    "check_stream",
    "health",
    "reconnected",
    "stream_between_two_instances",
]

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


Recovered = Callable[[Server, Stream], bool]
"""Whether B has recovered from the last fault, given B and the stream so far."""


def health(server: Server) -> dict[str, Any]:
    """The server's multihome health as a plain dict (the harness compares many counters at once)."""
    multihome = server.health().multihome
    assert multihome is not None
    counters: dict[str, Any] = msgspec.to_builtins(multihome)
    return counters


def backend_connected(server: Server) -> bool:
    return bool(health(server)["backend"]["state"] == "connected")


def reconnected(b: Server, _stream: Stream) -> bool:
    """B's backend lost its connection at least once and is connected (subscribed, reading) again."""
    backend = health(b)["backend"]
    return bool(backend["reconnects"] >= 1 and backend["state"] == "connected")


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
        frame = await client.recv(within=60)
        if frame.event == "__gap":
            continue  # the bridge telling the members of a loss: counted in its health, checked there
        assert frame.event == "seq", frame
        into.append(int(frame.payload))


async def run_stream(
    a: Server, b: Server, count: int, faults: Faults, recovered: Recovered | None, stream: Stream
) -> None:
    """Broadcast sequenced messages from ``a``, running ``faults[i]`` before message i: ``count`` of
    them, and with ``recovered`` more if needed, until ``TAIL`` were sent after it held past the last
    fault."""
    last_fault = max(faults)
    i = 0
    while i < count or (
        recovered is not None and (stream.recovered_at is None or i - stream.recovered_at < TAIL)
    ):
        assert i < count + MAX_EXTRA, "B never reported that it had recovered"
        if i in faults:
            if stream.had_before_fault is None:
                stream.had_before_fault = len(stream.remote)
            await faults[i]()
        if recovered is not None and stream.recovered_at is None and i >= last_fault and recovered(b, stream):
            stream.recovered_at = i
        broadcast_without_waiting(a, i)
        i += 1
        stream.sent = i
        await asyncio.sleep(INTERVAL)


async def stream_between_two_instances(
    backend: Callable[[], Backend], count: int, faults: Faults, recovered: Recovered | None = None
) -> tuple[Stream, dict[str, Any]]:
    """Run the stream from A to B, two echo servers each on a ``backend()`` of its own. Returns what
    arrived where, and B's multihome health once everything arrived or was counted lost and both
    outboxes are empty."""
    a, b = echo_server(backend=backend()), echo_server(backend=backend())
    stream = Stream()
    async with running(make_app(a), a) as url_a, running(make_app(b), b) as url_b:
        async with connect_client(url_a) as on_a, connect_client(url_b) as on_b:
            readers = [
                asyncio.create_task(record(on_a, stream.local)),
                asyncio.create_task(record(on_b, stream.remote)),
            ]
            try:
                await run_stream(a, b, count, faults, recovered, stream)
                # Everything still on its way arrives, or is counted lost, once the stream is over.
                await eventually(lambda: len(stream.local) == stream.sent, within=20)
                await eventually(
                    lambda: (
                        bool(stream.remote)
                        and stream.remote[-1] == stream.sent - 1
                        and health(a)["outbox"] == 0
                        and health(b)["outbox"] == 0
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
    the broker took it is published again (the bridge cannot tell), and B drops the second copy by
    its sequence number and counts it: a correct system can count duplicates, but must never deliver
    one.
    """
    count = stream.sent
    assert stream.local == list(range(count)), "local delivery must never stop or reorder"
    assert stream.remote == sorted(set(stream.remote)), "no duplicates delivered, per-publisher order kept"
    missing = set(range(count)) - set(stream.remote)
    assert on_b["lost"] == len(missing), "every lost message is counted, and nothing else"
    assert on_b["delivered"] == len(stream.remote), "what B's bridge delivered reached its client once"
    # Every envelope B read was delivered once or dropped as a duplicate of one delivered: nothing
    # else was dropped on B.
    assert on_b["received"] == on_b["delivered"] + on_b["duplicates"]
    return missing


def check_losses_only_around_the_faults(stream: Stream, missing: set[int]) -> None:
    """Losses only around the faults: none among as many messages as B had when the first fault
    struck (nothing was lost before it), and none sent once B had recovered; and the stream went on
    for ``TAIL`` messages after that (all of which arrived)."""
    assert stream.had_before_fault is not None
    assert stream.recovered_at is not None
    window = range(stream.had_before_fault, stream.recovered_at)
    assert missing <= set(window), (sorted(missing - set(window)), window)
    assert stream.sent - stream.recovered_at >= TAIL
