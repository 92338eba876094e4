"""Socket: one connected client, its rooms, and its send path.

The send path never makes a caller wait for this client. A frame is handed to the transport at once
while the connection keeps up; once the connection is congested, frames wait in a bounded queue (in
bytes) that the socket's own writer task drains. A socket whose queue passes ``send_queue_bytes``, or
whose send does not finish within ``send_timeout``, is cut off with close code 4008 (slow consumer).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from starlette.datastructures import State
from starlette.requests import HTTPConnection

from typed_ss.errors import CloseCode, LimitExceeded
from typed_ss.protocol import RESERVED_PREFIX, Frame, check_room_name, encode_frame
from typed_ss.transport import Disconnected, PendingSend, Transport

if TYPE_CHECKING:
    from typed_ss.server import Server

__all__ = ["Socket"]

logger = logging.getLogger("typed_ss")


class _Close:
    """A close frame waiting in the send queue behind earlier frames."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


_Outgoing = Frame | _Close


def new_socket_id() -> str:
    """24 random bytes from a cryptographically secure source, base64url: 32 characters."""
    return secrets.token_urlsafe(24)


class Socket:
    """One connected client.

    Created by the server for each accepted connection; handlers and hooks receive it. Attributes:
    ``id`` (32 characters, unique), ``request`` (the upgrade request), ``identity`` (what the
    authentication hook returned, ``None`` without one) and ``state`` (free per-connection storage:
    ``sock.state.user = ...``).
    """

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_closer",
        "_closing",
        "_ended_by_server",
        "_rooms",
        "_server",
        "_task",
        "_transport",
        "_writer",
        "close_code",
        "id",
        "identity",
        "state",
    )

    def __init__(
        self,
        server: Server,
        transport: Transport,
        identity: Any = None,
        task: asyncio.Task[Any] | None = None,
    ) -> None:
        self.id: Final = new_socket_id()
        self.identity: Any = identity
        self.state = State()
        self.close_code: int | None = None
        """The code this socket was closed with by the server, or ``None``."""
        self._server = server
        self._transport = transport
        # Every room, the socket's own `__socket_id:` room included; the hub holds the reverse index.
        self._rooms: set[str] = set()
        # None while the connection keeps up; a queue once a send could not complete at once. It starts
        # as a queue: casts that reach the socket while it is being attached wait behind __hello.
        self._backlog: deque[_Outgoing] | None = deque()
        self._backlog_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing = False
        # The connection's task (reader and handlers); cancelled to end a slow or vanished client, with
        # _ended_by_server set so the server knows the cancellation was its own.
        self._task = task
        self._ended_by_server = False

    def __repr__(self) -> str:
        return f"<Socket {self.id}>"

    # --- information -------------------------------------------------------------------------------

    @property
    def request(self) -> HTTPConnection:
        """The upgrade request: ``headers``, ``query_params``, ``cookies``, ``client``, ``url``."""
        return self._transport.request

    @property
    def rooms(self) -> frozenset[str]:
        """A snapshot of the rooms this socket is in (without its internal ``__socket_id:`` room).
        Inside the disconnect hook it still lists the rooms the socket was in."""
        return frozenset(room for room in self._rooms if not room.startswith(RESERVED_PREFIX))

    def in_room(self, room: str) -> bool:
        """Whether this socket is a member of ``room``."""
        return room in self._rooms

    @property
    def connected(self) -> bool:
        """``False`` once the socket is closing or closed; emits to it are then dropped."""
        return not self._closing

    @property
    def ended_by_server(self) -> bool:
        """Whether the server ended this connection's task itself (:meth:`end_by_server`)."""
        return self._ended_by_server

    def end_by_server(self) -> None:
        """End the connection's task now, cancelling a handler that is still running; the teardown
        (and the disconnect hook) follows. Internal: used when the client is gone or cut off."""
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            self._ended_by_server = True
            task.cancel()

    # --- rooms -------------------------------------------------------------------------------------

    async def join(self, room: str) -> None:
        """Join ``room``; joining a room twice has no further effect. A closing socket joins nothing.

        Raises:
            InvalidName: the name is empty, too long or reserved (starts with ``__``).
            LimitExceeded: the socket is already in ``max_rooms_per_socket`` rooms.
        """
        limits = self._server.limits
        check_room_name(room, limits.max_room_name_length)
        if self._closing or room in self._rooms:
            return
        if len(self._rooms) - 1 >= limits.max_rooms_per_socket:  # the socket's own room does not count
            raise LimitExceeded(
                f"socket {self.id} is already in {limits.max_rooms_per_socket} rooms (max_rooms_per_socket)"
            )
        await self._server.hub.join(self, room)

    async def leave(self, room: str) -> None:
        """Leave ``room``; leaving a room the socket is not in does nothing.

        Raises:
            InvalidName: the name is empty, too long or reserved (starts with ``__``).
        """
        check_room_name(room, self._server.limits.max_room_name_length)
        if room in self._rooms:
            await self._server.hub.leave(self, room)

    # --- sending -----------------------------------------------------------------------------------

    async def emit(self, event: str, data: object) -> None:
        """Send ``event`` with ``data`` to this client only.

        ``str`` goes as text, ``bytes``-like as a binary frame, anything else as JSON (msgspec
        Structs, dataclasses, pydantic models, dicts, lists, numbers, ``None``). Returns once the frame
        is queued; dropped silently when the socket is closing.

        A name declared with ``ss.event`` is sent as its declaration sends it (see
        :class:`~typed_ss.events.ServerEvent`): ``data`` must be of the declared type.

        Raises:
            InvalidName: the event name is empty, too long, reserved or contains 0x01/0x02.
            EncodeError: ``data`` cannot be encoded, or is not of the event's declared type; nothing
                is sent.
        """
        declared = self._server.check_event(event)
        self.push(encode_frame(event, data) if declared is None else declared.frame(data))

    async def roomcast(self, room: str, event: str, data: object) -> None:
        """Send to every member of ``room`` on every instance, this socket included if it is a member.
        See :meth:`Server.roomcast`: reserved room names (``__...``) raise ``InvalidName``; to reach
        one socket, use :meth:`socketcast`."""
        await self._server.roomcast(room, event, data)

    async def broadcast(self, event: str, data: object) -> None:
        """Send to every socket on every instance, this one included. See :meth:`Server.broadcast`."""
        await self._server.broadcast(event, data)

    async def socketcast(self, socket_id: str, event: str, data: object) -> None:
        """Send to the socket with id ``socket_id``, on whichever instance it is. See
        :meth:`Server.socketcast`."""
        await self._server.socketcast(socket_id, event, data)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection with ``code`` after the frames already queued for it.

        Returns without waiting for the client; the disconnect hook runs once the connection has
        ended. Closing twice does nothing.
        """
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        if self._backlog is not None:
            self._backlog.append(_Close(code, reason))
            return
        try:
            pending = self._transport.close(code, reason)
        except Disconnected:
            return
        if pending is not None:
            self._backlog = deque()
            self._writer = asyncio.create_task(self._drain(pending))

    # --- the send path (used by the hub) -----------------------------------------------------------

    def open(self, hello: Frame) -> None:
        """Send ``__hello``, then whatever was cast to the socket while it was being attached.
        Internal: the server calls it once the socket is reachable from every instance."""
        queued, self._backlog, self._backlog_bytes = self._backlog, None, 0
        self.push(hello)
        for item in queued or ():
            if isinstance(item, Frame):
                self.push(item)

    def push(self, frame: Frame) -> None:
        """Hand an encoded frame to this socket's send path without waiting. Internal: the hub calls
        this for every recipient of a cast, so it never awaits and never changes the hub's indexes."""
        if self._closing:
            return
        backlog = self._backlog
        if backlog is None:
            try:
                pending = self._transport.send(frame)
            except Disconnected:
                self._drop("the connection is gone")
                return
            if pending is not None:
                self._backlog = deque()
                self._writer = asyncio.create_task(self._drain(pending))
            return
        self._backlog_bytes += len(frame)
        if self._backlog_bytes > self._server.limits.send_queue_bytes:
            self._cut_off(f"its send queue passed {self._server.limits.send_queue_bytes} bytes")
            return
        backlog.append(frame)

    async def _drain(self, pending: PendingSend) -> None:
        """The writer: finish the congested send, then send the queue in order, until it is empty."""
        backlog = self._backlog
        assert backlog is not None  # set together with the writer
        timeout = self._server.limits.send_timeout
        try:
            while True:
                async with asyncio.timeout(timeout):
                    await pending
                while True:
                    if not backlog:
                        self._backlog = None
                        self._writer = None
                        return
                    item = backlog.popleft()
                    if isinstance(item, _Close):
                        next_pending = self._transport.close(item.code, item.reason)
                    else:
                        self._backlog_bytes -= len(item)
                        next_pending = self._transport.send(item)
                    if next_pending is not None:
                        pending = next_pending
                        break
        except TimeoutError:
            self._writer = None
            pending.close()
            self._cut_off(f"a send did not finish within {timeout} s")
        except Disconnected:
            self._writer = None
            self._drop("the connection is gone")
        except Exception:
            # A bug (in typed-ss or the server under it), never a client's doing: said loudly, and the
            # connection is ended rather than left with a writer that will never write again.
            logger.exception("the writer of socket %s failed; ending its connection", self.id)
            self._writer = None
            self._drop("its writer failed")

    def _cut_off(self, why: str) -> None:
        """Evict a slow consumer: drop its queue, try to tell it with 4008, end its connection."""
        if self._closer is not None:
            return
        self._server.client_log.warning(
            "slow_consumer", "socket %s is a slow consumer and is being closed: %s", self.id, why
        )
        self._closing = True
        self.close_code = CloseCode.SLOW_CONSUMER
        self._closer = asyncio.create_task(self._end(CloseCode.SLOW_CONSUMER, "slow consumer"))

    def _drop(self, why: str) -> None:
        """The connection is gone: end it without trying to send anything more."""
        if self._closer is not None:
            return
        logger.debug("socket %s: %s", self.id, why)
        self._closing = True
        self._closer = asyncio.create_task(self._end(None, ""))

    async def _end(self, code: int | None, reason: str) -> None:
        """Leave every room at once, send a close frame if there is one to send, then end the
        connection's task, whose teardown runs the disconnect hook.

        A close frame that cannot be written at once means the client is not reading: it could never
        receive it, so the connection is aborted (where the server allows it; otherwise the close
        frame gets ``send_timeout`` to leave). Runs as its own task because it starts inside a push,
        which may be part of a fan-out loop over the very rooms it leaves."""
        self._server.hub.detach(self)
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        if self._backlog is not None:
            self._backlog.clear()
        if code is not None:
            try:
                pending = self._transport.close(code, reason)
            except Disconnected:
                pending = None
            if pending is not None:
                if self._transport.abort():
                    pending.close()
                else:
                    try:
                        async with asyncio.timeout(self._server.limits.send_timeout):
                            await pending
                    except (TimeoutError, Disconnected):
                        pass  # a client that stopped reading cannot receive a close frame
                    finally:
                        pending.close()
        self.end_by_server()

    def _stop_background(self) -> None:
        """Cancel the writer and closer tasks (used by teardown; never cancels the calling task)."""
        current = asyncio.current_task()
        for task in (self._writer, self._closer):
            if task is not None and task is not current and not task.done():
                task.cancel()
        self._writer = None
        self._backlog = None
        self._backlog_bytes = 0
