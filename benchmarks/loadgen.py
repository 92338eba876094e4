"""The load generator: one scenario against one server kind, in its own process.

    python -m benchmarks.loadgen '<JSON spec>'

prints one line of JSON with the scenario's figures (the ``presence`` scenario's side is in
:mod:`benchmarks.presence`, the ``scale`` scenario's in :mod:`benchmarks.scale`). Connections are
callback-driven (no task or future per message), on picows when it is installed (the fastest asyncio
client here), else on websockets (a core dependency: slower, used only so the harness's smoke test
runs without the bench group; the result says which).
The generator measures its own CPU per message, so a report shows when the client, not the server, was
the limit, and the server's CPU (user + system, by PID) over the same window, both in nanoseconds
(:mod:`benchmarks.procstat`; the server's kernel part in clock ticks).

Each server kind has its own wire format for the same operations (see :mod:`benchmarks.servers`):

- typed-ss, typed-ss-native and typed-ss-recovery (one server, on uvicorn and on the native
  transport, the last with connection state recovery on: one wire), and go (the Go server,
  :mod:`benchmarks.goserver`, speaking the same wire, the original's): ``sac-sock`` frames,
  ``<event> 0x02 <payload>`` up, ``<event> 0x01 S 0x02 <payload>`` down; the connection is ready once
  ``__hello`` has arrived. A call is ``<event> 0x01 c<id> 0x02 <payload>``, its reply
  ``<event> 0x01 Sr<id> 0x02 <reply>`` (docs/protocol.md section 5). With recovery on, every cast
  (a broadcast, a roomcast, an emit to one socket: the echo) carries one more flag,
  ``<event> 0x01 So<tag>.<offset> 0x02 <payload>``; a call's reply does not. No scenario reads the
  flags: echoes are counted, casts matched by a tag in their payload, replies compared whole.
- socketio: Engine.IO v4 / Socket.IO v5 over a WebSocket (``/socket.io/?EIO=4&transport=websocket``):
  ``0{...}`` open, ``40`` connect, ``42["event","payload"]`` events, pings ``2`` answered with ``3``.
  A call (an emit with an ack) is ``42<id>["event","payload"]``, its ack ``43<id>["reply"]``.
- starlette and asgi (the bare Starlette endpoint and the raw ASGI app: one wire, ``bare``): one
  command letter and the payload, echoed or fanned out as it came; a call is ``c<id> 0x02 <payload>``,
  its reply ``r<id> 0x02 <payload>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import procstat

__all__ = ["BARE_KINDS", "PAYLOAD_SIZE", "SAC_SOCK_KINDS", "TYPED_SS_KINDS", "Conn", "Spec", "run", "wire"]

HAVE_PICOWS = importlib.util.find_spec("picows") is not None
PAYLOAD_SIZE = 64
"""Bytes of every message's payload (ASCII, so characters too)."""
CONNECT_CONCURRENCY = 50
"""Handshakes in flight at once while opening connections."""
TIMEOUT = 60.0
"""Seconds any one step (connecting, a round of messages) may take before the run fails."""
CLOSE_TIMEOUT = 5.0
"""Seconds a closing connection waits for the server to end it before dropping it."""


@dataclass
class Spec:
    """What to run: a scenario and its sizes (the orchestrator fills the fields a scenario reads)."""

    scenario: str
    kind: str
    url: str
    """``ws://127.0.0.1:<port>`` of the server (for ``redis``: the instance the sender uses)."""
    server_pids: list[int]
    helper_pids: list[int] = field(default_factory=list)
    """Processes that are part of the system under test but not servers (redis-server): their CPU
    is not counted as other tenants' load."""
    other_url: str = ""
    """``redis``: the instance the receivers use."""
    connections: int = 1
    messages: int = 1000
    warmup: int = 100
    receivers: int = 200
    broadcasts: int = 100
    rooms: int = 100
    members: int = 100
    rounds: int = 10
    client: str = "picows" if HAVE_PICOWS else "websockets"
    extra: dict[str, Any] = field(default_factory=dict)


