"""No background task ends silently: one backoff policy that never overflows, supervised loops that are
logged and restarted, health that shows them, and the multihome outbox bounded in bytes too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from tests.apps import echo_server, make_app
from tests.support import connect_client, eventually, running
from typed_ss.backends import MemoryBackend, MemoryBroker
from typed_ss.backends._support import Link
from typed_ss.errors import BackendError
from typed_ss.outbox import Outbox
from typed_ss.supervision import Backoff, Supervised, TaskHealth

pytestmark = pytest.mark.timeout(60)


def test_backoff_doubles_to_its_cap_and_never_overflows() -> None:
    backoff = Backoff(base=0.05, cap=1.0)
    delays = [backoff.failed() for _ in range(5)]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8]
    for _ in range(100_000):  # days of outage at one attempt a second: 2**n must not overflow
        assert backoff.failed() == 1.0
    assert backoff.succeeded() == 100_005
    assert backoff.delay() == 0.0
    assert backoff.failed() == 0.05


def test_backoff_logs_the_first_failure_and_then_every_nth() -> None:
    backoff = Backoff(log_every=20)
    logged = []
    for _ in range(60):
        backoff.failed()
        logged.append(backoff.should_log())
    assert [n + 1 for n, log in enumerate(logged) if log] == [1, 20, 40, 60]


async def test_a_supervised_loop_that_fails_is_logged_restarted_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    running_again = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"failure {runs}")
        running_again.set()
        await asyncio.Event().wait()

    task = Supervised("test loop", loop, backoff=Backoff(base=0.001, cap=0.01))
    task.start()
    try:
        await asyncio.wait_for(running_again.wait(), 10)
        health = task.health()
        assert (health.state, health.restarts, health.last_error) == (
            "running",
            2,
            "RuntimeError('failure 2')",
        )
    finally:
        await task.stop()
    assert task.health().state == "stopped"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("'test loop' failed" in r.getMessage() and r.exc_info for r in errors)


async def test_a_supervised_loop_that_returns_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs > 3:
            await asyncio.Event().wait()

    task = Supervised("returns", loop, backoff=Backoff(base=0.001, cap=0.01))
    task.start()
    try:
        await eventually(lambda: runs == 4)
        assert task.health().restarts == 3
    finally:
        await task.stop()
    assert any("ended unexpectedly" in r.getMessage() for r in caplog.records)


class BrokenStream(MemoryBackend):
    """A memory backend whose message stream fails once, as a bug in a backend might."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.failed = False

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("the stream broke")
        async for message in super().messages():
            yield message


async def test_the_multihome_reader_is_restarted_and_health_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    receiver = echo_server(backend=BrokenStream(broker))
    sender = echo_server(backend=MemoryBackend(broker))
    async with running(make_app(receiver), receiver) as url, connect_client(url) as client:
        await sender.startup()
        try:

            def tasks() -> dict[str, TaskHealth]:
                return {task.name: task for task in receiver.health().tasks}

            await eventually(
                lambda: (
                    tasks()["multihome reader"].restarts == 1
                    and tasks()["multihome reader"].state == "running"
                )
            )
            assert tasks()["multihome reader"].last_error == "RuntimeError('the stream broke')"
            assert tasks()["multihome publisher"].restarts == 0
            await sender.broadcast("news", "after the restart")
            assert (await client.expect("news")).payload == "after the restart"
        finally:
            await sender.shutdown()
    assert any("'multihome reader' failed" in r.getMessage() for r in caplog.records)


class Unreachable(MemoryBackend):
    """A memory backend whose broker never takes a message."""

    async def publish(self, topic: str, data: bytes) -> None:
        raise BackendError("unreachable")


async def test_the_multihome_outbox_is_bounded_in_bytes_and_counts_what_it_drops() -> None:
    ss = echo_server(backend=Unreachable(MemoryBroker()))
    await ss.startup()
    try:
        for _ in range(1_000):  # 100 MB of casts while the broker is unreachable
            await ss.broadcast("big", b"x" * 100_000)
        multihome = ss.health().multihome
        assert multihome is not None
        assert multihome.outbox_bytes <= 64 * 1024 * 1024
        assert multihome.outbox_dropped == 1_000 - multihome.outbox
        assert multihome.outbox_dropped > 0
    finally:
        await ss.shutdown()


def test_an_outbox_keeps_the_newest_within_both_bounds() -> None:
    log = logging.getLogger("test.outbox")
    by_count: Outbox[str] = Outbox("count", max_messages=3, max_bytes=1_000, log=log)
    for n in range(5):
        by_count.append("t", str(n).encode())
    assert [data for _, data in by_count] == [b"2", b"3", b"4"]
    assert (by_count.dropped, by_count.bytes) == (2, 3)

    by_bytes: Outbox[str] = Outbox("bytes", max_messages=100, max_bytes=8, log=log)
    for n in range(5):
        by_bytes.append("t", b"%04d" % n)
    assert [data for _, data in by_bytes] == [b"0003", b"0004"]
    assert (by_bytes.dropped, by_bytes.bytes) == (3, 8)

    by_bytes.append("t", b"y" * 100)  # alone over the bound: kept, the older ones dropped
    assert [data for _, data in by_bytes] == [b"y" * 100]
    assert by_bytes.popleft() == ("t", b"y" * 100)
    assert (len(by_bytes), by_bytes.bytes) == (0, 0)


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again_and_it_is_said(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some client library, cancelled halfway through a round trip, catches the cancellation: stop()
    # must still end, not wait for ever.
    monkeypatch.setattr("typed_ss.supervision.STOP_GRACE", 0.05)
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = Supervised("stubborn", stubborn, log=logging.getLogger("test.supervision"))
    task.start()
    await asyncio.sleep(0)
    await task.stop()
    assert not task.running
    assert swallowed == 1
    assert "the stubborn task did not end when cancelled; cancelling it again" in caplog.text


async def test_a_link_whose_connection_turns_its_cancellation_into_an_error_still_stops_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # redis-py's cluster client, cancelled at the wrong moment, may raise a connection error (or
    # return) instead of the cancellation: the link must not take it for a lost connection and go on.
    entered = asyncio.Event()
    turned = 0

    async def serve() -> None:
        nonlocal turned
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            turned += 1
            raise ConnectionError("the connection was closed") from None

    log = logging.getLogger("test.supervision")
    link = Link("a broker", serve, gone=(ConnectionError,), log=log, max_backoff=1.0)
    task = Supervised("link", link.run, log=log)
    task.start()
    await entered.wait()
    await task.stop()
    assert not task.running
    assert turned == 1
    assert link.reconnects == 0, "a cancellation is no lost connection"
    assert not link.last_error
    assert "did not end when cancelled" not in caplog.text


async def test_the_multihome_publisher_stops_although_the_backend_swallows_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publishing = asyncio.Event()

    class Swallowing(MemoryBackend):
        """Publishing returns normally when cancelled halfway (as a client library may)."""

        async def publish(self, topic: str, data: bytes) -> None:
            publishing.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    ss = echo_server(backend=Swallowing(MemoryBroker()))
    async with running(make_app(ss), ss):
        await ss.broadcast("news", "queued")
        await publishing.wait()  # the publisher waits in publish() when the server stops
    # It ended at the first cancellation: not cancelled again.
    assert ss.health().multihome is None
    assert "did not end when cancelled" not in caplog.text
