"""A connection's whole life: slow and vanished clients, shutdown, SIGTERM, and no leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.apps import echo_server, make_app
from tests.support import Client, connect_client, connect_clients, eventually, running, stalled_client
from typed_ss import CloseCode, Server, Socket

ROOT = Path(__file__).resolve().parent.parent


def record_disconnects(ss: Server) -> dict[str, int | None]:
    """Register a disconnect hook that records each socket's server-side close code."""
    closed: dict[str, int | None] = {}

    @ss.on_disconnect
    async def disconnected(sock: Socket) -> None:
        closed[sock.id] = sock.close_code

    return closed


# --- slow consumers ----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_client_that_stops_reading_is_evicted_while_50_others_get_every_broadcast_in_order() -> None:
    ss = echo_server(send_queue_bytes=256 * 1024, send_timeout=30)
    closed = record_disconnects(ss)
    frame_size = 32 * 1024
    pad = "x" * (frame_size - 16)
    received: dict[str, list[int]] = {}

    async def read_all(client: Client) -> None:
        seen = received[client.id]
        while True:
            frame = await client.expect("tick", within=30)
            assert isinstance(frame.payload, str)
            seen.append(int(frame.payload[:8]))

    async with running(make_app(ss), ss) as url:
        async with connect_clients(url, 50) as clients:
            for client in clients:
                received[client.id] = []
            readers = [asyncio.create_task(read_all(client)) for client in clients]
            slow = await stalled_client(url)
            try:
                await eventually(lambda: len(ss.sockets) == 51)
                (slow_id,) = set(ss.sockets) - set(received)
                sent = 0
                # Enough data to fill the kernel's buffers (up to 4 MiB here) and then the queue.
                while slow_id in ss.sockets or sent < 20:
                    assert sent < 1000, "the stalled client was never evicted"
                    await ss.broadcast("tick", f"{sent:08d}{pad}")
                    sent += 1
                    # Pace the sender by the normal clients, so that only the stalled one falls behind.
                    await eventually(lambda: all(len(seen) >= sent - 8 for seen in received.values()), 30)  # noqa: B023
                await eventually(lambda: all(len(seen) == sent for seen in received.values()), 30)
            finally:
                slow.close()
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
        assert closed[slow_id] == CloseCode.SLOW_CONSUMER
        for seen in received.values():
            assert seen == list(range(sent))
        assert all(code is None for sid, code in closed.items() if sid != slow_id)


async def test_send_deadline_evicts_a_client_that_stopped_reading() -> None:
    ss = echo_server(send_queue_bytes=64 * 1024 * 1024, send_timeout=0.5)
    closed = record_disconnects(ss)
    async with running(make_app(ss), ss) as url, connect_client(url) as healthy:
        slow = await stalled_client(url)
        try:
            await eventually(lambda: len(ss.sockets) == 2)
            (slow_id,) = set(ss.sockets) - {healthy.id}
            chunk = b"z" * (256 * 1024)
            for _ in range(40):  # 10 MiB: more than the kernel buffers hold, within the queue limit
                await ss.socketcast(slow_id, "blob", chunk)
            await eventually(lambda: slow_id in closed, within=10)
            assert closed[slow_id] == CloseCode.SLOW_CONSUMER
            assert slow_id not in ss.sockets
            await healthy.send("echo_text", "unaffected")
            assert (await healthy.expect("echo_text")).payload == "unaffected"
        finally:
            slow.close()


@pytest.mark.slow
async def test_vanished_client_is_removed_within_ping_interval_and_timeout() -> None:
    ss = echo_server()
    closed = record_disconnects(ss)
    async with running(make_app(ss), ss, ws_ping_interval=0.5, ws_ping_timeout=0.5) as url:
        silent = await stalled_client(url)  # never answers pings
        try:
            await eventually(lambda: len(ss.sockets) == 1)
            (silent_id,) = ss.sockets
            await eventually(lambda: silent_id in closed, within=5)
            assert not ss.sockets
        finally:
            silent.close()


# --- clients that leave while their handler is busy ------------------------------------------------


