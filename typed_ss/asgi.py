"""The ASGI adapter: the only module that knows ASGI messages.

:func:`handle` serves the three ASGI scope types for a :class:`~typed_ss.server.Server`: ``websocket``
(one connection, through :class:`ASGITransport`), ``lifespan`` (start and stop the server with the
process) and ``http`` (a plain 426 answer, for a server mounted on its own).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine, Generator, Sequence
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

from typed_ss.errors import CloseCode
from typed_ss.protocol import Frame
from typed_ss.stepping import Resume
from typed_ss.transport import Disconnected, PendingSend, serve_connection
from typed_ss.uvicorn_protocols import ServerConnection, WebSocketProtocol, connection_of

if TYPE_CHECKING:
    from typed_ss.server import Server

__all__ = ["ASGITransport", "handle"]

logger = logging.getLogger("typed_ss")


class _Suspended:
    """The rest of a send that :func:`_start_eagerly` ran until it first suspended: awaiting it runs
    the rest (a :class:`~typed_ss.stepping.Resume`), turning the server's "gone" into Disconnected."""

    __slots__ = ("_rest", "_transport")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any, transport: ASGITransport) -> None:
        self._rest = Resume(coro, yielded)
        self._transport = transport

    def __await__(self) -> Generator[Any, Any, None]:
        try:
            yield from self._rest.__await__()
        except _GONE:
            raise Disconnected() from None
        except RuntimeError:
            if self._transport.closed_by_server():
                raise Disconnected() from None
            raise

    def close(self) -> None:
        """Abandon the send, letting the coroutine clean up (it is never resumed)."""
        self._rest.coro.close()


# uvicorn raises ClientDisconnected (an OSError) once the client is gone, and a RuntimeError for a send
# after its own protocol closed the connection (a protocol error, a message too big, a ping timeout)
# before the application read the disconnect: ASGITransport tells that apart from a real bug.
_GONE = OSError


def _start_eagerly(send: Awaitable[None], transport: ASGITransport) -> PendingSend | None:
    """Run ``coro`` synchronously until it finishes (return ``None``) or suspends (return the rest).

    uvicorn's ``send`` only suspends while the connection's write buffer is over its high-water mark,
    so a send to a healthy client completes here without a task or an event-loop round trip. Only
    ASGI ``send`` coroutines are started this way: they do not depend on which task runs them.
    """
    # The exact-type test first: it is what uvicorn's send returns, and isinstance against the
    # Coroutine ABC costs more than the rest of this function, once per frame of every fan-out.
    coro = send if type(send) is CoroutineType or isinstance(send, Coroutine) else _as_coroutine(send)
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    except _GONE:
        coro.close()
        raise Disconnected() from None
    except RuntimeError:
        coro.close()
        if transport.closed_by_server():
            raise Disconnected() from None
        raise
    return _Suspended(coro, yielded, transport)


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


