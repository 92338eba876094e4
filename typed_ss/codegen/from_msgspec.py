"""The msgspec front end: payload types, as ``msgspec.inspect.type_info`` describes them, to the IR.

Classes (structs, dataclasses, TypedDicts, NamedTuples, enums) become :class:`~typed_ss.codegen.ir.Named`
types, each in two shapes:

- *received*, what the server encodes: every field present, except ``UNSET`` ones and defaulted
  ones of an ``omit_defaults`` struct;
- *sent*, what the server decodes: fields with a default may be left out.

A payload that uses a pydantic model is not described here: :func:`type_info` returns ``None`` for it,
and :mod:`~typed_ss.codegen.from_pydantic` describes it instead. Reply types (what a call returns) are
described the same way, through :func:`type_info_of`.
"""

from __future__ import annotations

import enum
import typing
from typing import TYPE_CHECKING, Any, Final

import msgspec
import msgspec.inspect as mi

from typed_ss.codegen import ir
from typed_ss.codegen.errors import Where
from typed_ss.codegen.ir import Flavor
from typed_ss.typeinfo import (
    class_doc,
    classes_in,
    custom_types,
    is_pydantic_model,
    origin,
    strip_metadata,
    type_name,
)

if TYPE_CHECKING:
    from typed_ss.contract import EventContract

__all__ = ["Walker", "field_doc", "field_note", "type_info", "type_info_of"]

_FORMATS: Final[dict[type[mi.Type], str]] = {
    mi.DateTimeType: "ISO 8601 date and time",
    mi.DateType: "ISO 8601 date",
    mi.TimeType: "ISO 8601 time",
    mi.TimeDeltaType: "ISO 8601 duration",
    mi.UUIDType: "UUID",
    mi.DecimalType: "decimal number, as a string",
    mi.BytesType: "base64-encoded bytes",
    mi.ByteArrayType: "base64-encoded bytes",
    mi.MemoryViewType: "base64-encoded bytes",
}
_CONSTRAINTS: Final = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "pattern")


def type_info(event: EventContract) -> mi.Type | None:
    """msgspec's view of the event's payload type, or ``None`` when pydantic has to describe it.

    Raises:
        CodegenError: msgspec cannot describe the type and no pydantic model is involved.
    """
    return type_info_of(event.payload_type, Where(event))


def type_info_of(tp: object, where: Where) -> mi.Type | None:
    """msgspec's view of ``tp`` (a payload or reply type, at ``where`` in the contract), or ``None``
    when pydantic has to describe it.

    Raises:
        CodegenError: msgspec cannot describe the type and no pydantic model is involved.
    """
    try:
        info = mi.type_info(tp)
    except Exception as exc:  # msgspec raises TypeError (and sometimes others) for types it rejects
        if any(is_pydantic_model(cls) for cls in classes_in(tp)):
            return None
        raise where.at(_failing_field(tp)).unsupported(f"msgspec cannot describe it: {exc}") from exc
    if any(is_pydantic_model(node.cls) for node in custom_types(info)):
        return None
    return info


