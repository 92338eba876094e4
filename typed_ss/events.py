"""Declared server-to-client events: ``chat_out = ss.event("chat", ChatOut)``.

A :class:`ServerEvent` is a typed emitter: mypy checks every payload passed to it against the declared
type, and the declaration puts the event in the server's contract, so ``typed-ss gen-client`` can type
it for the browser. ``sock.emit(name, data)`` keeps working for events that are not declared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Literal, TypeAlias, TypeVar

from typed_ss.errors import EncodeError
from typed_ss.protocol import Frame, encode_frame, encode_json_frame, socket_room

if TYPE_CHECKING:
    from typed_ss.server import Server
    from typed_ss.socket import Socket

__all__ = ["PayloadKind", "ServerEvent", "payload_kind"]

T = TypeVar("T")

PayloadKind: TypeAlias = Literal["binary", "text", "json"]
"""How a payload travels: raw bytes in a binary frame (``bytes``), raw text (``str``), or JSON."""


def payload_kind(payload_type: object) -> PayloadKind:
    """The wire form of a payload type: ``bytes`` is binary, ``str`` is text, anything else JSON."""
    if payload_type in (bytes, bytearray, memoryview):
        return "binary"
    if payload_type is str:
        return "text"
    return "json"


class ServerEvent(Generic[T]):
    """A server-to-client event with a declared payload type; made by :meth:`Server.event`.

    Each method encodes the payload once, in the form the type declares: a ``str`` event as text, a
    ``bytes`` event as a binary frame, any other type as JSON (so a ``Literal["on", "off"]`` event
    sends ``"on"`` as JSON, as the generated TypeScript client expects).
    """

    __slots__ = ("_kind", "_server", "name", "payload_type")

    def __init__(self, server: Server, name: str, payload_type: object) -> None:
        self.name = name
        self.payload_type = payload_type
        self._kind = payload_kind(payload_type)
        self._server = server

    def __repr__(self) -> str:
        return f"<ServerEvent {self.name!r}: {self.payload_type!r}>"

    def frame(self, payload: T) -> Frame:
        """Encode ``payload`` as this event's frame.

        Raises:
            EncodeError: the payload does not match the declared wire form, or has no JSON form.
        """
        if self._kind == "json":
            return encode_json_frame(self.name, payload)
        expected = str if self._kind == "text" else (bytes, bytearray, memoryview)
        if not isinstance(payload, expected):
            raise EncodeError(
                f"event {self.name!r} is declared with {self._kind} payloads, "
                f"got {type(payload).__qualname__}"
            )
        return encode_frame(self.name, payload)

    async def emit(self, sock: Socket, payload: T) -> None:
        """Send to one socket (see :meth:`Socket.emit`)."""
        sock.push(self.frame(payload))

    async def roomcast(self, room: str, payload: T) -> None:
        """Send to every member of ``room`` on every instance (see :meth:`Server.roomcast`)."""
        self._server.hub.roomcast(room, self.frame(payload))

    async def broadcast(self, payload: T) -> None:
        """Send to every socket on every instance (see :meth:`Server.broadcast`)."""
        self._server.hub.broadcast(self.frame(payload))

    async def socketcast(self, socket_id: str, payload: T) -> None:
        """Send to the socket with id ``socket_id``, wherever it is connected."""
        await self.roomcast(socket_room(socket_id), payload)
