"""Declared server-to-client events: ``chat_out = ss.event("chat", ChatOut)``.

A :class:`ServerEvent` is a typed emitter: mypy checks every payload passed to it against the declared
type, and the declaration puts the event in the server's contract, so ``typed-ss gen-client`` can type
it for the browser. ``sock.emit(name, data)`` keeps working for events that are not declared; for a
declared name it sends through the declaration, so the same run-time check applies.

The run-time check (a payload that fails it raises :class:`~typed_ss.errors.EncodeError` and nothing is
sent) is chosen once per declaration, to stay cheap on every send:

- a class (a msgspec Struct, a dataclass, a pydantic model, a NamedTuple, an enum, ``str``,
  ``bytes`` ...): ``isinstance``; a subclass instance is fine. The instance's fields are not
  re-validated (a Struct built in code is trusted). ``bytes`` events take ``bytearray`` and
  ``memoryview`` too; ``int`` and ``float`` events refuse ``bool`` (JSON ``true`` is not a number)
  and ``float`` takes ``int``.
- any other type (a union, a ``Literal``, ``list[int]``, a TypedDict, a generic Struct ``Page[str]``):
  the JSON about to be sent is decoded with msgspec against the type, so what is checked is exactly
  what the client receives. Where pydantic is involved (``list[Model]``) msgspec cannot decode it,
  and pydantic validates the value itself, strictly, instead (its JSON input and output forms may
  differ: aliases, computed fields).
- ``Any`` and ``object``: nothing to check.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic

import msgspec
from typing_extensions import TypeVar

from typed_ss.calls import NO_REPLY, reply_decoder
from typed_ss.errors import EncodeError
from typed_ss.protocol import (
    Frame,
    check_room_name,
    encode_frame,
    encode_json,
    encode_json_frame,
    json_frame,
    socket_room,
)
from typed_ss.typeinfo import (
    BINARY_TYPES,
    PayloadKind,
    is_plain_class,
    msgspec_can_decode,
    payload_kind,
    plain_class_union,
    type_name,
)

if TYPE_CHECKING:
    from typed_ss.server import Server
    from typed_ss.socket import Socket

# PayloadKind and payload_kind live in typed_ss.typeinfo, which writes the rule once; still importable here.
__all__ = ["PayloadFrames", "PayloadKind", "ServerEvent", "payload_kind"]

T = TypeVar("T")
R = TypeVar("R", default=None)
"""The type of the client's reply to a declared event's :meth:`ServerEvent.call` (``None``: none
declared)."""

_NUMBERS: dict[object, tuple[type, ...]] = {int: (int,), float: (int, float)}


class PayloadFrames:
    """The frames of one event whose payloads have one declared type: each payload is checked (see
    the module docstring for what is checked) and encoded once, in the form the type declares: a
    ``str`` as text, ``bytes`` as a binary frame, any other type as JSON (so a ``Literal["on",
    "off"]`` sends ``"on"`` as JSON, as the generated TypeScript client expects). Declared events
    (:class:`ServerEvent`) and the replies of handlers to calls are made this way."""

    __slots__ = (
        "_accepts",
        "_kind",
        "_refuses_bool",
        "_validate_json",
        "_validate_value",
        "name",
        "payload_type",
    )

    def __init__(self, name: str, payload_type: object) -> None:
        self.name = name
        self.payload_type = payload_type
        self._kind = payload_kind(payload_type)
        self._accepts: type | tuple[type, ...] | None = None
        """The classes an ``isinstance`` check accepts; ``None`` when the type is no class."""
        self._refuses_bool = False
        self._validate_json: Callable[[bytes], object] | None = None
        """Decodes the encoded JSON against the type (msgspec), raising on a mismatch."""
        self._validate_value: Callable[[object], object] | None = None
        """Validates the value itself (pydantic, strict), raising on a mismatch."""
        if self._kind == "binary":
            self._accepts = BINARY_TYPES  # a `bytes` event takes bytearray and memoryview values too
        elif self._kind == "text":
            self._accepts = str
        elif payload_type in (Any, object):
            pass
        elif payload_type in _NUMBERS:
            self._accepts = _NUMBERS[payload_type]
            self._refuses_bool = True
        elif is_plain_class(payload_type):
            assert isinstance(payload_type, type)
            self._accepts = payload_type
        elif msgspec_can_decode(payload_type):
            self._validate_json = msgspec.json.Decoder(payload_type).decode
        elif (classes := plain_class_union(payload_type)) is not None:
            # Untagged Structs that no decoder tells apart (a generated client's `Name | NameInput`).
            self._accepts = classes
        else:
            pydantic = sys.modules.get("pydantic")
            # Server.event refused the types that neither msgspec nor pydantic can decode.
            if pydantic is not None:
                adapter = pydantic.TypeAdapter(payload_type)
                self._validate_value = functools.partial(adapter.validate_python, strict=True)

    def frame(self, payload: Any) -> Frame:
        """Check ``payload`` against the declared type and encode it as this event's frame.

        Raises:
            EncodeError: the payload is not of the declared type, or has no JSON form.
        """
        return self.encode(payload)

    def encode(self, payload: Any, flag: str = "") -> Frame:
        """:meth:`frame` with a header ``flag`` after the type letter (a call's reply: ``r12``).
        Internal: the server's emits and replies call this one directly.

        Raises:
            EncodeError: as :meth:`frame`.
        """
        accepts = self._accepts
        if accepts is not None:
            if not isinstance(payload, accepts) or (self._refuses_bool and isinstance(payload, bool)):
                raise self._mismatch(payload)
        elif self._validate_value is not None:
            try:
                self._validate_value(payload)
            except (ValueError, TypeError, RecursionError) as exc:  # pydantic's ValidationError: a ValueError
                raise self._mismatch(payload, exc) from None
        if self._kind != "json":
            return encode_frame(self.name, payload, flag)
        if self._validate_json is None:
            return encode_json_frame(self.name, payload, flag)
        data = encode_json(payload)
        try:
            self._validate_json(data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
            raise self._mismatch(payload, exc) from None
        return json_frame(self.name, data, flag)

    def _mismatch(self, payload: object, cause: BaseException | None = None) -> EncodeError:
        got = type(payload).__qualname__
        if self._kind != "json":
            return EncodeError(f"event {self.name!r} is declared with {self._kind} payloads, got {got}")
        detail = "" if cause is None else f": {str(cause)[:300]}"
        return EncodeError(
            f"event {self.name!r} is declared with payload type {type_name(self.payload_type)}, "
            f"got {got}{detail}"
        )


class ServerEvent(PayloadFrames, Generic[T, R]):
    """A server-to-client event with a declared payload type (and, for calls, a reply type); made by
    :meth:`Server.event`. Each method checks and encodes the payload as :class:`PayloadFrames` says;
    :meth:`call` also waits for the client's reply, decoded as the declared ``reply`` type."""

    __slots__ = ("_decode_reply", "_server", "reply_type")

    def __init__(
        self, server: Server, name: str, payload_type: object, reply_type: object = NO_REPLY
    ) -> None:
        super().__init__(name, payload_type)
        self._server = server
        self.reply_type = reply_type
        """The declared type of the client's reply to :meth:`call`, or :data:`NO_REPLY`."""
        self._decode_reply = reply_decoder(None if reply_type is NO_REPLY else reply_type)

    def __repr__(self) -> str:
        return f"<ServerEvent {self.name!r}: {self.payload_type!r}>"

    def frame(self, payload: T) -> Frame:
        """Check ``payload`` against the declared type and encode it as this event's frame.

        Raises:
            EncodeError: the payload is not of the declared type, or has no JSON form.
        """
        return super().frame(payload)

    async def call(self, sock: Socket[Any], payload: T, *, timeout: float = 5.0) -> R:
        """Call the client: send ``payload`` and wait for its reply, decoded as the declared
        ``reply`` type (``ss.event("confirm", Question, reply=Answer)``).

        Raises:
            TimeoutError: no reply within ``timeout`` seconds.
            CallError: the client answered with an error (its ``code``, ``message``, ``data``);
                ``CallClosed`` when the connection closed first, ``too_many_calls`` when the socket
                already waits on ``max_calls`` calls.
            PayloadValidationError: the reply does not decode as the ``reply`` type.
            EncodeError: the payload is not of the declared type; nothing is sent.
        """
        reply: R = await sock.call_frame(self.name, self.frame(payload), self._decode_reply, timeout)
        return reply

    async def emit(self, sock: Socket, payload: T) -> None:
        """Send to one socket (see :meth:`Socket.emit`)."""
        sock.emit_frame(self.frame(payload))

    async def roomcast(self, room: str, payload: T) -> None:
        """Send to every member of ``room`` on every instance (see :meth:`Server.roomcast`).

        Raises:
            InvalidName: the room name is reserved (``__...``: the sockets' own rooms), empty or too
                long.
            EncodeError: the payload is not of the declared type; nothing is sent.
        """
        check_room_name(room, self._server.limits.max_room_name_length)
        self._server.hub.roomcast(room, self.frame(payload))

    async def broadcast(self, payload: T) -> None:
        """Send to every socket on every instance (see :meth:`Server.broadcast`)."""
        self._server.hub.broadcast(self.frame(payload))

    async def socketcast(self, socket_id: str, payload: T) -> None:
        """Send to the socket with id ``socket_id``, wherever it is connected."""
        # Straight to the hub: the socket's own room is reserved, which roomcast refuses.
        self._server.hub.roomcast(socket_room(socket_id), self.frame(payload))