# --- wire formats ----------------------------------------------------------------------------------

TYPED_SS_KINDS = frozenset({"typed-ss", "typed-ss-native", "typed-ss-recovery"})
"""The typed-ss server kinds (the same server on uvicorn and on the native transport, and on the
native transport with connection state recovery on)."""
SAC_SOCK_KINDS = TYPED_SS_KINDS | {"go"}
"""The server kinds that speak typed-ss's wire, sac-sock: typed-ss's and the Go server's."""
BARE_KINDS = frozenset({"asgi", "starlette"})
"""The server kinds that speak the bare one-letter wire: the raw ASGI app and the Starlette endpoint."""


def wire(kind: str) -> str:
    """The wire format server ``kind`` speaks: ``typed-ss``, ``socketio`` or ``bare``."""
    if kind in SAC_SOCK_KINDS:
        return "typed-ss"
    return "bare" if kind in BARE_KINDS else kind


def path(kind: str) -> str:
    return "/socket.io/?EIO=4&transport=websocket" if kind == "socketio" else "/socket"


def frame(kind: str, event: str, payload: str) -> bytes:
    """The client message asking server ``kind`` for ``event`` with ``payload`` (ASCII, no quotes)."""
    if kind in SAC_SOCK_KINDS:
        return f"{event}\x02{payload}".encode()
    if kind == "socketio":
        return f'42["{event}","{payload}"]'.encode()
    return f"{event[0]}{payload}".encode()  # bare: e(cho), b(c), j(oin), r(c)


def payload(tag: str) -> str:
    """A ``PAYLOAD_SIZE``-byte payload that starts with ``tag`` (so a receiver can tell messages apart)."""
    return tag.ljust(PAYLOAD_SIZE, ".")


def call_frame(kind: str, event: str, call_id: int, payload: str) -> bytes:
    """The client message calling ``event`` of server ``kind`` with ``payload``, as call ``call_id``."""
    if kind in SAC_SOCK_KINDS:
        return f"{event}\x01c{call_id}\x02{payload}".encode()
    if kind == "socketio":
        return f'42{call_id}["{event}","{payload}"]'.encode()
    return f"c{call_id}\x02{payload}".encode()  # bare


def reply_frame(kind: str, event: str, call_id: int, payload: str) -> bytes:
    """The exact message server ``kind`` answers call ``call_id`` of ``event`` with, when the handler
    returns ``payload``: the reply the load generator waits for, and checks byte for byte (the id,
    the event, the type letter and the value; an error reply never matches)."""
    if kind in SAC_SOCK_KINDS:
        return f"{event}\x01Sr{call_id}\x02{payload}".encode()
    if kind == "socketio":
        return f'43{call_id}["{payload}"]'.encode()
    return f"r{call_id}\x02{payload}".encode()  # bare


# --- connections -----------------------------------------------------------------------------------


