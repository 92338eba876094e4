"""The ``sac-sock`` wire protocol, sans I/O: the only module that knows the bytes of a frame.

Client to server::

    <event, UTF-8> [0x01 <flags>] 0x02 <payload>

Server to client::

    <event, UTF-8> 0x01 <type letter> 0x02 <payload>     S: text frame, a string
                                                          B: binary frame, raw bytes
                                                          J: text frame, JSON

Calls (request/response, both ways) mark frames with one more header flag, after the type letter in a
server frame and alone in a client frame: ``c<id>`` a call, ``r<id>`` its reply, ``e<id>`` an error
reply (a JSON :class:`ErrorReply`). Original clients never call; they ignore flags they do not know.

A frame is a ``str`` (sent as a WebSocket text frame) or ``bytes`` (a binary frame). Nothing here does
I/O or knows asyncio; ``docs/protocol.md`` is the full description.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from typing import Final, NamedTuple, TypeAlias

import msgspec

from typed_ss.errors import EncodeError, InvalidName, ProtocolError

__all__ = [
    "BROADCAST_STREAM",
    "CALL",
    "ERROR_EVENT",
    "FAILURE",
    "GAP_EVENT",
    "HELLO_EVENT",
    "MAX_CALL_ID",
    "MAX_OFFSETS",
    "OFFSET",
    "OFFSETS_QUERY_PARAMETER",
    "PROTOCOL_VERSION",
    "REPLY",
    "RESERVED_PREFIX",
    "SESSION_QUERY_PARAMETER",
    "SOCKET_ROOM_PREFIX",
    "SUBPROTOCOL",
    "ClientFrame",
    "ErrorPayload",
    "ErrorReply",
    "Frame",
    "Gap",
    "Hello",
    "check_event_name",
    "check_room_name",
    "encode_frame",
    "encode_json",
    "encode_json_frame",
    "error_frame",
    "error_reply_frame",
    "frame_from_parts",
    "frame_parts",
    "frame_size",
    "gap_frame",
    "has_offset_flag",
    "hello_frame",
    "json_frame",
    "offset_flag",
    "parse_call_flag",
    "parse_client_frame",
    "parse_offset_flag",
    "socket_room",
    "split_client_frame",
    "split_message",
    "stream_tag",
    "with_flag",
]

SUBPROTOCOL: Final = "sac-sock"
"""The WebSocket subprotocol; the server selects it whenever the client offers it."""
PROTOCOL_VERSION: Final = 1
"""The ``v`` field of ``__hello``."""
RESERVED_PREFIX: Final = "__"
"""Event and room names starting with this belong to the protocol."""
SOCKET_ROOM_PREFIX: Final = "__socket_id:"
"""Every socket is a member of ``__socket_id:<id>``; socketcast is a roomcast to it."""


def socket_room(socket_id: str) -> str:
    """The internal room of the socket with id ``socket_id``; socketcast is a roomcast to it."""
    return SOCKET_ROOM_PREFIX + socket_id


HELLO_EVENT: Final = "__hello"
ERROR_EVENT: Final = "__error"
GAP_EVENT: Final = "__gap"
"""Sent to a room's local members when the multihome bridge found messages of that room lost between
instances (or to every socket, for broadcasts): the application can fetch that room's state again."""
PRESENCE_EVENT: Final = "__presence"
"""A member joined or left a room whose presence is tracked (docs/presence.md)."""
MEMBERS_EVENT: Final = "__members"
"""The call a client makes to list a room's members (docs/presence.md)."""

MAX_FLAGS_LENGTH: Final = 16
"""Header flags longer than this make a client frame malformed (today's clients send none)."""

CALL: Final = "c"
"""The header flag of a call: ``c<id>``; the other side answers with ``r<id>`` or ``e<id>``."""
REPLY: Final = "r"
"""The header flag of a call's reply: ``r<id>``; the payload is the return value."""
FAILURE: Final = "e"
"""The header flag of a call's error reply: ``e<id>``; the payload is a JSON :class:`ErrorReply`."""
MAX_CALL_ID: Final = 2**31 - 1
"""Call ids are 1 to this, in decimal, without leading zeros (so they are exact in JavaScript too)."""

