"""The control plane's messages and topics: how instances ask each other about sockets and rooms.

Control messages travel on the same backend as casts, but are not casts: they carry no sequence
number of the bridge and are never kept in a recovery history. Three kinds of topic carry them:

- ``c``: every instance subscribes at start: heartbeats, and questions asked of everyone;
- ``i:<instance>``: one per instance: the answers to its questions, and questions asked of it alone;
- ``p:<room>``: the membership changes of a room whose presence is tracked, subscribed by the
  instances with a local member of it.

Each message is MessagePack (never pickle) of one of the structs below, told apart by a tag.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec

__all__ = [
    "CONTROL_TOPIC",
    "UNDECODABLE",
    "Action",
    "Ask",
    "Change",
    "Count",
    "Entry",
    "Heartbeat",
    "Members",
    "Message",
    "Part",
    "Parts",
    "Query",
    "Reply",
    "Target",
    "decode",
    "encode",
    "instance_topic",
    "is_control_topic",
    "presence_topic",
]

CONTROL_TOPIC: Final = "c"

UNDECODABLE: Final = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)
"""What decoding bytes from another instance raises when they are not the message expected: besides
its own errors, msgspec raises UnicodeDecodeError for a string that is not UTF-8 and RecursionError
while skipping deeply nested extra elements. Malformed all the same (the bridge's envelopes too)."""


def instance_topic(instance: str) -> str:
    """The topic of the answers to ``instance``'s questions, and of questions asked of it alone."""
    return "i:" + instance


def presence_topic(room: str) -> str:
    """The topic of the membership changes of a room whose presence is tracked."""
    return "p:" + room


def is_control_topic(topic: str) -> bool:
    """Whether ``topic`` carries control messages (not casts)."""
    return topic == CONTROL_TOPIC or topic.startswith(("i:", "p:"))


class Entry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One socket as other instances see it."""

    # gc=False: strings only, never in a cycle; a room of 10,000 holds as many of them on every
    # instance, and the garbage collector walking them made a member query's p99 (docs/benchmarks.md).
    socket: str
    key: str
    """What presence groups the socket by: its identity's fingerprint (its socket id when the
    identity has no JSON form). Never shown to clients."""
    presence: bytes
    """The socket's presence payload, as JSON (``null`` without one)."""


class Target(msgspec.Struct, array_like=True, frozen=True):
    """The sockets an action applies to: by id, the members of a room, or the sockets of an identity."""

    kind: Literal["sockets", "room", "identity"]
    values: list[str]
    """Socket ids, one room name, or one identity fingerprint."""


class Members(msgspec.Struct, tag="m", array_like=True, frozen=True):
    """Which sockets are in ``room`` (or, with ``key``, which sockets have that identity)."""

    room: str | None
    key: str | None
    limit: int


class Count(msgspec.Struct, tag="n", array_like=True, frozen=True):
    """How many sockets are in each of ``rooms``."""

    rooms: list[str]


class Action(msgspec.Struct, tag="a", array_like=True, frozen=True):
    """Make the ``target`` sockets join or leave ``room``, or disconnect them."""

    kind: Literal["join", "leave", "disconnect"]
    target: Target
    room: str
    """The room joined or left; the close reason for a disconnect."""
    code: int = 1000
    """The close code of a disconnect."""


class Parts(msgspec.Struct, tag="p", array_like=True, frozen=True):
    """The asked instance's own members of each of ``rooms`` whose presence is tracked."""

    rooms: list[str]


Query: TypeAlias = Members | Count | Action | Parts


class Part(msgspec.Struct, array_like=True, frozen=True):
    """One instance's members of one tracked room, as of ``version`` of its stream of changes."""

    room: str
    stream: int
    version: int
    entries: list[Entry]


class Heartbeat(msgspec.Struct, tag="h", array_like=True, frozen=True):
    origin: str
    epoch: int
    seq: int
    """1, 2, 3... per boot: a gap says heartbeats (and maybe other messages) were lost."""
    bye: bool = False
    """The instance is stopping: forget it now."""
    losses: int = 0
    """Grows each time the instance may have lost messages on its side (its outbox dropped some,
    its backend reconnected or dropped some it received): what it sent may not have arrived."""


class Ask(msgspec.Struct, tag="q", array_like=True, frozen=True):
    origin: str
    epoch: int
    id: int
    query: Query


class Reply(msgspec.Struct, tag="r", array_like=True, frozen=True):
    """One instance's answer to a question, in one or more messages (``done`` on the last)."""

    origin: str
    id: int
    done: bool
    count: list[int] = []
    """For :class:`Count`: per room, in order; for :class:`Action`: the sockets acted on."""
    entries: list[Entry] = []
    parts: list[Part] = []
    truncated: bool = False
    """Members past the question's limit were left out."""


class Change(msgspec.Struct, tag="d", array_like=True, frozen=True):
    """A change of one instance's members of a tracked room (``version`` counts them per stream)."""

    origin: str
    room: str
    stream: int
    version: int
    joined: list[Entry]
    left: list[str]


Message: TypeAlias = Heartbeat | Ask | Reply | Change

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """A control message's bytes."""
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """A control message from its bytes.

    Raises:
        UNDECODABLE: not a control message this version knows.
    """
    return _decoder.decode(data)
