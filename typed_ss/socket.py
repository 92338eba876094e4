"""Socket: one connected client, its public face, and its send path.

The send path never makes a caller wait for this client. A frame is handed to the transport at once
while the connection keeps up; once the connection is congested, frames wait in a bounded queue (in
bytes) that the socket's own writer task drains. A socket whose queue passes ``send_queue_bytes``, or
whose send does not finish within ``send_timeout``, is evicted with close code 4008 (slow consumer)
and its connection aborted.

The socket's life is one explicit :class:`SocketState`. Its rooms belong to the hub
(:meth:`typed_ss.hub.Hub.rooms_of`), its task to its :class:`~typed_ss.connection.Connection`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, overload

from starlette.datastructures import State
from starlette.requests import HTTPConnection
from typing_extensions import TypeVar

from typed_ss.calls import PendingCalls, decode_reply, reply_decoder
from typed_ss.errors import CallClosed, CloseCode, LimitExceeded
from typed_ss.handlers import Decoder
from typed_ss.logs import fields
from typed_ss.protocol import (
    CALL,
    RESERVED_PREFIX,
    Frame,
    check_room_name,
    with_flag,
)
from typed_ss.transport import Disconnected, PendingSend, Transport

if TYPE_CHECKING:
    from typed_ss.recovery.recoverer import Replay
    from typed_ss.recovery.sessions import Session
    from typed_ss.server import Server

__all__ = ["Identity", "Socket", "SocketState"]

Identity = TypeVar("Identity", default=Any)
R = TypeVar("R")
"""The type of ``sock.identity``: what the server's authenticate hook returns (``Any`` by default)."""

logger = logging.getLogger("typed_ss")


class SocketState(enum.Enum):
    """Where a socket is in its life; frames pushed to it are sent, queued or dropped accordingly."""

    CONNECTING = "connecting"
    """Accepted and being attached: frames wait behind ``__hello``."""
    OPEN = "open"
    """Frames go to the transport at once."""
    CONGESTED = "congested"
    """A send could not complete at once: frames wait in the bounded queue the writer drains."""
    CLOSING = "closing"
    """The application closed the socket: nothing more is queued; the close frame is on its way."""
    ENDING = "ending"
    """The server is ending the connection (the client is gone, or was evicted as a slow consumer):
    the socket has left its rooms, a close frame may be tried, then the connection's task ends."""
    CLOSED = "closed"
    """The connection has ended (the disconnect hook runs in this state)."""


# The members as module constants: reading an Enum member through its class is a descriptor call in
# Python 3.11 (about 45 ns), and the send path compares states once per frame of every fan-out.
_CONNECTING: Final = SocketState.CONNECTING
_OPEN: Final = SocketState.OPEN
_CONGESTED: Final = SocketState.CONGESTED
_CLOSING: Final = SocketState.CLOSING
_ENDING: Final = SocketState.ENDING
_CLOSED: Final = SocketState.CLOSED


class Owner(Protocol):
    """What owns the socket's connection (:class:`typed_ss.connection.Connection`)."""

    def closing(self) -> None:
        """The socket no longer takes messages: drop what the client still sends."""
        ...

    def end(self) -> None:
        """End the connection's task now; its teardown follows."""
        ...

    async def end_and_wait(self) -> None:
        """End the connection's task and wait until its teardown is over."""
        ...


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


