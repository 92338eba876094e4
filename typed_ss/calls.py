"""Calls one side has made and waits on: ids, their futures, the decoding of replies.

A call is a frame marked ``c<id>`` (see :mod:`typed_ss.protocol`); the other side answers with a frame
of the same event marked ``r<id>`` (the return value) or ``e<id>`` (a JSON
:class:`~typed_ss.protocol.ErrorReply`). :class:`PendingCalls` keeps one side's unanswered calls:
at most ``limit`` of them (more fail at once with ``too_many_calls`` instead of queueing), each until
its reply arrives, it times out, or the connection closes (then all fail with
:class:`~typed_ss.errors.CallClosed`).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Final

import msgspec

from typed_ss.errors import CallError, PayloadValidationError
from typed_ss.handlers import Decoder, build_decoder
from typed_ss.protocol import FAILURE, MAX_CALL_ID, ErrorReply

__all__ = [
    "NO_REPLY",
    "TOO_MANY_CALLS",
    "PendingCalls",
    "decode_reply",
    "reply_decoder",
    "too_many_calls_message",
]

TOO_MANY_CALLS: Final = "too_many_calls"
"""The error code of a call past ``max_calls``, on either side."""


def too_many_calls_message(limit: int) -> str:
    """The error message of a call past ``max_calls``."""
    return f"{limit} calls already wait for a reply (max_calls)"


class _NoReply:
    """The reply type of an event declared without one (``ss.event(name, T)``)."""

    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY: Final = _NoReply()
"""A declared event's reply type when none was declared: a call to it expects an acknowledgement."""

_error_reply = msgspec.json.Decoder(ErrorReply)


@functools.lru_cache(maxsize=256)
def _decoder_for(reply_type: object) -> Decoder | None:
    return build_decoder("(reply)", reply_type, "(the reply type of a call)")


def reply_decoder(reply_type: object) -> Decoder | None:
    """The decoder of replies of ``reply_type`` (built once per type): ``None`` for raw ``bytes``.
    ``None`` as the type itself (no reply declared) decodes JSON ``null``: an acknowledgement.

    Raises:
        HandlerSignatureError: the type has no JSON form.
    """
    try:
        return _decoder_for(type(None) if reply_type is None else reply_type)
    except TypeError:  # unhashable types (Annotated with unhashable metadata): built each time
        return build_decoder("(reply)", reply_type, "(the reply type of a call)")


def decode_reply(event: str, kind: str, payload: bytes, decode: Decoder | None) -> Any:
    """The value of a reply frame, or the :class:`CallError` of an error reply (raised).

    Raises:
        CallError: an error reply (``kind`` is ``FAILURE``).
        PayloadValidationError: the reply does not decode as the expected type.
    """
    if kind == FAILURE:
        try:
            failure = _error_reply.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            raise CallError("invalid_reply", f"an unreadable error reply to {event!r}") from None
        raise CallError(failure.code, failure.message, failure.data)
    if decode is None:
        return payload
    try:
        return decode(payload)
    except PayloadValidationError as exc:
        raise PayloadValidationError(event, f"the reply: {exc.detail}") from None


class PendingCalls:
    """One side's calls that wait for a reply, by id."""

    __slots__ = ("_futures", "_next_id", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._futures: dict[int, asyncio.Future[tuple[str, bytes]]] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._futures)

    def open(self) -> tuple[int, asyncio.Future[tuple[str, bytes]]]:
        """A new call: its id and the future its reply resolves (``(kind, payload)``).

        Raises:
            CallError: ``too_many_calls``, when ``limit`` calls already wait.
        """
        if len(self._futures) >= self.limit:
            raise CallError(TOO_MANY_CALLS, too_many_calls_message(self.limit))
        self._next_id = self._next_id % MAX_CALL_ID + 1
        while self._next_id in self._futures:  # after 2**31 calls, skip one that still waits
            self._next_id = self._next_id % MAX_CALL_ID + 1
        future: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
        self._futures[self._next_id] = future
        return self._next_id, future

    def answered(self, kind: str, call_id: int, payload: bytes) -> bool:
        """A reply (``kind`` ``r`` or ``e``) arrived; returns whether a call waited for it (a late
        reply, after its call timed out, is dropped)."""
        future = self._futures.pop(call_id, None)
        if future is None or future.done():
            return False
        future.set_result((kind, payload))
        return True

    def forget(self, call_id: int) -> None:
        """The call is over (answered, timed out or cancelled)."""
        self._futures.pop(call_id, None)

    def fail_all(self, error: BaseException) -> None:
        """The connection closed: every waiting call fails with ``error``."""
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(error)