def record_cancelled_handlers(ss: Server) -> tuple[list[str], list[str]]:
    """A ``stuck`` handler that waits forever; returns (started, cancelled) socket ids."""
    started: list[str] = []
    cancelled: list[str] = []

    @ss.on("stuck")
    async def stuck(sock: Socket, data: bytes) -> None:
        started.append(sock.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(sock.id)
            raise

    return started, cancelled


async def wait_for_count(items: list[str], count: int) -> None:
    await eventually(lambda: len(items) == count)


@pytest.mark.timeout(120)
async def test_clients_that_leave_while_their_handler_hangs_leave_no_socket_or_task() -> None:
    ss = echo_server()
    closed = record_disconnects(ss)
    started, cancelled = record_cancelled_handlers(ss)
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as warm_up:
            await warm_up.send("echo_text", "warm")
            await warm_up.expect("echo_text")
        await eventually(lambda: not ss.sockets)
        baseline = _tasks()
        for batch in range(4):
            async with connect_clients(url, 50) as clients:
                for client in clients:
                    await client.send("stuck")
                await wait_for_count(started, 50 * (batch + 1))
                if batch % 2:  # half the batches vanish without a closing handshake
                    for client in clients:
                        client.ws.transport.abort()
        # Every handler is cancelled and every socket torn down, although no handler ever returns.
        await eventually(lambda: not ss.sockets and _tasks() <= baseline, within=20)
        assert sorted(cancelled) == sorted(started)
        assert sorted(closed) == sorted([*started, warm_up.id])


@pytest.mark.slow
async def test_a_vanished_client_is_removed_while_its_handler_hangs() -> None:
    ss = echo_server()
    closed = record_disconnects(ss)
    started, cancelled = record_cancelled_handlers(ss)
    async with running(make_app(ss), ss, ws_ping_interval=0.5, ws_ping_timeout=0.5) as url:
        silent = await stalled_client(url)  # never reads, never answers pings
        try:
            await asyncio.get_running_loop().sock_sendall(silent, masked_frame(b"stuck\x02"))
            await eventually(lambda: len(started) == 1)
            await eventually(lambda: started[0] in closed, within=10)
            assert cancelled == started
            assert not ss.sockets
        finally:
            silent.close()


def masked_frame(payload: bytes) -> bytes:
    """One binary WebSocket frame (payload under 126 bytes), masked as a client sends it."""
    mask = os.urandom(4)
    return bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_messages_read_while_a_handler_waits_are_handled_after_it_in_order() -> None:
    ss = echo_server()
    release = asyncio.Event()

    @ss.on("slow")
    async def slow(sock: Socket, data: bytes) -> None:
        await release.wait()
        await sock.emit("slow_done", data)

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("slow", "first")
        for i in range(40):  # more than read_ahead_messages: the rest wait in TCP
            await client.send("echo_text", str(i))
        await client.nothing_within(0.2)
        release.set()
        assert (await client.expect("slow_done")).payload == b"first"
        for i in range(40):
            assert (await client.expect("echo_text")).payload == str(i)


# --- shutdown ----------------------------------------------------------------------------------------


async def test_shutdown_closes_every_socket_with_1001_and_refuses_new_ones() -> None:
    ss = echo_server()
    closed = record_disconnects(ss)
    async with running(make_app(ss), ss) as url:
        baseline = _tasks()
        async with connect_client(url) as a, connect_client(url) as b:
            await a.send("join", "room")
            await a.expect("joined")
            await ss.shutdown()
            for client in (a, b):
                with pytest.raises(ConnectionClosed):
                    await client.recv()
                assert client.ws.close_code == CloseCode.GOING_AWAY
            assert set(closed) == {a.id, b.id}
            assert not ss.sockets
            assert not ss.hub.room_names
        await eventually(lambda: _tasks() <= baseline)  # no connection task left behind
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url):
                pass
        assert refused.value.response.status_code == 503
        await ss.startup()
        async with connect_client(url) as c:
            await c.send("echo_text", "back")
            assert (await c.expect("echo_text")).payload == "back"


async def test_shutdown_with_hung_handlers_ends_them_at_the_clients_close_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A shutdown_timeout far longer than the test's deadline: the handlers end because their clients
    # answered the 1001 close, not because the timeout cancelled them.
    ss = Server(shutdown_timeout=600)
    started, cancelled = record_cancelled_handlers(ss)
    async with running(make_app(ss), ss) as url, connect_clients(url, 20) as clients:
        for client in clients:
            await client.send("stuck")
        await eventually(lambda: len(started) == 20)
        await asyncio.wait_for(ss.shutdown(), 30)
        assert sorted(cancelled) == sorted(started)
        for client in clients:
            with pytest.raises(ConnectionClosed):
                await client.recv()
            assert client.ws.close_code == CloseCode.GOING_AWAY
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("typed_ss")]


