"""From a server's contract to the named TypeScript types of a generated client.

Every payload type is walked with ``msgspec.inspect.type_info`` (pydantic models through
:mod:`typed_ss.codegen.pydantic`). Classes (structs, dataclasses, TypedDicts, NamedTuples, enums,
pydantic models) become named types, each in two shapes:

- *received*, what the server encodes: every field present, except ``UNSET`` ones and defaulted
  ones of an ``omit_defaults`` struct;
- *sent*, what the server decodes: fields with a default may be left out.

A type whose sent shape differs (itself, or through a type it contains) gets a second declaration,
``NameInput``. Names are collected first and then assigned: a name that two different types share is
replaced by the module-qualified name of each of them, so the output never depends on which event
came first.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import sys
import typing
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from typed_ss.codegen import typescript as ts
from typed_ss.codegen.typescript import Flavor
from typed_ss.contract import Contract, EventContract
from typed_ss.errors import TypedSSError
from typed_ss.events import PayloadKind

__all__ = ["ClientModel", "CodegenError", "EventType", "build", "canonical_types"]


class CodegenError(TypedSSError):
    """A payload type that the generator cannot express in TypeScript; the message names the event
    and the field."""


@dataclass(frozen=True)
class EventType:
    """One event of the generated client, its payload type resolved to declared names."""

    name: str
    kind: PayloadKind
    payload: ts.Node
    doc: str | None = None


@dataclass(frozen=True)
class ClientModel:
    """Everything a renderer needs: the declarations, sorted by name, and both event maps."""

    fingerprint: str
    declarations: tuple[ts.Declaration, ...]
    client_to_server: tuple[EventType, ...]
    server_to_client: tuple[EventType, ...]


BINARY_OUT: Final = ts.Name("BinaryOut")
BINARY_IN: Final = ts.Name("BinaryIn")

GENERATED_NAMES: Final = frozenset(
    [
        "BinaryOut",
        "BinaryIn",
        "BlobLike",
        "ClientToServerEvents",
        "ServerToClientEvents",
        "ClientEventName",
        "ServerEventName",
        "PayloadArgs",
        "EmitArgs",
        "ServerError",
        "ReloadNeeded",
        "ContractMismatch",
        "ContractStatus",
        "TypedClient",
        "Unsubscribe",
        "Listener",
        "Kind",
        "CONTRACT",
        "CLIENT_EVENT_KINDS",
        "RELOAD_NEEDED_CODE",
        "connect",
        "SS",
        "withContract",
        "isBinary",
        "isBlobLike",
        "logError",
    ]
)
"""Names the rendered module declares itself."""

TS_GLOBALS: Final = frozenset(
    [
        "Array",
        "ArrayBuffer",
        "ArrayBufferView",
        "ArrayLike",
        "Blob",
        "Boolean",
        "DataView",
        "Date",
        "Error",
        "Function",
        "JSON",
        "Map",
        "Number",
        "Object",
        "Omit",
        "Partial",
        "Pick",
        "Promise",
        "PromiseLike",
        "Readonly",
        "ReadonlyArray",
        "Record",
        "RegExp",
        "Required",
        "Set",
        "String",
        "Symbol",
        "TypeError",
        "Uint8Array",
        "WeakMap",
        "globalThis",
    ]
)
"""TypeScript built-ins that the generated code uses; a payload type must not shadow them."""

_RESERVED: Final = GENERATED_NAMES | TS_GLOBALS | ts.RESERVED_WORDS

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


@dataclass(frozen=True)
class Where:
    """Where in the contract a type is, for error messages."""

    event: EventContract
    path: str = "the payload"

    def at(self, path: str) -> Where:
        return Where(self.event, path)

    def unsupported(self, problem: str) -> CodegenError:
        direction = "client to server" if self.event.direction == "client_to_server" else "server to client"
        return CodegenError(
            f"cannot generate TypeScript for event {self.event.name!r} ({direction}), {self.path}: {problem}"
        )


@dataclass
class Named:
    """A named type before naming: both shapes, with references still unresolved."""

    key: object
    """What identifies the type: its class (or generic alias), or a string for an unknown source."""
    source: object
    """Where its name comes from: a class, a generic alias or a plain name."""
    doc: str | None
    received: ts.Node = ts.NEVER
    sent: ts.Node = ts.NEVER


class Walker:
    """Walks msgspec type trees into TS nodes, registering named types in ``named``."""

    def __init__(self) -> None:
        self.named: dict[object, Named] = {}

    def convert(self, info: mi.Type, flavor: Flavor, where: Where) -> ts.Node:
        if isinstance(info, mi.Metadata):
            return self.convert(info.type, flavor, where)
        if isinstance(info, mi.AnyType | mi.RawType):
            return ts.UNKNOWN
        if isinstance(info, mi.NoneType):
            return ts.NULL
        if isinstance(info, mi.BoolType):
            return ts.BOOLEAN
        if isinstance(info, mi.IntType | mi.FloatType):
            return ts.NUMBER
        if isinstance(info, mi.StrType) or type(info) in _FORMATS:
            return ts.STRING
        if isinstance(info, mi.LiteralType):
            return ts.union(ts.NULL if value is None else ts.Literal(value) for value in info.values)
        if isinstance(info, mi.UnionType):
            return ts.union(self.convert(member, flavor, where) for member in info.types)
        if isinstance(info, mi.CollectionType):
            return ts.Array(self.convert(info.item_type, flavor, where))
        if isinstance(info, mi.TupleType):
            return ts.Tuple(tuple(ts.TupleElement(self.convert(t, flavor, where)) for t in info.item_types))
        if isinstance(info, mi.DictType | mi.FrozenDictType):
            return self._dict(info.key_type, info.value_type, flavor, where)
        if isinstance(info, mi.EnumType | mi.StructType | mi.DataclassType | mi.TypedDictType):
            return self._named(info, flavor, where)
        if isinstance(info, mi.NamedTupleType):
            return self._named(info, flavor, where)
        if isinstance(info, mi.CustomType):
            raise where.unsupported(f"{_describe(info.cls)} has no JSON form that msgspec knows")
        raise where.unsupported(f"{type(info).__name__} has no TypeScript form")

    def _dict(self, key: mi.Type, value: mi.Type, flavor: Flavor, where: Where) -> ts.Node:
        values = self.convert(value, flavor, where)
        while isinstance(key, mi.Metadata):
            key = key.type
        if isinstance(key, mi.LiteralType):
            keys = ts.union(ts.Literal(str(v)) for v in key.values if v is not None)
            return ts.Generic("Partial", (ts.Generic("Record", (keys, values)),))
        if isinstance(key, mi.EnumType) and not issubclass(key.cls, enum.Flag):
            ref = self._named(key, flavor, where)
            strings = all(isinstance(member.value, str) for member in key.cls)
            keys = ref if strings else ts.Template(ref)
            return ts.Generic("Partial", (ts.Generic("Record", (keys, values)),))
        return ts.Generic("Record", (ts.STRING, values))  # JSON object keys are strings

    def _named(self, info: Any, flavor: Flavor, where: Where) -> ts.Ref:
        key = info.cls
        if key not in self.named:
            entry = Named(key, key, class_doc(key))
            self.named[key] = entry  # before descending: recursive types refer back to it
            entry.received, entry.sent = self._bodies(info, where)
        return ts.Ref(key, flavor)

    def _bodies(self, info: Any, where: Where) -> tuple[ts.Node, ts.Node]:
        if isinstance(info, mi.EnumType):
            body = self._enum(info.cls, where)
            return body, body
        label = _describe(info.cls)
        fields: tuple[mi.Field, ...] = info.fields
        if isinstance(info, mi.StructType):
            omit_defaults = bool(_origin(info.cls).__struct_config__.omit_defaults)
        shapes: list[ts.Node] = []
        for flavor in typing.get_args(Flavor):
            props: list[ts.Prop] = []
            if isinstance(info, mi.StructType) and info.tag_field is not None:
                # The tag is always written, and required here even where msgspec would not need it.
                assert info.tag is not None  # msgspec sets both or neither
                props.append(ts.Prop(info.tag_field, ts.Literal(info.tag)))
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
                props.append(ts.Prop(f.encode_name, node, optional, field_doc(f.type), field_note(f.type)))
            if isinstance(info, mi.NamedTupleType) or (isinstance(info, mi.StructType) and info.array_like):
                shapes.append(ts.Tuple(tuple(ts.TupleElement(p.type, p.name, p.optional) for p in props)))
            else:
                shapes.append(ts.Object(tuple(props)))
        received, sent = shapes
        return received, sent

    @staticmethod
    def _enum(cls: type[enum.Enum], where: Where) -> ts.Node:
        if issubclass(cls, enum.Flag):
            return ts.NUMBER  # any combination of the flags decodes
        members: list[ts.Node] = []
        for member in cls:
            value = member.value
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise where.unsupported(
                    f"enum {_describe(cls)} has the value {value!r}; only str and int values have a JSON form"
                )
            members.append(ts.Literal(value))
        return ts.union(members)


def build(contract: Contract) -> ClientModel:
    """The client model of ``contract``.

    Raises:
        CodegenError: a payload type has no TypeScript form; the message names the event and field.
    """
    types = _client_types(contract)
    return ClientModel(
        contract.fingerprint, types.declarations, types.client_to_server, types.server_to_client
    )


def canonical_types(contract: Contract) -> str:
    """Everything the generated client says about ``contract`` except the source's documentation,
    as one string: each declaration and each event's name, wire kind and payload type, written as the
    generated code writes them. :attr:`Contract.fingerprint` hashes it, so two contracts whose
    generated clients differ by more than documentation never share a fingerprint.

    The typed-ss version, the banner and the runtime code are left out: they are not the contract,
    and a page need not reload because the server's typed-ss was upgraded.

    Raises:
        CodegenError: a payload type has no TypeScript form; the message names the event and field.
    """
    types = _client_types(contract)

    def events(direction: tuple[EventType, ...]) -> list[list[str]]:
        # Inline object types write no JSDoc, so the payload's text holds no documentation.
        return [[event.name, event.kind, event.payload.write()] for event in direction]

    document = {
        # Written, not compared as nodes: what counts is what the generated code says.
        "declarations": [ts.without_docs(declaration).write() for declaration in types.declarations],
        "client_to_server": events(types.client_to_server),
        "server_to_client": events(types.server_to_client),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class _ClientTypes:
    declarations: tuple[ts.Declaration, ...]
    client_to_server: tuple[EventType, ...]
    server_to_client: tuple[EventType, ...]


def _client_types(contract: Contract) -> _ClientTypes:
    """The declarations and event maps of ``contract``'s client: all of the model but its fingerprint,
    which is computed from them."""
    walker = Walker()
    payloads: dict[tuple[str, str], ts.Node] = {}
    through_pydantic: list[EventContract] = []
    for event in contract.events:
        if event.kind != "json":
            continue
        info = _type_info(event)
        if info is None:
            through_pydantic.append(event)
            continue
        flavor: Flavor = "sent" if event.direction == "client_to_server" else "received"
        payloads[event.name, event.direction] = walker.convert(info, flavor, Where(event))
    if through_pydantic:
        from typed_ss.codegen import pydantic as pydantic_types

        converted = pydantic_types.convert(through_pydantic)
        payloads.update(converted.payloads)
        for entry in converted.named:
            walker.named.setdefault(entry.key, entry)
    return _resolve(contract, walker.named, payloads)


def _type_info(event: EventContract) -> mi.Type | None:
    """msgspec's view of the payload type, or ``None`` when pydantic has to describe it."""
    try:
        info = mi.type_info(event.payload_type)
    except Exception as exc:  # msgspec raises TypeError (and sometimes others) for types it rejects
        if any(_is_pydantic_model(cls) for cls in _classes_in(event.payload_type)):
            return None
        where = Where(event).at(_failing_field(event.payload_type))
        raise where.unsupported(f"msgspec cannot describe it: {exc}") from exc
    if any(_is_pydantic_model(node.cls) for node in _custom_types(info)):
        return None
    return info


