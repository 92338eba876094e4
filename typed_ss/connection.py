"""The read side of one connection: messages in order, one handler at a time, and a client that leaves
noticed even while its handler is still running.

Handlers run inline in the connection's task, in the order their messages arrived. Most complete
without ever suspending; for those the loop costs nothing extra. A handler that suspends (it awaits a
database, a lock, a sleep) gets a *watcher*: a short-lived task that keeps reading the connection
while the handler is busy, so that a client that leaves is noticed at once and its handler is
cancelled, instead of leaving a ghost socket until the handler returns. What the watcher reads ahead
waits in the connection's inbox, at most ``read_ahead_messages`` messages and ``max_message_size``
bytes; past that the watcher stops reading, and the client's TCP window fills (back-pressure).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final

from typed_ss.errors import CloseCode, InvalidName, LimitExceeded, PayloadValidationError, ProtocolError
from typed_ss.handlers import HandlerSpec
from typed_ss.protocol import error_frame, split_client_frame
from typed_ss.transport import Disconnected, Transport

if TYPE_CHECKING:
    from typed_ss.server import Server
    from typed_ss.socket import Socket

__all__ = ["Reader"]

logger = logging.getLogger("typed_ss")

CLIENT_CAUSED: Final = (InvalidName, LimitExceeded, PayloadValidationError)
"""Errors a handler raises because of what the client sent (a reserved room name to join, one room
too many): logged as the client's doing, at warning level, without a traceback."""


