"""OP_MSG framing, the only message format MongoDB 6.0+ accepts for commands (and all pymongo 4.x sends).

A message is a 16-byte header (``messageLength``, ``requestID``, ``responseTo``, ``opCode``, all
little-endian int32) followed, for OP_MSG (opCode 2013), by ``flagBits`` (uint32) and sections:
kind 0 is the command body (one BSON document), kind 1 is a document sequence (int32 size, a
C-string identifier, then BSON documents) that the server merges into the body under that
identifier (``documents`` for ``insert``). Flag bit 0 says a CRC-32C checksum follows the sections;
bit 1 (``moreToCome``) from a client means "do not reply".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import bson
from bson.codec_options import CodecOptions

__all__ = [
    "HEADER",
    "MAX_MESSAGE_SIZE",
    "MORE_TO_COME",
    "OP_MSG",
    "Request",
    "WireError",
    "encode_reply",
    "parse_op_msg",
    "split_documents",
]

OP_MSG = 2013
HEADER = struct.Struct("<iiii")
MAX_MESSAGE_SIZE = 48_000_000
"""``maxMessageSizeBytes`` as MongoDB reports it."""
CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1
EXHAUST_ALLOWED = 1 << 16
_KNOWN_FLAGS = CHECKSUM_PRESENT | MORE_TO_COME | EXHAUST_ALLOWED

_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(document_class=dict)


class WireError(Exception):
    """A message the server cannot parse: MongoDB closes the connection on these."""


@dataclass
class Request:
    """One parsed OP_MSG."""

    request_id: int
    flags: int
    body: dict[str, Any]
    sequences: dict[str, list[bytes]] = field(default_factory=dict)
    """Kind-1 sections: identifier -> the raw BSON of each document."""


def split_documents(data: bytes) -> list[bytes]:
    """Cut concatenated BSON documents apart by their length prefixes."""
    documents = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 5:
            raise WireError("truncated BSON document in a document sequence")
        (size,) = struct.unpack_from("<i", data, offset)
        if size < 5 or offset + size > len(data):
            raise WireError("bad BSON document length in a document sequence")
        documents.append(data[offset : offset + size])
        offset += size
    return documents


def parse_op_msg(request_id: int, payload: bytes) -> Request:
    """Parse the part of an OP_MSG after the header."""
    if len(payload) < 5:
        raise WireError("OP_MSG too short")
    (flags,) = struct.unpack_from("<I", payload, 0)
    if flags & 0xFFFF & ~_KNOWN_FLAGS:
        # Bits 0-15 are required: a receiver must fail on one it does not know.
        raise WireError(f"unknown required OP_MSG flag bits {flags:#x}")
    end = len(payload) - (4 if flags & CHECKSUM_PRESENT else 0)
    offset = 4
    body: dict[str, Any] | None = None
    sequences: dict[str, list[bytes]] = {}
    while offset < end:
        kind = payload[offset]
        offset += 1
        if kind == 0:
            if body is not None:
                raise WireError("OP_MSG with two kind-0 sections")
            if end - offset < 5:
                raise WireError("truncated kind-0 section")
            (size,) = struct.unpack_from("<i", payload, offset)
            if size < 5 or offset + size > end:
                raise WireError("bad kind-0 section length")
            try:
                body = bson.decode(payload[offset : offset + size], _OPTIONS)
            except bson.errors.BSONError as exc:
                raise WireError(f"invalid BSON in the command body: {exc}") from exc
            offset += size
        elif kind == 1:
            if end - offset < 4:
                raise WireError("truncated kind-1 section")
            (size,) = struct.unpack_from("<i", payload, offset)
            if size < 5 or offset + size > end:
                raise WireError("bad kind-1 section length")
            section = payload[offset + 4 : offset + size]
            nul = section.find(b"\x00")
            if nul < 0:
                raise WireError("kind-1 section without an identifier")
            identifier = section[:nul].decode()
            if identifier in sequences:
                raise WireError(f"duplicate document sequence {identifier!r}")
            sequences[identifier] = split_documents(section[nul + 1 :])
            offset += size
        else:
            raise WireError(f"unknown OP_MSG section kind {kind}")
    if body is None:
        raise WireError("OP_MSG without a command body")
    return Request(request_id, flags, body, sequences)


def encode_reply(response_to: int, request_id: int, reply: dict[str, Any]) -> bytes:
    """An OP_MSG reply: no flags, one kind-0 section."""
    section = b"\x00" + bson.encode(reply)
    payload = struct.pack("<I", 0) + section
    return HEADER.pack(HEADER.size + len(payload), request_id, response_to, OP_MSG) + payload
