"""The pydantic front end: payloads that pydantic validates, to the IR, through pydantic's JSON Schema.

typed-ss validates pydantic payloads with pydantic and sends them with
``model_dump_json(by_alias=True)``, so the received shape comes from the *serialization* schema and the
sent shape from the *validation* schema, both by alias. Every payload is described in one
``GenerateJsonSchema.generate_definitions`` call, so a model shared by several events is one definition
(``Model``, or ``Model-Input`` and ``Model-Output`` when the two modes differ). Definitions are mapped
back to their classes, so a class that msgspec payloads use too gets one TypeScript name.

Reply types (what a call returns) are described in the same call, in the shape of the way they travel:
a handler's return value as the server sends it, a client's answer as the server validates it.

Received objects have every property: pydantic writes every field, defaulted or not (its schema only
lists the undefaulted ones as required). Sent objects may leave out a property that the schema does
not require, except one with a ``const`` value: a discriminator such as ``type: Literal["join"] =
"join"`` has to be sent for a tagged union to validate, and makes the TypeScript union narrowable.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import pydantic
from pydantic.json_schema import GenerateJsonSchema

from typed_ss.codegen import ir
from typed_ss.codegen.errors import CodegenError, Where
from typed_ss.codegen.ir import Flavor, Named
from typed_ss.typeinfo import class_doc

if TYPE_CHECKING:
    from typed_ss.contract import EventContract

__all__ = ["Converted", "convert"]

Mode = Literal["serialization", "validation"]

_MODES: Final[dict[str, tuple[Mode, Flavor]]] = {
    "client_to_server": ("validation", "sent"),
    "server_to_client": ("serialization", "received"),
}
_DEF_NAME = re.compile(r"(?P<base>.*?)(?:-(?P<mode>Input|Output))?(?P<occurrence>__\d+)?")
_UNSUPPORTED_KEYWORDS: Final = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "dependentSchemas",
        "contains",
        "unevaluatedProperties",
    }
)
_FORMATS: Final = {
    "date-time": "ISO 8601 date and time",
    "date": "ISO 8601 date",
    "time": "ISO 8601 time",
    "duration": "ISO 8601 duration",
    "uuid": "UUID",
    "binary": "bytes",
    "base64": "base64-encoded bytes",
    "email": "email address",
    "uri": "URI",
}


@dataclass(frozen=True)
class Converted:
    """What the pydantic front end made of a contract's pydantic payloads."""

    payloads: dict[tuple[str, str], ir.Node]
    """Each event's payload type, by (event name, direction), references unresolved."""
    named: list[Named]
    """The named types those payloads (and replies) use (models, enums, dataclasses), keyed by class
    where known."""
    replies: dict[tuple[str, str], ir.Node] = field(default_factory=dict)
    """The reply type of each event given as a reply, by (event name, direction), references
    unresolved."""


@dataclass(frozen=True)
class _Item:
    """One type to describe: an event's payload, or its reply (which travels the other way)."""

    key: tuple[str, str, bool]
    """(event name, event direction, whether it is the reply)."""
    type: object
    travels: str
    """The direction the type travels in, which decides its mode and flavor."""
    where: Where


def convert(events: list[EventContract], replies: Sequence[tuple[EventContract, Where]] = ()) -> Converted:
    """The payload types of ``events``, the reply types of the events in ``replies`` (each with where
    its reply is, for error messages), and the named types they use.

    Raises:
        CodegenError: pydantic cannot describe a payload as JSON Schema; names the event and field.
    """
    items = [_Item((e.name, e.direction, False), e.payload_type, e.direction, Where(e)) for e in events]
    for event, where in replies:
        back = "server_to_client" if event.direction == "client_to_server" else "client_to_server"
        items.append(_Item((event.name, event.direction, True), event.reply, back, where))
    classes = _Classes()
    inputs: list[tuple[Any, Any, Any]] = []
    for item in items:
        classes.discover(item.type)
        try:
            core_schema = pydantic.TypeAdapter[Any](item.type).core_schema  # type: ignore[arg-type]
        except Exception as exc:
            raise item.where.unsupported(f"pydantic cannot describe it: {_first_line(exc)}") from exc
        for mode in ("serialization", "validation"):
            inputs.append(((item.key, mode), mode, core_schema))
    try:
        generator = GenerateJsonSchema(by_alias=True, ref_template="#/$defs/{model}")
        mapping, definitions = generator.generate_definitions(inputs)
    except Exception as exc:
        raise _failure(items, exc) from exc

    converter = _Converter({str(name): schema for name, schema in definitions.items()}, classes)
    result = Converted({}, [], {})
    for item in items:
        mode, flavor = _MODES[item.travels]
        schema = mapping[(item.key, mode), mode]
        name, direction, is_reply = item.key
        target = result.replies if is_reply else result.payloads
        target[name, direction] = converter.convert(schema, flavor, item.where)
    result.named.extend(converter.named.values())
    return result


