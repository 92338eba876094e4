"""The :class:`Client`: its API, its handlers and hooks, and the connection's life across reconnects.

One task, the supervisor, owns the connection's life: it makes the connection ready (the rooms joined
again, the ``on_connected`` hook, the emits held while disconnected sent in order), waits
for it to close, decides from the close code whether to come back (:mod:`~typed_ss.client.reconnect`),
and does so after a jittered backoff. Each :class:`~typed_ss.client.connection.Connection` reads and
runs handlers in tasks of its own. Everything the application passes in (handlers, hooks) is called
from those tasks; nothing it raises escapes into them (it is logged).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final, Literal, NamedTuple, Self, TypeAlias, TypeVar, overload

from typing_extensions import Unpack
from websockets.exceptions import ConnectionClosed

from typed_ss.calls import decode_reply, reply_decoder
from typed_ss.client.connection import (
    Connection,
    Opened,
    ServerHello,
    open_connection,
    with_contract,
    with_recovery,
)
from typed_ss.client.errors import ClientClosed
from typed_ss.client.frames import client_frame, frame_size
from typed_ss.client.handlers import FROM_ANNOTATION, ClientHandler, make_handler
from typed_ss.client.options import DEFAULT_MAX_CALLS, ConnectOptions, Settings
from typed_ss.client.outbox import Outbox
from typed_ss.client.presence import Listed, PresenceEvent, event_decoder, members_decoder
from typed_ss.client.reconnect import Retry, should_reconnect
from typed_ss.errors import CallClosed, CallError, CloseCode, LimitExceeded, PayloadValidationError
from typed_ss.handlers import Decoder
from typed_ss.limits import Limits
from typed_ss.protocol import (
    CALL,
    MAX_OFFSETS,
    MEMBERS_EVENT,
    ErrorPayload,
    Frame,
    Gap,
    check_event_name,
    check_room_name,
    encode_frame,
    stream_tag,
)

__all__ = ["JOIN_EVENT", "LEAVE_EVENT", "Client", "Reconnected", "State", "connect"]

logger = logging.getLogger("typed_ss.client")

State: TypeAlias = Literal["idle", "connecting", "open", "closed"]
"""``idle``: not started; ``connecting``: opening, or waiting to reconnect (emits are held);
``open``: connected (emits are sent); ``closed``: for good."""

JOIN_EVENT: Final = "join"
"""The event :meth:`Client.join` calls: by convention, the server's handler that joins a room."""
LEAVE_EVENT: Final = "leave"
"""The event :meth:`Client.leave` calls."""

_LIMITS: Final = Limits()
_LOG_EVERY: Final = 20
"""A long outage logs its first failed attempt and every 20th after it."""

_R = TypeVar("_R")
_P = TypeVar("_P")
_NoArgHook = TypeVar("_NoArgHook", bound=Callable[[], object])
_CodeHook = TypeVar("_CodeHook", bound=Callable[[int], object])
_ErrorHook = TypeVar("_ErrorHook", bound=Callable[[ErrorPayload], object])
_GapHook = TypeVar("_GapHook", bound=Callable[[Gap], object])
_PresenceHook = TypeVar("_PresenceHook", bound=Callable[[PresenceEvent[Any]], object])


class Reconnected(NamedTuple):
    """What :meth:`Client.on_reconnected` hooks get."""

    recovered: bool
    """Whether the server took this client's session up (connection state recovery)."""
    rooms: tuple[str, ...]
    """The rooms the client is in now."""


_ReconnectedHook = TypeVar("_ReconnectedHook", bound=Callable[[Reconnected], object])

_readying: ContextVar[Connection | None] = ContextVar("typed_ss_client_readying", default=None)
"""The connection being made ready, inside the supervisor while it runs ``on_connected`` and joins the
rooms: what they send goes out at once, before the emits held meanwhile."""


def connect(url: str, *, contract: str | None = None, **options: Unpack[ConnectOptions]) -> Client:
    """A client of the typed-ss server at ``url`` (``ws://`` or ``wss://``), connected by ``async with``::

        async with connect("ws://127.0.0.1:8000/socket") as client:
            await client.emit("chat", Chat(room="tea", text="hi"))

    ``contract`` is a contract fingerprint to send as the ``ss_contract`` query parameter (a generated
    client passes its own). ``options`` are :class:`~typed_ss.client.options.ConnectOptions`:
    ``headers``, ``subprotocols``, ``reconnect``, ``open_timeout``, ``max_message_size``,
    ``max_queue``, ``read_ahead``, ``ssl``.

    Raises:
        TypeError: an unknown option.
        ValueError: an option out of range.
    """
    return Client(url, contract=contract, **options)


