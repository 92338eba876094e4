"""Presence on the client: the ``__presence`` events of a server with ``presence=`` on, and the
``__members`` call that lists a room's members (docs/presence.md, docs/python-client.md).

:class:`PresenceEvent` is the event, generic in the server's presence payload type;
:class:`~typed_ss.cluster.api.Listed` (the server's own reply struct) is what
:meth:`Client.members <typed_ss.client.Client.members>` returns. Both carry each member's payload as
``P | None``: a member has none until the server's ``of`` or ``set()`` gave it one (and an instance
running another payload type, in a rolling upgrade, lists its members with none).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

import msgspec

from typed_ss.calls import reply_decoder
from typed_ss.client.handlers import FROM_ANNOTATION
from typed_ss.cluster.api import Listed, ListedMember, MembersQuestion
from typed_ss.errors import HandlerSignatureError
from typed_ss.handlers import Decoder, build_decoder
from typed_ss.protocol import PRESENCE_EVENT

__all__ = [
    "Listed",
    "ListedMember",
    "PresenceEvent",
    "event_decoder",
    "members_decoder",
    "members_question",
]

P = TypeVar("P")


class PresenceEvent(msgspec.Struct, Generic[P], frozen=True):
    """A ``__presence`` event: a member of a tracked room this client is in joined or left, on any of
    the server's instances. ``P`` is the server's presence payload type."""

    room: str
    change: Literal["joined", "left"]
    socket: str
    """The id of the socket that joined or left (with the server's ``per_identity``: the identity's
    first socket to join, or its last to leave)."""
    presence: P | None
    """That member's presence payload; ``None`` when it has none."""


def _parametrized(generic: object, payload_type: object) -> object:
    """``generic[payload_type]``, for a payload type given as a value."""
    return generic[payload_type]  # type: ignore[index]


def event_decoder(hook: Callable[..., object], presence: object = FROM_ANNOTATION) -> Decoder:
    """The decoder of the ``__presence`` events ``hook`` gets: as ``PresenceEvent[presence]``, or, by
    default, as the annotation of its parameter (``PresenceEvent[Card]``; a bare ``PresenceEvent``, or
    none, leaves the payload as JSON decodes it).

    Raises:
        HandlerSignatureError: ``hook`` does not take one positional parameter, its annotation does not
            resolve or is not a ``PresenceEvent``, or the payload type has no JSON form.
    """
    where = getattr(hook, "__qualname__", repr(hook))
    try:
        inspect.signature(hook).bind(None)
    except (TypeError, ValueError):
        raise HandlerSignatureError(
            f"the on_presence hook ({where}) must take exactly one positional parameter, the event: "
            "def hook(event: PresenceEvent[T]) -> None"
        ) from None
    if presence is not FROM_ANNOTATION:
        event_type = _parametrized(PresenceEvent, presence)
    else:
        event_type = _annotated_event_type(hook, where)
    decode = build_decoder(PRESENCE_EVENT, event_type, f"({where})")
    assert decode is not None  # a Struct: decoded from JSON
    return decode


def _annotated_event_type(hook: Callable[..., object], where: str) -> object:
    try:
        signature = inspect.signature(hook, eval_str=True)
    except Exception as exc:  # NameError for a forward reference, or whatever a bad annotation raises
        raise HandlerSignatureError(
            f"cannot resolve the annotation of the on_presence hook ({where}): {exc}; pass the payload "
            "type explicitly (on_presence(hook, presence=T))"
        ) from exc
    annotation: object = next(iter(signature.parameters.values())).annotation
    if annotation is inspect.Parameter.empty or annotation is PresenceEvent or annotation is Any:
        return PresenceEvent
    if typing.get_origin(annotation) is PresenceEvent:
        return annotation
    raise HandlerSignatureError(
        f"the on_presence hook ({where}) must take a PresenceEvent (PresenceEvent[T], T the server's "
        f"presence payload type), not {annotation!r}"
    )


def members_decoder(presence: object) -> Decoder | None:
    """The decoder of the reply to a ``__members`` call: a ``Listed`` whose members' payloads are
    ``presence`` or ``None`` (``Any``: as JSON decodes them).

    Raises:
        HandlerSignatureError: ``presence`` has no JSON form.
    """
    if presence is Any:
        return reply_decoder(Listed[Any])
    optional: object = typing.Optional[presence]  # noqa: UP045 (a type made at run time)
    return reply_decoder(_parametrized(Listed, optional))


def members_question(room: str) -> MembersQuestion:
    """The payload of a ``__members`` call for ``room``."""
    return MembersQuestion(room)