class _Converter:
    """JSON Schema (the subset pydantic writes) to TS nodes; definitions become named types."""

    def __init__(self, definitions: dict[str, Any], classes: _Classes) -> None:
        self.definitions = definitions
        self.classes = classes
        self.named: dict[object, Named] = {}
        # base name -> {"Input"/"Output"/"": definition name}
        self.variants: dict[str, dict[str, str]] = {}
        for name in definitions:
            base, mode = _split(name)
            self.variants.setdefault(base, {})[mode] = name

    def convert(self, schema: Any, flavor: Flavor, where: Where) -> ir.Node:
        if schema is True or schema == {}:
            return ir.UNKNOWN
        if schema is False:
            return ir.NEVER
        if not isinstance(schema, dict):
            raise where.unsupported(f"unexpected JSON Schema {schema!r}")
        unsupported = _UNSUPPORTED_KEYWORDS & schema.keys()
        if unsupported:
            raise where.unsupported(f"JSON Schema keyword {sorted(unsupported)[0]!r} has no TypeScript form")
        if "$ref" in schema:
            return self._ref(schema["$ref"], flavor, where)
        if "const" in schema:
            return _literal(schema["const"], where)
        if "enum" in schema:
            return ir.union(_literal(value, where) for value in schema["enum"])
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                return ir.union(self.convert(member, flavor, where) for member in schema[keyword])
        if "allOf" in schema:
            if len(schema["allOf"]) != 1:
                raise where.unsupported("an intersection (allOf) has no TypeScript form here")
            return self.convert(schema["allOf"][0], flavor, where)
        kind = schema.get("type")
        if isinstance(kind, list):
            return ir.union(self.convert({**schema, "type": k}, flavor, where) for k in kind)
        if kind == "string":
            return ir.STRING
        if kind in ("integer", "number"):
            return ir.NUMBER
        if kind == "boolean":
            return ir.BOOLEAN
        if kind == "null":
            return ir.NULL
        if kind == "array":
            return self._array(schema, flavor, where)
        if kind == "object" or "properties" in schema:
            return self._object(schema, flavor, where)
        if kind is None:
            return ir.UNKNOWN
        raise where.unsupported(f"JSON Schema type {kind!r} has no TypeScript form")

    def _array(self, schema: dict[str, Any], flavor: Flavor, where: Where) -> ir.Node:
        items = schema.get("items")
        if "prefixItems" not in schema:
            return ir.Array(ir.UNKNOWN if items is None else self.convert(items, flavor, where))
        required = schema.get("minItems", len(schema["prefixItems"]))
        elements = tuple(
            ir.TupleElement(self.convert(item, flavor, where), optional=index >= required)
            for index, item in enumerate(schema["prefixItems"])
        )
        rest = None if items is None or items is False else self.convert(items, flavor, where)
        return ir.Tuple(elements, rest)

    def _object(self, schema: dict[str, Any], flavor: Flavor, where: Where) -> ir.Node:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        label = schema.get("title", "object")
        props = []
        for name, prop in properties.items():
            node = self.convert(prop, flavor, where.at(f"field {label}.{name}"))
            optional = flavor == "sent" and name not in required and "const" not in prop
            props.append(ir.Prop(name, node, optional, _property_doc(prop), _property_note(prop)))
        extra = schema.get("additionalProperties")
        if not props:
            if extra is False:
                return ir.Object(())
            values = ir.UNKNOWN if extra in (None, True) else self.convert(extra, flavor, where)
            if "propertyNames" in schema:
                keys = self._keys(schema["propertyNames"], flavor, where)
                return ir.Generic("Partial", (ir.Generic("Record", (keys, values)),))
            return ir.Generic("Record", (ir.STRING, values))
        # Named properties must fit the index signature, so other keys can only be `unknown`.
        return ir.Object(tuple(props), None if extra in (None, False) else ir.UNKNOWN)

    def _keys(self, schema: Any, flavor: Flavor, where: Where) -> ir.Node:
        node = self.convert(schema, flavor, where)
        target = schema
        if isinstance(schema, dict) and "$ref" in schema:
            target = self.definitions.get(schema["$ref"].removeprefix("#/$defs/"), {})
        values = target.get("enum", [target.get("const")]) if isinstance(target, dict) else []
        return node if all(isinstance(v, str) for v in values) else ir.Template(node)

    def _ref(self, ref: str, flavor: Flavor, where: Where) -> ir.Ref:
        name = ref.removeprefix("#/$defs/")
        base, mode = _split(name)
        if mode:
            flavor = "sent" if mode == "Input" else "received"
        cls = self.classes.find(base)
        key: object = cls if cls is not None else base
        if key not in self.named:
            variants = self.variants.get(base, {"": name})
            received = self.definitions[variants.get("Output", variants.get("", name))]
            sent = self.definitions[variants.get("Input", variants.get("", name))]
            doc = received.get("description") or (class_doc(cls) if cls is not None else None)
            entry = Named(key, cls if cls is not None else base, doc)
            self.named[key] = entry  # before descending: recursive models refer back to it
            at = where.at(f"model {received.get('title', base)}")
            entry.received = self.convert(received, "received", at)
            entry.sent = self.convert(sent, "sent", at)
        return ir.Ref(key, flavor)