OFFSET: Final = "o"
"""The header flag of a frame the server keeps for connection state recovery: ``o<tag>.<offset>``,
the stream's :func:`stream_tag` and the frame's offset in it, both decimal (docs/protocol.md
section 10)."""
BROADCAST_STREAM: Final = "__broadcast"
"""The stream of broadcasts (every socket is in it); a room's stream is named by the room."""
SESSION_QUERY_PARAMETER: Final = "ss_session"
"""The query parameter of a reconnecting client's session token."""
OFFSETS_QUERY_PARAMETER: Final = "ss_offsets"
"""The query parameter of a reconnecting client's last offsets: ``<tag>.<offset>`` entries joined by
commas."""
MAX_OFFSETS: Final = 256
"""Most ``ss_offsets`` entries a reconnect may send (about 8 KB of query string): more is a fresh
start, and a client that has more sends no token."""


_SOH = 0x01
_STX = 0x02

Frame: TypeAlias = str | bytes
"""An encoded server frame: ``str`` goes out as a text frame, ``bytes`` as a binary frame."""


class ClientFrame(NamedTuple):
    """One parsed client frame."""

    event: str
    """The event name."""
    flags: bytes
    """Header flags between 0x01 and 0x02 (reserved for extensions; empty from original clients)."""
    payload: bytes
    """Everything after the first 0x02, unchanged (a text frame's UTF-8 bytes)."""


def parse_client_frame(message: str | bytes, max_event_length: int) -> ClientFrame:
    """Split a client frame into event name, flags and payload; see :func:`split_client_frame`."""
    return ClientFrame(*split_client_frame(message, max_event_length))


def split_client_frame(message: str | bytes, max_event_length: int) -> tuple[str, bytes, bytes]:
    """Split a client frame into event name, flags and payload, as a plain tuple of bytes; see
    :func:`split_message`, which keeps a text frame's parts as text.

    Raises:
        ProtocolError: as :func:`split_message`.
    """
    event, flags, payload = split_message(message, max_event_length)
    if isinstance(payload, str):
        try:
            return event, flags.encode(), payload.encode()
        except UnicodeEncodeError:  # lone surrogates: never from a real WebSocket text frame
            raise ProtocolError("text frame is not valid UTF-8") from None
    return event, flags.encode("latin-1"), payload


def split_message(message: str | bytes, max_event_length: int) -> tuple[str, str, str | bytes]:
    """Split a client frame into event name, header flags and payload, each part in the form the
    server reads it in: the payload of a text frame stays text (a handler taking ``str`` gets it
    without a round trip through bytes), a binary frame's stays bytes; the flags are text (a binary
    frame's decoded byte for character, as Latin-1).

    This is the server's read loop's form, one call per message: typed-ss's own cost per message is
    measured (docs/benchmarks.md), and a text frame, the common case, is split without leaving the str.

    ``max_event_length`` bounds the event name in UTF-8 bytes. In a binary frame the search for the
    delimiter never scans further than that; a text frame is searched in one pass (the transport has
    just scanned all of it to check its UTF-8). A text message is valid UTF-8 (a transport delivers
    nothing else), so its payload is not checked again.

    Raises:
        ProtocolError: no 0x02 delimiter, an empty or too long event name, too long flags, or an event
            name that is not UTF-8. This is the only exception it raises.
    """
    if isinstance(message, str):
        # partition, not a bounded find: one C call without argument parsing, the common case. It
        # scans a message with no 0x02 to its end, once, as reading it already did.
        name, delimiter, payload = message.partition("\x02")
        if not delimiter or len(name) > max_event_length + MAX_FLAGS_LENGTH + 1:
            # Told as a bounded search tells it: no delimiter where a name and flags could end.
            raise _missing_delimiter(len(message) <= max_event_length + MAX_FLAGS_LENGTH + 2)
        flags = ""
        if "\x01" in name:
            name, _, flags = name.partition("\x01")
            if len(flags) > MAX_FLAGS_LENGTH or not flags.isascii():
                _check_text_name(flags, MAX_FLAGS_LENGTH, "header flags")  # counted in UTF-8 bytes
        if not name:
            raise ProtocolError("empty event name")
        if len(name) > max_event_length or not name.isascii():
            _check_text_name(name, max_event_length)
        return name, flags, payload

    window = max_event_length + MAX_FLAGS_LENGTH + 2  # a name that fits the limit lies within it
    stx = message.find(_STX, 0, window)
    if stx < 0:
        raise _missing_delimiter(len(message) <= window)
    soh = message.find(_SOH, 0, stx)
    if soh >= 0:
        raw_name, raw_flags = message[:soh], bytes(message[soh + 1 : stx])
    else:
        raw_name, raw_flags = message[:stx], b""
    if not raw_name:
        raise ProtocolError("empty event name")
    if len(raw_name) > max_event_length:
        raise ProtocolError(f"event name longer than {max_event_length} bytes")
    if len(raw_flags) > MAX_FLAGS_LENGTH:
        raise ProtocolError(f"header flags longer than {MAX_FLAGS_LENGTH} bytes")
    try:
        name = raw_name.decode()
    except UnicodeDecodeError:
        raise ProtocolError("event name is not valid UTF-8") from None
    return name, raw_flags.decode("latin-1"), bytes(message[stx + 1 :])


