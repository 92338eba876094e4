"""One WebSocket on the native transport: picows' protocol below, typed-ss's :class:`Transport` above.

picows parses and writes frames (masking, control frames, pings answered at once) and calls
:class:`_Listener` with each frame as it arrives. What picows leaves to its user is done here:

- messages: fragments joined (picows delivers each frame as it is), text checked as UTF-8 (1007),
  the whole message bounded by ``max_message_size`` (1009) and the frame sequence checked (1002);
- the close handshake: the client's close answered with the same code, a close of ours followed by
  the client's answer or, after ``close_timeout``, an abort;
- back-pressure: while the connection's write buffer is over its high-water mark, reading stops too,
  so a client that sends (pings included) without reading holds no more than the buffer; a send then
  returns a :class:`_Drain` that finishes once the buffer drained;
- the inbox: messages wait for :meth:`NativeTransport.receive` in a short queue; past
  ``_INBOX_HIGH`` messages or ``max_message_size`` bytes reading stops until the core has taken
  them (the core bounds its own read-ahead).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Final

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from starlette.requests import HTTPConnection

from typed_ss.errors import CloseCode
from typed_ss.logs import ClientLog
from typed_ss.protocol import Frame
from typed_ss.transport import Disconnected, PendingSend

if TYPE_CHECKING:
    from typed_ss.native.http import Front

__all__ = ["NativeTransport"]

logger = logging.getLogger("typed_ss.native")

ABNORMAL_CLOSURE: Final = 1006
NO_STATUS: Final = 1005
_INBOX_HIGH: Final = 32
"""Messages waiting for the core past which reading stops (until the core took them all); reading
stops too once they hold ``max_message_size`` bytes."""
_PROTOCOL_ERROR: Final = 1002
_INVALID_DATA: Final = 1007
# The members as module constants: reading one through the enum class is a descriptor call, and these
# are compared or passed once per frame.
_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_CONTINUATION: Final = WSMsgType.CONTINUATION
_CLOSE: Final = WSMsgType.CLOSE


def _close_reason(reason: str) -> bytes:
    """``reason`` as a close frame carries it: UTF-8, at most 123 bytes, never a cut character."""
    return reason.encode()[:123].decode(errors="ignore").encode()


class _Drain:
    """The rest of a send made while the connection's write buffer was full: the frame is in the
    buffer already; awaiting this waits until the buffer drained below its low-water mark."""

    __slots__ = ("_transport",)

    def __init__(self, transport: NativeTransport) -> None:
        self._transport = transport

    def __await__(self) -> Generator[Any, Any, None]:
        transport = self._transport
        while transport.writing_paused and transport.gone is None:
            yield from transport.drained().__await__()
        if transport.gone is not None:
            raise Disconnected(transport.gone)

    def close(self) -> None:
        """Nothing to abandon: the frame is in the buffer, and goes unless the connection is aborted."""


class NativeTransport:
    """A :class:`~typed_ss.transport.Transport` over one picows connection.

    Made by the HTTP front (:mod:`typed_ss.native.http`) for an upgrade request; :meth:`accept` hands
    the connection to picows (:meth:`~typed_ss.native.http.Front.upgrade`), :meth:`refuse` answers it
    with an HTTP status.
    """

    __slots__ = (
        "_close_sent",
        "_close_timeout",
        "_close_timer",
        "_drained",
        "_front",
        "_inbox",
        "_inbox_bytes",
        "_inbox_limit",
        "_listener",
        "_loop",
        "_pinged",
        "_reading_paused_for_inbox",
        "_request",
        "_subprotocols",
        "_waiter",
        "gone",
        "heard",
        "writing_paused",
        "ws",
    )

    def __init__(
        self,
        front: Front,
        scope: dict[str, Any],
        subprotocols: Sequence[str],
        *,
        max_message_size: int,
        close_timeout: float,
        client_log: ClientLog,
    ) -> None:
        self._front = front  # upgrades the connection, or refuses it
        self._request = HTTPConnection(scope)
        self._subprotocols = subprotocols
        self._loop = asyncio.get_running_loop()
        self._inbox: deque[str | bytes] = deque()
        self._inbox_bytes = 0  # characters for text: a bound, not an exact count
        self._inbox_limit = max_message_size
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused_for_inbox = False
        self._close_sent = False
        self._close_timeout = close_timeout
        self._close_timer: asyncio.TimerHandle | None = None
        self._listener = _Listener(self, max_message_size, client_log)
        self.ws: WSTransport | None = None
        """picows' transport, once upgraded."""
        self.gone: int | None = None
        """The close code once the connection has ended (1006 without a close frame)."""
        self.writing_paused = False
        """Whether the write buffer is over its high-water mark."""
        self.heard = False
        """Whether a frame came since the last :meth:`keepalive`."""
        self._pinged = False

    # --- the Transport interface ----------------------------------------------------------------------

    @property
    def request(self) -> HTTPConnection:
        return self._request

    @property
    def subprotocols(self) -> Sequence[str]:
        return self._subprotocols

    async def accept(self, subprotocol: str | None) -> None:
        if not self._front.upgrade(self._listener, subprotocol):
            self.gone = ABNORMAL_CLOSURE
            raise Disconnected()

    async def refuse(self, status: int) -> None:
        self.gone = ABNORMAL_CLOSURE
        self._front.refuse(status)

    async def receive(self) -> str | bytes:
        inbox = self._inbox
        while True:
            if inbox:
                message = inbox.popleft()
                self._inbox_bytes -= len(message)
                if self._reading_paused_for_inbox and not inbox:
                    self._reading_paused_for_inbox = False
                    self._resume_reading()
                return message
            if self.gone is not None:
                raise Disconnected(self.gone)
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def send(self, frame: Frame) -> PendingSend | None:
        ws = self.ws
        if ws is None or self.gone is not None or self._close_sent:
            raise Disconnected(self.gone or ABNORMAL_CLOSURE)
        ws.send(_TEXT if isinstance(frame, str) else _BINARY, frame)
        # pause_writing is called inside the send that crosses the high-water mark.
        return _Drain(self) if self.writing_paused else None

    def close(self, code: int, reason: str) -> PendingSend | None:
        ws = self.ws
        if ws is None or self.gone is not None or self._close_sent:
            raise Disconnected(self.gone or ABNORMAL_CLOSURE)
        self._close_sent = True
        ws.send_close(WSCloseCode(code), _close_reason(reason))
        # The client answers with its own close frame (then the connection ends); one that does not
        # within close_timeout is dropped.
        self._give_up_closing_later()
        return _Drain(self) if self.writing_paused else None

    def abort(self) -> bool:
        ws = self.ws
        if ws is None:
            return self._front.abort()
        if self.gone is None:
            ws.disconnect(graceful=False)
            self._ended(ABNORMAL_CLOSURE)
        return True

    def keepalive(self) -> bool:
        """One keepalive round (every ``ping_interval``): a connection heard from since the last round
        is alive; one that was not is pinged; one that did not answer that ping by now is aborted
        (a client that vanished without closing, or stopped reading). Returns whether it was aborted."""
        ws = self.ws
        if ws is None or self.gone is not None:
            return False
        if self.heard:
            self.heard = self._pinged = False
        elif not self._pinged:
            self._pinged = True
            ws.send_ping()
        else:
            self.abort()
            return True
        return False

    # --- what the listener reports ----------------------------------------------------------------------

    def drained(self) -> asyncio.Future[None]:
        """A future done once the write buffer drained, or the connection ended."""
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()
        return self._drained

    def connected(self, ws: WSTransport) -> None:
        self.ws = ws

    def deliver(self, message: str | bytes) -> None:
        inbox = self._inbox
        inbox.append(message)
        self._inbox_bytes += len(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        full = len(inbox) >= _INBOX_HIGH or self._inbox_bytes >= self._inbox_limit
        if full and not self._reading_paused_for_inbox:
            self._reading_paused_for_inbox = True
            self._pause_reading()

    def peer_closed(self, code: int) -> None:
        """The client's close frame arrived: answer it (unless ours went first), then end."""
        self._close_and_end(code if code != NO_STATUS else CloseCode.NORMAL, "", code)

    def fail(self, code: int, reason: str) -> None:
        """The client broke the protocol: close with ``code`` and end the connection."""
        self._close_and_end(code, reason, code)

    def _close_and_end(self, code: int, reason: str, ended_with: int) -> None:
        ws = self.ws
        assert ws is not None
        if not self._close_sent:
            self._close_sent = True
            ws.send_close(WSCloseCode(code), _close_reason(reason) if reason else None)
        ws.disconnect(graceful=True)
        self._ended(ended_with)
        # A client that does not read keeps the close frame in the buffer: released after close_timeout.
        self._give_up_closing_later()

    def disconnected(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._ended(ABNORMAL_CLOSURE)

    def writing(self, paused: bool) -> None:
        self.writing_paused = paused
        if paused:
            self._pause_reading()
        else:
            if not self._reading_paused_for_inbox:
                self._resume_reading()
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    # --- inside -----------------------------------------------------------------------------------------

    def _ended(self, code: int) -> None:
        if self.gone is not None:
            return
        self.gone = code
        for future in (self._waiter, self._drained):
            if future is not None and not future.done():
                future.set_result(None)

    def _give_up_closing_later(self) -> None:
        if self._close_timer is None:
            self._close_timer = self._loop.call_later(self._close_timeout, self._give_up_closing)

    def _give_up_closing(self) -> None:
        self._close_timer = None
        if self.ws is not None and not self.ws.is_disconnected:
            self.ws.disconnect(graceful=False)
        self._ended(ABNORMAL_CLOSURE)

    def _pause_reading(self) -> None:
        ws = self.ws
        if ws is not None and not ws.is_disconnected:
            ws.underlying_transport.pause_reading()

    def _resume_reading(self) -> None:
        ws = self.ws
        if ws is not None and not ws.is_disconnected and not self.writing_paused:
            ws.underlying_transport.resume_reading()


class _Listener(WSListener):
    """picows' callbacks for one connection: frames into messages for the :class:`NativeTransport`."""

    def __init__(self, transport: NativeTransport, max_message_size: int, client_log: ClientLog) -> None:
        super().__init__()
        self._transport = transport
        self._max_size = max_message_size
        self._client_log = client_log
        self._parts: list[bytes] = []  # the fragments of the message being received
        self._parts_size = 0
        self._parts_type: WSMsgType | None = None

    def on_ws_connected(self, ws: WSTransport) -> None:
        self._transport.connected(ws)

    def on_ws_frame(self, ws: WSTransport, frame: WSFrame) -> None:
        transport = self._transport
        transport.heard = True  # a PONG too: picows hands it here, since it sends no pings of its own
        if transport.gone is not None:
            return  # what a client sends after its close (or ours was answered) is dropped
        kind = frame.msg_type
        if kind is _TEXT and frame.fin and self._parts_type is None and not frame.rsv1:
            # The common case first, in one call: a whole text message.
            if frame.payload_size > self._max_size:
                self._too_big(frame.payload_size)
                return
            try:
                text = frame.get_payload_as_utf8_text()  # strict: a lone surrogate's bytes fail too
            except UnicodeDecodeError:
                self._fail(_INVALID_DATA, "a text message that is not UTF-8")
                return
            transport.deliver(text)
        elif frame.rsv1:
            self._fail(_PROTOCOL_ERROR, "reserved bit set: no extension was negotiated")
        elif kind is _TEXT or kind is _BINARY:
            if self._parts_type is not None:
                self._fail(_PROTOCOL_ERROR, "a new message began inside a fragmented one")
            elif frame.fin:
                self._message(kind, frame.get_payload_as_bytes())
            else:
                self._parts_type = kind
                self._add_part(frame)
        elif kind is _CONTINUATION:
            if self._parts_type is None:
                self._fail(_PROTOCOL_ERROR, "a continuation frame with no message begun")
            elif self._add_part(frame) and frame.fin:
                kind, payload = self._parts_type, b"".join(self._parts)
                self._parts, self._parts_size, self._parts_type = [], 0, None
                self._message(kind, payload)
        elif kind is _CLOSE:
            transport.peer_closed(int(frame.get_close_code().value) or NO_STATUS)
        # PING is answered by picows; a PONG needs nothing.

    def _add_part(self, frame: WSFrame) -> bool:
        self._parts_size += frame.payload_size
        if self._parts_size > self._max_size:
            self._too_big(self._parts_size)
            return False
        self._parts.append(frame.get_payload_as_bytes())
        return True

    def _message(self, kind: WSMsgType, payload: bytes) -> None:
        # Checked here too, not left to picows' max_frame_size: after refusing a frame as too big,
        # picows still hands it to on_ws_frame.
        if len(payload) > self._max_size:
            self._too_big(len(payload))
        elif kind is _TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                self._fail(_INVALID_DATA, "a text message that is not UTF-8")
                return
            self._transport.deliver(text)
        else:
            self._transport.deliver(payload)

    def _too_big(self, size: int) -> None:
        self._client_log.info(
            "message_too_big", "closed a connection with 1009: a message of %d bytes or more", size
        )
        self._fail(CloseCode.MESSAGE_TOO_BIG, "message too big")

    def _fail(self, code: int, reason: str) -> None:
        self._parts, self._parts_size, self._parts_type = [], 0, None
        self._transport.fail(code, reason)

    def on_ws_disconnected(self, ws: WSTransport) -> None:
        self._transport.disconnected()

    def pause_writing(self) -> None:
        self._transport.writing(paused=True)

    def resume_writing(self) -> None:
        self._transport.writing(paused=False)
