"""typed-ss's uvicorn protocols, and what typed-ss can still enforce under uvicorn's stock ones.

The one module that knows uvicorn's protocol classes. ASGI gives an application no way to stop
reading a connection, to abort one, or to time out a client that never finishes its upgrade request;
uvicorn lets a deployment choose its protocol classes (``ws=`` and ``http=``, which
:func:`typed_ss.uvicorn_settings` and ``typed-ss run`` set). typed-ss's classes extend uvicorn's
own (``websockets-sansio`` and ``httptools``) where uvicorn leaves a client able to pin the server:

- :class:`WebSocketProtocol` stops reading while the connection's write buffer is full, so a client
  that sends pings and never reads the pongs cannot grow the server's memory (uvicorn answers every
  ping into an unbounded buffer); bounds every message, compressed or not, by typed-ss's
  ``max_message_size``; aborts (instead of closing gracefully into a buffer the peer never drains)
  a connection whose close did not complete within uvicorn's close timeout; lets typed-ss abort a
  slow consumer at once; marks the handshake complete after a refusal with an HTTP status, so
  refusing a client logs no error; closes a text message that is not UTF-8 with 1007, logged at info
  level (uvicorn logs an error with a traceback); and after a protocol error ends its side of the
  connection and reads on until the client ends its own, so that the close frame reaches the client
  (uvicorn closes at once, and the client's next bytes then reset the connection, close frame and
  all).
- :class:`HttpProtocol` closes a connection that has not sent a complete request head within
  ``handshake_timeout`` (idle connections, partial headers), logged at debug level.

Under uvicorn's stock classes (plain ``uvicorn module:app``), :func:`connection_of` still bounds every
message by ``max_message_size`` (uvicorn's own default is 16 MiB, inflated messages included) and keeps
refusals quiet; the rest needs the classes above, and typed-ss says so once, at the first connection.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Coroutine
from typing import Any, ClassVar, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from typed_ss.logs import ClientLog

__all__ = ["HttpProtocol", "ServerConnection", "WebSocketProtocol", "configured", "connection_of"]

logger = logging.getLogger("typed_ss")
_client_log = ClientLog(logger)


class ServerConnection(Protocol):
    """What typed-ss can do to a connection of the ASGI server beyond ASGI messages."""

    def bound_message_size(self, max_size: int) -> None:
        """Refuse (1009) any message, inflated size included, larger than ``max_size`` bytes."""
        ...

    def refused(self) -> None:
        """The application refused the upgrade with an HTTP response: nothing more to complete."""
        ...

    def abort(self) -> bool:
        """Drop the connection at once, without a closing handshake; returns whether it could."""
        ...

    def closed(self) -> bool:
        """Whether the server's protocol has closed the connection (it takes no more messages)."""
        ...


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with typed-ss's bounds (see the module docstring)."""

    max_message_size: ClassVar[int | None] = None
    """The largest message accepted; ``None`` keeps uvicorn's ``ws_max_size``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writes_paused = False
        self._lingering = False
        self._reached_typed_ss = False  # the application's typed-ss server took this connection
        if self.max_message_size is not None:
            _bound_sansio(self, self.max_message_size)

    # --- what typed-ss asks of a connection -------------------------------------------------------

    def bound_message_size(self, max_size: int) -> None:
        self._reached_typed_ss = True  # typed-ss's ASGI adapter calls this first, for every connection
        _bound_sansio(self, max_size)

    def refused(self) -> None:
        _refused_sansio(self)

    def abort(self) -> bool:
        return _abort_sansio(self)

    def closed(self) -> bool:
        return self.close_sent or self.disconnected

    # --- flow control: stop reading while the client does not read ---------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if not self._writes_paused:
            self._writes_paused = True
            # Every ping read would add a pong to a buffer the client does not drain: stop reading
            # until it drains (the client's own TCP window then fills instead of our memory).
            if not self.transport.is_closing():
                self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._writes_paused:
            self._writes_paused = False
            if not self.read_paused and not self.transport.is_closing():
                self.transport.resume_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if not self._writes_paused:
                self.transport.resume_reading()
        return message

    # --- a text message that is not UTF-8 ----------------------------------------------------------

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            # A client's doing: uvicorn logs an error with a traceback and drops the connection at
            # once, which can lose the close frame. Close with 1007 and let the handshake finish.
            _client_log.info(
                "invalid_utf8",
                "closing a connection from %s: a text message is not UTF-8 (1007)",
                self.client,
            )
            self._fail(1007, f"invalid UTF-8 at byte {exc.start}")
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _fail(self, code: int, reason: str) -> None:
        """Close the connection from the protocol side: close frame, disconnect to the application,
        read (and discard) until the client's close arrives, abort after the close timeout."""
        try:
            self.conn.send_close(code, reason)
        except InvalidState:
            return  # the client's close came first: handle_close ends the connection
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._await_close()

    def handle_parser_exception(self) -> None:
        # websockets refused what the client sent (a protocol error, a message too big) and queued a
        # close frame; it discards whatever the client sends from now on.
        if not self.close_sent:
            close = self.conn.close_sent
            code, reason = (close.code, close.reason) if close is not None else (1006, "")
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.close_sent = True
        data = b"".join(self.conn.data_to_send())
        if data and not self._lingering:
            self.transport.write(data)
        self._linger()

    def _linger(self) -> None:
        """End our side and read on (the protocol discards) until the client ends its side.

        Closing the socket at once, as uvicorn does, answers the client's next bytes with a reset,
        which destroys our close frame before the client has read it. Bounded by the close timeout.
        """
        if self._lingering:
            return
        self._lingering = True
        self.stop_keepalive()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._await_close()

    def _await_close(self) -> None:
        """Read on, to see the client's close, and abort if it has not come within the close timeout."""
        if self.read_paused:
            self.read_paused = False
            if not self._writes_paused:
                self.transport.resume_reading()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self.abort)

    # --- closing ------------------------------------------------------------------------------------

    def send(self, message: Any) -> Coroutine[Any, Any, None]:
        # Not a coroutine itself: a data frame gets uvicorn's own send coroutine, with no frame of
        # ours around it (one per frame sent adds up in a fan-out).
        if message["type"] == "websocket.send":
            return super().send(message)
        return self._send_control(message)

    async def _send_control(self, message: Any) -> None:
        if (
            message["type"] == "websocket.close"
            and not self.handshake_complete
            and not self._reached_typed_ss
            and message.get("code", 1000) == 1000
        ):
            _no_route(self.scope.get("path", ""))
        await super().send(message)
        if message["type"] == "websocket.close" and self.close_timer is not None:
            # uvicorn closes gracefully when the client does not answer the close, which waits for
            # the write buffer to drain: forever, if the client stopped reading. Abort instead.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.abort)
        elif message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.refused()

    def on_task_complete(self, task: Any) -> None:
        super().on_task_complete(task)
        if not self.disconnected and self.close_timer is None:
            # The application ended and uvicorn closed the transport gracefully; a client that does
            # not read would keep it (and its buffers) forever.
            self.close_timer = self.loop.call_later(self.close_timeout, self.abort)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol with a deadline for each request head (``handshake_timeout``)."""

    handshake_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: Any = None  # asyncio.TimerHandle while a request head is awaited

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._await_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_head()

    def on_headers_complete(self) -> None:
        self._head_received()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.handshake_timeout, self._head_too_slow)

    def _head_received(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        _client_log.debug(
            "slow_head",
            "closing a connection from %s: no complete request head within %s s",
            self.client,
            self.handshake_timeout,
        )
        self.transport.abort()


def configured(*, max_message_size: int, handshake_timeout: float) -> tuple[type[Any], type[Any]]:
    """``(http, ws)`` protocol classes for ``uvicorn.Config``, with these limits."""
    http = type("HttpProtocol", (HttpProtocol,), {"handshake_timeout": handshake_timeout})
    ws = type("WebSocketProtocol", (WebSocketProtocol,), {"max_message_size": max_message_size})
    return http, ws


# --- uvicorn's stock protocols ---------------------------------------------------------------------


class _StockSansIO:
    """uvicorn's stock ``websockets-sansio`` protocol, as a :class:`ServerConnection`."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def bound_message_size(self, max_size: int) -> None:
        _bound_sansio(self._protocol, max_size)

    def refused(self) -> None:
        _refused_sansio(self._protocol)

    def abort(self) -> bool:
        return _abort_sansio(self._protocol)

    def closed(self) -> bool:
        return self._protocol.close_sent or self._protocol.disconnected