def _check_text_name(text: str, max_length: int, what: str = "event name") -> None:
    """The UTF-8 length check of a name or flags that are not ASCII (or may be too long)."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:  # lone surrogates: never from a real WebSocket text frame
        raise ProtocolError("text frame is not valid UTF-8") from None
    if size > max_length:
        raise ProtocolError(f"{what} longer than {max_length} bytes")


def _missing_delimiter(whole_message_scanned: bool) -> ProtocolError:
    if whole_message_scanned:
        return ProtocolError("no 0x02 delimiter after the event name")
    return ProtocolError("no 0x02 delimiter within the longest allowed event name")


# --- server frames ---------------------------------------------------------------------------------


def _enc_hook(value: object) -> object:
    # pydantic is optional: a pydantic model can only exist if pydantic is already imported.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    # msgspec passes the hook's exception through unchanged; encode_json turns it into EncodeError.
    raise TypeError(f"cannot encode objects of type {type(value).__qualname__} as JSON")


_json_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_json(value: object) -> bytes:
    """Encode ``value`` as compact JSON: msgspec types, dataclasses, builtins and pydantic models.

    Raises:
        EncodeError: the value (or something inside it) has no JSON form.
    """
    pydantic = sys.modules.get("pydantic")
    try:
        if pydantic is not None and isinstance(value, pydantic.BaseModel):
            text: str = value.model_dump_json(by_alias=True)
            return text.encode()
        return _json_encoder.encode(value)
    except (TypeError, ValueError, msgspec.EncodeError, RecursionError) as exc:
        # pydantic's serialisation errors are ValueErrors; msgspec's are TypeErrors or EncodeErrors, and
        # a value that contains itself recurses until Python stops it.
        raise EncodeError(f"cannot encode {type(value).__qualname__} as JSON: {exc}") from exc


def encode_frame(event: str, data: object, flag: str = "") -> Frame:
    """Encode one server frame; the caller has checked the event name.

    ``str`` becomes an ``S`` text frame, ``bytes``/``bytearray``/``memoryview`` a ``B`` binary frame,
    anything else a ``J`` text frame holding its JSON. ``flag`` (ASCII, such as a call's ``c12``) goes
    after the type letter.

    Raises:
        EncodeError: ``data`` cannot be encoded (no JSON form, or a string with lone surrogates that
            has no UTF-8 form). Nothing is sent in that case, never an empty payload.
    """
    if isinstance(data, str):
        if not data.isascii():
            _check_utf8(data)
        # join, not an f-string: str enums keep their text
        return "".join((event, "\x01S", flag, "\x02", data))
    if isinstance(data, bytes | bytearray | memoryview):
        if isinstance(data, memoryview) and not data.c_contiguous:
            data = data.tobytes()
        return b"".join((event.encode(), b"\x01B", flag.encode(), b"\x02", data))
    return encode_json_frame(event, data, flag)


def encode_json_frame(event: str, value: object, flag: str = "") -> str:
    """Encode a ``J`` frame whatever the value's type (``str`` values too, as JSON strings).

    Raises:
        EncodeError: the value has no JSON form.
    """
    return json_frame(event, encode_json(value), flag)


def json_frame(event: str, data: bytes, flag: str = "") -> str:
    """The ``J`` frame of JSON already encoded (``data``, UTF-8)."""
    return f"{event}\x01J{flag}\x02{data.decode()}"


def frame_parts(frame: Frame) -> tuple[str, str, bytes]:
    """Split a server frame made by this module into event name, type letter and payload bytes."""
    if isinstance(frame, str):
        soh = frame.index("\x01")
        return frame[:soh], frame[soh + 1], frame[soh + 3 :].encode()
    soh = frame.index(b"\x01")
    return frame[:soh].decode(), chr(frame[soh + 1]), frame[soh + 3 :]


def frame_from_parts(event: str, letter: str, payload: bytes) -> Frame:
    """Rebuild a server frame from :func:`frame_parts`' pieces, checking them: they may come from
    another instance over a multihome backend.

    Raises:
        ProtocolError: an empty event name or one with 0x01/0x02, an unknown letter, or a text
            payload that is not UTF-8.
    """
    if not event or "\x01" in event or "\x02" in event:
        raise ProtocolError(f"invalid event name {event!r}")
    if letter == "B":
        return b"".join((event.encode(), b"\x01B\x02", payload))
    if letter not in ("S", "J"):
        raise ProtocolError(f"unknown type letter {letter!r}")
    try:
        return f"{event}\x01{letter}\x02{payload.decode()}"
    except UnicodeDecodeError:
        raise ProtocolError("text payload is not valid UTF-8") from None


def with_flag(frame: Frame, flag: str) -> Frame:
    """A server frame made by this module with ``flag`` (``"c12"``) after its type letter."""
    if isinstance(frame, str):
        at = frame.index("\x01") + 2  # event names hold no 0x01: the first one opens the flags
        return "".join((frame[:at], flag, frame[at:]))
    at = frame.index(b"\x01") + 2
    return b"".join((frame[:at], flag.encode(), frame[at:]))


def parse_call_flag(flags: str | bytes) -> tuple[str, int] | None:
    """The call marker in a client frame's header flags (text, as :func:`split_message` gives them,
    or bytes): ``(CALL, id)``, ``(REPLY, id)`` or ``(FAILURE, id)``; ``None`` when the flags hold none
    (empty, or another extension's).

    Raises:
        ProtocolError: flags that start with a call letter but are not ``<letter><id>`` with an id
            from 1 to :data:`MAX_CALL_ID`, without leading zeros.
    """
    if not flags:
        return None
    if isinstance(flags, bytes):
        flags = flags.decode("latin-1")
    letter = flags[0]
    if letter not in (CALL, REPLY, FAILURE):
        return None
    digits = flags[1:]
    # Converted once, and only ASCII digits (at most 10 of them, no leading zero) are converted at all:
    # str.isdigit alone would take other scripts' digits, which int() reads too.
    call_id = (
        int(digits) if digits.isascii() and digits.isdigit() and digits[0] != "0" and len(digits) <= 10 else 0
    )
    if not 0 < call_id <= MAX_CALL_ID:
        raise ProtocolError(f"header flags {flags!r}: a call marker is c, r or e and an id from 1 to 2**31-1")
    return letter, call_id


def _check_utf8(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string has no UTF-8 form: {exc.reason}") from None


def frame_size(frame: Frame) -> int:
    """The size a frame counts for against a socket's send queue (characters for text frames, which
    equals bytes for ASCII; measuring exact UTF-8 bytes would cost an encode per frame)."""
    return len(frame)


class Hello(msgspec.Struct, frozen=True, omit_defaults=True):
    """The ``__hello`` payload, the first frame after the upgrade."""

    v: int
    id: str
    max_message_size: int
    contract: str
    """The fingerprint of the server's contract (see :mod:`typed_ss.contract`)."""
    max_calls: int
    """The most calls each side may have waiting for a reply on this connection."""
    session: str | None = None
    """With connection state recovery on: the token to reconnect with (``ss_session``)."""
    recovered: bool | None = None
    """For a client that reconnected with a token: whether everything it missed follows, with its
    rooms (``True``), or it starts afresh (``False``)."""
    rooms: list[str] | None = None
    """The rooms a recovered socket is in again."""
    streams: list[str] | None = None
    """The tags of a recovered socket's streams: the offsets of any other stream can be forgotten."""