class Conn:
    """One client connection: sends without waiting, hands every application message to ``on_message``
    once the server kind's handshake is done."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.wire = wire(kind)
        self.on_message: Callable[[bytes], None] = _ignore
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._send: Callable[[bytes], None] = _ignore
        self._close: Callable[[], Awaitable[None]] | None = None
        if self.wire == "bare":
            self.ready.set_result(None)

    def send(self, data: bytes) -> None:
        self._send(data)

    def received(self, data: bytes) -> None:
        if self.ready.done():
            if self.wire == "socketio" and data == b"2":  # Engine.IO ping
                self._send(b"3")
            else:
                self.on_message(data)
        elif self.wire == "typed-ss" or data.startswith(b"40"):  # __hello, or Socket.IO's connected
            self.ready.set_result(None)
        elif data.startswith(b"0"):  # Engine.IO open: connect to the default namespace
            self._send(b"40")

    def lost(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    async def close(self) -> None:
        if self._close is not None:
            await self._close()


def _ignore(*_: object) -> None:
    pass


async def connect(kind: str, url: str, query: str = "") -> Conn:
    """Open one connection to ``url`` (with ``query``, ``?name=value...``, after the path) and finish
    the handshake of server ``kind``."""
    conn = Conn(kind)
    if HAVE_PICOWS:
        await _connect_picows(conn, url + path(kind) + query)
    else:
        await _connect_websockets(conn, url + path(kind) + query)
    await asyncio.wait_for(conn.ready, TIMEOUT)
    return conn


async def _connect_picows(conn: Conn, url: str) -> None:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Listener(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            # Bound here, not after ws_connect returns: the server's first message (Engine.IO's
            # open packet, which needs an answer) can arrive in the same read as the handshake.
            def send(data: bytes) -> None:
                transport.send(WSMsgType.TEXT, data)

            async def close() -> None:
                # A clean close (1000), as a client that leaves sends, and as the websockets client
                # below does: with no close frame, typed-ss with recovery on would keep each
                # socket's session for its window and expire them all during a later measurement.
                transport.send_close(WSCloseCode.OK)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(transport.wait_disconnected(), CLOSE_TIMEOUT)
                transport.disconnect()
                await transport.wait_disconnected()

            conn._send = send
            conn._close = close

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                conn.received(frame.get_payload_as_bytes())
            elif kind is WSMsgType.CLOSE:
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            conn.lost()

    await ws_connect(Listener, url, websocket_handshake_timeout=TIMEOUT)


async def _connect_websockets(conn: Conn, url: str) -> None:
    from websockets.asyncio.client import connect as ws_connect

    ws = await ws_connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=TIMEOUT)
    pending: set[asyncio.Task[None]] = set()

    async def read() -> None:
        with contextlib.suppress(Exception):
            async for message in ws:
                conn.received(message.encode() if isinstance(message, str) else message)
        conn.lost()

    def send(data: bytes) -> None:
        # Tasks start in creation order, and a small send does not suspend, so order is kept.
        task = asyncio.create_task(ws.send(data.decode()))
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def close() -> None:
        await ws.close()
        await reader

    reader = asyncio.create_task(read())
    conn._send = send
    conn._close = close


async def connect_many(kind: str, url: str, count: int) -> list[Conn]:
    """Open ``count`` connections, ``CONNECT_CONCURRENCY`` handshakes at a time."""
    conns: list[Conn] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> None:
        async with gate:
            conns.append(await connect(kind, url))

    async with asyncio.timeout(TIMEOUT + count / 100):
        await asyncio.gather(*(one() for _ in range(count)))
    return conns


async def close_all(conns: list[Conn]) -> None:
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


# --- measuring -------------------------------------------------------------------------------------


def _server_cpu(pids: list[int]) -> tuple[float, float]:
    """The CPU seconds the servers ``pids`` have used so far (user + system, in nanoseconds where the
    kernel offers them), and the system part (in clock ticks: the only clock that splits them)."""
    total = sum(procstat.cpu_seconds(pid) for pid in pids)
    kernel = sum(procstat.cpu_split(pid)[1] for pid in pids)
    return total, kernel


class Window:
    """Wall time, this process's CPU, the servers' CPU and every other process's over one window.

    This process's CPU is :func:`time.process_time` (``CLOCK_PROCESS_CPUTIME_ID`` on Linux: every
    thread, in nanoseconds); the servers' is :func:`procstat.cpu_seconds` (schedstat's nanoseconds)."""

    def __init__(self, server_pids: list[int], helper_pids: list[int] | None = None) -> None:
        self.server_pids = server_pids
        self.helper_pids = helper_pids or []
        self.wall = time.perf_counter()
        self.client = time.process_time()
        self.server, self.server_kernel = _server_cpu(server_pids)
        self.helpers = sum(procstat.cpu_seconds(pid) for pid in self.helper_pids)
        self.system = procstat.system_busy_seconds()

    def end(self, units: int, unit: str) -> dict[str, float]:
        """The window's figures, per ``unit`` (message, delivery) where it says so."""
        wall = time.perf_counter() - self.wall
        client = time.process_time() - self.client
        server, kernel = _server_cpu(self.server_pids)
        server -= self.server
        kernel -= self.server_kernel
        helpers = sum(procstat.cpu_seconds(pid) for pid in self.helper_pids) - self.helpers
        other = max(0.0, procstat.system_busy_seconds() - self.system - client - server - helpers)
        return {
            "seconds": wall,
            f"{unit}s_per_s": units / wall,
            f"server_cpu_us_per_{unit}": server / units * 1e6,
            f"server_kernel_cpu_us_per_{unit}": kernel / units * 1e6,
            f"client_cpu_us_per_{unit}": client / units * 1e6,
            "server_cpu_util": server / wall,
            "client_cpu_util": client / wall,
            "other_cpu_util": other / wall,
        }


