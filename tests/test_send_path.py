"""The send path and slow-consumer eviction, over an in-memory transport (``tests/fake_transport.py``).

No network and no clock: the test decides when the connection takes a frame, so congestion is exact.
What holds: ``__hello`` comes first and frames go out in order; a congested connection gets a writer
of its own and a queue bounded in bytes; passing ``send_queue_bytes``, or a send that does not finish
within ``send_timeout``, evicts the socket with 4008 and aborts its connection; a cast never suspends
for a congested recipient; and the disconnect hook runs once, whatever ends the connection. Only the
public API of Server and Socket, and the Transport interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fake_transport import CloseFrame, FakeTransport
from tests.support import eventually, parse_server_frame
from typed_ss import Server, Socket
from typed_ss.protocol import encode_frame

pytestmark = pytest.mark.timeout(30)

PAYLOAD = b"x" * 100
FRAME_SIZE = len(encode_frame("n", PAYLOAD))
SLOW_CONSUMER = CloseFrame(4008, "slow consumer")


@dataclass
class Connection:
    """One connection served by ``ss.serve`` in a task, and its socket."""

    transport: FakeTransport
    task: asyncio.Task[None]
    sock: Socket

    @property
    def payloads(self) -> list[str | bytes]:
        """The payloads of the frames the client received after ``__hello``."""
        return [parse_server_frame(frame).payload for frame in self.transport.frames[1:]]


@dataclass
class Hooks:
    disconnected: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    """(socket id, its rooms) for every run of the disconnect hook."""


def make_server(**limits: Any) -> tuple[Server, Hooks]:
    ss = Server(**limits)
    hooks = Hooks()

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)
        await sock.emit("joined", room)

    @ss.on("echo")
    async def echo(sock: Socket, text: str) -> None:
        await sock.emit("echo", text)

    @ss.on_disconnect
    async def gone(sock: Socket) -> None:
        hooks.disconnected.append((sock.id, sock.rooms))

    return ss, hooks


@asynccontextmanager
async def connected(ss: Server, transport: FakeTransport | None = None) -> AsyncIterator[Connection]:
    """Serve a fake connection until ``__hello`` was sent; on exit the client leaves (if the server has
    not ended the connection already) and the serving task must end by itself, without an error."""
    transport = transport or FakeTransport()
    task = asyncio.create_task(ss.serve(transport))
    try:
        await eventually(lambda: bool(transport.frames) or task.done())
        assert not task.done(), "the connection ended before __hello"
        hello = parse_server_frame(transport.frames[0])
        assert hello.event == "__hello", hello
        sock = ss.get_socket(hello.json()["id"])
        assert sock is not None
        yield Connection(transport, task, sock)
    finally:
        if not task.done():
            transport.client_leaves()
        await asyncio.wait_for(task, 5)  # and it raised nothing


def steps_once(call: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine by hand, and check it finished on its first step without suspending once: it
    cannot have waited for anything (a congested client, a writer, the event loop)."""
    try:
        suspended_on = call.send(None)
    except StopIteration:
        return
    call.close()
    raise AssertionError(f"the call suspended (on {suspended_on!r})")


async def ended(conn: Connection) -> None:
    """The server ended the connection: its task finished, normally."""
    await eventually(conn.task.done)
    assert conn.task.exception() is None


# --- the order of frames ---------------------------------------------------------------------------


async def test_hello_comes_first_then_every_frame_in_order() -> None:
    ss, _ = make_server()
    arrived_during_connect = []

    @ss.on_connect
    async def welcome(sock: Socket) -> None:
        arrived_during_connect.append(sock.id)
        await sock.emit("welcome", "first after hello")

    async with connected(ss) as conn:
        transport = conn.transport
        assert (transport.accepted, transport.subprotocol, transport.refused) == (True, "sac-sock", None)
        assert arrived_during_connect == [conn.sock.id]
        for i in range(20):
            transport.client_sends(f"echo\x02{i}")
        await eventually(lambda: len(transport.frames) == 22)
        assert conn.payloads == ["first after hello", *(str(i) for i in range(20))]
        await ss.broadcast("news", b"\x00bin")
        assert parse_server_frame(transport.frames[-1]) == parse_server_frame(b"news\x01B\x02\x00bin")
        assert transport.pending == [], "a connection that keeps up never makes a send wait"


