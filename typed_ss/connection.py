"""One connection's whole life, owned by one object: the handshake checks, the socket, ``__hello``, the
hooks, the messages in order, and the teardown.

:meth:`Server.serve <typed_ss.server.Server.serve>` makes a :class:`Connection` for each transport
connection and runs it in the transport's task. The pieces a transport can use:

- :meth:`Connection.run`: the whole life, for a transport that is read by pulling messages (ASGI's
  ``receive``): it calls :meth:`Transport.receive <typed_ss.transport.Transport.receive>` in a loop.
- :meth:`Connection.dispatch`: what happens to one message (size check, frame split, decode, the
  handler's coroutine), the seam for a transport that pushes messages from a callback instead.

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
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final

from typed_ss.calls import TOO_MANY_CALLS, too_many_calls_message
from typed_ss.contract import CONTRACT_QUERY_PARAMETER
from typed_ss.errors import (
    CloseCode,
    EncodeError,
    HandlerError,
    InvalidName,
    LimitExceeded,
    PayloadValidationError,
    ProtocolError,
)
from typed_ss.handlers import HandlerSpec
from typed_ss.logs import fields
from typed_ss.protocol import (
    BROADCAST_STREAM,
    CALL,
    REPLY,
    SUBPROTOCOL,
    error_frame,
    error_reply_frame,
    hello_frame,
    parse_call_flag,
    split_message,
    stream_tag,
)
from typed_ss.recovery.recoverer import Claim, Replay
from typed_ss.socket import Socket
from typed_ss.stepping import Resume
from typed_ss.transport import Disconnected, Transport

if TYPE_CHECKING:
    from typed_ss.server import Server

__all__ = ["Connection"]

logger = logging.getLogger("typed_ss")

CLIENT_CAUSED: Final = (InvalidName, LimitExceeded, PayloadValidationError)
"""Errors a handler raises because of what the client sent (a reserved room name to join, one room
too many): logged as the client's doing, at warning level, without a traceback."""

_REFUSED: Final = object()
_NO_CLAIM: Final = Claim(None, False, {})