def percentiles(samples: list[float], scale: float = 1e6) -> dict[str, float]:
    """p50 and p99 of ``samples`` (seconds), in microseconds (or per ``scale``)."""
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered) * scale,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * scale,
    }


# --- scenarios -------------------------------------------------------------------------------------


async def echo(spec: Spec) -> dict[str, Any]:
    """Closed loop: each connection sends a message and sends the next once its echo is back."""
    conns = await connect_many(spec.kind, spec.url, spec.connections)
    message = frame(spec.kind, "echo", payload("echo"))

    async def phase(per_conn: int, rtts: list[float] | None) -> None:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        running = len(conns)
        clock = time.perf_counter

        def start(conn: Conn) -> None:
            left = per_conn
            sent = clock()

            def on_message(_: bytes) -> None:
                nonlocal left, sent, running
                now = clock()
                if rtts is not None:
                    rtts.append(now - sent)
                left -= 1
                if left:
                    sent = now
                    conn.send(message)
                else:
                    running -= 1
                    if not running and not finished.done():
                        finished.set_result(None)

            conn.on_message = on_message
            conn.send(message)

        for conn in conns:
            start(conn)
        async with asyncio.timeout(TIMEOUT + per_conn * len(conns) / 1000):
            await finished

    return await _closed_loop(spec, conns, phase, "msg")


async def call(spec: Spec) -> dict[str, Any]:
    """Closed loop of calls: each connection calls ``add``, waits for the reply to that call (its id,
    event and value checked), then calls again; the server's handler returns the payload as its reply.
    A reply that is not exactly the expected one fails the run."""
    conns = await connect_many(spec.kind, spec.url, spec.connections)
    data = payload("call")
    kind = spec.kind
    next_ids = [1] * len(conns)  # each connection's next call id: none is reused, warm-up included

    async def phase(per_conn: int, rtts: list[float] | None) -> None:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        running = len(conns)
        clock = time.perf_counter

        def start(index: int, conn: Conn) -> None:
            left = per_conn
            waiting = next_ids[index]
            next_ids[index] += per_conn
            expected = reply_frame(kind, "add", waiting, data)
            sent = clock()

            def on_message(message: bytes) -> None:
                nonlocal left, sent, running, waiting, expected
                now = clock()
                if message != expected:
                    if not finished.done():
                        problem = f"call {waiting} expected {expected[:120]!r}, got {message[:200]!r}"
                        finished.set_exception(ValueError(problem))
                    return
                if rtts is not None:
                    rtts.append(now - sent)
                left -= 1
                if left:
                    sent = now
                    waiting += 1
                    expected = reply_frame(kind, "add", waiting, data)
                    conn.send(call_frame(kind, "add", waiting, data))
                else:
                    running -= 1
                    if not running and not finished.done():
                        finished.set_result(None)

            conn.on_message = on_message
            conn.send(call_frame(kind, "add", waiting, data))

        for index, conn in enumerate(conns):
            start(index, conn)
        async with asyncio.timeout(TIMEOUT + per_conn * len(conns) / 1000):
            await finished

    return await _closed_loop(spec, conns, phase, "call")