class ASGITransport:
    """A :class:`~typed_ss.transport.Transport` over one ASGI ``websocket`` scope.

    Under uvicorn it also reaches the server's connection (:mod:`typed_ss.uvicorn_protocols`): to
    bound every message by ``max_message_size`` whatever uvicorn was told, and to abort a connection.
    """

    __slots__ = ("_closed", "_connection", "_receive", "_request", "_send", "_subprotocols")

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, max_message_size: int) -> None:
        self._request = HTTPConnection(scope)
        self._subprotocols: Sequence[str] = scope.get("subprotocols", ())
        self._receive = receive
        self._send = send
        self._closed = False  # a websocket.close was sent: the server takes no further message
        self._connection = connection_of(receive)
        if self._connection is not None:
            self._connection.bound_message_size(max_message_size)

    @property
    def server_connection(self) -> ServerConnection | None:
        """The ASGI server's own connection object, when typed-ss knows the server (uvicorn)."""
        return self._connection

    @property
    def request(self) -> HTTPConnection:
        return self._request

    @property
    def subprotocols(self) -> Sequence[str]:
        return self._subprotocols

    async def accept(self, subprotocol: str | None) -> None:
        try:
            await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        except _GONE:
            raise Disconnected() from None

    async def refuse(self, status: int) -> None:
        self._closed = True
        try:
            if "websocket.http.response" in self._request.scope.get("extensions", {}):
                body = f"{status} WebSocket upgrade refused\n".encode()
                await self._send(
                    {
                        "type": "websocket.http.response.start",
                        "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await self._send({"type": "websocket.http.response.body", "body": body})
                if self._connection is not None:
                    self._connection.refused()
            elif status == 503:
                # No HTTP answer possible: accept and close with 1013 (try again later), so that the
                # client knows to come back rather than that it was refused for good.
                await self._send({"type": "websocket.accept", "subprotocol": None})
                await self._send(
                    {
                        "type": "websocket.close",
                        "code": CloseCode.TRY_AGAIN_LATER,
                        "reason": "try again later",
                    }
                )
            else:
                # A close before the accept is answered with HTTP 403 by every ASGI server.
                await self._send({"type": "websocket.close", "code": 1008})
        except _GONE:
            pass  # the client left before the answer: nothing more to do

    async def receive(self) -> str | bytes:
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text: str | None = message.get("text")
            if text is not None:
                return text
            data: bytes | None = message.get("bytes")
            return data if data is not None else b""
        if message["type"] == "websocket.disconnect":
            raise Disconnected(message.get("code", 1005))
        raise Disconnected()

    def send(self, frame: Frame) -> PendingSend | None:
        if self._closed:
            raise Disconnected()
        message: Message = (
            {"type": "websocket.send", "text": frame}
            if isinstance(frame, str)
            else {"type": "websocket.send", "bytes": frame}
        )
        return _start_eagerly(self._send(message), self)

    def close(self, code: int, reason: str) -> PendingSend | None:
        if self._closed:
            raise Disconnected()
        self._closed = True
        return _start_eagerly(self._send({"type": "websocket.close", "code": code, "reason": reason}), self)

    def closed_by_server(self) -> bool:
        """Whether the ASGI server's protocol closed the connection by itself (then it refuses more
        messages, even before the application has read the disconnect)."""
        return self._connection is not None and self._connection.closed()

    def abort(self) -> bool:
        if self._connection is None:
            return False
        self._closed = True
        return self._connection.abort()


async def handle(server: Server, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ASGI scope for ``server``."""
    kind = scope["type"]
    if kind == "websocket":
        message = await receive()
        if message["type"] != "websocket.connect":  # the client left before the handshake
            return
        transport = ASGITransport(scope, receive, send, max_message_size=server.limits.max_message_size)
        _warn_once_without_protocols(transport)
        await serve_connection(server, transport)
    elif kind == "lifespan":
        await _lifespan(server, receive, send)
    elif kind == "http":
        body = b"426 Upgrade Required: this endpoint speaks WebSocket (subprotocol sac-sock)\n"
        await send(
            {
                "type": "http.response.start",
                "status": 426,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"upgrade", b"websocket")],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _lifespan(server: Server, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await server.startup()
            except Exception as exc:
                logger.exception("typed-ss server failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await server.shutdown()
            except Exception as exc:
                logger.exception("typed-ss server failed to shut down cleanly")
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return


_warned_without_protocols = False


def _warn_once_without_protocols(transport: ASGITransport) -> None:
    """Say once per process when the server is not running typed-ss's uvicorn protocols."""
    global _warned_without_protocols
    if _warned_without_protocols or isinstance(transport.server_connection, WebSocketProtocol):
        return
    _warned_without_protocols = True
    logger.warning(
        "typed-ss is not served by its own uvicorn protocols: ping floods, clients that never finish "
        "their upgrade request and evicted slow consumers are not bounded (docs/running.md). Start "
        "it with typed_ss.run(...), `typed-ss run module:app`, or typed_ss.uvicorn_settings(ss)."
    )