async def test_sac_sock_is_selected_only_when_offered_and_a_foreign_origin_is_refused() -> None:
    ss, hooks = make_server()
    async with connected(ss, FakeTransport(subprotocols=())) as conn:
        assert (conn.transport.accepted, conn.transport.subprotocol) == (True, None)
    refused = FakeTransport(headers=[("host", "testserver"), ("origin", "http://elsewhere.example")])
    await asyncio.wait_for(ss.serve(refused), 5)
    assert (refused.accepted, refused.refused, refused.received) == (False, 403, [])
    assert len(hooks.disconnected) == 1  # the refused one never had a socket


# --- congestion ------------------------------------------------------------------------------------


async def test_a_congested_connection_gets_a_writer_and_its_frames_keep_their_order() -> None:
    ss, _ = make_server()
    async with connected(ss) as conn:
        transport = conn.transport
        tasks_before = len(asyncio.all_tasks())
        transport.congest()
        await ss.broadcast("n", "0")
        assert transport.sends == 2
        assert len(transport.waiting) == 1
        assert len(asyncio.all_tasks()) == tasks_before + 1, "a writer task finishes the send"
        for i in range(1, 10):
            await conn.sock.emit("n", str(i))
            await ss.broadcast("n", str(i))
        # Queued in the socket, not handed to the connection: one send at a time waits on it.
        assert transport.sends == 2
        assert len(transport.waiting) == 1
        # The client takes one frame at a time; the writer hands over the next each time, in order.
        while transport.waiting:
            transport.waiting[0].complete()
            await eventually(lambda: bool(transport.waiting) or len(transport.frames) == 20, interval=0)
        assert conn.payloads == ["0", *(str(i) for i in range(1, 10) for _ in "ab")]
        assert transport.sends == 20
        await eventually(lambda: len(asyncio.all_tasks()) == tasks_before)  # the writer is done
        transport.release()
        await ss.broadcast("n", "after")  # sent at once again, by the caller
        assert conn.payloads[-1] == "after"
        assert transport.sends == 21
        assert not transport.waiting
        assert conn.sock.connected


async def test_passing_send_queue_bytes_evicts_with_4008_and_aborts_the_connection() -> None:
    queue_limit = 4 * FRAME_SIZE
    ss, hooks = make_server(send_queue_bytes=queue_limit)
    async with connected(ss) as conn:
        transport = conn.transport
        transport.client_sends("join\x02room")
        await eventually(lambda: len(transport.frames) == 2)
        transport.congest()
        await ss.broadcast("n", PAYLOAD)  # waits on the connection: not in the queue
        for _ in range(4):
            await ss.broadcast("n", PAYLOAD)  # exactly send_queue_bytes queued: not past it
        await asyncio.sleep(0)
        at_the_limit = conn.sock.connected
        assert at_the_limit, "at send_queue_bytes exactly, it stays"
        assert transport.closes == []
        assert transport.aborts == 0
        steps_once(ss.broadcast("n", PAYLOAD))  # one byte past is past: evicted, without waiting
        assert not conn.sock.connected
        await ended(conn)
        assert transport.closes == [SLOW_CONSUMER], "it was told why, as far as it could be"
        assert transport.aborts == 1, "a client that does not read its close frame is cut off"
        close = transport.pending[-1]
        assert (close.item, close.abandoned) == (SLOW_CONSUMER, True)
        assert conn.sock.close_code == 4008
        assert transport.frames[2:] == [], "nothing queued was sent once it was evicted"
        assert hooks.disconnected == [(conn.sock.id, frozenset({"room"}))]
        assert len(ss.sockets) == 0
        await ss.broadcast("n", PAYLOAD)  # the evicted socket is no recipient any more
        assert transport.sends == 3


async def test_a_send_that_does_not_finish_within_send_timeout_evicts_with_4008() -> None:
    ss, hooks = make_server(send_timeout=0.05)
    async with connected(ss) as conn:
        transport = conn.transport
        transport.congest()
        await ss.broadcast("n", PAYLOAD)  # and the client never takes it
        stuck = transport.waiting[0]
        await ended(conn)  # the deadline of this wait is the test's, far longer than send_timeout
        assert stuck.abandoned
        assert transport.closes == [SLOW_CONSUMER]
        assert transport.aborts == 1
        assert conn.sock.close_code == 4008
        assert hooks.disconnected == [(conn.sock.id, frozenset())]