class Walker:
    """Walks msgspec type trees into IR nodes, registering named types in ``named``."""

    def __init__(self) -> None:
        self.named: dict[object, ir.Named] = {}

    def convert(self, info: mi.Type, flavor: Flavor, where: Where) -> ir.Node:
        """The IR of ``info`` in one shape; classes become references to :attr:`named` entries.

        Raises:
            CodegenError: a type in ``info`` has no TypeScript form.
        """
        if isinstance(info, mi.Metadata):
            return self.convert(info.type, flavor, where)
        if isinstance(info, mi.AnyType | mi.RawType):
            return ir.UNKNOWN
        if isinstance(info, mi.NoneType):
            return ir.NULL
        if isinstance(info, mi.BoolType):
            return ir.BOOLEAN
        if isinstance(info, mi.IntType | mi.FloatType):
            return ir.NUMBER
        if isinstance(info, mi.StrType) or type(info) in _FORMATS:
            return ir.STRING
        if isinstance(info, mi.LiteralType):
            return ir.union(ir.NULL if value is None else ir.Literal(value) for value in info.values)
        if isinstance(info, mi.UnionType):
            return ir.union(self.convert(member, flavor, where) for member in info.types)
        if isinstance(info, mi.CollectionType):
            return ir.Array(self.convert(info.item_type, flavor, where))
        if isinstance(info, mi.TupleType):
            return ir.Tuple(tuple(ir.TupleElement(self.convert(t, flavor, where)) for t in info.item_types))
        if isinstance(info, mi.DictType | mi.FrozenDictType):
            return self._dict(info.key_type, info.value_type, flavor, where)
        if isinstance(info, mi.EnumType | mi.StructType | mi.DataclassType | mi.TypedDictType):
            return self._named(info, flavor, where)
        if isinstance(info, mi.NamedTupleType):
            return self._named(info, flavor, where)
        if isinstance(info, mi.CustomType):
            raise where.unsupported(f"{_describe(info.cls)} has no JSON form that msgspec knows")
        raise where.unsupported(f"{type(info).__name__} has no TypeScript form")

    def _dict(self, key: mi.Type, value: mi.Type, flavor: Flavor, where: Where) -> ir.Node:
        values = self.convert(value, flavor, where)
        key = strip_metadata(key)
        if isinstance(key, mi.LiteralType):
            keys = ir.union(ir.Literal(str(v)) for v in key.values if v is not None)
            return ir.Generic("Partial", (ir.Generic("Record", (keys, values)),))
        if isinstance(key, mi.EnumType) and not issubclass(key.cls, enum.Flag):
            ref = self._named(key, flavor, where)
            strings = all(isinstance(member.value, str) for member in key.cls)
            keys = ref if strings else ir.Template(ref)
            return ir.Generic("Partial", (ir.Generic("Record", (keys, values)),))
        return ir.Generic("Record", (ir.STRING, values))  # JSON object keys are strings

    def _named(self, info: Any, flavor: Flavor, where: Where) -> ir.Ref:
        key = info.cls
        if key not in self.named:
            entry = ir.Named(key, key, class_doc(key))
            self.named[key] = entry  # before descending: recursive types refer back to it
            entry.received, entry.sent = self._bodies(info, where)
        return ir.Ref(key, flavor)

    def _bodies(self, info: Any, where: Where) -> tuple[ir.Node, ir.Node]:
        if isinstance(info, mi.EnumType):
            body = self._enum(info.cls, where)
            return body, body
        label = _describe(info.cls)
        fields: tuple[mi.Field, ...] = info.fields
        if isinstance(info, mi.StructType):
            omit_defaults = bool(origin(info.cls).__struct_config__.omit_defaults)
        shapes: list[ir.Node] = []
        for flavor in typing.get_args(Flavor):
            props: list[ir.Prop] = []
            if isinstance(info, mi.StructType) and info.tag_field is not None:
                # The tag is always written, and required here even where msgspec would not need it.
                assert info.tag is not None  # msgspec sets both or neither
                props.append(ir.Prop(info.tag_field, ir.Literal(info.tag)))
            for f in fields:
                unset = (
                    not f.required
                    and f.default is msgspec.NODEFAULT
                    and f.default_factory is msgspec.NODEFAULT
                )
                if isinstance(info, mi.TypedDictType) or flavor == "sent":
                    optional = not f.required
                elif isinstance(info, mi.StructType):
                    optional = unset or (omit_defaults and not f.required)
                elif isinstance(info, mi.DataclassType):
                    optional = unset
                else:  # a NamedTuple is encoded with every element
                    optional = False
                node = self.convert(f.type, flavor, where.at(f"field {label}.{f.name}"))
                props.append(ir.Prop(f.encode_name, node, optional, field_doc(f.type), field_note(f.type)))
            if isinstance(info, mi.NamedTupleType) or (isinstance(info, mi.StructType) and info.array_like):
                shapes.append(ir.Tuple(tuple(ir.TupleElement(p.type, p.name, p.optional) for p in props)))
            else:
                shapes.append(ir.Object(tuple(props)))
        received, sent = shapes
        return received, sent

    @staticmethod
    def _enum(cls: type[enum.Enum], where: Where) -> ir.Node:
        if issubclass(cls, enum.Flag):
            return ir.NUMBER  # any combination of the flags decodes
        members: list[ir.Node] = []
        for member in cls:
            value = member.value
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise where.unsupported(
                    f"enum {_describe(cls)} has the value {value!r}; only str and int values have a JSON form"
                )
            members.append(ir.Literal(value))
        return ir.union(members)


def field_doc(info: mi.Type) -> str | None:
    """A field's documentation: the titles and descriptions of its ``Meta`` annotations."""
    lines: list[str] = []
    while isinstance(info, mi.Metadata):
        extra = info.extra_json_schema or {}
        lines.extend(str(extra[key]) for key in ("title", "description") if extra.get(key))
        info = info.type
    return "\n".join(lines) or None


def field_note(info: mi.Type) -> str | None:
    """What the JSDoc of a field says about its type: its wire format and its constraints. Unlike
    :func:`field_doc`, this follows from the type, so it is part of the contract fingerprint."""
    lines: list[str] = []
    constraints: list[str] = []
    info = strip_metadata(info)  # msgspec keeps constraints on the type nodes themselves
    if isinstance(info, mi.UnionType):  # describe X in `X | None`
        members = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(members) == 1:
            info = strip_metadata(members[0])
    fmt = _FORMATS.get(type(info))
    if fmt is not None:
        tz = getattr(info, "tz", None)
        if tz is not None:
            fmt += " with a time zone" if tz else " without a time zone"
        lines.append(f"Format: {fmt}.")
    for name in _CONSTRAINTS:
        value = getattr(info, name, None)
        if value is not None:
            constraints.append(f"{name}={value!r}")
    if constraints:
        lines.append(f"Constraints: {', '.join(constraints)}.")
    return "\n".join(lines) or None


def _failing_field(tp: object) -> str:
    """``field Cls.name`` for the innermost field msgspec cannot describe, else ``the payload``."""
    failing = "the payload"
    for cls in classes_in(tp):
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:  # an annotation that does not resolve: nothing to blame in this class
            continue
        for name, hint in hints.items():
            if name.startswith("__") or typing.get_origin(hint) is typing.ClassVar:
                continue
            try:
                mi.type_info(hint)
            except Exception:
                failing = f"field {_describe(cls)}.{name}"
    return failing


def _describe(tp: object) -> str:
    # type_name, without the "typing." prefixes that make a long Union or Literal hard to read.
    return type_name(tp) if isinstance(tp, type) else repr(tp).replace("typing.", "")