class _Resume:
    """Awaiting it runs the rest of a coroutine that was stepped once by hand, in the awaiting task.

    The coroutine keeps running in the same task, so ``asyncio.current_task()``, ``asyncio.timeout``
    and context variables inside it behave exactly as under a plain ``await``.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coro, yielded = self._coro, self._yielded
        try:
            while True:
                try:
                    sent = yield yielded
                except BaseException as exc:  # thrown in by the task, e.g. CancelledError
                    yielded = coro.throw(exc)
                else:
                    yielded = coro.send(sent)
        except StopIteration:
            return


class Reader:
    """Reads one connection's messages and dispatches each to its handler, in order."""

    __slots__ = (
        "_busy",
        "_client_log",
        "_gone",
        "_inbox",
        "_inbox_bytes",
        "_server",
        "_sock",
        "_transport",
        "_watcher",
        "_woken",
    )

    def __init__(self, server: Server, sock: Socket, transport: Transport) -> None:
        self._server = server
        self._sock = sock
        self._transport = transport
        self._client_log = server.client_log
        self._inbox: deque[str | bytes] = deque()
        self._inbox_bytes = 0
        self._busy = False  # a handler (or hook) of this connection is running and has suspended
        self._gone: Disconnected | None = None  # the watcher saw the connection end
        self._watcher: asyncio.Task[None] | None = None
        self._woken: asyncio.Event | None = None

    # --- running application code ------------------------------------------------------------------

    async def run_watched(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a handler or hook inline; while it is suspended, watch for the client leaving."""
        try:
            # Stepped by hand once: a coroutine that completes without suspending (most handlers)
            # needs no watcher, and costs no more than a plain await.
            try:
                yielded = coro.send(None)
            except StopIteration:
                return
            self._start_watching()
            await _Resume(coro, yielded)
        finally:
            self._busy = False

    def _start_watching(self) -> None:
        self._busy = True
        if self._watcher is None and self._gone is None:
            self._watcher = asyncio.create_task(self._watch(), name=f"typed-ss watcher {self._sock.id}")

    async def _watch(self) -> None:
        """Read ahead while a handler is busy; end the connection if the client leaves meanwhile."""
        limits = self._server.limits
        try:
            while self._busy or not self._inbox:
                if (
                    len(self._inbox) >= limits.read_ahead_messages
                    or self._inbox_bytes >= limits.max_message_size
                ):
                    return  # the inbox is full: let the client's TCP window fill
                try:
                    message = await self._transport.receive()
                except Disconnected as exc:
                    self._gone = exc
                    if self._busy:
                        self._sock.end_by_server()  # cancels the busy handler; teardown follows
                    return
                self._inbox.append(message)
                self._inbox_bytes += len(message)
                if self._woken is not None:
                    self._woken.set()
        finally:
            self._watcher = None
            if self._woken is not None:
                self._woken.set()

    async def _next(self) -> str | bytes:
        """The next message: from the inbox, from the watcher still reading, or from the transport."""
        while True:
            if self._inbox:
                message = self._inbox.popleft()
                self._inbox_bytes -= len(message)
                return message
            if self._gone is not None:
                raise self._gone
            if self._watcher is None:
                return await self._transport.receive()
            # The watcher is waiting on the transport: only one reader at a time, so wait for it.
            if self._woken is None:
                self._woken = asyncio.Event()
            self._woken.clear()
            await self._woken.wait()

    # --- the loop ----------------------------------------------------------------------------------

    async def read(self) -> None:
        """Handle the socket's messages in order, one at a time, until the connection ends."""
        sock = self._sock
        server = self._server
        handlers = server.handlers_by_event
        limits = server.limits
        max_size = limits.max_message_size
        max_event_length = limits.max_event_name_length
        next_message = self._next
        while True:
            message = await next_message()
            if not sock.connected:
                continue  # drain until the disconnect arrives
            # A str's UTF-8 size is at most 4 bytes a character: only a long one needs measuring.
            if len(message) > max_size // 4 and _size(message) > max_size:
                self._client_log.info(
                    "too_big", "socket %s sent a message larger than %d bytes; closing it", sock.id, max_size
                )
                await sock.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                continue
            try:
                event, _, payload = split_client_frame(message, max_event_length)
            except ProtocolError as exc:
                self._client_log.info("malformed", "socket %s sent a malformed frame: %s", sock.id, exc)
                continue
            spec = handlers.get(event)
            if spec is None:
                self._client_log.debug(
                    "no_handler", "socket %s sent event %r, which has no handler", sock.id, event
                )
                continue
            value: object = payload
            if spec.decode is not None:
                try:
                    value = spec.decode(payload)
                except PayloadValidationError as exc:
                    self._invalid_payload(spec, exc)
                    continue
            # The same as run_watched, written out: one coroutine fewer per message is a measurable
            # share of typed-ss's own cost per message (docs/benchmarks.md).
            coro = spec.handler(sock, value)
            try:
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    continue
                self._start_watching()
                await _Resume(coro, yielded)
            except Exception as exc:
                self._handler_failed(spec, exc)
            finally:
                self._busy = False

    def _invalid_payload(self, spec: HandlerSpec, exc: PayloadValidationError) -> None:
        self._client_log.info(
            "invalid_payload",
            "socket %s sent an invalid payload for %r: %r",
            self._sock.id,
            spec.event,
            exc.detail,
        )
        self._sock.push(error_frame(spec.event, "invalid_payload", exc.detail))

    def _handler_failed(self, spec: HandlerSpec, exc: Exception) -> None:
        if isinstance(exc, CLIENT_CAUSED):
            self._client_log.warning(
                "handler_refused",
                "the handler for event %r refused what socket %s sent: %r",
                spec.event,
                self._sock.id,
                str(exc),
            )
        else:
            self._client_log.exception(
                "handler_failed",
                exc,
                "the handler for event %r failed on socket %s",
                spec.event,
                self._sock.id,
            )
        self._sock.push(error_frame(spec.event, "handler_error", "the handler for this event failed"))

    async def stop(self) -> None:
        """Stop the watcher, if one is still reading (teardown)."""
        watcher = self._watcher
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


def _size(message: str | bytes) -> int:
    return len(message.encode()) if isinstance(message, str) else len(message)