class _StockLegacy:
    """uvicorn's ``websockets`` (legacy) protocol, as a :class:`ServerConnection`."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:  # uvicorn's websockets_impl.WebSocketProtocol
        self._protocol = protocol

    def bound_message_size(self, max_size: int) -> None:
        current = self._protocol.max_size
        if current is None or current > max_size:
            self._protocol.max_size = max_size

    def refused(self) -> None:
        pass  # this protocol completes a refusal by itself

    def abort(self) -> bool:
        transport: Any = self._protocol.transport  # None until the connection is made
        if transport is None:
            return False
        transport.abort()
        return True

    def closed(self) -> bool:
        return False  # this protocol raises ClientDisconnected for messages after its close


def connection_of(receive: Any) -> ServerConnection | None:
    """The server connection behind an ASGI ``receive`` callable, when it is one of uvicorn's
    WebSocket protocols (middleware that wraps ``receive`` hides it: then ``None``)."""
    protocol = getattr(receive, "__self__", None)
    if isinstance(protocol, WebSocketProtocol):
        return protocol
    if isinstance(protocol, WebSocketsSansIOProtocol):
        return _StockSansIO(protocol)
    # Imported only if the server uses it: importing it warns that websockets.legacy is deprecated.
    legacy = sys.modules.get("uvicorn.protocols.websockets.websockets_impl")
    if legacy is not None and isinstance(protocol, legacy.WebSocketProtocol):
        return _StockLegacy(protocol)
    return None


def _bound_sansio(protocol: WebSocketsSansIOProtocol, max_size: int) -> None:
    # websockets checks this before reading each frame, and bounds inflation by it: a compressed
    # message cannot expand past it either.
    conn = protocol.conn
    current = conn.max_message_size
    if current is None or current > max_size:
        conn.max_message_size = max_size


def _refused_sansio(protocol: WebSocketsSansIOProtocol) -> None:
    # uvicorn leaves the handshake incomplete after an HTTP refusal and then logs an error when the
    # application returns (uvicorn pull request 3138 fixes it upstream).
    if protocol.initial_response is not None and protocol.close_sent:
        protocol.handshake_complete = True


def _abort_sansio(protocol: WebSocketsSansIOProtocol) -> bool:
    transport: Any = protocol.transport  # None until the connection is made
    if transport is None or protocol.disconnected:
        return False
    transport.abort()
    return True


_PATHS_WARNED_ABOUT: set[str] = set()


def _no_route(path: str) -> None:
    """A WebSocket refused before it reached typed-ss, the way Starlette's router refuses one that no
    route matched: say so (once per path), with the usual cause and its fix, instead of a bare 403."""
    if path in _PATHS_WARNED_ABOUT or len(_PATHS_WARNED_ABOUT) >= 100:
        return
    _PATHS_WARNED_ABOUT.add(path)
    logger.warning(
        "a WebSocket to %r was refused (403) before it reached typed-ss: no route matched it. Mounted with "
        "app.mount(path, ss)? Starlette's Mount matches only paths below it, never the path itself: "
        "use ss.mount(app, path) or WebSocketRoute(path, ss) instead",
        path,
    )