@pytest.mark.parametrize(
    ("client", "send_timeout"),
    [
        ("reads the close frame", 600),  # a deadline the test never reaches
        ("never reads again", 0.05),
    ],
)
async def test_without_abort_the_close_frame_gets_send_timeout_to_leave(
    client: str, send_timeout: float
) -> None:
    ss, hooks = make_server(send_queue_bytes=FRAME_SIZE, send_timeout=send_timeout)
    async with connected(ss, FakeTransport(abortable=False)) as conn:
        transport = conn.transport
        transport.congest()
        for _ in range(3):
            await ss.broadcast("n", PAYLOAD)
        await eventually(lambda: transport.closes == [SLOW_CONSUMER])
        close = transport.pending[-1]
        assert close.item == SLOW_CONSUMER
        assert not conn.task.done()
        if client == "reads the close frame":
            close.complete()
            await ended(conn)
            assert transport.received[-1] == SLOW_CONSUMER
        else:
            await ended(conn)
            assert close.abandoned
        assert transport.aborts == 0
        assert len(hooks.disconnected) == 1


# --- casts never wait ------------------------------------------------------------------------------


async def test_a_cast_never_suspends_for_a_congested_recipient() -> None:
    ss, hooks = make_server(send_queue_bytes=10 * FRAME_SIZE)
    async with AsyncExitStack() as stack:
        healthy = await stack.enter_async_context(connected(ss))
        slow = await stack.enter_async_context(connected(ss))
        for conn in (healthy, slow):
            conn.transport.client_sends("join\x02room")
        await eventually(lambda: len(healthy.transport.frames) == len(slow.transport.frames) == 2)
        slow.transport.congest()
        casts = 0
        while slow.sock.connected:
            assert casts < 100, "never evicted"
            for cast in (
                ss.broadcast("n", PAYLOAD),
                ss.roomcast("room", "n", PAYLOAD),
                ss.socketcast(slow.sock.id, "n", PAYLOAD),
                slow.sock.emit("n", PAYLOAD),
            ):
                steps_once(cast)  # the eviction itself too: it happens in a task of its own
            casts += 1
            # Each reached the healthy socket before the call returned.
            assert len(healthy.transport.frames) == 2 + 2 * casts
        assert casts == 3  # 10 frames queued behind the one that waits, then the 11th is one too many
        await ended(slow)
        assert slow.transport.closes == [SLOW_CONSUMER]
        assert slow.transport.aborts == 1
        assert healthy.sock.connected
        assert healthy.transport.pending == []
        assert [sock_id for sock_id, _ in hooks.disconnected] == [slow.sock.id]


# --- the end of a connection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "end",
    [
        "the client leaves",
        "the client leaves while a send waits",
        "the server closes it",
        "evicted, and the client leaves too",
    ],
)
async def test_the_disconnect_hook_runs_once_whatever_ends_the_connection(end: str) -> None:
    ss, hooks = make_server(send_queue_bytes=FRAME_SIZE)
    async with connected(ss) as conn:
        transport = conn.transport
        transport.client_sends("join\x02room")
        await eventually(lambda: len(transport.frames) == 2)
        if end == "the client leaves":
            transport.client_leaves()
        elif end == "the client leaves while a send waits":
            transport.congest()
            await ss.broadcast("n", PAYLOAD)
            await ss.broadcast("n", PAYLOAD)  # queued behind it
            transport.waiting[0].fail()
            transport.client_leaves(1001)
        elif end == "the server closes it":
            await conn.sock.close(4000, "bye")
            assert transport.closes == [CloseFrame(4000, "bye")]
        else:
            transport.congest()
            for _ in range(3):
                await ss.broadcast("n", PAYLOAD)
            transport.client_leaves(1001)
        await ended(conn)
        assert hooks.disconnected == [(conn.sock.id, frozenset({"room"}))]
        if end.startswith("the client leaves"):
            assert (transport.closes, transport.aborts) == ([], 0), "nothing is sent to a client gone"
        await asyncio.sleep(0)
    assert len(hooks.disconnected) == 1
    assert len(ss.sockets) == 0
