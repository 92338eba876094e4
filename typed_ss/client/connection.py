"""One WebSocket of a client, from the upgrade to the close: opening it, reading it, running its handlers.

:func:`open_connection` makes the upgrade request (offering ``sac-sock``, with the contract fingerprint
in the query string) and waits for the server's ``__hello``; a :class:`Connection` then reads in one
task and runs the handlers in another. The reader hands each reply to a waiting call at once, so a
reply is taken even while a handler runs (the handler may be the one waiting for it); events and the
server's calls go to the handler task, which runs them one at a time, in order. When the WebSocket
closes, the calls that wait fail at once (:class:`~typed_ss.errors.CallClosed`), the handler task
finishes what the server had sent before the close, and :meth:`Connection.wait_closed` returns the
close code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from typed_ss.calls import PendingCalls
from typed_ss.client.frames import ServerFrame, parse_server_frame
from typed_ss.client.handlers import ClientHandler, answer
from typed_ss.client.options import DEFAULT_MAX_CALLS, Settings
from typed_ss.contract import CONTRACT_QUERY_PARAMETER
from typed_ss.errors import CallClosed, CloseCode, ProtocolError
from typed_ss.protocol import (
    CALL,
    ERROR_EVENT,
    GAP_EVENT,
    HELLO_EVENT,
    OFFSETS_QUERY_PARAMETER,
    PRESENCE_EVENT,
    SESSION_QUERY_PARAMETER,
    SUBPROTOCOL,
    ErrorPayload,
    Frame,
    Gap,
)

__all__ = ["Connection", "Opened", "ServerHello", "open_connection", "with_contract", "with_recovery"]

logger = logging.getLogger("typed_ss.client")

ABNORMAL_CLOSURE = 1006
"""The close code of a connection that ended without a close frame (RFC 6455)."""


class ServerHello(msgspec.Struct, frozen=True):
    """What the client keeps of the server's ``__hello`` (docs/protocol.md section 4); fields the server
    leaves out keep these defaults, fields the client does not know are ignored."""

    id: str | None = None
    """The socket id."""
    max_message_size: int | None = None
    """The largest message the server accepts, in bytes."""
    contract: str | None = None
    """The fingerprint of the server's contract."""
    max_calls: int = DEFAULT_MAX_CALLS
    """The most calls each side may have waiting for a reply."""
    session: str | None = None
    """The token to reconnect with, when the server has connection state recovery on."""
    recovered: bool | None = None
    """After a reconnect with a token: whether the server took the session up."""
    rooms: list[str] | None = None
    """The rooms of a recovered session."""
    streams: list[str] | None = None
    """The tags of a recovered session's streams."""


_hello_decoder = msgspec.json.Decoder(ServerHello)
_error_decoder = msgspec.json.Decoder(ErrorPayload)
_gap_decoder = msgspec.json.Decoder(Gap)

T = TypeVar("T")


def with_contract(url: str, fingerprint: str) -> str:
    """``url`` with ``ss_contract=<fingerprint>`` in its query string (replacing one already there)."""
    return with_query(url, {CONTRACT_QUERY_PARAMETER: fingerprint})


def with_recovery(url: str, token: str, positions: Mapping[str, str]) -> str:
    """``url`` for a reconnect that asks for its session back: the token and the last offset of each
    stream (docs/protocol.md section 6)."""
    offsets = ",".join(f"{tag}.{offset}" for tag, offset in positions.items())
    return with_query(url, {SESSION_QUERY_PARAMETER: token, OFFSETS_QUERY_PARAMETER: offsets})


