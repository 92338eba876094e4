"""The small interface through which the hub and sockets reach one WebSocket connection.

:mod:`typed_ss.asgi` is the first implementation. A native transport (a WebSocket server without ASGI)
can implement the same interface without touching the socket, the hub or the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import HTTPConnection

from typed_ss.protocol import Frame

if TYPE_CHECKING:
    from typed_ss.server import Server

__all__ = ["Disconnected", "PendingSend", "Transport", "serve_connection"]

logger = logging.getLogger("typed_ss")


class Disconnected(Exception):
    """The connection is gone: raised by :meth:`Transport.receive` when the peer has closed or vanished,
    and by :meth:`Transport.send`/:meth:`Transport.close` when nothing can be sent any more."""

    def __init__(self, code: int = 1006) -> None:
        super().__init__(f"connection closed with code {code}")
        self.code = code


class PendingSend(Protocol):
    """The unfinished part of a send or close that could not complete at once."""

    def __await__(self) -> Generator[Any, Any, None]:
        """Finish the send.

        Raises:
            Disconnected: the connection went away meanwhile.
        """
        ...

    def close(self) -> None:
        """Abandon the send without finishing it."""
        ...


class Transport(Protocol):
    """One WebSocket connection, as the core sees it.

    ``send`` and ``close`` are *started* synchronously: they return ``None`` when the frame has already
    been handed to the connection, or a :class:`PendingSend` that finishes it when the connection is
    congested. This lets fan-out write to every idle socket at once, without a task switch per
    recipient, and hand only the congested ones to their writer task.
    """

    @property
    def request(self) -> HTTPConnection:
        """The upgrade request: headers, query parameters, cookies, client address, path."""
        ...

    @property
    def subprotocols(self) -> Sequence[str]:
        """The subprotocols the client offered, in its order of preference."""
        ...

    async def accept(self, subprotocol: str | None) -> None:
        """Complete the upgrade, selecting ``subprotocol`` (``None`` selects none)."""
        ...

    async def refuse(self, status: int) -> None:
        """Refuse the upgrade with HTTP ``status`` where the server supports it, else with HTTP 403."""
        ...

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary one.

        Raises:
            Disconnected: the connection has ended.
        """
        ...

    def send(self, frame: Frame) -> PendingSend | None:
        """Start sending one frame; see the class docstring for the return value.

        Raises:
            Disconnected: the connection is gone (possibly from the awaitable).
        """
        ...

    def close(self, code: int, reason: str) -> PendingSend | None:
        """Start the closing handshake with ``code``; returns like :meth:`send`.

        Raises:
            Disconnected: the connection is already gone (possibly from the awaitable).
        """
        ...

    def abort(self) -> bool:
        """Drop the connection at once, without a closing handshake, releasing its socket and
        buffers (a client that stopped reading). Returns ``False`` where the server offers no way
        to do that; the connection then ends when the client goes away."""
        ...


async def serve_connection(server: Server[Any], transport: Transport) -> None:
    """Run ``server.serve(transport)`` in the connection's task, as every transport does.

    A cancel at the end of a shutdown (``ss.shutdown()`` after ``shutdown_timeout``, or the ASGI
    server's own, as uvicorn's at the end of its graceful shutdown) returns instead of raising: the
    teardown ran, and both have said how many they cancelled, so the log gets no traceback per
    connection.
    """
    try:
        await server.serve(transport)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        logger.debug("a connection was cancelled while busy (shutdown)")
