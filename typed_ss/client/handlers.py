"""The client's handlers: one per server event, with its payload decoder and its reply's encoding, built
once at registration; and running one of them for a frame the server sent.

A handler takes the payload alone: ``async def on_chat(msg: Chat) -> None`` (a plain ``def`` works
too). Its payload annotation decides the decoding exactly as on the server
(:func:`typed_ss.handlers.build_decoder`): ``bytes`` or none the raw payload, ``str`` UTF-8 text, a
msgspec type or a pydantic model validated from JSON. A handler registered with ``handle`` answers
the server's calls: its return value is the reply, encoded as its return annotation says
(:class:`typed_ss.events.PayloadFrames`: ``str`` text, ``bytes`` binary, anything else JSON). One
registered with ``on`` answers a call with an acknowledgement (JSON ``null``), as a server handler
``-> None`` does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from typed_ss.client.frames import ServerFrame, client_frame, error_reply
from typed_ss.errors import EncodeError, HandlerError, HandlerSignatureError, PayloadValidationError
from typed_ss.events import PayloadFrames
from typed_ss.handlers import Decoder, build_decoder
from typed_ss.limits import Limits
from typed_ss.protocol import CALL, REPLY, Frame, check_event_name
from typed_ss.typeinfo import plain_class_union, type_name

__all__ = ["FROM_ANNOTATION", "ClientHandler", "answer", "make_handler"]

logger = logging.getLogger("typed_ss.client")

FROM_ANNOTATION: Final[Any] = object()
"""The default of ``payload_type`` and ``returns``: take the type from the handler's annotation."""

_MAX_EVENT_NAME: Final = Limits().max_event_name_length


@dataclass(frozen=True, slots=True)
class ClientHandler:
    """One registered server event: the function, how its payload decodes, how its reply encodes."""

    event: str
    fn: Callable[[Any], object]
    payload_type: object
    decode: Decoder | None
    """``None`` for ``bytes``: the payload is passed on unchanged."""
    reply: PayloadFrames
    """How a reply to a call is checked and encoded."""
    answers: bool
    """Whether the return value is the reply (``handle``); else calls get ``null`` (``on``)."""


def make_handler(
    event: str, fn: Callable[[Any], object], payload_type: object, returns: object, *, answers: bool
) -> ClientHandler:
    """Check ``fn`` and build its decoder and reply encoding.

    Raises:
        InvalidName: a reserved (``__...``), empty or too long event name.
        HandlerSignatureError: ``fn`` does not take exactly one positional parameter, an annotation
            does not resolve, or a type has no JSON form.
    """
    check_event_name(event, _MAX_EVENT_NAME)
    where = getattr(fn, "__qualname__", repr(fn))
    try:
        signature = inspect.signature(fn)
        signature.bind(None)
    except (TypeError, ValueError):
        raise HandlerSignatureError(
            f"the client's handler for {event!r} ({where}) must take exactly one positional parameter, "
            "the payload: async def handler(payload: T) -> None"
        ) from None
    if payload_type is FROM_ANNOTATION or (answers and returns is FROM_ANNOTATION):
        try:
            signature = inspect.signature(fn, eval_str=True)
        except Exception as exc:  # NameError for a forward reference, or whatever a bad annotation raises
            raise HandlerSignatureError(
                f"cannot resolve the annotations of the client's handler for {event!r} ({where}): {exc}; "
                "pass the types explicitly (payload_type=..., returns=...)"
            ) from exc
    if payload_type is FROM_ANNOTATION:
        payload_type = _payload_annotation(signature)
    reply_type: object = type(None)
    if answers:
        reply_type = _return_annotation(signature) if returns is FROM_ANNOTATION else returns
        reply_type = type(None) if reply_type is None else reply_type
        # Refuses types with no JSON form; a union of classes (Name | NameInput) is encoded, never decoded.
        if plain_class_union(reply_type) is None:
            build_decoder(event, reply_type, f"(the reply type of {where})")
    decode = build_decoder(event, payload_type, f"({where})")
    return ClientHandler(event, fn, payload_type, decode, PayloadFrames(event, reply_type), answers)


def _payload_annotation(signature: inspect.Signature) -> object:
    parameter = next(iter(signature.parameters.values()))
    annotation: object = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return bytes  # as on the server: no annotation is the raw payload
    return type(None) if annotation is None else annotation


def _return_annotation(signature: inspect.Signature) -> object:
    annotation: object = signature.return_annotation
    return Any if annotation is inspect.Signature.empty else annotation


async def answer(handler: ClientHandler | None, frame: ServerFrame) -> Frame | None:
    """Run ``handler`` for ``frame``, an event or a call of the server's (never a reply); returns the
    answer to send for a call, ``None`` for an event.

    Nothing of an exception reaches the server except a :class:`HandlerError`'s code, message and data;
    every other failure is logged here and answered with ``handler_error``.
    """
    call_id = frame.marker[1] if frame.marker is not None and frame.marker[0] == CALL else 0
    if handler is None:
        if call_id:
            return error_reply(frame.event, call_id, "unknown_event", f"no handler for event {frame.event!r}")
        logger.debug("the server sent event %r, which has no handler", frame.event)
        return None
    value: object = frame.payload
    if handler.decode is not None:
        try:
            value = handler.decode(frame.payload)
        except PayloadValidationError as exc:
            logger.warning("the server sent an invalid payload for %r: %s", frame.event, exc.detail)
            return error_reply(frame.event, call_id, "invalid_payload", exc.detail) if call_id else None
    try:
        result = handler.fn(value)
        if inspect.isawaitable(result):
            result = await result
    except HandlerError as exc:
        if not call_id:
            logger.warning("the handler for %r raised %s", frame.event, exc)
            return None
        try:
            return error_reply(frame.event, call_id, exc.code, exc.message, exc.data)
        except EncodeError as bad:
            logger.error("the error data of the reply to %r has no JSON form: %s", frame.event, bad)
            return error_reply(frame.event, call_id, exc.code, exc.message)
    except Exception:
        logger.exception("the client's handler for %r failed", frame.event)
        return _failed(frame.event, call_id)
    if not call_id:
        return None
    try:
        reply = handler.reply.frame(result if handler.answers else None)
    except EncodeError as exc:
        # The handler's bug, not the server's: said loudly here; the server's call fails.
        logger.error(
            "the handler for %r returned what its return type %s does not allow: %s",
            frame.event,
            type_name(handler.reply.payload_type),
            exc,
        )
        return _failed(frame.event, call_id)
    return client_frame(reply, f"{REPLY}{call_id}")


def _failed(event: str, call_id: int) -> Frame | None:
    return (
        error_reply(event, call_id, "handler_error", "the handler for this event failed") if call_id else None
    )