class Socket(Generic[Identity]):
    """One connected client.

    Created by the server for each accepted connection; handlers and hooks receive it. Attributes:
    ``id`` (32 characters, unique), ``request`` (the upgrade request), ``identity`` (what the
    authentication hook returned, ``None`` without one) and ``state`` (free per-connection storage:
    ``sock.state.user = ...``).

    Generic in the identity's type: a handler of a ``Server[User]`` takes a ``Socket[User]``, and
    ``sock.identity`` is a ``User`` to mypy. A bare ``Socket`` is a ``Socket[Any]``.
    """

    __slots__ = (
        "_calls",
        "_connection",
        "_life",
        "_queue",
        "_queue_bytes",
        "_server",
        "_side_task",
        "_transport",
        "close_code",
        "id",
        "identity",
        "recovered",
        "session",
        "state",
    )

    def __init__(
        self,
        server: Server[Any],
        transport: Transport,
        connection: Owner,
        identity: Identity,
        socket_id: str | None = None,
    ) -> None:
        self.id: Final = new_socket_id() if socket_id is None else socket_id
        self.identity: Identity = identity
        self.state = State()
        self.close_code: int | None = None
        """The code this socket was closed with by the server, or ``None``."""
        self._server = server
        self._transport = transport
        self._connection = connection
        self._life = _CONNECTING
        # Frames waiting to be sent, in CONNECTING (behind __hello) and CONGESTED (for the writer),
        # and a close waiting behind them in CLOSING; made when first needed (an empty deque is 760
        # bytes, and most sockets never queue anything once open).
        self._queue: deque[_Outgoing] | None = None
        self._queue_bytes = 0
        # The writer (draining a congested queue) or the closer (ending an evicted socket): at most
        # one runs at a time, and teardown cancels it.
        self._side_task: asyncio.Task[None] | None = None
        self._calls: PendingCalls | None = None  # the server's calls to this client, made on first use
        self.recovered = False
        """Whether this socket took up the session of an earlier connection of its client (connection
        state recovery): the same id, rooms and identity, and what was missed meanwhile replayed."""
        self.session: Session | None = None
        """Internal: this socket's connection state recovery session, when recovery is on."""

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self._life.value}>"

    # --- information -------------------------------------------------------------------------------

    @property
    def request(self) -> HTTPConnection:
        """The upgrade request: ``headers``, ``query_params``, ``cookies``, ``client``, ``url``."""
        return self._transport.request

    @property
    def life(self) -> SocketState:
        """Where the socket is in its life (:class:`SocketState`)."""
        return self._life

    @property
    def rooms(self) -> frozenset[str]:
        """A snapshot of the rooms this socket is in (without its internal ``__socket_id:`` room).
        Inside the disconnect hook it still lists the rooms the socket was in."""
        return frozenset(
            room for room in self._server.hub.rooms_of(self) if not room.startswith(RESERVED_PREFIX)
        )

    def in_room(self, room: str) -> bool:
        """Whether this socket is a member of ``room``."""
        return room in self._server.hub.rooms_of(self)

    @property
    def connected(self) -> bool:
        """``False`` once the socket is closing or closed; emits to it are then dropped."""
        # Identity tests: a member's hash is a Python-level call, once per message adds up.
        life = self._life
        return life is _OPEN or life is _CONGESTED or life is _CONNECTING

    # --- rooms -------------------------------------------------------------------------------------

    async def join(self, room: str) -> None:
        """Join ``room``; joining a room twice has no further effect. A closing socket joins nothing.

        Raises:
            InvalidName: the name is empty, too long or reserved (starts with ``__``).
            LimitExceeded: the socket is already in ``max_rooms_per_socket`` rooms.
        """
        limits = self._server.limits
        check_room_name(room, limits.max_room_name_length)
        rooms = self._server.hub.rooms_of(self)
        if not self.connected or room in rooms:
            return
        if len(rooms) - 1 >= limits.max_rooms_per_socket:  # the socket's own room does not count
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
        if room in self._server.hub.rooms_of(self):
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
        server = self._server
        # The server's table, read here, not through a method: one call less on every emit.
        encode = server.encoders.get(event) or server.encoder(event)
        if server.hub.recorder is None:
            self.push(encode(data))  # written out, not through emit_frame: one call less per emit
        else:
            self._push_kept(encode(data))

    def emit_frame(self, frame: Frame) -> None:
        """Send an encoded event frame to this client, kept for connection state recovery when it is
        on (a reconnecting client gets it again if it missed it). Internal: :meth:`emit` and declared
        events use it."""
        if self._server.hub.recorder is None:
            self.push(frame)
        else:
            self._push_kept(frame)

    def _push_kept(self, frame: Frame) -> None:
        if self.connected:  # a socket ended (taken over, say) keeps nothing for the one after it
            self._server.hub.send_kept(self, frame)

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

    @overload
    async def call(self, event: str, data: object, *, returns: type[R], timeout: float = 5.0) -> R: ...

    @overload
    async def call(self, event: str, data: object, *, returns: object, timeout: float = 5.0) -> Any: ...

    async def call(self, event: str, data: object, *, returns: object, timeout: float = 5.0) -> Any:
        """Call the client: send ``event`` with ``data`` and wait for its reply, decoded as
        ``returns`` (``bytes`` raw, ``str`` text, anything else JSON, as handlers' payloads are).
        ``reply = await sock.call("confirm", Question(...), returns=Answer, timeout=5.0)``; a
        declared event's :meth:`~typed_ss.events.ServerEvent.call` is the typed form.

        Raises:
            TimeoutError: no reply within ``timeout`` seconds.
            CallError: the client answered with an error (its ``code``, ``message``, ``data``);
                ``CallClosed`` when the connection closed first, ``too_many_calls`` when
                ``max_calls`` calls to this socket already wait.
            PayloadValidationError: the reply does not decode as ``returns``.
            InvalidName, EncodeError: as :meth:`emit`; nothing is sent.
        """
        frame = self._server.encoder(event)(data)
        return await self.call_frame(event, frame, reply_decoder(returns), timeout)

    async def call_frame(self, event: str, frame: Frame, decode: Decoder | None, timeout: float) -> Any:
        """Send an encoded frame as a call and wait for the reply, decoded with ``decode``. Internal:
        :meth:`call` and declared events' calls use it."""
        if not self.connected:
            raise CallClosed()
        calls = self._calls
        if calls is None:
            calls = self._calls = PendingCalls(self._server.limits.max_calls)
        call_id, reply = calls.open()
        self.push(with_flag(frame, f"{CALL}{call_id}"))
        try:
            async with asyncio.timeout(timeout):
                kind, payload = await reply
        except TimeoutError:
            raise TimeoutError(f"no reply to {event!r} from socket {self.id} within {timeout} s") from None
        finally:
            calls.forget(call_id)
        return decode_reply(event, kind, payload, decode)

    def reply_arrived(self, kind: str, call_id: int, payload: bytes) -> bool:
        """A reply from the client to one of the server's calls. Internal: the connection hands it
        over; returns whether a call waited for it."""
        return self._calls is not None and self._calls.answered(kind, call_id, payload)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection with ``code`` after the frames already queued for it.

        Returns without waiting for the client; the disconnect hook runs once the connection has
        ended. Closing twice does nothing. With connection state recovery's history in the backend
        (Redis, MongoDB), what this instance sent the socket (to it, its rooms, everyone) reaches it
        once it comes back from the backend: the close waits for that first, up to 2 seconds.
        """
        if self.connected:
            await self._server.hub.settle(self)
        if self.connected:
            self._start_close(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """Start closing at once, without waiting for frames on their way back from the backend
        (the server's shutdown: a client whose session is kept gets them when it reconnects)."""
        if self.connected:
            self._start_close(code, reason)

    def _start_close(self, code: int, reason: str) -> None:
        was = self._life
        self._life = _CLOSING
        self._connection.closing()
        self.close_code = code
        if was is not _OPEN:  # behind __hello, or behind a congested queue
            self._enqueue(_Close(code, reason))
            return
        try:
            pending = self._transport.close(code, reason)
        except Disconnected:
            return
        if pending is not None:
            self._side_task = asyncio.create_task(self._drain(pending))

    # --- the send path (the connection and the hub use it) -----------------------------------------

    def open(self, hello: Frame, replay: Replay | None = None) -> None:
        """Send ``__hello``, then whatever was queued while the socket was being attached (a close
        included). Internal: the connection calls it once the socket is reachable everywhere.

        A recovered socket's ``replay`` (what its client missed, in order) goes right after the
        hello, instead of the frames queued meanwhile: those were kept, so the replay holds them."""
        if self._life is not _CONNECTING and self._life is not _CLOSING:
            return  # ended while it was being attached
        queued = list(self._queue or ())
        self._queue = None
        self._queue_bytes = 0
        self._life = _OPEN
        self.push(hello)
        if replay is not None:
            for frame in replay.frames:
                self.push(frame)
            # The kept frames queued meanwhile are in the replay, unless the backend's history got
            # them after it was read; the rest (a call, a close, those) follows.
            queued = [item for item in queued if isinstance(item, _Close) or not replay.holds(item)]
        for item in queued:
            if isinstance(item, _Close):  # closed while attaching: the close goes after what came before
                self._start_close(item.code, item.reason)
                break
            self.push(item)

    def push(self, frame: Frame) -> None:
        """Hand an encoded frame to this socket's send path without waiting. Internal: the hub calls
        this for every recipient of a cast, so it never awaits and never changes the hub's indexes."""
        life = self._life
        if life is _OPEN:
            try:
                pending = self._transport.send(frame)
            except Disconnected:
                self._drop("the connection is gone")
                return
            if pending is not None:
                self._life = _CONGESTED
                self._side_task = asyncio.create_task(self._drain(pending))
            return
        if life is _CONGESTED or life is _CONNECTING:
            self._queue_bytes += len(frame)
            if self._queue_bytes > self._server.limits.send_queue_bytes:
                self._evict(f"its send queue passed {self._server.limits.send_queue_bytes} bytes")
                return
            self._enqueue(frame)

    def _enqueue(self, item: _Outgoing) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(item)

    async def _drain(self, pending: PendingSend) -> None:
        """The writer: finish the congested send, then send the queue in order, until it is empty."""
        timeout = self._server.limits.send_timeout
        try:
            while True:
                async with asyncio.timeout(timeout):
                    await pending
                while True:
                    queue = self._queue  # read each time: a push makes it while this one waits
                    if not queue:
                        self._side_task = None
                        self._queue = None
                        if self._life is _CONGESTED:
                            self._life = _OPEN
                        return
                    item = queue.popleft()
                    if isinstance(item, _Close):
                        next_pending = self._transport.close(item.code, item.reason)
                    else:
                        self._queue_bytes -= len(item)
                        next_pending = self._transport.send(item)
                    if next_pending is not None:
                        pending = next_pending
                        break
        except TimeoutError:
            self._side_task = None
            pending.close()
            self._evict(f"a send did not finish within {timeout} s")
        except Disconnected:
            self._side_task = None
            self._drop("the connection is gone")
        except Exception:
            # A bug (in typed-ss or the server under it), never a client's doing: said loudly, and the
            # connection is ended rather than left with a writer that will never write again.
            logger.exception(
                "the writer of socket %s failed; ending its connection", self.id, extra=fields(self.id)
            )
            self._side_task = None
            self._drop("its writer failed")

    def _evict(self, why: str) -> None:
        """A slow consumer: drop its queue, try to tell it with 4008, abort and end its connection."""
        if self._life is _ENDING or self._life is _CLOSED:
            return
        self._server.client_log.warning(
            "slow_consumer",
            "socket %s is a slow consumer and is being closed: %s",
            self.id,
            why,
            socket_id=self.id,
        )
        self.close_code = CloseCode.SLOW_CONSUMER
        self._start_ending(CloseCode.SLOW_CONSUMER, "slow consumer")

    def _drop(self, why: str) -> None:
        """The connection is gone: end it without trying to send anything more."""
        if self._life is _ENDING or self._life is _CLOSED:
            return
        logger.debug("socket %s: %s", self.id, why, extra=fields(self.id))
        self._start_ending(None, "")

    def _start_ending(self, code: int | None, reason: str) -> None:
        # Its own task: this starts inside a push, which may be part of a fan-out loop over the very
        # rooms the socket is about to leave.
        self._life = _ENDING
        self._connection.closing()
        writer, self._side_task = self._side_task, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        self._queue = None
        self._queue_bytes = 0
        self._side_task = asyncio.create_task(self._end(code, reason))

    async def _end(self, code: int | None, reason: str) -> None:
        """Leave every room at once, send a close frame if there is one to send, then end the
        connection's task, whose teardown runs the disconnect hook.

        A close frame that cannot be written at once means the client is not reading: it could never
        receive it, so the connection is aborted (where the server allows it; otherwise the close
        frame gets ``send_timeout`` to leave)."""
        self._server.hub.detach(self)
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
        self._connection.end()

    async def end_for_takeover(self) -> None:
        """End this socket's connection for a reconnect of its client that takes its session up, and
        wait until it is torn down (its id is then free). Internal: connection state recovery."""
        await self._connection.end_and_wait()

    def ended(self) -> None:
        """The connection has ended: stop the send path (the writer or closer, unless it is the
        caller). Internal: the connection's teardown calls it before the disconnect hook."""
        self._life = _CLOSED
        self._connection.closing()
        if self._calls is not None:
            self._calls.fail_all(CallClosed())
        side, self._side_task = self._side_task, None
        if side is not None and side is not asyncio.current_task() and not side.done():
            side.cancel()
        self._queue = None
        self._queue_bytes = 0
