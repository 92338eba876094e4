"""What a payload type is: the type introspection that handlers, events, the contract and codegen share.

One place answers the questions each of them asks of a Python type: how its payloads travel
(:func:`payload_kind`, the rule written once), whether it is a pydantic model (without importing
pydantic), whether msgspec alone decodes it, which classes a msgspec type tree leaves to a hook, which
classes with fields it uses, what its fields are, and how to name it in a message. The answers decide
behaviour (which decoder a handler gets, which check an event makes, which front end the generator
uses), so they must not differ from one module to the next.

It imports nothing from typed_ss, so every other module can use it.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Iterator
from typing import Any, Final, Literal, TypeAlias, TypeGuard

import msgspec
import msgspec.inspect as mi

__all__ = [
    "BINARY_TYPES",
    "PayloadKind",
    "class_doc",
    "classes_in",
    "custom_types",
    "declared_fields",
    "is_plain_class",
    "is_pydantic_model",
    "msgspec_can_decode",
    "origin",
    "payload_kind",
    "plain_class_union",
    "strip_metadata",
    "type_name",
]

PayloadKind: TypeAlias = Literal["binary", "text", "json"]
"""How a payload travels: raw bytes in a binary frame (``bytes``), raw text (``str``), or JSON."""

BINARY_TYPES: Final[tuple[type, ...]] = (bytes, bytearray, memoryview)
"""The payload types that travel as raw bytes in a binary frame."""


def payload_kind(payload_type: object) -> PayloadKind:
    """The wire form of a payload type: ``bytes`` (or ``bytearray``, ``memoryview``) is binary, ``str``
    is text, anything else JSON."""
    if payload_type in BINARY_TYPES:
        return "binary"
    if payload_type is str:
        return "text"
    return "json"


def is_pydantic_model(tp: object) -> TypeGuard[type]:
    """Whether ``tp`` is a pydantic ``BaseModel`` subclass. pydantic is optional: when nothing has
    imported it, no type can be one of its models, so it is not imported here."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def is_plain_class(tp: object) -> bool:
    """A class ``isinstance`` can test: not a parameterised generic (``list[int]``), and not one of
    the classes that refuse instance checks (TypedDict, ``Any``)."""
    if not isinstance(tp, type) or typing.get_origin(tp) is not None:
        return False
    try:
        isinstance(None, tp)
    except TypeError:
        return False
    return True


def plain_class_union(tp: object) -> tuple[type, ...] | None:
    """The members of ``tp`` when it is a union of plain classes (:func:`is_plain_class`), such as
    two untagged msgspec Structs, which an ``isinstance`` check tells apart though no decoder can;
    else ``None``."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    members = typing.get_args(tp)
    if not all(is_plain_class(member) for member in members):
        return None
    return tuple(typing.cast(type, member) for member in members)


def custom_types(info: mi.Type) -> Iterator[mi.CustomType]:
    """Every ``CustomType`` in a msgspec type tree (which may be cyclic): the classes msgspec knows
    nothing about and would hand to a ``dec_hook``/``enc_hook``."""
    seen: set[int] = set()
    pending: list[object] = [info]
    while pending:
        node = pending.pop()
        if isinstance(node, mi.Field):
            node = node.type
        if not isinstance(node, mi.Type) or id(node) in seen:
            continue
        seen.add(id(node))  # recursive structs refer back to themselves
        if isinstance(node, mi.CustomType):
            yield node
        for value in msgspec.structs.asdict(node).values():
            pending.extend(value if isinstance(value, tuple) else (value,))


def msgspec_can_decode(payload_type: object) -> bool:
    """Whether msgspec alone (no pydantic, no ``dec_hook``) decodes ``payload_type`` from JSON."""
    try:
        return not any(custom_types(mi.type_info(payload_type)))
    except TypeError:
        return False


def classes_in(tp: object) -> list[type]:
    """The classes with fields (structs, dataclasses, TypedDicts, NamedTuples, pydantic models) that
    ``tp`` uses, through annotations, outermost first."""
    found: list[type] = []
    pending = [tp]
    while pending:
        current = pending.pop(0)
        if typing.get_origin(current) is not None:
            pending.extend(typing.get_args(current))
            continue
        if not isinstance(current, type) or current in found:
            continue
        has_fields = (
            issubclass(current, msgspec.Struct)
            or dataclasses.is_dataclass(current)
            or typing.is_typeddict(current)
            or hasattr(current, "_fields")
            or is_pydantic_model(current)
        )
        if not has_fields:
            continue
        found.append(current)
        try:
            pending.extend(typing.get_type_hints(current).values())
        except Exception:  # an annotation that does not resolve: its classes are not reachable
            continue
    return found


def declared_fields(tp: object) -> list[tuple[str, object]] | None:
    """``(name, annotation)`` for each field of a pydantic model or a msgspec struct; ``None`` for any
    other type."""
    if not isinstance(tp, type):
        return None
    if is_pydantic_model(tp):
        model_fields: dict[str, Any] = getattr(tp, "model_fields", {})
        return [(name, info.annotation) for name, info in model_fields.items()]
    if issubclass(tp, msgspec.Struct):
        return [(field.name, field.type) for field in msgspec.structs.fields(tp)]
    return None


def strip_metadata(info: mi.Type) -> mi.Type:
    """A msgspec type with its ``Annotated[..., Meta(...)]`` layers removed."""
    while isinstance(info, mi.Metadata):
        info = info.type
    return info


def origin(tp: object) -> Any:
    """The class behind a generic alias (``Page`` for ``Page[int]``), else ``tp`` itself."""
    return typing.get_origin(tp) or tp


def class_doc(cls: object) -> str | None:
    """A class's own docstring, cleaned; not inherited and not the signature dataclasses make up."""
    target = origin(cls)
    doc = getattr(target, "__dict__", {}).get("__doc__")
    if not isinstance(doc, str) or doc.startswith(f"{getattr(target, '__name__', '')}("):
        return None
    return inspect.cleandoc(doc) or None


def type_name(tp: object) -> str:
    """A type as messages name it: a class by its qualified name, anything else by its repr."""
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)