async def _closed_loop(
    spec: Spec,
    conns: list[Conn],
    phase: Callable[[int, list[float] | None], Awaitable[None]],
    unit: str,
) -> dict[str, Any]:
    """Run a closed-loop scenario's ``phase``: the warm-up unmeasured, then ``spec.messages`` per
    connection inside the CPU window; the figures per ``unit`` with the round trips' percentiles."""
    if spec.warmup:
        await phase(spec.warmup, None)
    rtts: list[float] = []
    window = Window(spec.server_pids, spec.helper_pids)
    await phase(spec.messages, rtts)
    result = window.end(len(rtts), unit)
    result.update({f"rtt_{k}_us": v for k, v in percentiles(rtts).items()})
    await close_all(conns)
    return result


async def _fan_out(
    spec: Spec, sender: Conn, receivers: list[Conn], count: int, warmup: int
) -> tuple[list[float], Window | None, int]:
    """Send ``warmup + count`` broadcasts one after another, each once the last receiver has the one
    before; returns each measured broadcast's time until its last receiver had it."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    remaining = 0
    expected = b""
    done: asyncio.Future[float] = loop.create_future()

    def on_message(data: bytes) -> None:
        nonlocal remaining
        if expected in data:  # a late copy of a broadcast that timed out is ignored
            remaining -= 1
            if not remaining and not done.done():
                done.set_result(time.perf_counter())

    for conn in receivers:
        conn.on_message = on_message
    window: Window | None = None
    attempts = 0
    index = 0
    while index < warmup + count:
        if index == warmup and window is None:
            window = Window(spec.server_pids, spec.helper_pids)
        tag = f"bc{index}-{attempts}"
        expected = tag.encode() + b"."
        remaining = len(receivers)
        done = loop.create_future()
        started = time.perf_counter()
        sender.send(frame(spec.kind, "bc", payload(tag)))
        try:
            # A warm-up broadcast may be lost while a multihome subscription is still on its way.
            finished = await asyncio.wait_for(done, 2.0 if index < warmup else TIMEOUT)
        except TimeoutError:
            attempts += 1
            if index >= warmup or attempts > 20:
                raise
            continue
        if index >= warmup:
            latencies.append(finished - started)
        index += 1
    return latencies, window, count * len(receivers)


async def broadcast(spec: Spec) -> dict[str, Any]:
    """1 sender, ``receivers`` receivers: sequential broadcasts, each timed until its last receiver
    has it (``redis``: the sender on one instance, the receivers on the other)."""
    sender = await connect(spec.kind, spec.url)
    receivers = await connect_many(spec.kind, spec.other_url or spec.url, spec.receivers)
    latencies, window, deliveries = await _fan_out(spec, sender, receivers, spec.broadcasts, spec.warmup)
    assert window is not None
    result = window.end(deliveries, "delivery")
    result.update({f"latency_{k}_ms": v for k, v in percentiles(latencies, 1e3).items()})
    await close_all([sender, *receivers])
    return result


class _Round:
    """One round of roomcasts: when each room's last member had its message, and when all had."""

    def __init__(self, rooms: int, done: asyncio.Future[None]) -> None:
        self.rooms_left = rooms
        self.done = done
        self.started = 0.0
        self.latencies: list[float] = []

    def member_handler(self, members: int, tag: bytes) -> Callable[[bytes], None]:
        remaining = members

        def on_message(data: bytes) -> None:
            nonlocal remaining
            if tag not in data:
                return
            remaining -= 1
            if not remaining:
                self.latencies.append(time.perf_counter() - self.started)
                self.rooms_left -= 1
                if not self.rooms_left:
                    self.done.set_result(None)

        return on_message