def _classes_in(tp: object) -> list[type]:
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
            or _is_pydantic_model(current)
        )
        if not has_fields:
            continue
        found.append(current)
        try:
            pending.extend(typing.get_type_hints(current).values())
        except Exception:
            continue
    return found


def _failing_field(tp: object) -> str:
    """``field Cls.name`` for the innermost field msgspec cannot describe, else ``the payload``."""
    failing = "the payload"
    for cls in _classes_in(tp):
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:
            continue
        for name, hint in hints.items():
            if name.startswith("__") or typing.get_origin(hint) is typing.ClassVar:
                continue
            try:
                mi.type_info(hint)
            except Exception:
                failing = f"field {_describe(cls)}.{name}"
    return failing


def _resolve(
    contract: Contract, named: dict[object, Named], payloads: dict[tuple[str, str], ts.Node]
) -> _ClientTypes:
    names = assign_names([entry.source for entry in named.values()])
    by_key = {entry.key: name for entry, name in zip(named.values(), names, strict=True)}
    differs = _sent_shape_differs(named)
    used = set(by_key.values())
    input_names: dict[object, str] = {}
    for key in named:
        if key in differs:
            input_names[key] = _unique(by_key[key] + "Input", used, f"{by_key[key]}_Input")

    def name_of(ref: ts.Ref) -> ts.Node:
        if ref.flavor == "sent" and ref.key in input_names:
            return ts.Name(input_names[ref.key])
        return ts.Name(by_key[ref.key])

    declarations = []
    for key, entry in named.items():
        declarations.append(ts.Declaration(by_key[key], ts.substitute(entry.received, name_of), entry.doc))
        if key in input_names:
            note = "The shape the client sends: fields with a default may be left out."
            doc = f"{entry.doc}\n\n{note}" if entry.doc else note
            declarations.append(ts.Declaration(input_names[key], ts.substitute(entry.sent, name_of), doc))
    declarations.sort(key=lambda d: (d.name.lower(), d.name))

    def events(direction: str) -> tuple[EventType, ...]:
        result = []
        for event in contract.events:
            if event.direction != direction:
                continue
            node: ts.Node
            if event.kind == "binary":
                node = BINARY_OUT if direction == "client_to_server" else BINARY_IN
            elif event.kind == "text":
                node = ts.STRING
            else:
                node = ts.substitute(payloads[event.name, direction], name_of)
            result.append(EventType(event.name, event.kind, node, event.doc))
        return tuple(result)

    return _ClientTypes(tuple(declarations), events("client_to_server"), events("server_to_client"))