class Connection:
    """One connection, from the handshake to the teardown; ends its own task when it must."""

    __slots__ = (
        "_busy",
        "_call_digits",
        "_call_id",
        "_client_log",
        "_closing",
        "_ended_by_server",
        "_gone",
        "_handlers",
        "_handling",
        "_inbox",
        "_inbox_bytes",
        "_inbox_calls",
        "_max_event_length",
        "_max_size",
        "_server",
        "_task",
        "_tearing_down",
        "_transport",
        "_watcher",
        "_woken",
        "socket",
    )

    def __init__(self, server: Server, transport: Transport, task: asyncio.Task[Any]) -> None:
        self._server = server
        self._transport = transport
        self._task = task
        self._ended_by_server = False
        self._closing = False  # the socket takes no more messages
        self.socket: Socket | None = None
        """The socket, once the upgrade has been accepted."""
        # (message, whether it is a call); made when the watcher first reads ahead (760 bytes empty).
        self._inbox: deque[tuple[str | bytes, bool]] | None = None
        self._inbox_bytes = 0
        self._inbox_calls = 0
        self._busy = False  # a handler (or hook) of this connection is running and has suspended
        self._gone: Disconnected | None = None  # the connection ended (its close code), as first read
        self._tearing_down = False
        self._watcher: asyncio.Task[None] | None = None
        self._woken: asyncio.Event | None = None
        self._handling: HandlerSpec | None = None  # the handler dispatch() last returned
        self._call_id = 0  # the id of the call being handled (0: the message is no call)
        self._call_digits = ""  # its id as the client wrote it
        # What dispatch() reads for every message, looked up once.
        self._handlers = server.handlers_by_event
        self._client_log = server.client_log
        self._max_size = server.limits.max_message_size
        self._max_event_length = server.limits.max_event_name_length

    # --- the whole life ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends: the handshake checks, then the socket's life."""
        identity = await self._admit()
        if identity is _REFUSED:
            return
        server, transport = self._server, self._transport
        try:
            contract = server.contract.fingerprint  # computed once, then cached
        except Exception:
            logger.exception("cannot describe the contract; refusing the connection")
            await transport.refuse(500)
            return
        try:
            await transport.accept(SUBPROTOCOL if SUBPROTOCOL in transport.subprotocols else None)
        except Disconnected:
            return
        recovery = server.recovery
        claim = _NO_CLAIM if recovery is None else await recovery.claim(transport.request, identity)
        session = claim.session
        socket_id = session.socket_id if session is not None else None
        sock = self.socket = Socket(server, transport, self, identity, socket_id)
        try:
            if recovery is not None:
                sock.session = await recovery.opened(sock, claim, identity)
            # Attaching waits until the backend delivers the socket's own room, so the id in __hello
            # is reachable from every instance; casts that arrive meanwhile wait behind __hello.
            await server.hub.attach(sock)
            replay: Replay | None = None
            if session is not None:
                assert recovery is not None
                for room in list(session.rooms):
                    await server.hub.join(sock, room)
                replay = await recovery.replay(claim)
                if replay is None:
                    # Trimmed while the rooms were joined (rare): no hello, the session dropped; the
                    # client comes back and starts afresh.
                    recovery.failed(sock)
                    await self._close_unopened(CloseCode.SERVICE_RESTART, "recovery failed: reconnect")
                    return
                sock.recovered = True
            limits = server.limits
            hello = hello_frame(
                sock.id,
                limits.max_message_size,
                contract,
                limits.max_calls,
                session=sock.session.token if sock.session is not None else None,
                recovered=sock.recovered if claim.attempted else None,
                rooms=sorted(sock.rooms) if sock.recovered else None,
                streams=_stream_tags(server.hub.rooms_of(sock)) if sock.recovered else None,
            )
            sock.open(hello, replay)
            if replay is not None and recovery is not None and recovery.shares_history:
                server.hub.caught_up(sock, replay.upto)
            logger.debug("socket %s connected", sock.id, extra=fields(sock.id))
            if not self._contract_accepted(sock, contract):
                await sock.close(CloseCode.CONTRACT_MISMATCH, "client out of date: reload needed")
            elif server.hooks.on_connect is not None:
                try:
                    await self.run_watched(server.hooks.on_connect(sock))
                except Exception:
                    logger.exception(
                        "the on_connect hook failed for socket %s; closing it", sock.id, extra=fields(sock.id)
                    )
                    await sock.close(CloseCode.INTERNAL_ERROR, "internal error")
            await self._read()
        except Disconnected as gone:
            if self._gone is None:
                self._gone = gone
        except asyncio.CancelledError:
            if not self._ended_by_server:
                raise
            self._task.uncancel()  # the server ended this connection itself: finish normally
        finally:
            self._tearing_down = True  # from now on nothing may cancel this task: the teardown must run
            await self._stop_watcher()
            await self._teardown(sock)

    def closing(self) -> None:
        """The socket no longer takes messages (it is closing): drop what the client still sends."""
        self._closing = True

    def end(self) -> None:
        """End the connection's task now, cancelling a handler that is still running; the teardown
        (and the disconnect hook) follows. Used when the client is gone or was evicted."""
        if not self._task.done() and not self._tearing_down:
            self._ended_by_server = True
            self._task.cancel()

    async def end_and_wait(self) -> None:
        """:meth:`end`, dropping the transport too, then wait until the teardown is over."""
        if not self._tearing_down:
            self._transport.abort()
            self.end()
        await asyncio.wait({self._task})

    async def _close_unopened(self, code: int, reason: str) -> None:
        """Close a connection whose socket never opened (no ``__hello`` was sent)."""
        try:
            pending = self._transport.close(code, reason)
            if pending is not None:
                await pending
        except Disconnected:
            pass

    async def _admit(self) -> Any:
        """The checks before the upgrade; returns the identity, or ``_REFUSED`` once refused."""
        server, transport = self._server, self._transport
        limits = server.limits
        if server.connection_count > limits.max_connections:
            server.client_log.warning(
                "max_connections",
                "refused a WebSocket from %s: max_connections (%d) reached",
                transport.request.client,
                limits.max_connections,
            )
            await transport.refuse(503)
            return _REFUSED
        request = transport.request
        headers = request.headers
        refusal = server.handshake.refusal(
            request.scope.get("scheme", "ws"), headers.get("host"), headers.get("origin")
        )
        if refusal is not None:
            # The header's value is the client's: %r, so it cannot forge a log line.
            server.client_log.warning(
                refusal.header, "refused a WebSocket: %s %r %s", refusal.header, refusal.value, refusal.reason
            )
            await transport.refuse(403)
            return _REFUSED
        identity: Any = None
        authenticate = server.hooks.authenticate
        if authenticate is not None:
            try:
                identity = await authenticate(request)
            except Exception:
                logger.exception("the authenticate hook failed; refusing the connection")
                await transport.refuse(500)
                return _REFUSED
            if identity is None:
                server.client_log.info(
                    "unauthenticated", "refused a WebSocket from %s: authentication failed", request.client
                )
                await transport.refuse(403)
                return _REFUSED
        if not server.accepting:  # checked last: shutdown may begin while the hook runs
            await transport.refuse(503)
            return _REFUSED
        return identity

    def _contract_accepted(self, sock: Socket, contract: str) -> bool:
        server = self._server
        if not sock.request.scope.get("query_string"):
            # No query string, so no fingerprint (the plain ss.js client): parsing one is the largest
            # part of typed-ss's own cost per connection.
            return True
        client_contract = sock.request.query_params.get(CONTRACT_QUERY_PARAMETER)
        if client_contract is None or client_contract == contract or server.contract_check == "off":
            return True
        server.client_log.warning(
            "contract",
            "socket %s was generated from another contract (%r; the server's is %s)%s",
            sock.id,
            client_contract,
            contract,
            ": closing it" if server.contract_check == "refuse" else "",
            socket_id=sock.id,
        )
        return server.contract_check != "refuse"

    async def _teardown(self, sock: Socket) -> None:
        hub = self._server.hub
        hub.detach(sock)
        sock.ended()
        if self._server.recovery is not None:
            self._server.recovery.ended(sock, None if self._gone is None else self._gone.code)
        on_disconnect = self._server.hooks.on_disconnect
        if on_disconnect is not None:
            try:
                await on_disconnect(sock)
            except Exception:
                logger.exception(
                    "the on_disconnect hook failed for socket %s", sock.id, extra=fields(sock.id)
                )
        hub.forget(sock)
        logger.debug("socket %s disconnected", sock.id, extra=fields(sock.id))

    # --- messages ----------------------------------------------------------------------------------

    def dispatch(self, message: str | bytes) -> Coroutine[Any, Any, Any] | None:
        """What to run for one client message: the handler's coroutine, or ``None`` when there is
        nothing to run (malformed, no handler, invalid payload answered with ``__error`` or an error
        reply, a reply to one of the server's calls, too big and closed with 1009, or the socket is
        closing). When the message is a call, :meth:`replied` must get what the coroutine returns."""
        if self._closing:
            return None  # drain until the disconnect arrives
        sock = self.socket
        assert sock is not None  # messages come only after the upgrade
        max_size = self._max_size
        # A str's UTF-8 size is at most 4 bytes a character: only a long one needs measuring.
        if len(message) > max_size // 4 and _size(message) > max_size:
            self._client_log.info(
                "too_big",
                "socket %s sent a message larger than %d bytes; closing it",
                sock.id,
                max_size,
                socket_id=sock.id,
            )
            return sock.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
        try:
            event, flags, payload = split_message(message, self._max_event_length)
            marker = parse_call_flag(flags) if flags else None
        except ProtocolError as exc:
            self._client_log.info(
                "malformed", "socket %s sent a malformed frame: %s", sock.id, exc, socket_id=sock.id
            )
            return None
        call_id = 0
        if marker is not None:
            kind, call_id = marker
            self._call_digits = flags[1:]
            if kind != CALL:  # the client's reply to one of the server's calls
                if not sock.reply_arrived(kind, call_id, _as_bytes(payload)):
                    self._client_log.debug(
                        "late_reply", "socket %s replied to no waiting call", sock.id, socket_id=sock.id
                    )
                return None
        self._call_id = call_id
        spec = self._handlers.get(event)
        if spec is None:
            if call_id:
                self._fail_call(sock, event, "unknown_event", f"no handler for event {event!r}")
                return None
            self._client_log.debug(
                "no_handler",
                "socket %s sent event %r, which has no handler",
                sock.id,
                event,
                socket_id=sock.id,
                event=event,
            )
            return None
        value: object = payload
        decode = spec.decode_text if isinstance(payload, str) else spec.decode
        if decode is not None:
            try:
                value = decode(payload)  # type: ignore[arg-type]  # the decoder for the payload's form
            except PayloadValidationError as exc:
                self._invalid_payload(sock, spec, exc, call_id)
                return None
        self._handling = spec
        return spec.handler(sock, value)

    async def _read(self) -> None:
        """Handle the socket's messages in order, one at a time, until the connection ends."""
        sock = self.socket
        assert sock is not None
        receive = self._transport.receive
        dispatch = self.dispatch
        while True:
            if self._inbox or self._watcher is not None or self._gone is not None:
                message = await self._next()  # read ahead while a handler was busy
            else:
                message = await receive()
            coro = dispatch(message)
            if coro is None:
                continue
            # run_watched, written out: one coroutine fewer per message is a measurable share of
            # typed-ss's own cost per message (docs/benchmarks.md).
            try:
                try:
                    yielded = coro.send(None)
                except StopIteration as done:
                    if self._call_id:
                        self.replied(done.value)
                    continue
                self._start_watching()
                result = await Resume(coro, yielded)
                if self._call_id:
                    self.replied(result)
            except Exception as exc:
                self._handler_failed(sock, exc)
            finally:
                self._busy = False

    def replied(self, value: object) -> None:
        """The handler of the call :meth:`dispatch` returned has returned ``value``: send the reply,
        checked and encoded as the handler's return annotation declares."""
        sock, spec, call_id = self.socket, self._handling, self._call_id
        assert sock is not None
        assert spec is not None
        assert spec.reply is not None
        self._call_id = 0
        try:
            # The reply's flag from the call's own digits: formatting the id again costs more.
            frame = spec.reply.encode(value, REPLY + self._call_digits)
        except EncodeError as exc:
            # A bug in the handler, not the client's doing: said loudly; the caller gets an error.
            logger.error(
                "the handler for event %r returned what its annotation does not allow: %s",
                spec.event,
                exc,
                extra=fields(sock.id, spec.event),
            )
            sock.push(
                error_reply_frame(spec.event, call_id, "handler_error", "the handler for this event failed")
            )
            return
        sock.push(frame)

    def _fail_call(self, sock: Socket, event: str, code: str, message: str, data: object = None) -> None:
        call_id, self._call_id = self._call_id, 0
        try:
            frame = error_reply_frame(event, call_id, code, message, data)
        except EncodeError as exc:  # the application's HandlerError(data=...) has no JSON form
            logger.error(
                "the error data of a call to %r has no JSON form: %s",
                event,
                exc,
                extra=fields(sock.id, event),
            )
            frame = error_reply_frame(event, call_id, code, message)
        sock.push(frame)

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
            await Resume(coro, yielded)
        finally:
            self._busy = False

    def _invalid_payload(
        self, sock: Socket, spec: HandlerSpec, exc: PayloadValidationError, call_id: int = 0
    ) -> None:
        self._server.client_log.info(
            "invalid_payload",
            "socket %s sent an invalid payload for %r: %r",
            sock.id,
            spec.event,
            exc.detail,
            socket_id=sock.id,
            event=spec.event,
        )
        if call_id:
            self._fail_call(sock, spec.event, "invalid_payload", exc.detail)
        else:
            sock.push(error_frame(spec.event, "invalid_payload", exc.detail))

    def _handler_failed(self, sock: Socket, exc: Exception) -> None:
        event = self._handling.event if self._handling is not None else "?"
        client_log = self._server.client_log
        if isinstance(exc, HandlerError):
            # The application's own error: its code and message are meant for the caller.
            if self._call_id:
                self._fail_call(sock, event, exc.code, exc.message, exc.data)
            else:
                sock.push(error_frame(event, exc.code, exc.message))
            return
        if isinstance(exc, CLIENT_CAUSED):
            client_log.warning(
                "handler_refused",
                "the handler for event %r refused what socket %s sent: %r",
                event,
                sock.id,
                str(exc),
                socket_id=sock.id,
                event=event,
            )
        else:
            client_log.exception(
                "handler_failed",
                exc,
                "the handler for event %r failed on socket %s",
                event,
                sock.id,
                socket_id=sock.id,
                event=event,
            )
        if isinstance(exc, PayloadValidationError):
            code, message = "invalid_payload", exc.detail
        else:
            code, message = "handler_error", "the handler for this event failed"
        if self._call_id:
            self._fail_call(sock, event, code, message)
        else:
            sock.push(error_frame(event, "handler_error", "the handler for this event failed"))

    # --- the watcher: reading on while a handler is busy -------------------------------------------

    def _start_watching(self) -> None:
        self._busy = True
        if self._watcher is None and self._gone is None:
            self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Read ahead while a handler is busy; end the connection if the client leaves meanwhile."""
        limits = self._server.limits
        try:
            while self._busy or not self._inbox:
                if (
                    len(self._inbox or ()) >= limits.read_ahead_messages
                    or self._inbox_bytes >= limits.max_message_size
                ):
                    return  # the inbox is full: let the client's TCP window fill
                try:
                    message = await self._transport.receive()
                except Disconnected as exc:
                    self._gone = exc
                    if self._busy:
                        self.end()  # cancels the busy handler; the teardown follows
                    return
                is_call = self._screen(message)
                if is_call is None:
                    continue  # a reply taken at once, or a call refused
                if self._inbox is None:
                    self._inbox = deque()
                self._inbox.append((message, is_call))
                self._inbox_bytes += len(message)
                self._inbox_calls += is_call
                if self._woken is not None:
                    self._woken.set()
        finally:
            self._watcher = None
            if self._woken is not None:
                self._woken.set()

    def _screen(self, message: str | bytes) -> bool | None:
        """What the watcher does with ``message`` before it waits in the inbox: ``None`` when it
        was handled at once, else whether it is a call.

        A reply to a call of the server's is handed over at once: replies never wait behind the
        handler that awaits them. A call past ``max_calls`` (counting the one being handled and
        those in the inbox) is refused at once with ``too_many_calls``, not queued."""
        sock = self.socket
        if sock is None:
            return False
        try:
            event, flags, payload = split_message(message, self._max_event_length)
            marker = parse_call_flag(flags) if flags else None
        except ProtocolError:
            return False  # left for dispatch(), which logs it
        if marker is None:
            return False
        kind, call_id = marker
        if kind != CALL:
            sock.reply_arrived(kind, call_id, _as_bytes(payload))
            return None
        max_calls = self._server.limits.max_calls
        if self._inbox_calls + (self._call_id != 0) >= max_calls:
            self._client_log.info(
                "too_many_calls",
                "socket %s has %d calls waiting already; refused one more",
                sock.id,
                max_calls,
                socket_id=sock.id,
                event=event,
            )
            sock.push(error_reply_frame(event, call_id, TOO_MANY_CALLS, too_many_calls_message(max_calls)))
            return None
        return True

    async def _next(self) -> str | bytes:
        """The next message: from the inbox, from the watcher still reading, or from the transport."""
        while True:
            if self._inbox:
                message, is_call = self._inbox.popleft()
                self._inbox_bytes -= len(message)
                self._inbox_calls -= is_call
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

    async def _stop_watcher(self) -> None:
        watcher = self._watcher
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


def _stream_tags(rooms: Iterable[str]) -> list[str]:
    """The tags of a socket's streams (its rooms, its own among them, and the broadcasts), for a
    recovered ``__hello``: the client forgets the offsets of any other."""
    return [stream_tag(room) for room in (BROADCAST_STREAM, *sorted(rooms))]


def _as_bytes(payload: str | bytes) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload


def _size(message: str | bytes) -> int:
    return len(message.encode()) if isinstance(message, str) else len(message)
