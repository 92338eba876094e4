"""How many messages one broker node passes on, at most: the scale scenario's last measurement.

The typed-ss instances cannot saturate a broker on a 2-core machine that also runs them (they need
hundreds of microseconds of CPU per cast; a broker, a few). So the load generator speaks the
broker's own protocol, with no typed-ss in the way: ``fanout`` subscriber connections (the instances
a cast reaches) and one publisher that pipelines publishes of a typed-ss envelope's size, for
``seconds``, on one node:

- Redis: ``SUBSCRIBE``/``PUBLISH`` on the redis-server; Redis Cluster: ``SSUBSCRIBE``/``SPUBLISH``
  on ``master-1``, on a channel of a slot it serves (the master's own ceiling; its replica gets every
  message over the cluster bus, and its CPU is read too);
- NATS: ``SUB``/``PUB`` on ``nats-1``, each batch of publishes followed by a ``PING`` (its ``PONG``
  says the node has read them).

Every message the subscribers must get is counted (by bytes: every frame has the same size), and the
publisher waits whenever more than :data:`IN_FLIGHT` deliveries are still on their way, so what is
measured is what the node sustains, never a backlog (a Redis subscriber that falls 8 MiB behind for a
minute, or 32 MiB at once, is disconnected; a NATS one past 64 MiB). Figures: publishes/s,
deliveries/s, the node's CPU (by PID: cores, and µs per publish), the load generator's (when it nears
a whole core, it set the pace, and the node's CPU per publish is the figure to use).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final, cast

from benchmarks import procstat

__all__ = ["ENVELOPE_SIZE", "ceiling"]

ENVELOPE_SIZE: Final = 150
"""Bytes of each message: about what typed-ss publishes for a 64-byte broadcast (its envelope)."""
BATCH: Final = 200
"""Publishes written at once."""
IN_FLIGHT: Final = 50_000
"""Deliveries that may be on their way before the publisher waits."""
TIMEOUT: Final = 30.0


class _Counting(asyncio.Protocol):
    """A connection that counts the bytes it receives, and wakes whoever waits on it."""

    def __init__(self, changed: asyncio.Event) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.received = 0
        self.changed = changed  # shared by every connection of a flood
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream's transport writes (uvloop's derives from none of asyncio's transport classes).
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.changed.set()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def until(self, size: int, within: float = TIMEOUT) -> None:
        """Wait until ``size`` bytes have arrived in all."""
        async with asyncio.timeout(within):
            while True:
                self.changed.clear()  # before looking: what arrives after the look wakes the wait
                if self.received >= size:
                    return
                if self.lost:
                    raise ConnectionError("the broker closed the connection")
                await self.changed.wait()


async def _open(port: int, changed: asyncio.Event) -> _Counting:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: _Counting(changed), "127.0.0.1", port)
    return protocol


def _resp(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


class _Wire:
    """One broker's protocol: how to subscribe, publish, and how large each frame is."""

    def __init__(self, backend: str, channel: bytes, fanout: int) -> None:
        self.backend = backend
        payload = b"x" * ENVELOPE_SIZE
        if backend == "nats":
            self.hello = b'CONNECT {"verbose":false,"pedantic":false,"echo":false}\r\n'
            self.subscribe = self.hello + b"SUB %s 1\r\nPING\r\n" % channel
            self.subscribed = b"PONG\r\n"
            self.delivery = b"MSG %s 1 %d\r\n%s\r\n" % (channel, len(payload), payload)
            publish = b"PUB %s %d\r\n%s\r\n" % (channel, len(payload), payload)
            self.batch = publish * BATCH + b"PING\r\n"
            self.answer = len(b"PONG\r\n")  # per batch
        else:
            sharded = backend == "redis-cluster"
            sharded_commands = (b"SSUBSCRIBE", b"ssubscribe", b"SPUBLISH")
            subscribe, kind, publish_command = (
                sharded_commands if sharded else (b"SUBSCRIBE", b"subscribe", b"PUBLISH")
            )
            self.hello = b""
            self.subscribe = _resp(subscribe, channel)
            self.subscribed = b"*3\r\n" + _resp(kind, channel)[4:] + b":1\r\n"
            message = b"smessage" if sharded else b"message"
            self.delivery = _resp(message, channel, payload)
            self.batch = _resp(publish_command, channel, payload) * BATCH
            self.answer = len(b":%d\r\n" % fanout) * BATCH  # each publish answered with its receivers