def _sent_shape_differs(named: dict[object, Named]) -> set[object]:
    """The keys whose sent shape differs from the received one, itself or through a type it contains."""

    def erased(node: ts.Node) -> ts.Node:
        return ts.substitute(node, lambda ref: ts.Ref(ref.key, "received"))

    differs = {key for key, entry in named.items() if erased(entry.received) != erased(entry.sent)}
    users: dict[object, set[object]] = defaultdict(set)
    for key, entry in named.items():
        for ref in ts.refs(entry.sent):
            users[ref.key].add(key)
    pending = list(differs)
    while pending:
        for user in users[pending.pop()]:
            if user not in differs:
                differs.add(user)
                pending.append(user)
    return differs


# --- names ----------------------------------------------------------------------------------------


def assign_names(sources: list[object]) -> list[str]:
    """A TypeScript name for each source, in order: its own name when no other source has the same
    one, else its module-qualified name; reserved names get a trailing ``_``; any clash left is
    numbered in the order given."""
    short = [_short_name(source) for source in sources]
    count: dict[str, int] = defaultdict(int)
    for name in short:
        count[name] += 1
    used: set[str] = set()
    names = []
    for source, name in zip(sources, short, strict=True):
        if count[name] > 1:
            name = _qualified_name(source)
        while name in _RESERVED:
            name += "_"
        names.append(_unique(name, used, f"{name}_2"))
    return names


