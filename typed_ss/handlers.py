"""The registry behind ``@ss.on``: one handler and one payload decoder per event, built at registration.

A handler is ``async def handler(sock: Socket, payload: T) -> None``. ``T`` decides how the payload is
decoded before the handler sees it:

- ``bytes`` (or no annotation): the raw payload, unchanged, as in the original;
- ``str``: the payload as UTF-8 text;
- a pydantic ``BaseModel`` subclass: validated from JSON by pydantic;
- anything msgspec can decode from JSON (a ``msgspec.Struct``, a dataclass, ``int``, ``list[str]``,
  ``Literal[...]``, a union ...): validated from JSON by msgspec.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import msgspec

from typed_ss.errors import HandlerSignatureError, PayloadValidationError
from typed_ss.typeinfo import custom_types, is_pydantic_model, msgspec_can_decode, type_name

if TYPE_CHECKING:
    from typed_ss.events import PayloadFrames
    from typed_ss.socket import Socket

__all__ = [
    "Decoder",
    "Handler",
    "HandlerSpec",
    "TextDecoder",
    "build_decoder",
    "build_text_decoder",
    "inspect_handler",
    "is_async_callable",
    "msgspec_can_decode",  # lives in typed_ss.typeinfo; still importable from here
]

logger = logging.getLogger("typed_ss")

M = TypeVar("M")

MAX_DETAIL_LENGTH = 300
"""Longest ``__error`` detail, in characters: validators may quote the client's input back (an
unknown enum value, say), which must not turn a 1 MiB payload into a 1 MiB answer and log line."""

Handler: TypeAlias = Callable[["Socket[Any]", M], Coroutine[Any, Any, Any]]
"""An event handler: ``async def (sock, payload) -> None``."""

Decoder: TypeAlias = Callable[[bytes], object]
"""Turns a raw payload into the value a handler receives, or raises PayloadValidationError.

