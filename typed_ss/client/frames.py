"""The client's side of the ``sac-sock`` framing, sans I/O: server frames in, client frames out.

A client frame is ``<event> [0x01 <flag>] 0x02 <payload>``: no type letter, at most the one call flag
(``c<id>``, ``r<id>``, ``e<id>``). Payloads are encoded by :mod:`typed_ss.protocol`'s rules, the
server's own (``str`` a text frame, ``bytes`` a binary frame, anything else JSON), or by a
:class:`~typed_ss.events.PayloadFrames` for a declared type; :func:`client_frame` then turns that
encoded frame into the client's form. So the client never has its own copy of the encoding rules.

A server frame is ``<event> 0x01 <type letter>[<call flag>] 0x02 <payload>``; :func:`parse_server_frame`
splits it the way the JS client does: the name ends at the first 0x01 (or 0x02), the payload is
everything after the first 0x02.
"""

from __future__ import annotations

from typing import NamedTuple

from typed_ss.errors import ProtocolError
from typed_ss.protocol import (
    FAILURE,
    ErrorReply,
    Frame,
    encode_json_frame,
    parse_call_flag,
    parse_offset_flag,
)

__all__ = ["ServerFrame", "client_frame", "error_reply", "frame_size", "parse_server_frame"]


class ServerFrame(NamedTuple):
    """One parsed server frame."""

    event: str
    letter: str
    """``S``, ``B`` or ``J`` (``""`` from a server that sent none)."""
    marker: tuple[str, int] | None
    """``(kind, id)`` for a call (``c``), a reply (``r``) or an error reply (``e``); ``None`` for an event."""
    payload: bytes
    offset: tuple[str, str] | None = None
    """``(stream tag, offset)`` of a frame the server keeps for connection state recovery."""


def parse_server_frame(message: str | bytes) -> ServerFrame:
    """Split a server frame.

    Raises:
        ProtocolError: no 0x02, an empty event name, an event name that is not UTF-8, or a malformed
            call marker.
    """
    if isinstance(message, str):
        stx = message.find("\x02")
        if stx < 0:
            raise ProtocolError("no 0x02 delimiter in a server frame")
        head, payload = message[:stx], message[stx + 1 :].encode()
        soh = head.find("\x01")
        event, flags = (head, b"") if soh < 0 else (head[:soh], head[soh + 1 :].encode())
    else:
        stx = message.find(b"\x02")
        if stx < 0:
            raise ProtocolError("no 0x02 delimiter in a server frame")
        raw_head, payload = message[:stx], bytes(message[stx + 1 :])
        soh = raw_head.find(b"\x01")
        raw_event, flags = (raw_head, b"") if soh < 0 else (raw_head[:soh], bytes(raw_head[soh + 1 :]))
        try:
            event = raw_event.decode()
        except UnicodeDecodeError:
            raise ProtocolError("the event name of a server frame is not UTF-8") from None
    if not event:
        raise ProtocolError("a server frame with an empty event name")
    # The type letter comes first; a call marker or an offset, if any, follows it (docs/protocol.md
    # sections 5 and 6).
    marker = parse_call_flag(flags[1:]) if len(flags) > 1 else None
    offset = parse_offset_flag(flags[1:].decode("latin-1")) if marker is None and len(flags) > 1 else None
    return ServerFrame(event, flags[:1].decode("ascii", "replace"), marker, payload, offset)


def client_frame(frame: Frame, flag: str = "") -> Frame:
    """The client frame for a frame encoded by :mod:`typed_ss.protocol` (``event 0x01 <letter> 0x02
    payload``, no flags): its type letter dropped, ``flag`` (``"c7"``, ``"r7"``) put in its place."""
    if isinstance(frame, str):
        soh = frame.index("\x01")  # event names hold no 0x01: the first one opens the header
        head = "\x01" + flag if flag else ""
        return "".join((frame[:soh], head, frame[soh + 2 :]))
    soh = frame.index(b"\x01")
    raw_head = b"\x01" + flag.encode() if flag else b""
    return b"".join((frame[:soh], raw_head, frame[soh + 2 :]))


def error_reply(event: str, call_id: int, code: str, message: str, data: object = None) -> Frame:
    """The client's error reply (``e<id>``) to the server's call ``call_id`` of ``event``.

    Raises:
        EncodeError: ``data`` has no JSON form.
    """
    return client_frame(encode_json_frame(event, ErrorReply(code, message, data)), f"{FAILURE}{call_id}")


def frame_size(frame: Frame) -> int:
    """The frame's size in bytes, as the server counts it against ``max_message_size``."""
    if isinstance(frame, bytes):
        return len(frame)
    return len(frame) if frame.isascii() else len(frame.encode())