def with_query(url: str, parameters: Mapping[str, str]) -> str:
    """``url`` with ``parameters`` in its query string (replacing those already there)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in parameters]
    query.extend(parameters.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class Opened(NamedTuple):
    """A WebSocket just opened, and what the server sent first."""

    ws: ClientConnection
    hello: ServerHello | None
    """``None`` when the server sent no ``__hello`` (not a typed-ss server)."""
    first: str | bytes | None
    """The first message, when it was not a ``__hello``: for the reader to handle as any other."""


async def open_connection(url: str, settings: Settings) -> Opened:
    """Open a WebSocket to ``url`` and read the server's first frame, its ``__hello``, within
    ``open_timeout``.

    Raises:
        OSError: the server cannot be reached.
        websockets.exceptions.InvalidHandshake: the server refused the upgrade (``InvalidStatus``
            for an HTTP 403 or 503 answer).
        websockets.exceptions.ConnectionClosed: the server closed before its ``__hello``.
        TimeoutError: no ``__hello`` within ``open_timeout``.
    """
    offered = [SUBPROTOCOL, *(p for p in settings.subprotocols if p != SUBPROTOCOL)]
    # Only when given: websockets' own default for wss:// is the system's TLS context.
    tls: dict[str, Any] = {"ssl": settings.ssl} if settings.ssl is not None else {}
    async with asyncio.timeout(settings.open_timeout):
        ws = await connect(
            url,
            subprotocols=[Subprotocol(p) for p in offered],
            additional_headers=dict(settings.headers),
            max_size=settings.max_message_size,
            open_timeout=None,  # this timeout covers the handshake and the hello together
            **tls,
        )
        try:
            message = await ws.recv()
        except BaseException:
            await ws.close()
            raise
    try:
        frame = parse_server_frame(message)
    except ProtocolError:
        frame = None
    if frame is None or frame.event != HELLO_EVENT:
        # Not a typed-ss server (the original sends no __hello): the frame is handled as any other.
        return Opened(ws, None, message)
    try:
        return Opened(ws, _hello_decoder.decode(frame.payload), None)
    except (msgspec.ValidationError, msgspec.DecodeError):
        logger.warning("the server's __hello is malformed: %.200r", frame.payload)
        return Opened(ws, ServerHello(), None)


class Connection:
    """One open WebSocket: its reader, its handler task, and the calls that wait on it."""

    __slots__ = (
        "_gap",
        "_handlers",
        "_inbox",
        "_positions",
        "_presence",
        "_reader",
        "_released",
        "_room",
        "_runner",
        "_server_error",
        "_stopped",
        "calls",
        "hello",
        "ws",
    )

    def __init__(
        self,
        opened: Opened,
        handlers: Mapping[str, ClientHandler],
        *,
        read_ahead: int,
        server_error: Callable[[ErrorPayload], Awaitable[None]],
        gap: Callable[[Gap], Awaitable[None]],
        presence: Callable[[bytes], Awaitable[None]],
        positions: dict[str, str],
    ) -> None:
        ws, hello, first = opened
        self.ws = ws
        self._positions = positions  # the client's: the last offset of each stream, across connections
        self.hello = hello
        self.calls = PendingCalls(hello.max_calls if hello is not None else DEFAULT_MAX_CALLS)
        """The client's calls that wait for the server's reply on this connection."""
        self._handlers = handlers  # the client's live registry: handlers registered later apply
        self._server_error = server_error
        self._gap = gap
        self._presence = presence  # takes the raw payload: the client decodes it as its hook says
        # Unbounded as a queue, bounded by the reader, which waits for room: the end-of-stream marker
        # (None) must always fit.
        self._inbox: asyncio.Queue[ServerFrame | None] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self._stopped = False  # closed by the client: the frames not yet handled are dropped
        # Handlers wait for release(): the client's on_reconnected hook runs before any frame of the
        # new connection is handled (a replay's first among them). Replies to calls do not wait.
        self._released = asyncio.Event()
        self._reader = asyncio.create_task(self._read(first, read_ahead), name="typed-ss client reader")
        self._runner = asyncio.create_task(self._run(), name="typed-ss client handlers")

    def release(self) -> None:
        """Let the handlers run: the client has reported the connection (``on_reconnected``)."""
        self._released.set()

    @property
    def open(self) -> bool:
        """Whether frames can still be sent."""
        return not self._reader.done() and self.ws.close_code is None

    @property
    def close_code(self) -> int | None:
        """How the WebSocket closed: the server's code as soon as its close frame arrived; once closed
        without one, this side's own (1009 after a message too big) or 1006; ``None`` before."""
        protocol = self.ws.protocol
        if protocol.close_rcvd is not None:
            return protocol.close_rcvd.code
        if self.ws.close_code is None:
            return None  # still open, or closing
        return protocol.close_sent.code if protocol.close_sent is not None else ABNORMAL_CLOSURE

    async def send(self, frame: Frame) -> None:
        """Send one client frame.

        Raises:
            websockets.exceptions.ConnectionClosed: the connection is closed or closing.
        """
        await self.ws.send(frame)

    async def wait_closed(self) -> int:
        """Wait until the connection is closed and every frame it brought is handled; returns the close
        code (1006 when it ended without a close frame)."""
        # asyncio.wait, not gather: cancelling the waiter must not cancel the tasks (a handler may be
        # the one closing the client, which cancels whoever waits here).
        await asyncio.wait((self._reader, self._runner))
        code = self.close_code
        return ABNORMAL_CLOSURE if code is None else code

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close with ``code`` and stop: the waiting calls fail, the handlers not yet run are dropped
        (a handler that is running is cancelled, unless it is the one closing)."""
        self._stopped = True
        await self.ws.close(code, reason)
        others = [t for t in (self._reader, self._runner) if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others)
        self.calls.fail_all(CallClosed())

    # --- the reader ---------------------------------------------------------------------------------

    async def _read(self, first: str | bytes | None, read_ahead: int) -> None:
        ws = self.ws
        try:
            if first is not None:
                await self._take(first, read_ahead)
            while True:
                await self._take(await ws.recv(), read_ahead)
        except ConnectionClosed:
            pass
        finally:
            # At once: a caller must not wait for the handlers to finish to learn its call is lost.
            self.calls.fail_all(CallClosed())
            self._inbox.put_nowait(None)

    async def _take(self, message: str | bytes, read_ahead: int) -> None:
        try:
            frame = parse_server_frame(message)
        except ProtocolError as exc:
            logger.warning("a malformed frame from the server: %s", exc)
            return
        marker = frame.marker
        if marker is not None and marker[0] != CALL:
            # A reply: straight to its call, even while a handler runs (it may be the one waiting).
            if not self.calls.answered(marker[0], marker[1], frame.payload):
                logger.debug("a reply to %r that no call waits for (it timed out)", frame.event)
            return
        if frame.event == HELLO_EVENT:
            return  # only the first one counts
        if frame.offset is not None:
            tag, offset = frame.offset
            self._positions[tag] = offset
        while self._inbox.qsize() >= read_ahead:
            # Handlers are behind: stop reading until one is done, so the server's own send queue
            # (bounded) holds the rest instead of this process's memory.
            self._room.clear()
            await self._room.wait()
        self._inbox.put_nowait(frame)

    # --- the handler task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        await self._released.wait()
        while (frame := await self._inbox.get()) is not None and not self._stopped:
            self._room.set()
            if frame.event == ERROR_EVENT:
                await _reserved_event(frame, _error_decoder, self._server_error)
                continue
            if frame.event == GAP_EVENT:
                await _reserved_event(frame, _gap_decoder, self._gap)
                continue
            if frame.event == PRESENCE_EVENT:
                await self._presence(frame.payload)
                continue
            is_call = frame.marker is not None
            if is_call and not self.open:
                # The server's call already failed on its side when the connection closed.
                logger.debug("not answering the server's call of %r: the connection closed", frame.event)
                continue
            reply = await answer(self._handlers.get(frame.event), frame)
            if reply is not None:
                try:
                    await self.ws.send(reply)
                except ConnectionClosed:
                    logger.debug(
                        "the reply to the server's call of %r was not sent: the connection closed",
                        frame.event,
                    )


async def _reserved_event(
    frame: ServerFrame, decoder: msgspec.json.Decoder[T], report: Callable[[T], Awaitable[None]]
) -> None:
    """Decode a reserved event's JSON payload (``__error``, ``__gap``) and report it; a malformed one
    is logged and dropped."""
    try:
        value = decoder.decode(frame.payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        logger.warning("a malformed %s from the server: %.200r", frame.event, frame.payload)
        return
    await report(value)