async def test_shutdown_cancels_handlers_that_ignore_their_clients_leaving_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss = Server(shutdown_timeout=0.5)
    started: list[str] = []
    ended: list[str] = []

    @ss.on("stubborn")
    async def stubborn(sock: Socket, data: bytes) -> None:
        started.append(sock.id)
        try:
            with contextlib.suppress(asyncio.CancelledError):  # ignores the first cancellation
                await asyncio.Event().wait()
            await asyncio.Event().wait()
        finally:
            ended.append(sock.id)

    async with running(make_app(ss), ss) as url, connect_clients(url, 5) as clients:
        for client in clients:
            await client.send("stubborn")
        await eventually(lambda: len(started) == 5)
        await asyncio.wait_for(ss.shutdown(), 30)
    assert sorted(ended) == sorted(started)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("typed_ss")]
    assert [r.getMessage() for r in lines] == [
        "typed-ss shutdown: cancelling 5 connections still busy after 0.5 s"
    ]
    assert not [r for r in caplog.records if r.exc_info is not None]


async def test_shutdown_cancels_handlers_that_do_not_finish() -> None:
    ss = Server(shutdown_timeout=0.5)
    closed = record_disconnects(ss)
    started = asyncio.Event()

    @ss.on("hang")
    async def hang(sock: Socket, data: bytes) -> None:
        started.set()
        await asyncio.Event().wait()

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("hang")
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.wait_for(ss.shutdown(), 10)
        assert client.id in closed
        assert not ss.sockets


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_sigterm_under_uvicorn_sends_1012_ends_hung_handlers_runs_hooks_and_exits() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.serve",
        "tests.apps:app",
        "--uvicorn",  # what uvicorn does is the point
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("PORT "), line
        url = f"ws://127.0.0.1:{int(line.split()[1])}"
        async with connect_client(url) as a, connect_client(url) as b:
            await a.send("echo_text", "up")
            await a.expect("echo_text")
            await b.send("hang")  # its handler never returns by itself
            await b.expect("hanging")
            os.kill(process.pid, signal.SIGTERM)
            for client in (a, b):
                with pytest.raises(ConnectionClosed):
                    await client.recv(within=15)
                assert client.ws.close_code == CloseCode.SERVICE_RESTART
        # uvicorn shuts down gracefully, then re-raises the signal it caught, so the exit status
        # is that of SIGTERM; the log shows whether the shutdown completed.
        code = await asyncio.wait_for(process.wait(), 30)
        assert code in (0, -signal.SIGTERM)
        log = (await process.stderr.read()).decode()
        assert "Application shutdown complete" in log
        for client in (a, b):
            assert f"disconnected {client.id}" in log
        assert "Traceback" not in log
        # The hung handler was cancelled when its client's connection closed, not after uvicorn's
        # graceful-shutdown timeout.
        assert "timeout graceful shutdown exceeded" not in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- nothing left behind -----------------------------------------------------------------------------


def _tasks() -> int:
    return len(asyncio.all_tasks())


async def test_no_task_or_room_left_after_100_connect_disconnect_cycles() -> None:
    ss = echo_server()

    @ss.on("kick")
    async def kick(sock: Socket, data: bytes) -> None:
        await sock.close()

    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as warm_up:
            await warm_up.send("echo_text", "warm")
            await warm_up.expect("echo_text")
        await eventually(lambda: not ss.sockets)
        baseline = _tasks()
        for cycle in range(100):
            async with connect_client(url) as client:
                await client.send("join", f"room-{cycle % 7}")
                await client.expect("joined")
                match cycle % 3:
                    case 0:  # the client closes normally
                        pass
                    case 1:  # the server closes
                        await client.send("kick")
                        with pytest.raises(ConnectionClosed):
                            await client.recv()
                    case _:  # the client vanishes without a closing handshake
                        client.ws.transport.abort()
        await eventually(lambda: not ss.sockets and _tasks() <= baseline, within=10)
        assert not ss.hub.room_names