class ErrorReply(msgspec.Struct, frozen=True):
    """The payload of an error reply (``e<id>``): why a call failed."""

    code: str
    """``invalid_payload``, ``handler_error``, ``unknown_event``, ``too_many_calls``, or the
    application's own code (:class:`typed_ss.HandlerError`)."""
    message: str
    data: object = None
    """The application's details (``HandlerError(data=...)``), JSON."""


class ErrorPayload(msgspec.Struct, frozen=True):
    """The ``__error`` payload: an invalid payload or a failed handler for ``event``."""

    event: str
    code: str
    detail: str


class Gap(msgspec.Struct, frozen=True):
    """The ``__gap`` payload: messages of ``room`` (``None``: of the broadcasts) were lost on their
    way from another instance."""

    room: str | None
    lost: int
    """How many, as far as the sequence numbers tell."""


def gap_frame(room: str | None, lost: int) -> Frame:
    """A ``__gap`` frame."""
    return encode_frame(GAP_EVENT, Gap(room, lost))


def hello_frame(
    socket_id: str,
    max_message_size: int,
    contract: str,
    max_calls: int,
    *,
    session: str | None = None,
    recovered: bool | None = None,
    rooms: list[str] | None = None,
    streams: list[str] | None = None,
) -> Frame:
    """The ``__hello`` frame: the client's id, the limits it must respect, the contract fingerprint,
    and with recovery on the session token and the outcome of a recovery."""
    return encode_frame(
        HELLO_EVENT,
        Hello(
            PROTOCOL_VERSION,
            socket_id,
            max_message_size,
            contract,
            max_calls,
            session,
            recovered,
            rooms,
            streams,
        ),
    )