async def roomcast(spec: Spec) -> dict[str, Any]:
    """``rooms`` rooms of ``members``: in each round the first member of every room roomcasts to it,
    all rooms at once; each roomcast is timed until the last member of its room has it."""
    conns = await connect_many(spec.kind, spec.url, spec.rooms * spec.members)
    rooms = [conns[i * spec.members : (i + 1) * spec.members] for i in range(spec.rooms)]
    loop = asyncio.get_running_loop()

    joined: asyncio.Future[None] = loop.create_future()
    waiting = len(conns)

    def on_joined(_: bytes) -> None:
        nonlocal waiting
        waiting -= 1
        if not waiting:
            joined.set_result(None)

    for number, members in enumerate(rooms):
        for conn in members:
            conn.on_message = on_joined
            conn.send(frame(spec.kind, "join", f"room{number}"))
    async with asyncio.timeout(TIMEOUT):
        await joined

    latencies: list[float] = []
    window: Window | None = None
    for round_number in range(spec.warmup + spec.rounds):
        if round_number == spec.warmup:
            window = Window(spec.server_pids, spec.helper_pids)
        this_round = _Round(len(rooms), loop.create_future())
        messages = []
        for number, members in enumerate(rooms):
            tag = f"room{number} r{round_number}."
            handler = this_round.member_handler(len(members), tag.encode())
            for conn in members:
                conn.on_message = handler
            messages.append((members[0], frame(spec.kind, "rc", payload(tag))))
        this_round.started = time.perf_counter()
        for sender, message in messages:
            sender.send(message)
        async with asyncio.timeout(TIMEOUT):
            await this_round.done
        if round_number >= spec.warmup:
            latencies.extend(this_round.latencies)
    assert window is not None
    result = window.end(spec.rounds * len(conns), "delivery")
    result.update({f"latency_{k}_ms": v for k, v in percentiles(latencies, 1e3).items()})
    await close_all(conns)
    return result


async def idle(spec: Spec) -> dict[str, Any]:
    """Open ``connections`` idle connections: connects per second, and the server's RSS growth per
    connection once they are all open (after a warm-up batch opened and closed, and a settling pause)."""
    await close_all(await connect_many(spec.kind, spec.url, min(50, spec.connections)))
    await asyncio.sleep(0.5)
    pid = spec.server_pids[0]
    rss_before = procstat.rss_bytes(pid)
    window = Window(spec.server_pids)
    conns = await connect_many(spec.kind, spec.url, spec.connections)
    connecting = window.end(spec.connections, "connect")
    await asyncio.sleep(1.0)
    rss_after = procstat.rss_bytes(pid)
    await close_all(conns)
    return {
        "connects_per_s": connecting["connects_per_s"],
        "server_cpu_us_per_connect": connecting["server_cpu_us_per_connect"],
        "client_cpu_us_per_connect": connecting["client_cpu_us_per_connect"],
        "other_cpu_util": connecting["other_cpu_util"],
        "kib_per_connection": (rss_after - rss_before) / spec.connections / 1024,
        "rss_before_mib": rss_before / 2**20,
        "rss_after_mib": rss_after / 2**20,
    }


async def presence(spec: Spec) -> dict[str, Any]:
    """Presence of ``connections`` sockets in one room over several instances
    (:func:`benchmarks.presence.measure`; imported here only, as it imports typed-ss)."""
    from benchmarks.presence import measure

    return await measure(spec)


async def scale(spec: Spec) -> dict[str, Any]:
    """Instances in processes of their own on a multihome backend: cross-instance broadcasts and
    roomcasts, and the broker's load (:func:`benchmarks.scale.measure`; imported here only, as it
    imports typed-ss)."""
    from benchmarks.scale import measure

    return await measure(spec)


SCENARIOS: dict[str, Callable[[Spec], Awaitable[dict[str, Any]]]] = {
    "echo": echo,
    "call": call,
    "broadcast": broadcast,
    "redis": broadcast,
    "roomcast": roomcast,
    "idle": idle,
    "presence": presence,
    "scale": scale,
}


def run(spec: Spec) -> dict[str, Any]:
    """Run ``spec`` in a new event loop (uvloop when installed) and return its figures."""
    runner: Callable[[Awaitable[dict[str, Any]]], dict[str, Any]] = asyncio.run  # type: ignore[assignment]
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        runner = uvloop.run  # type: ignore[assignment]
    result = runner(SCENARIOS[spec.scenario](spec))
    return {**result, "client": spec.client}


def main() -> None:
    spec = Spec(**json.loads(sys.argv[1]))
    print(json.dumps(run(spec)), flush=True)


if __name__ == "__main__":
    main()
