"""The plumbing every backend shares: an inbox for what arrives, and a link that keeps connected.

- :class:`Inbox`: received ``(topic, data)`` messages waiting for the bridge, bounded (drop-oldest,
  counted), and the ``messages()`` stream that hands them over. One per backend.
- :class:`Link`: keeps one connection (to a broker, or to one gRPC peer) alive. It runs a
  connection's ``serve()`` coroutine, and when that fails with one of the errors that mean "the
  connection is gone", records it, logs it (the loss of a working connection at ERROR once, a long
  outage at most every 20 attempts), backs off (:class:`~typed_ss.supervision.Backoff`) and tries
  again. ``serve()`` calls :meth:`Link.connected` once the other side has answered. Its state is the
  backend's ``BackendState``. Run it under a :class:`~typed_ss.supervision.Supervised` task, so that
  anything else ``serve()`` raises (a bug) is logged and restarted too.

The bounded outbox the bridge and the gRPC peers queue into is :class:`typed_ss.outbox.Outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

from typed_ss.backends.base import BackendState
from typed_ss.supervision import Backoff, raise_if_cancelled

__all__ = ["Inbox", "Link"]

Item = TypeVar("Item")


class Inbox(Generic[Item]):
    """Messages received from other instances, waiting for the bridge to read them: ``(topic, data)``,
    or ``(topic, data, offset)`` from a backend that keeps history.

    At most ``max_pending``; past that the oldest are dropped and counted (``dropped``): the bridge's
    sequence numbers then report them lost, as with a broker that drops a slow subscriber.
    """

    __slots__ = ("_arrived", "_closed", "_pending", "dropped", "max_pending")

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._pending: deque[Item] = deque()
        self._arrived = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, message: Item) -> Item | None:
        """Hand one received message to the bridge; returns the one dropped to make room, if any."""
        dropped = None
        if len(self._pending) >= self.max_pending:
            dropped = self._pending.popleft()
            self.dropped += 1
        self._pending.append(message)
        self._arrived.set()
        return dropped

    def oldest(self) -> Item | None:
        """The message waiting longest, if any (it stays in the inbox)."""
        return self._pending[0] if self._pending else None

    def open(self) -> None:
        """Accept messages and let :meth:`messages` run (the backend starts)."""
        self._closed = False

    def close(self) -> None:
        """End the :meth:`messages` stream (the backend stops)."""
        self._closed = True
        self._arrived.set()

    async def messages(self) -> AsyncIterator[Item]:
        """Every message as it arrives, in order, until :meth:`close`."""
        pending = self._pending
        while not self._closed:
            while pending:
                yield pending.popleft()
            self._arrived.clear()
            await self._arrived.wait()


class Link:
    """Keeps one connection alive: ``serve()`` until it fails with one of ``gone``, then back off and
    serve again. See the module docstring.

    Args:
        what: what the connection is to, for the log (``"Redis"``, ``"peer 10.0.0.2:30001"``).
        serve: runs one connection until it fails; calls :meth:`connected` once it works.
        gone: the exceptions that mean the connection was lost or could not be made.
        log: the backend's logger.
        max_backoff: the longest wait between attempts, in seconds.
        describe: turns an exception into the ``last_error`` text.
        quiet_until_first_contact: log failed attempts at INFO until the first connection has been
            made (a mesh peer that is not up yet at start is no error).
        level: the log level for one failure, given the exception and whether the connection had
            worked; ``None`` for the default (ERROR, or INFO while quiet). A peer that says it is
            shutting down, or a refusal that no waiting will cure, can be logged as what it is.
    """

    def __init__(
        self,
        what: str,
        serve: Callable[[], Coroutine[Any, Any, None]],
        *,
        gone: tuple[type[BaseException], ...],
        log: logging.Logger,
        max_backoff: float,
        describe: Callable[[BaseException], str] = repr,
        quiet_until_first_contact: bool = False,
        level: Callable[[BaseException, bool], int | None] | None = None,
    ) -> None:
        self.what = what
        self._serve = serve
        self._gone = gone
        self._log = log
        self._describe = describe
        self._quiet = quiet_until_first_contact
        self._level = level
        self.backoff = Backoff(cap=max_backoff)
        self.state: BackendState = "connecting"
        self.reconnects = 0
        """Working connections lost (and made again)."""
        self.last_error = ""
        self.ever_connected = False
        self._retry_now = asyncio.Event()

    def connected(self) -> None:
        """Called by ``serve()`` once the other side has answered: the connection works."""
        if self.state == "reconnecting":
            self._log.warning("reconnected to %s", self.what)
        self.state = "connected"
        self.ever_connected = True
        self.last_error = ""
        self.backoff.succeeded()

    def unresponsive(self, why: str) -> None:
        """The connection is up but the other side stopped answering."""
        if self.state == "connected":
            self.state = "unresponsive"
            self.last_error = why
            self._log.warning("%s is not answering (%s)", self.what, why)

    def answered(self) -> None:
        """The other side answered again after :meth:`unresponsive`."""
        if self.state == "unresponsive":
            self.state = "connected"
            self._log.warning("%s answers again", self.what)

    def retry_now(self) -> None:
        """Cut the current backoff short (the other side showed it is back)."""
        self._retry_now.set()

    async def run(self) -> None:
        """Serve, and serve again after every loss, until cancelled."""
        while True:
            try:
                await self._serve()
            except self._gone as exc:
                raise_if_cancelled()  # a cancellation a library turned into a connection error
                self._lost(exc)
            else:
                self._lost(ConnectionError("the connection ended"))
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.backoff.delay()):
                    await self._retry_now.wait()

    def stopped(self) -> None:
        """The backend stopped: the link is down on purpose."""
        self.state = "stopped"

    def _lost(self, exc: BaseException) -> None:
        self.last_error = self._describe(exc)
        was_working = self.state in ("connected", "unresponsive")
        chosen = None if self._level is None else self._level(exc, was_working)
        if was_working:
            self.reconnects += 1
            self.backoff.succeeded()
            self._log.log(
                chosen or logging.ERROR,
                "lost the connection to %s (%s): reconnecting",
                self.what,
                self.last_error,
            )
        else:
            attempt = self.backoff.failures + 1
            if attempt == 1 or attempt % self.backoff.log_every == 0:
                default = logging.INFO if self._quiet and not self.ever_connected else logging.ERROR
                self._log.log(
                    chosen or default, "cannot reach %s (%s): still trying", self.what, self.last_error
                )
        # A mesh peer that has never answered is still being connected to; a broker is reconnected to
        # (and subscriptions stop waiting for it).
        self.state = "connecting" if self._quiet and not self.ever_connected else "reconnecting"
        self.backoff.failed()