async def _skip_info(conn: _Counting, backend: str) -> None:
    """NATS greets every connection with an ``INFO`` line: wait for it, and count from after it."""
    if backend == "nats":
        await conn.until(1)
        await asyncio.sleep(0.05)  # the whole line (it is one write)
        conn.received = 0


async def ceiling(
    backend: str, port: int, pids: list[int], channel: str, fanout: int, seconds: float
) -> dict[str, Any]:
    """Flood the node on ``port`` (its process and, for Redis Cluster, its replica: ``pids``, the
    node first) with publishes to ``channel`` for ``seconds``, ``fanout`` subscribers on it; the
    figures (module docstring)."""
    wire = _Wire(backend, channel.encode(), fanout)
    changed = asyncio.Event()
    subscribers = [await _open(port, changed) for _ in range(fanout)]
    publisher = await _open(port, changed)
    try:
        for conn in [*subscribers, publisher]:
            await _skip_info(conn, backend)
        for conn in subscribers:
            conn.send(wire.subscribe)
            await conn.until(len(wire.subscribed))
            conn.received -= len(wire.subscribed)
        if wire.hello:
            publisher.send(wire.hello)
        return await _flood(wire, publisher, subscribers, pids, seconds)
    finally:
        for conn in [*subscribers, publisher]:
            if conn.transport is not None:
                conn.transport.close()


async def _flood(
    wire: _Wire, publisher: _Counting, subscribers: list[_Counting], pids: list[int], seconds: float
) -> dict[str, Any]:
    size, fanout = len(wire.delivery), len(subscribers)
    cpu = [procstat.cpu_seconds(pid) for pid in pids]
    client = time.process_time()
    started = time.perf_counter()
    batches = 0

    def delivered() -> int:
        return sum(conn.received // size for conn in subscribers)

    def waiting() -> bool:
        """More than IN_FLIGHT deliveries on their way, or two batches not answered yet."""
        unanswered = publisher.received < (batches - 2) * wire.answer
        return unanswered or batches * BATCH * fanout - delivered() > IN_FLIGHT

    changed = publisher.changed
    while time.perf_counter() - started < seconds:
        while True:
            changed.clear()  # before looking: what arrives after the look wakes the wait
            if not waiting():
                break
            if any(conn.lost for conn in [publisher, *subscribers]):
                raise ConnectionError(f"{wire.backend}: the broker closed a connection during the flood")
            async with asyncio.timeout(TIMEOUT):
                await changed.wait()
        publisher.send(wire.batch)
        batches += 1
    publishes = batches * BATCH
    await publisher.until(batches * wire.answer)
    for conn in subscribers:
        await conn.until(publishes * size)
    wall = time.perf_counter() - started
    used = [procstat.cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]
    figures: dict[str, Any] = {
        "fanout": fanout,
        "publishes": publishes,
        "seconds": wall,
        "publishes_per_s": publishes / wall,
        "deliveries_per_s": publishes * fanout / wall,
        "node_cpu_util": used[0] / wall,
        "node_cpu_us_per_publish": used[0] / publishes * 1e6,
        "client_cpu_util": (time.process_time() - client) / wall,
    }
    if len(used) > 1:  # Redis Cluster: the master's replica, fed over the cluster bus
        figures["replica_cpu_util"] = used[1] / wall
        figures["replica_cpu_us_per_publish"] = used[1] / publishes * 1e6
    return figures