Whatever the payload, :class:`PayloadValidationError` is the only exception a decoder raises, with a
``detail`` that is safe to send to the client (printable, at most ``MAX_DETAIL_LENGTH`` characters, no
server internals). The exceptions that are about the process rather than the payload pass through:
``MemoryError`` and the ``BaseException`` family (``CancelledError``, ``KeyboardInterrupt``)."""

TextDecoder: TypeAlias = Callable[[str], object]
"""Turns a text frame's payload, read as ``str``, into the value a handler receives; raises as
:data:`Decoder`. A text frame's payload is never encoded to bytes only to be decoded back."""


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One registered event: its handler, the payload type it declared and the decoder built for it."""

    event: str
    handler: Handler[Any]
    payload_type: object
    decode: Decoder | None
    """Decodes the payload of a binary frame; ``None`` for raw ``bytes`` handlers: the payload is
    passed through untouched."""
    decode_text: TextDecoder | None
    """Decodes the payload of a text frame, which the server reads as ``str``; ``None`` for ``str``
    handlers: the text is passed through untouched."""
    reply_type: object = type(None)
    """The handler's return annotation: what it replies to a call (``NoneType``: an acknowledgement;
    ``Any`` when not annotated)."""
    reply: PayloadFrames | None = None
    """How the reply is checked and encoded (set by the server when it registers the handler)."""


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine: an ``async def`` function, a partial of one, or an
    object whose ``__call__`` is ``async def``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or (
        callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)
    )


def inspect_handler(event: str, fn: Handler[Any], explicit: object | None) -> HandlerSpec:
    """Check a handler's signature and build its decoder.

    Raises:
        HandlerSignatureError: ``fn`` is not an ``async def``, does not take exactly two positional
            parameters, has an annotation that cannot be resolved or contradicts ``explicit``, or its
            payload type cannot be decoded from JSON.
    """
    where = _describe(fn)
    if not is_async_callable(fn):
        raise HandlerSignatureError(
            f"the handler for event {event!r} ({where}) must be an `async def` function: "
            "async def handler(sock: Socket, payload: T) -> None"
        )
    try:
        signature = inspect.signature(fn)
        signature.bind(None, None)
    except (TypeError, ValueError):
        raise HandlerSignatureError(
            f"the handler for event {event!r} ({where}) must take exactly two positional parameters, "
            "the socket and the payload: async def handler(sock: Socket, payload: T) -> None"
        ) from None

    annotated = _payload_annotation(event, fn, where, signature, explicit is not None)
    payload_type: object
    if explicit is None:
        payload_type = bytes if annotated is None else annotated
    else:
        if annotated is not None and not _compatible(annotated, explicit):
            raise HandlerSignatureError(
                f"the handler for event {event!r} ({where}) annotates its payload as {type_name(annotated)} "
                f"but was registered with the model {type_name(explicit)}; make them agree"
            )
        payload_type = explicit
    reply_type = _return_annotation(fn, signature)
    decode = build_decoder(event, payload_type, where)
    return HandlerSpec(event, fn, payload_type, decode, build_text_decoder(payload_type, decode), reply_type)


def _return_annotation(fn: Handler[Any], signature: inspect.Signature) -> object:
    """What the handler returns, resolved: its reply to a call (``Any`` when not annotated or not
    resolvable, ``NoneType`` for ``-> None``)."""
    if signature.return_annotation is inspect.Signature.empty:
        return Any
    try:
        annotation: object = inspect.signature(fn, eval_str=True).return_annotation
    except Exception:  # a forward reference that does not resolve: the reply is not typed
        return Any
    return type(None) if annotation is None else annotation


def _payload_annotation(
    event: str, fn: Handler[Any], where: str, signature: inspect.Signature, has_explicit: bool
) -> object | None:
    """The annotation of the second parameter, resolved, or ``None`` when there is none."""
    parameters = list(signature.parameters.values())
    if len(parameters) < 2 or parameters[1].annotation is inspect.Parameter.empty:
        return None
    try:
        # eval_str resolves string annotations (`from __future__ import annotations`) in the
        # function's own namespace, and sees through partials and objects with `async def __call__`.
        resolved = inspect.signature(fn, eval_str=True)
    except Exception as exc:  # NameError for a forward reference, or anything a bad annotation raises
        if has_explicit:
            return None
        raise HandlerSignatureError(
            f"cannot resolve the payload annotation of the handler for event {event!r} ({where}): {exc}. "
            "Define the model at module level, or pass it explicitly: @ss.on(event, Model)"
        ) from exc
    annotation: object = list(resolved.parameters.values())[1].annotation
    # `payload: None` is a JSON null payload, not "no annotation" (which is raw bytes).
    return type(None) if annotation is None else annotation


def _compatible(annotated: object, explicit: object) -> bool:
    if annotated is explicit or annotated == explicit or annotated in (Any, object):
        return True
    return isinstance(annotated, type) and isinstance(explicit, type) and issubclass(explicit, annotated)


def build_decoder(event: str, payload_type: object, where: str = "") -> Decoder | None:
    """The decoder for ``payload_type``: ``None`` for raw bytes, else a callable raising
    :class:`PayloadValidationError` with a message that is safe to send to the client (and nothing
    else: see :data:`Decoder`)."""
    if payload_type is bytes:
        return None
    # The contract calls these binary too (payload_kind), and clients send them raw: a copy of the
    # bytes in the annotated type, never a JSON decode.
    if payload_type is bytearray:
        return bytearray
    if payload_type is memoryview:
        return memoryview
    if payload_type is str:
        return _utf8_decoder(event)
    if is_pydantic_model(payload_type):
        return _pydantic_decoder(event, payload_type.model_validate_json)  # type: ignore[attr-defined]
    try:
        # msgspec accepts classes it does not know (expecting a dec_hook) and would reject their
        # payloads only later, message by message: refuse them here, at registration.
        unknown = {node.cls for node in custom_types(msgspec.inspect.type_info(payload_type))}
        if unknown:
            raise TypeError(f"msgspec cannot decode {', '.join(sorted(c.__qualname__ for c in unknown))}")
        decoder = msgspec.json.Decoder(payload_type)
    except TypeError as exc:
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None:
            # Types msgspec does not know, such as list[SomePydanticModel], may still be pydantic's.
            try:
                adapter = pydantic.TypeAdapter(payload_type)
            except Exception:
                pass
            else:
                return _pydantic_decoder(event, adapter.validate_json)
        raise HandlerSignatureError(
            f"the payload type {type_name(payload_type)} of the handler for event {event!r} {where} "
            f"cannot be decoded from JSON: {exc}"
        ) from exc
    return _msgspec_decoder(event, decoder)


def build_text_decoder(payload_type: object, decode: Decoder | None) -> TextDecoder | None:
    """The decoder of a text frame's payload for ``payload_type``, given the binary frames' one
    (``decode``, from :func:`build_decoder`): ``None`` for ``str`` (the text itself); the UTF-8 bytes
    for the raw binary types; the same JSON decoder otherwise (msgspec and pydantic read ``str`` as
    they read ``bytes``)."""
    if payload_type is str:
        return None
    if payload_type is bytes:
        return str.encode
    if decode is bytearray or decode is memoryview:
        raw = decode
        return lambda text: raw(text.encode())
    assert decode is not None
    # The JSON decoders below take str as well as bytes.
    return cast(TextDecoder, decode)


def _utf8_decoder(event: str) -> Decoder:
    def decode(payload: bytes) -> object:
        try:
            return payload.decode()
        except UnicodeDecodeError as exc:
            raise PayloadValidationError(event, _utf8_detail(exc)) from None

    return decode


def _msgspec_decoder(event: str, decoder: msgspec.json.Decoder[Any]) -> Decoder:
    def decode(payload: str | bytes) -> object:
        try:
            return decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise PayloadValidationError(event, _safe_detail(str(exc))) from None
        except MemoryError:
            raise
        except Exception as exc:
            raise _unexpected(event, payload, exc) from None

    return decode


def _pydantic_decoder(event: str, validate: Callable[[str | bytes], object]) -> Decoder:
    validation_error: type[Exception] = sys.modules["pydantic"].ValidationError

    def decode(payload: str | bytes) -> object:
        try:
            return validate(payload)
        except validation_error as exc:
            raise PayloadValidationError(event, _pydantic_detail(exc)) from None
        except MemoryError:
            raise
        except Exception as exc:
            raise _unexpected(event, payload, exc) from None

    return decode


def _unexpected(event: str, payload: str | bytes, exc: Exception) -> PayloadValidationError:
    """The payload error for an exception a validator raised besides its own validation error.

    msgspec reports invalid UTF-8 inside a JSON string as the ``UnicodeDecodeError`` of the string it
    was building, both report JSON nested past the interpreter's limit as ``RecursionError``, and the
    application's own validators (``__post_init__``, pydantic validators) may raise anything that is
    not the ``ValueError``/``TypeError``/``AssertionError`` they translate. All of them are the
    payload's fault as far as the client can tell: the client gets a generic detail, never the
    exception's text, which may describe server internals.
    """
    if isinstance(exc, RecursionError):
        return PayloadValidationError(event, "JSON nests too deeply")
    if isinstance(exc, UnicodeDecodeError) and isinstance(payload, bytes):
        try:
            payload.decode()
        except UnicodeDecodeError as invalid:
            return PayloadValidationError(event, _utf8_detail(invalid))
        # The payload is valid UTF-8: an application validator decoded something of its own.
    logger.warning(
        "the payload validator for event %r raised %s (%.200r); answering invalid_payload",
        event,
        type(exc).__qualname__,
        exc,
    )
    return PayloadValidationError(event, "the payload could not be decoded")


def _utf8_detail(exc: UnicodeDecodeError) -> str:
    return f"payload is not valid UTF-8 at byte {exc.start}"


def _safe_detail(detail: str) -> str:
    """``detail`` made safe to send and to log: non-printable characters (line breaks included)
    escaped, at most ``MAX_DETAIL_LENGTH`` characters. Validator messages can contain the client's
    own input (an unknown enum value, a dict key in a pydantic path) and application messages."""
    detail = detail[: MAX_DETAIL_LENGTH + 1]
    if not detail.isprintable():
        detail = "".join(c if c.isprintable() else repr(c)[1:-1] for c in detail)
    if len(detail) > MAX_DETAIL_LENGTH:
        detail = detail[: MAX_DETAIL_LENGTH - 3] + "..."
    return detail


def _pydantic_detail(exc: Any) -> str:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts = []
    for error in errors[:3]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        parts.append(f"{error['msg']} - at `${path}`")
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more errors")
    return _safe_detail("; ".join(parts))


def _describe(fn: object) -> str:
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__qualname__", repr(fn))
    return f"{name} at {code.co_filename}:{code.co_firstlineno}" if code else name