class Client:
    """A client of a typed-ss server: events both ways, calls both ways, reconnects.

    Make one with :func:`connect`. Register handlers and hooks before ``async with`` to see the first
    connection's frames too; a handler registered later applies from then on.
    """

    def __init__(self, url: str, *, contract: str | None = None, **options: Unpack[ConnectOptions]) -> None:
        self.url = url
        """The URL given (without the ``ss_contract`` parameter)."""
        self.sent_contract = contract
        """The contract fingerprint this client sends, or ``None``."""
        self._settings = Settings.of(options)
        self._target = url if contract is None else with_contract(url, contract)
        policy = self._settings.reconnect
        self._retry = Retry(policy) if policy is not None else None
        self._handlers: dict[str, ClientHandler] = {}
        self._outbox = Outbox(self._settings.max_queue)
        self._rooms: dict[str, None] = {}  # joined rooms, in order (a dict is an ordered set)
        self._state: State = "idle"
        self._connection: Connection | None = None
        self._hello: ServerHello | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._closed = asyncio.Event()
        self._on_connected: Callable[[], object] | None = None
        self._on_disconnected: Callable[[int], object] | None = None
        self._on_reload_needed: Callable[[], object] | None = None
        self._on_server_error: Callable[[ErrorPayload], object] | None = None
        self._on_reconnected: Callable[[Reconnected], object] | None = None
        self._on_gap: Callable[[Gap], object] | None = None
        self._on_presence: tuple[Callable[[Any], object], Decoder] | None = None  # the hook, its decoder
        self._positions: dict[str, str] = {}  # connection state recovery: the last offset per stream
        self._reconnecting = False  # the connection being made ready follows another one
        self.close_code: int | None = None
        """The code of the last close: the server's; this client's own when the server's never came
        (1009 after a message over ``max_message_size``); 1006 when neither; ``None`` before."""

    def __repr__(self) -> str:
        return f"<typed_ss.client.Client {self.url!r} {self._state}>"

    # --- state ------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """``idle``, ``connecting``, ``open`` or ``closed`` (see :data:`State`)."""
        return self._state

    @property
    def connected(self) -> bool:
        """Whether the client is connected and its emits are sent at once."""
        return self._state == "open"

    @property
    def closed(self) -> bool:
        """Whether the client is closed for good."""
        return self._is_closed()

    @property
    def id(self) -> str | None:
        """The socket id from the server's ``__hello``; ``None`` while not connected."""
        connection = self._connection
        return connection.hello.id if connection is not None and connection.hello is not None else None

    @property
    def max_message_size(self) -> int | None:
        """The largest message the server accepts, in bytes, from its last ``__hello`` (kept while
        disconnected, for the emits held meanwhile); ``None`` before one arrived."""
        return self._hello.max_message_size if self._hello is not None else None

    @property
    def max_calls(self) -> int:
        """The most calls that may wait for a reply at once, from the server's last ``__hello``."""
        return self._hello.max_calls if self._hello is not None else DEFAULT_MAX_CALLS

    @property
    def contract(self) -> str | None:
        """The server's contract fingerprint, from its last ``__hello``."""
        return self._hello.contract if self._hello is not None else None

    @property
    def rooms(self) -> tuple[str, ...]:
        """The rooms joined with :meth:`join` (and not left), in order; joined again after each reconnect."""
        return tuple(self._rooms)

    @property
    def queued(self) -> int:
        """Emits held until the client is connected."""
        return len(self._outbox)

    @property
    def dropped(self) -> int:
        """Emits dropped so far: the queue was full (``max_queue``) or the client closed for good."""
        return self._outbox.dropped

    # --- handlers and hooks -----------------------------------------------------------------------

    def on(
        self, event: str, handler: Callable[[_P], object], *, payload_type: object = FROM_ANNOTATION
    ) -> None:
        """Call ``handler(payload)`` for each ``event`` the server sends (a plain or an ``async``
        function). The payload is decoded as ``payload_type``, by default the handler's parameter
        annotation: ``bytes`` (or none) raw, ``str`` text, a msgspec type or pydantic model from JSON.
        A call of ``event`` from the server is acknowledged (JSON ``null``) once the handler returns.
        One handler per event: registering another replaces it.

        Raises:
            InvalidName: a reserved, empty or too long event name.
            HandlerSignatureError: ``handler`` does not take one positional parameter, or its type has
                no JSON form.
        """
        self._handlers[event] = make_handler(event, handler, payload_type, None, answers=False)

    def handle(
        self,
        event: str,
        fn: Callable[[_P], object],
        *,
        payload_type: object = FROM_ANNOTATION,
        returns: object = FROM_ANNOTATION,
    ) -> None:
        """Answer the server's calls of ``event`` with ``fn(payload)``: its return value is the reply,
        encoded as ``returns`` says, by default its return annotation (``str`` a text frame, ``bytes``
        binary, anything else JSON). A :class:`~typed_ss.HandlerError` it raises becomes an error
        reply with its code, message and data; any other exception is logged and the server gets
        ``handler_error``, with nothing of the exception. ``event`` sent without a call runs ``fn``
        too, its return value dropped. One handler per event, shared with :meth:`on`.

        Raises:
            InvalidName, HandlerSignatureError: as :meth:`on`.
        """
        self._handlers[event] = make_handler(event, fn, payload_type, returns, answers=True)

    def off(self, event: str) -> None:
        """Remove the handler of ``event`` (events are then ignored; calls get ``unknown_event``)."""
        self._handlers.pop(event, None)

    def on_connected(self, hook: _NoArgHook) -> _NoArgHook:
        """Call ``hook()`` after each connection opens, the first included, once the rooms :meth:`join`
        remembers are joined again and before the emits held meanwhile are sent: what it sends goes
        first. One hook; returns it, so it can decorate."""
        self._on_connected = hook
        return hook

    def on_disconnected(self, hook: _CodeHook) -> _CodeHook:
        """Call ``hook(close_code)`` each time a connection that opened closes (``close()`` too)."""
        self._on_disconnected = hook
        return hook

    def on_reload_needed(self, hook: _NoArgHook) -> _NoArgHook:
        """Call ``hook()`` when the server refuses this client's contract (close code 4010): this client
        was generated from another version of the server's contract, and does not reconnect."""
        self._on_reload_needed = hook
        return hook

    def on_reconnected(self, hook: _ReconnectedHook) -> _ReconnectedHook:
        """Call ``hook(Reconnected(recovered, rooms))`` after each reconnect, before any frame of the
        new connection is handled and before ``on_connected``. ``recovered`` is ``True`` when the
        server took this client's session up (its socket id and rooms, and every frame missed
        meanwhile, handled next, before any newer one); ``False`` when it starts afresh (the rooms
        :meth:`join` remembers are joined again next), which a server without connection state
        recovery always says. The handlers wait for the hook: it must not wait for them."""
        self._on_reconnected = hook
        return hook

    def on_gap(self, hook: _GapHook) -> _GapHook:
        """Call ``hook(gap)`` when the server tells this client that messages of a room it is in
        (``gap.room``; ``None`` for the broadcasts) were lost between the server's instances
        (``__gap``): the moment to fetch that room's state again. Without a hook it is logged."""
        self._on_gap = hook
        return hook

    def on_presence(self, hook: _PresenceHook, *, presence: object = FROM_ANNOTATION) -> _PresenceHook:
        """Call ``hook(event)`` for each ``__presence`` event: a member of a tracked room this client is
        in joined or left (``event.change``), on any of the server's instances (a server with
        ``presence=`` on; docs/presence.md). ``event.presence`` is that member's presence payload,
        decoded as ``presence``, by default as the hook's annotation says (``PresenceEvent[Card]``; a
        bare ``PresenceEvent``, or none, as JSON decodes it), or ``None`` when it has none. Without a
        hook the events are dropped. One hook; returns it, so it can decorate.

        Raises:
            HandlerSignatureError: ``hook`` does not take one positional parameter, its annotation is
                not a ``PresenceEvent``, or the payload type has no JSON form.
        """
        self._on_presence = (hook, event_decoder(hook, presence))
        return hook

    def on_server_error(self, hook: _ErrorHook) -> _ErrorHook:
        """Call ``hook(error)`` for each ``__error`` the server sends: an emit of this client's that
        it could not decode (``invalid_payload``) or whose handler failed. Without a hook they are
        logged at warning level."""
        self._on_server_error = hook
        return hook

    # --- sending ----------------------------------------------------------------------------------

    async def emit(self, event: str, data: object) -> None:
        """Send ``event`` with ``data``: ``str`` as a text frame, ``bytes`` as a binary frame, anything
        else as JSON (:func:`typed_ss.protocol.encode_json`). While not connected, the emit is held
        (at most ``max_queue``) and sent, in order, once connected again.

        Raises:
            InvalidName: a reserved, empty or too long event name.
            EncodeError: ``data`` has no JSON form; nothing is sent.
            LimitExceeded: the frame is larger than the server's ``max_message_size``; nothing is sent.
            ClientClosed: the client is closed for good.
        """
        check_event_name(event, _LIMITS.max_event_name_length)
        await self.emit_frame(event, encode_frame(event, data))

    @overload
    async def call(self, event: str, data: object, *, returns: type[_R], timeout: float = 5.0) -> _R: ...

    @overload
    async def call(self, event: str, data: object, *, returns: None = None, timeout: float = 5.0) -> None: ...

    @overload
    async def call(self, event: str, data: object, *, returns: object, timeout: float = 5.0) -> Any: ...

    async def call(self, event: str, data: object, *, returns: object = None, timeout: float = 5.0) -> Any:
        """Call the server's handler of ``event`` with ``data`` (encoded as :meth:`emit` does) and
        return its reply, decoded as ``returns`` (``bytes`` raw, ``str`` text, anything else JSON;
        ``None``, the default, an acknowledgement: JSON ``null``).

        Raises:
            TimeoutError: no reply within ``timeout`` seconds (a late reply is dropped).
            CallError: the server answered with an error: its ``code`` (``invalid_payload``,
                ``handler_error``, ``unknown_event``, ``too_many_calls`` or the application's own),
                ``message`` and ``data``. ``too_many_calls`` also when ``max_calls`` calls already
                wait; nothing is sent then.
            CallClosed: not connected, or the connection closed before the reply (at once);
                ``ClientClosed`` when the client is closed for good.
            PayloadValidationError: the reply does not decode as ``returns``.
            InvalidName, EncodeError, LimitExceeded: as :meth:`emit`; nothing is sent.
        """
        check_event_name(event, _LIMITS.max_event_name_length)
        return await self.call_frame(event, encode_frame(event, data), reply_decoder(returns), timeout)

    async def join(self, room: str, *, timeout: float = 5.0) -> None:
        """Join ``room``: call the server's ``join`` event with the room's name (text), the convention
        of Sacrificial-Socket apps (``@ss.on("join") async def join(sock, room: str) -> None``), and
        wait for its acknowledgement. The room is remembered and joined again after every reconnect,
        before the emits held meanwhile (the server forgets a socket's rooms when it disconnects).

        Raises:
            InvalidName: a reserved (``__...``), empty or too long room name.
            CallError: as :meth:`call` (``unknown_event`` when the server has no ``join`` handler);
                the room is not remembered.
        """
        check_room_name(room, _LIMITS.max_room_name_length)
        await self.call(JOIN_EVENT, room, returns=bytes, timeout=timeout)  # whatever it returns
        self._rooms[room] = None

    async def leave(self, room: str, *, timeout: float = 5.0) -> None:
        """Leave ``room``: call the server's ``leave`` event with its name and, once it acknowledged,
        forget the room (it is not joined again after a reconnect).

        Raises:
            InvalidName: as :meth:`join`.
            CallError, TimeoutError: as :meth:`call`; the room is still remembered, since the server
                may not have let the socket go.
        """
        check_room_name(room, _LIMITS.max_room_name_length)
        await self.call(LEAVE_EVENT, room, returns=bytes, timeout=timeout)  # whatever it returns
        self._rooms.pop(room, None)
        self._positions.pop(stream_tag(room), None)  # no use for the room's offset any more

    @overload
    async def members(self, room: str, *, timeout: float = 5.0) -> Listed[Any]: ...

    @overload
    async def members(self, room: str, presence: type[_P], *, timeout: float = 5.0) -> Listed[_P | None]: ...

    @overload
    async def members(self, room: str, presence: object, *, timeout: float = 5.0) -> Listed[Any]: ...

    async def members(self, room: str, presence: object = Any, *, timeout: float = 5.0) -> Listed[Any]:
        """The members of ``room`` on every instance of the server (a ``__members`` call; a server with
        ``presence=`` on, docs/presence.md): ``members`` (each one's ``socket``, ``instance`` and
        ``presence`` payload, decoded as ``presence``, or ``None`` when it has none), ``missing`` (the
        instances that did not answer: their members are not listed) and ``truncated`` (more members
        than the server lists at once). The server decides who may list a room: by default only its
        members.

        Raises:
            CallError: ``forbidden`` when the server does not let this client list the room,
                ``unknown_event`` when the server has no presence; otherwise as :meth:`call`.
            TimeoutError, CallClosed, PayloadValidationError: as :meth:`call`.
            InvalidName: a reserved (``__...``), empty or too long room name; nothing is sent.
            HandlerSignatureError: ``presence`` has no JSON form.
        """
        check_room_name(room, _LIMITS.max_room_name_length)
        decode = members_decoder(presence)
        frame = encode_frame(MEMBERS_EVENT, {"room": room})
        listed: Listed[Any] = await self.call_frame(MEMBERS_EVENT, frame, decode, timeout)
        return listed

    async def emit_frame(self, event: str, frame: Frame) -> None:
        """Send ``frame`` as an emit of ``event``, as :meth:`emit` does; for typed layers
        (:mod:`typed_ss.client.typed`): ``frame`` is encoded by :mod:`typed_ss.protocol` or a
        :class:`~typed_ss.events.PayloadFrames`, and ``event`` checked already.

        Raises:
            LimitExceeded, ClientClosed: as :meth:`emit`.
        """
        if self._is_closed():
            raise ClientClosed()
        message = client_frame(frame)
        self._check_size(event, message)
        connection = self._sending_to()
        if connection is not None:
            try:
                await connection.send(message)
                return
            except ConnectionClosed:
                pass  # held for the next connection, below
            if self._is_closed():  # close() ran meanwhile
                raise ClientClosed() from None
        self._outbox.hold(event, message)

    async def call_frame(self, event: str, frame: Frame, decode: Decoder | None, timeout: float) -> Any:
        """Send ``frame`` as a call of ``event`` and return the reply decoded with ``decode``, as
        :meth:`call` does; for typed layers, like :meth:`emit_frame`.

        Raises:
            TimeoutError, CallError, CallClosed, PayloadValidationError, LimitExceeded: as :meth:`call`.
        """
        if self._is_closed():
            raise ClientClosed()
        connection = self._sending_to()
        if connection is None:
            raise CallClosed(f"not connected: the call of {event!r} was not sent")
        call_id, reply = connection.calls.open()
        try:
            message = client_frame(frame, f"{CALL}{call_id}")
            self._check_size(event, message)
            try:
                await connection.send(message)
            except ConnectionClosed:
                raise CallClosed(f"the connection closed: the call of {event!r} was not sent") from None
            try:
                async with asyncio.timeout(timeout):
                    kind, payload = await reply
            except TimeoutError:
                raise TimeoutError(f"no reply to the call of {event!r} within {timeout} s") from None
        finally:
            connection.calls.forget(call_id)
            if not reply.done():
                reply.cancel()
            elif not reply.cancelled():
                reply.exception()  # retrieved, so asyncio does not log it as lost
        return decode_reply(event, kind, payload, decode)

    def _sending_to(self) -> Connection | None:
        """The connection to send on now, or ``None`` when an emit must be held (a call fails)."""
        connection = self._connection
        if connection is None or not connection.open:
            return None
        if self._state == "open" or _readying.get() is connection:
            return connection
        return None

    def _check_size(self, event: str, message: Frame) -> None:
        limit = self.max_message_size
        if limit is not None and frame_size(message) > limit:
            # Sending it would cost the connection (1009) and everything queued behind it.
            raise LimitExceeded(
                f"the frame of {event!r} is {frame_size(message)} bytes; the server accepts at most {limit}"
            )

    # --- the connection's life --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect for the first time (``async with`` does it); returns once connected and ready (the
        ``on_connected`` hook has run and the emits held so far are sent), or once that first
        connection closed while being made ready (a server that refuses this client's contract sends
        its ``__hello`` and closes with 4010): :attr:`connected` says which.

        Raises:
            OSError, TimeoutError, websockets.exceptions.InvalidHandshake,
            websockets.exceptions.ConnectionClosed: the first connection failed (see
                :func:`~typed_ss.client.connection.open_connection`); the client is then closed.
                Only later connections are retried.
            RuntimeError: the client was started before.
        """
        if self._state != "idle":
            raise RuntimeError(f"this client was started already ({self._state})")
        self._state = "connecting"
        try:
            connection = self._connection_for(await open_connection(self._target, self._settings))
        except BaseException:
            self._finish()
            raise
        self._supervisor = asyncio.create_task(self._supervise(connection), name="typed-ss client")
        try:
            await self._started.wait()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close for good: the connection with 1000, a reconnect that waits cancelled, the waiting
        calls failed (``CallClosed``), the emits still held dropped (logged). Safe to call again, and
        from a handler or hook. When the server had closed the connection already (its close frame
        arrived), ``close_code`` and the hooks get the server's code, 4010's ``on_reload_needed``
        included."""
        if self._is_closed() and self._connection is None:
            return
        was_open = self._state == "open"
        self._state = "closed"
        supervisor, current = self._supervisor, asyncio.current_task()
        if supervisor is not None and supervisor is not current:
            supervisor.cancel()
            await asyncio.wait((supervisor,))
        connection, self._connection = self._connection, None
        code: int = CloseCode.NORMAL
        if connection is not None:
            # The supervisor, cancelled above, would have reported a close the server made first.
            closed_by_server = connection.close_code
            await connection.close(CloseCode.NORMAL)
            code = CloseCode.NORMAL if closed_by_server is None else closed_by_server
            self.close_code = code
        self._finish()
        if connection is not None and was_open:
            await self._run_hook("on_disconnected", self._on_disconnected, code)
            if code == CloseCode.CONTRACT_MISMATCH:
                await self._run_hook("on_reload_needed", self._on_reload_needed)

    async def wait_closed(self) -> None:
        """Wait until the client is closed for good (by :meth:`close`, a close code after which it does
        not reconnect, or ``max_attempts``)."""
        await self._closed.wait()

    def _connection_for(self, opened: Opened) -> Connection:
        hello = opened.hello
        if hello is None or not hello.recovered:
            self._positions.clear()  # a fresh socket: offsets of another session mean nothing
        elif hello.streams is not None:
            keep = set(hello.streams)  # the session's streams: the others' offsets are of no use
            for tag in [tag for tag in self._positions if tag not in keep]:
                del self._positions[tag]
        connection = Connection(
            opened,
            self._handlers,
            read_ahead=self._settings.read_ahead,
            server_error=self._server_error,
            gap=self._gap,
            presence=self._presence,
            positions=self._positions,
        )
        self._connection = connection
        if hello is not None:
            self._hello = hello
        return connection

    def _reconnect_target(self) -> str:
        """Where to reconnect: with the session token and offsets, when the server gave a token."""
        hello = self._hello
        if hello is None or hello.session is None or len(self._positions) > MAX_OFFSETS:
            return self._target  # more offsets than a server takes: a fresh start
        return with_recovery(self._target, hello.session, self._positions)

    async def _supervise(self, connection: Connection) -> None:
        try:
            while True:
                await self._ready(connection)
                self._started.set()
                code = await connection.wait_closed()
                if self._is_closed():
                    return  # close() is in charge
                next_connection = await self._after_close(connection, code)
                if next_connection is None:
                    return
                connection = next_connection
        except Exception:
            logger.exception("the client's connection supervisor failed; closing the client")
            if self._connection is not None:
                await self._connection.close(CloseCode.INTERNAL_ERROR)
            self._finish()
        finally:
            self._started.set()

    async def _ready(self, connection: Connection) -> None:
        """Make a new connection ready: the rooms, the hook, then the held emits; then ``open``."""
        if self._retry is not None:
            self._retry.opened(time.monotonic())
        token = _readying.set(connection)
        try:
            hello = connection.hello
            recovered = hello is not None and hello.recovered is True
            try:
                if self._reconnecting:
                    # Before any frame of the connection is handled, a replay's first among them.
                    rooms = hello.rooms if recovered and hello is not None and hello.rooms else self._rooms
                    reconnected = Reconnected(recovered, tuple(rooms))
                    await self._run_hook("on_reconnected", self._on_reconnected, reconnected)
            finally:
                connection.release()
            if not recovered:
                # The rooms before on_connected: what it sends may be meant for them.
                await self._rejoin()
            await self._run_hook("on_connected", self._on_connected)
        finally:
            _readying.reset(token)
        while (pending := self._outbox.take()) is not None:
            if self._is_closed() or not connection.open:
                self._outbox.put_back(pending)
                return
            try:
                self._check_size(pending.event, pending.frame)
            except LimitExceeded as exc:
                self._outbox.dropped += 1
                logger.warning("a held emit was dropped: %s", exc)
                continue
            try:
                await connection.send(pending.frame)
            except ConnectionClosed:
                self._outbox.put_back(pending)
                return
        # Nothing awaited since the outbox was found empty: no emit can have slipped in behind it.
        if self._state == "connecting" and connection.open and self._connection is connection:
            self._state = "open"

    async def _rejoin(self) -> None:
        for room in list(self._rooms):
            try:
                await self.call(JOIN_EVENT, room, returns=bytes)
            except CallClosed:
                return  # the connection is gone already; the next one tries again
            except CallError as exc:
                self._rooms.pop(room, None)
                logger.warning("could not join room %r again after reconnecting: %s", room, exc)
            except TimeoutError:
                logger.warning("joining room %r again after reconnecting timed out", room)

    async def _after_close(self, connection: Connection, code: int) -> Connection | None:
        """The connection closed with ``code``: the hooks, then the next connection, or ``None`` when
        there is none (the client is then closed)."""
        self._connection = None
        self._state = "connecting"
        self.close_code = code
        if self._retry is not None:
            self._retry.closed(time.monotonic())
        if code == CloseCode.MESSAGE_TOO_BIG:
            logger.warning("the server closed the connection: a message was too big (1009)")
        elif code == CloseCode.CONTRACT_MISMATCH:
            logger.warning("the server refused this client's contract (4010): this client is out of date")
        else:
            logger.info("the server closed the connection (%d)", code)
        await self._run_hook("on_disconnected", self._on_disconnected, code)
        if code == CloseCode.CONTRACT_MISMATCH:
            await self._run_hook("on_reload_needed", self._on_reload_needed)
        retry = self._retry
        if self._is_closed() or retry is None or not should_reconnect(code, retry.policy):
            self._finish()
            return None
        return await self._reconnect(retry)

    async def _reconnect(self, retry: Retry) -> Connection | None:
        while True:
            await asyncio.sleep(retry.next_delay())
            if self._is_closed():
                return None
            try:
                opened = await open_connection(self._reconnect_target(), self._settings)
                self._reconnecting = True
                return self._connection_for(opened)
            except Exception as exc:
                again = retry.attempt_failed()
                # Closed before its __hello: the close code says whether the server will ever take it.
                refusal = exc.rcvd if isinstance(exc, ConnectionClosed) else None
                if refusal is not None and not should_reconnect(refusal.code, retry.policy):
                    self.close_code = refusal.code
                    again = False
                if not again:
                    logger.warning("giving up reconnecting after %d attempts: %r", retry.failed_attempts, exc)
                    self._finish()
                    return None
                if retry.failed_attempts == 1 or retry.failed_attempts % _LOG_EVERY == 0:
                    logger.info("reconnecting failed (%d attempts so far): %r", retry.failed_attempts, exc)

    def _is_closed(self) -> bool:
        # A method, not the attribute: mypy narrows an attribute as if no await could change it.
        return self._state == "closed"

    def _finish(self) -> None:
        """The final state: nothing will connect again, so the held emits can never be sent."""
        self._state = "closed"
        dropped = self._outbox.clear()
        if dropped:
            logger.warning("%d held emit(s) dropped: the client is closed", dropped)
        self._closed.set()

    async def _gap(self, gap: Gap) -> None:
        if self._on_gap is None:
            logger.warning("the server lost %d message(s) of room %r on their way to it", gap.lost, gap.room)
            return
        await self._run_hook("on_gap", self._on_gap, gap)

    async def _presence(self, payload: bytes) -> None:
        registered = self._on_presence
        if registered is None:
            logger.debug("a __presence event, and no on_presence hook: dropped")
            return
        hook, decode = registered
        try:
            event = decode(payload)
        except PayloadValidationError as exc:
            logger.warning("a __presence event that does not decode as the hook says: %s", exc.detail)
            return
        await self._run_hook("on_presence", hook, event)

    async def _server_error(self, error: ErrorPayload) -> None:
        if self._on_server_error is None:
            logger.warning(
                "the server could not handle this client's %r: %s: %s", error.event, error.code, error.detail
            )
            return
        await self._run_hook("on_server_error", self._on_server_error, error)

    async def _run_hook(self, name: str, hook: Callable[..., object] | None, *args: object) -> None:
        if hook is None:
            return
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("the client's %s hook failed", name)