def _split(name: str) -> tuple[str, str]:
    """``Model-Input__2`` -> (``Model__2``, ``Input``)."""
    match = _DEF_NAME.fullmatch(name)
    assert match is not None  # the pattern matches any string
    return match["base"] + (match["occurrence"] or ""), match["mode"] or ""


def _literal(value: object, where: Where) -> ir.Node:
    if value is None:
        return ir.NULL
    if isinstance(value, str | int | float | bool):
        return ir.Literal(value)
    raise where.unsupported(f"the constant {value!r} has no TypeScript literal type")


def _property_doc(schema: Any) -> str | None:
    """A property's documentation: its description."""
    if not isinstance(schema, dict) or not schema.get("description"):
        return None
    return str(schema["description"])


def _property_note(schema: Any) -> str | None:
    """What the JSDoc of a property says about its type: its format (part of the fingerprint)."""
    if not isinstance(schema, dict):
        return None
    formats = [schema.get("format")] + [
        m.get("format") for m in schema.get("anyOf", []) if isinstance(m, dict)
    ]
    for fmt in formats:
        if fmt:
            return f"Format: {_FORMATS.get(fmt, fmt)}."
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Classes:
    """The classes a pydantic payload uses, found through annotations, to name its definitions."""

    def __init__(self) -> None:
        self.found: dict[int, type] = {}

    def discover(self, tp: object) -> None:
        origin = typing.get_origin(tp)
        if origin is not None:
            for arg in typing.get_args(tp):
                self.discover(arg)
            return
        if not isinstance(tp, type) or id(tp) in self.found:
            return
        if issubclass(tp, pydantic.BaseModel):
            self.found[id(tp)] = tp
            for info in tp.model_fields.values():
                self.discover(info.annotation)
            for computed in tp.model_computed_fields.values():
                self.discover(computed.return_type)
        elif issubclass(tp, enum.Enum):
            self.found[id(tp)] = tp
        elif dataclasses.is_dataclass(tp) or typing.is_typeddict(tp) or hasattr(tp, "_fields"):
            self.found[id(tp)] = tp
            try:
                hints = typing.get_type_hints(tp)
            except Exception:
                return
            for hint in hints.values():
                self.discover(hint)

    def find(self, base: str) -> type | None:
        """The class pydantic named ``base`` (its name, or its module-qualified name), if known."""
        candidates = [
            cls
            for cls in self.found.values()
            if base == _normalize(cls.__name__)
            or base == (qualified := _normalize(f"{cls.__module__}.{cls.__qualname__}"))
            or re.fullmatch(re.escape(qualified) + r"__\d+", base)
        ]
        return candidates[0] if len(candidates) == 1 else None

    def models(self) -> list[type[pydantic.BaseModel]]:
        return [cls for cls in self.found.values() if issubclass(cls, pydantic.BaseModel)]


def _normalize(name: str) -> str:
    """pydantic's own ``GenerateJsonSchema.normalize_name``."""
    return re.sub(r"[^a-zA-Z0-9.\-_]", "_", name).replace(".", "__")


def _failure(items: list[_Item], exc: Exception) -> Exception:
    """The error for a contract pydantic could not describe, naming the event and field at fault."""
    for item in items:
        first, _ = _MODES[item.travels]
        modes: tuple[Mode, Mode] = (first, "serialization" if first == "validation" else "validation")
        for mode in modes:
            try:
                pydantic.TypeAdapter[Any](item.type).json_schema(mode=mode, by_alias=True)  # type: ignore[arg-type]
            except Exception as error:
                return item.where.at(_failing_field(item.type, mode)).unsupported(
                    f"pydantic has no JSON Schema for it: {_first_line(error)}"
                )
    return CodegenError(f"pydantic could not describe the contract's models: {_first_line(exc)}")


def _failing_field(tp: object, mode: Mode) -> str:
    """``field Model.name`` for the innermost field pydantic cannot describe, else ``the payload``."""
    classes = _Classes()
    classes.discover(tp)
    failing = []
    for cls in classes.models():
        for name, info in cls.model_fields.items():
            annotation: Any = info.annotation
            if info.metadata:
                annotation = typing.Annotated[(annotation, *info.metadata)]
            try:
                pydantic.TypeAdapter(annotation).json_schema(mode=mode)
            except Exception:
                failing.append(f"field {cls.__qualname__}.{name}")
    return failing[-1] if failing else "the payload"
