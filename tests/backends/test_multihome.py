"""The hub's bridge to a backend, over the memory backend: ordering at connect, restarts."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.apps import echo_server, make_app
from tests.support import connect_client, eventually, parse_server_frame, running
from typed_ss import MultihomeHealth, Server
from typed_ss.backends import MemoryBackend, MemoryBroker
from typed_ss.hub import Hub
from typed_ss.multihome import BROADCAST_TOPIC, ENVELOPE_VERSION, Envelope, Multihome

pytestmark = pytest.mark.timeout(60)


class GatedBackend(MemoryBackend):
    """A memory backend whose room subscriptions wait until the test opens the gate."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def subscribe(self, topic: str) -> None:
        if topic.startswith("r:"):  # a room's (the broadcasts and the control plane's go through)
            self.waiting.set()
            await self.gate.wait()
        await super().subscribe(topic)


def multihome(ss: Server) -> MultihomeHealth:
    health = ss.health().multihome
    assert health is not None
    return health


async def test_hello_is_the_first_frame_even_when_a_cast_arrives_while_the_socket_attaches() -> None:
    backend = GatedBackend(MemoryBroker())
    ss = echo_server(backend=backend)
    async with running(make_app(ss), ss) as url:

        async def first_two_frames() -> list[str]:
            async with connect(url + "/socket", subprotocols=[Subprotocol("sac-sock")]) as ws:
                return [parse_server_frame(await ws.recv()).event for _ in range(3)]

        frames = asyncio.create_task(first_two_frames())
        await asyncio.wait_for(backend.waiting.wait(), 10)  # the socket is attaching
        await ss.broadcast("early", "x")  # reaches the socket, but never before its __hello
        backend.gate.set()
        await ss.broadcast("late", "y")
        assert await asyncio.wait_for(frames, 10) == ["__hello", "early", "late"]


async def test_a_restarted_instance_with_a_stable_id_is_recognised_by_its_boot_epoch() -> None:
    broker = MemoryBroker()
    receiver = echo_server(backend=MemoryBackend(broker))
    async with running(make_app(receiver), receiver) as url, connect_client(url) as client:
        for boot in range(2):
            sender = echo_server(backend=MemoryBackend(broker), instance_id="sender-1")
            await sender.startup()
            try:
                for i in range(3):
                    await sender.broadcast("n", f"{boot}-{i}")
                    assert (await client.expect("n")).payload == f"{boot}-{i}"
            finally:
                await sender.shutdown()
        # Read health afresh on every check: a snapshot taken once never changes.
        await eventually(lambda: multihome(receiver).delivered == 6)
        health = multihome(receiver)
        assert (health.restarts_seen, health.lost, health.duplicates) == (1, 0, 0)


async def test_undecodable_envelopes_are_counted_as_malformed_and_never_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    multihome = Multihome(Hub(), MemoryBackend(MemoryBroker()), max_envelope_size=1 << 20)
    valid = msgspec.msgpack.encode(
        Envelope(
            v=ENVELOPE_VERSION,
            origin="other",
            epoch=5,
            stream=1,
            seq=1,
            kind="broadcast",
            room=None,
            event="ev",
            letter="S",
            payload=b"hi",
        )
    )
    fields = valid[0] & 0x0F  # a msgpack fixarray header
    bad = [
        valid.replace(b"\xa5other", b"\xa5oth\xff\xfe"),  # a string that is not UTF-8
        valid.replace(b"\xa2ev", b"\xa2\xc3("),  # a truncated two-byte sequence
        # One element too many, nested past the interpreter's recursion limit.
        bytes([0x90 | (fields + 1)]) + valid[1:] + b"\x91" * 100_000 + b"\xc0",
    ]
    for data in bad:
        multihome.receive(BROADCAST_TOPIC, data)
    assert multihome.counters["malformed"] == len(bad)
    assert multihome.counters["delivered"] == 0
    rejected = [r for r in caplog.records if "dropped a message (malformed)" in r.getMessage()]
    assert len(rejected) == len(bad)
    assert all(r.levelno == logging.WARNING for r in rejected)
    multihome.receive(BROADCAST_TOPIC, valid)  # and the next good message is delivered
    assert multihome.counters["delivered"] == 1
