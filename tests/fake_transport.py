"""An in-memory :class:`typed_ss.transport.Transport`: one WebSocket connection with no network, whose
every move the test makes.

The request is built from a minimal ASGI scope (starlette's ``HTTPConnection``). What the client sends
is queued with :meth:`FakeTransport.client_sends`, its leaving with :meth:`FakeTransport.client_leaves`.
The server's ``accept``, ``refuse``, sends, closes and aborts are recorded. A send or close completes
at once while the connection keeps up; once :meth:`FakeTransport.congest` was called each returns a
:class:`FakePendingSend`, which the test completes (:meth:`FakeTransport.release`,
:meth:`FakePendingSend.complete`), fails, or leaves hanging: a client that stopped reading.

``await ss.serve(transport)`` runs in a task of the test's own; see ``tests/test_send_path.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from typed_ss.protocol import Frame
from typed_ss.transport import Disconnected, PendingSend, Transport

__all__ = ["CloseFrame", "FakePendingSend", "FakeTransport"]


@dataclass(frozen=True)
class CloseFrame:
    """A close frame the server sent."""

    code: int
    reason: str


class FakePendingSend:
    """A send (or close) the connection did not take at once: :meth:`complete` takes it, :meth:`fail`
    makes it raise :class:`Disconnected` (the client went away meanwhile); left alone, it hangs."""

    def __init__(self, transport: FakeTransport, item: Frame | CloseFrame) -> None:
        self.item = item
        self.abandoned = False
        """The server called :meth:`close`: it gave the send up, unfinished."""
        self._transport = transport
        self._outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self._outcome.done()

    def __await__(self) -> Generator[Any, Any, None]:
        return self._outcome.__await__()

    def close(self) -> None:
        self.abandoned = True

    def complete(self) -> None:
        """The connection takes the frame: the client receives it."""
        assert not self.abandoned, "the server abandoned this send"
        if not self._outcome.done():
            self._transport._delivered(self.item)
            self._outcome.set_result(None)

    def fail(self) -> None:
        """The connection went away before the frame could be sent."""
        if not self._outcome.done():
            self._outcome.set_exception(Disconnected())


class FakeTransport:
    """See the module docstring. ``abortable=False`` is a server that cannot drop a connection
    (``abort`` returns ``False``); ``answer_close=False`` a client that never answers a close frame
    (its connection then ends only when the test says so)."""

    def __init__(
        self,
        *,
        path: str = "/socket",
        query_string: bytes = b"",
        headers: Sequence[tuple[str, str]] = (("host", "testserver"),),
        subprotocols: Sequence[str] = ("sac-sock",),
        client: tuple[str, int] = ("127.0.0.1", 50000),
        abortable: bool = True,
        answer_close: bool = True,
    ) -> None:
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query_string,
            "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
            "client": client,
            "server": ("testserver", 80),
            "subprotocols": list(subprotocols),
        }
        self._request = HTTPConnection(scope)
        self._subprotocols = tuple(subprotocols)
        self._incoming: asyncio.Queue[str | bytes | Disconnected] = asyncio.Queue()
        self._abortable = abortable
        self._answer_close = answer_close
        self.accepted = False
        self.subprotocol: str | None = None
        """The subprotocol the server selected when it accepted."""
        self.refused: int | None = None
        """The HTTP status the server refused the upgrade with."""
        self.received: list[Frame | CloseFrame] = []
        """What the client received, in order: frames, and the close frame if one got through."""
        self.sends = 0
        """Calls to ``send``: frames handed to the connection, at once or not."""
        self.closes: list[CloseFrame] = []
        """Every close the server started, whether or not it got through."""
        self.aborts = 0
        self.pending: list[FakePendingSend] = []
        """Every send and close that did not complete at once, in the order they were made."""
        self.congested = False
        self._closed = False

    # --- what the test does ------------------------------------------------------------------------

    def client_sends(self, message: str | bytes) -> None:
        self._incoming.put_nowait(message)

    def client_leaves(self, code: int = 1000) -> None:
        self._incoming.put_nowait(Disconnected(code))

    def congest(self) -> None:
        """From now on every send and close waits until the test completes it."""
        self.congested = True

    def release(self) -> None:
        """The client reads again: what waits is taken, and later sends complete at once."""
        self.congested = False
        for pending in self.pending:
            if not pending.abandoned:
                pending.complete()

    @property
    def frames(self) -> list[Frame]:
        """The frames the client received, in order (without the close frame)."""
        return [item for item in self.received if not isinstance(item, CloseFrame)]

    @property
    def waiting(self) -> list[FakePendingSend]:
        """The sends and closes neither completed nor abandoned."""
        return [p for p in self.pending if not p.done and not p.abandoned]

    # --- the Transport interface -------------------------------------------------------------------

    @property
    def request(self) -> HTTPConnection:
        return self._request

    @property
    def subprotocols(self) -> Sequence[str]:
        return self._subprotocols

    async def accept(self, subprotocol: str | None) -> None:
        self._answer_once()
        self.accepted = True
        self.subprotocol = subprotocol

    async def refuse(self, status: int) -> None:
        self._answer_once()
        self.refused = status
        self._closed = True

    async def receive(self) -> str | bytes:
        item = await self._incoming.get()
        if isinstance(item, Disconnected):
            self._incoming.put_nowait(item)  # gone for good: every later receive says so too
            raise item
        return item

    def send(self, frame: Frame) -> PendingSend | None:
        if self._closed:
            raise Disconnected()
        self.sends += 1
        return self._start(frame)

    def close(self, code: int, reason: str) -> PendingSend | None:
        if self._closed:
            raise Disconnected()
        self._closed = True
        close = CloseFrame(code, reason)
        self.closes.append(close)
        return self._start(close)

    def abort(self) -> bool:
        if not self._abortable:
            return False
        self.aborts += 1
        self._closed = True
        self.client_leaves(1006)
        return True

    # --- internals ---------------------------------------------------------------------------------

    def _answer_once(self) -> None:
        assert not self.accepted, "the upgrade was accepted already"
        assert self.refused is None, "the upgrade was refused already"

    def _start(self, item: Frame | CloseFrame) -> PendingSend | None:
        if self.congested:
            pending = FakePendingSend(self, item)
            self.pending.append(pending)
            return pending
        self._delivered(item)
        return None

    def _delivered(self, item: Frame | CloseFrame) -> None:
        self.received.append(item)
        if isinstance(item, CloseFrame) and self._answer_close:
            self.client_leaves(item.code)  # the client answers the close; the connection ends


def _implements_the_protocol(transport: FakeTransport) -> Transport:
    return transport  # mypy checks that FakeTransport is a Transport