def _unique(name: str, used: set[str], fallback: str) -> str:
    candidate = name if name not in used else fallback
    number = 2
    while candidate in used or candidate in _RESERVED:
        number += 1
        candidate = f"{name}_{number}"
    used.add(candidate)
    return candidate


def _identifier(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_$]+", "_", text).strip("_") or "Type"
    return f"_{name}" if name[0].isdigit() else name


def _fragment(arg: object) -> str:
    if isinstance(arg, type):
        return arg.__name__
    if typing.get_origin(arg) is not None and not _is_annotated(arg):
        return "_".join([_fragment(typing.get_origin(arg)), *(_fragment(a) for a in typing.get_args(arg))])
    return "None" if arg is None or arg is type(None) else repr(arg)


def _short_name(source: object) -> str:
    if isinstance(source, str):
        return _identifier(source)
    origin = typing.get_origin(source)
    if origin is not None:  # a generic alias: Page[int] -> Page_int
        return _identifier("_".join([origin.__name__, *(_fragment(a) for a in typing.get_args(source))]))
    return _identifier(getattr(source, "__name__", repr(source)))


def _qualified_name(source: object) -> str:
    if isinstance(source, str):
        return _identifier(source)
    cls = _origin(source)
    module = getattr(cls, "__module__", "")
    qualname = getattr(cls, "__qualname__", getattr(cls, "__name__", ""))
    suffix = _short_name(source)[len(_identifier(getattr(cls, "__name__", ""))) :]
    return _identifier(f"{module}.{qualname}".replace("<locals>", "locals")) + suffix


# --- docs -----------------------------------------------------------------------------------------


def class_doc(cls: object) -> str | None:
    """A class's own docstring, cleaned; not inherited and not the signature dataclasses make up."""
    target = _origin(cls)
    doc = getattr(target, "__dict__", {}).get("__doc__")
    if not isinstance(doc, str) or doc.startswith(f"{getattr(target, '__name__', '')}("):
        return None
    return inspect.cleandoc(doc) or None


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
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):  # describe X in `X | None`
        members = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(members) == 1:
            info = members[0]
            while isinstance(info, mi.Metadata):
                info = info.type
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


# --- helpers --------------------------------------------------------------------------------------


def _origin(cls: object) -> Any:
    return typing.get_origin(cls) or cls


def _is_annotated(tp: object) -> bool:
    return typing.get_origin(tp) is typing.Annotated


def _describe(tp: object) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def _is_pydantic_model(cls: object) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)


def _custom_types(info: mi.Type) -> Iterator[mi.CustomType]:
    """Every ``CustomType`` in a msgspec type tree (which may be cyclic)."""
    seen: set[int] = set()
    pending: list[object] = [info]
    while pending:
        node = pending.pop()
        if isinstance(node, mi.Field):
            node = node.type
        if not isinstance(node, mi.Type) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, mi.CustomType):
            yield node
        for value in msgspec.structs.asdict(node).values():
            pending.extend(value if isinstance(value, tuple) else (value,))