@functools.lru_cache(maxsize=65_536)  # a few streams are flagged over and over; room names are bounded
def stream_tag(stream: str) -> str:
    """The short name of a stream in offset flags: a decimal number from a 5-byte hash of the stream's
    name (a room's name can be long, and the flag travels with every kept frame). Digits only, as the
    offset: an original client reads every character of the flags as a flag (a ``J`` would make it
    parse the payload as JSON), and typed-ss's clients look for call markers (``c``, ``r``, ``e``)."""
    return str(int.from_bytes(hashlib.blake2b(stream.encode(), digest_size=5).digest(), "big"))


def offset_flag(tag: str, offset: str) -> str:
    """The header flag of a kept frame: ``o<tag>.<offset>``."""
    return f"{OFFSET}{tag}.{offset}"


def has_offset_flag(frame: Frame) -> bool:
    """Whether a server frame made by this module carries an offset flag (it was kept)."""
    if isinstance(frame, str):
        return frame.startswith(OFFSET, frame.find("\x01") + 2)
    return frame.startswith(OFFSET.encode(), frame.find(b"\x01") + 2)


def frame_offset(frame: Frame) -> tuple[str, int] | None:
    """A kept server frame made by this module as ``(stream tag, offset)``; ``None`` when not kept."""
    if not has_offset_flag(frame):
        return None
    head = (
        frame[: frame.index(b"\x02")].decode("latin-1")
        if isinstance(frame, bytes)
        else frame[: frame.index("\x02")]
    )
    parsed = parse_offset_flag(head[head.index("\x01") + 2 :])
    return None if parsed is None else (parsed[0], int(parsed[1]))


def parse_offset_flag(flags: str) -> tuple[str, str] | None:
    """A server frame's offset flag as ``(tag, offset)``; ``None`` when the flags hold none."""
    if not flags.startswith(OFFSET):
        return None
    tag, dot, offset = flags[1:].partition(".")
    return (tag, offset) if dot and tag and offset else None


def error_reply_frame(event: str, call_id: int, code: str, message: str, data: object = None) -> Frame:
    """The error reply (``e<id>``) to call ``call_id`` of ``event``.

    Raises:
        EncodeError: ``data`` has no JSON form.
    """
    return with_flag(encode_json_frame(event, ErrorReply(code, message, data)), f"{FAILURE}{call_id}")


def error_frame(event: str, code: str, detail: str) -> Frame:
    """An ``__error`` frame; ``code`` is ``invalid_payload`` or ``handler_error``."""
    return encode_frame(ERROR_EVENT, ErrorPayload(event, code, detail))


# --- names -----------------------------------------------------------------------------------------


def check_event_name(event: str, max_length: int) -> None:
    """Check an event name that application code registers or emits.

    Raises:
        InvalidName: empty, longer than ``max_length`` UTF-8 bytes, containing 0x01 or 0x02, or
            reserved (starting with ``__``).
    """
    _check_name("event", event, max_length)


def check_room_name(room: str, max_length: int) -> None:
    """Check a room name that application code joins or leaves.

    Raises:
        InvalidName: empty, longer than ``max_length`` UTF-8 bytes, or reserved (starting with ``__``).
    """
    _check_name("room", room, max_length)


def _check_name(kind: str, name: str, max_length: int) -> None:
    if not isinstance(name, str):
        raise InvalidName(f"{kind} name must be a str, not {type(name).__qualname__}")
    if not name:
        raise InvalidName(f"{kind} name must not be empty")
    if name.startswith(RESERVED_PREFIX):
        raise InvalidName(
            f"{kind} name {name!r} is reserved: names starting with '__' belong to the protocol; "
            "choose another name"
        )
    if "\x01" in name or "\x02" in name:
        raise InvalidName(f"{kind} name {name!r} contains a protocol delimiter (0x01 or 0x02)")
    if len(name) > max_length:
        raise InvalidName(f"{kind} name is longer than {max_length} bytes")
    if not name.isascii():
        try:
            size = len(name.encode())
        except UnicodeEncodeError:
            raise InvalidName(f"{kind} name {name!r} has no UTF-8 form (lone surrogates)") from None
        if size > max_length:
            raise InvalidName(f"{kind} name is longer than {max_length} bytes")
