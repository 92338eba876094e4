"""A small TypeScript type AST: just the types generated payloads need, each node writing itself.

Nodes are frozen dataclasses, so two nodes compare equal when they write the same type. A :class:`Ref`
points at a named type that the model has not named yet; :func:`substitute` replaces every ``Ref``
once names are known, and ``Ref.write`` refuses to run before that.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal as TypingLiteral
from typing import TypeAlias, TypeVar

__all__ = [
    "Array",
    "Declaration",
    "Generic",
    "Keyword",
    "Literal",
    "Name",
    "Node",
    "Object",
    "Prop",
    "Ref",
    "Template",
    "Tuple",
    "TupleElement",
    "Union",
    "doc_comment",
    "is_identifier",
    "property_name",
    "refs",
    "substitute",
    "union",
    "without_docs",
]

Flavor: TypeAlias = TypingLiteral["received", "sent"]
"""Which shape of a named type: what the client receives (encoded) or sends (decoded)."""

_T = TypeVar("_T")

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

RESERVED_WORDS = frozenset(
    [
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "import",
        "in",
        "instanceof",
        "new",
        "null",
        "return",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "as",
        "implements",
        "interface",
        "let",
        "package",
        "private",
        "protected",
        "public",
        "static",
        "yield",
        "any",
        "boolean",
        "number",
        "string",
        "symbol",
        "object",
        "bigint",
        "never",
        "unknown",
        "undefined",
        "await",
        "async",
        "type",
        "declare",
        "readonly",
        "keyof",
        "infer",
        "is",
        "asserts",
        "module",
        "namespace",
        "require",
        "global",
        "of",
    ]
)


def is_identifier(text: str) -> bool:
    """Whether ``text`` can stand unquoted as a property name or tuple label."""
    return _IDENTIFIER.fullmatch(text) is not None


def property_name(name: str) -> str:
    """A property key: bare when it is an identifier, else a JSON (and so TS) string literal."""
    return name if is_identifier(name) else json.dumps(name, ensure_ascii=False)


def doc_comment(text: str | None, indent: str = "") -> str:
    """A JSDoc block for ``text`` (``""`` for none), every line prefixed by ``indent``; ``*/`` inside
    the text is escaped so it cannot end the comment."""
    if not text or not text.strip():
        return ""
    lines = [line.rstrip() for line in text.strip().replace("*/", "*\\/").splitlines()]
    if len(lines) == 1:
        return f"{indent}/** {lines[0]} */\n"
    body = "".join(f"{indent} *{' ' + line if line else ''}\n" for line in lines)
    return f"{indent}/**\n{body}{indent} */\n"


class Node:
    """A TypeScript type."""

    # Binding strength: a union (0) needs parentheses inside an array type or an optional tuple element.
    precedence = 2

    def write(self) -> str:
        raise NotImplementedError

    def write_tight(self) -> str:
        """Written so that a postfix (``[]``, ``?``) applies to the whole type."""
        text = self.write()
        return f"({text})" if self.precedence < 2 else text


@dataclass(frozen=True)
class Keyword(Node):
    """``number``, ``string``, ``boolean``, ``null``, ``unknown``, ``never``."""

    name: str

    def write(self) -> str:
        return self.name


NUMBER = Keyword("number")
STRING = Keyword("string")
BOOLEAN = Keyword("boolean")
NULL = Keyword("null")
UNKNOWN = Keyword("unknown")
NEVER = Keyword("never")


@dataclass(frozen=True)
class Literal(Node):
    """A literal type: ``"red"``, ``1``, ``true``."""

    value: str | int | float | bool

    def write(self) -> str:
        return json.dumps(self.value, ensure_ascii=False)


@dataclass(frozen=True)
class Name(Node):
    """A type referred to by name: a generated declaration or a TypeScript built-in."""

    text: str

    def write(self) -> str:
        return self.text


@dataclass(frozen=True)
class Ref(Node):
    """A named payload type, by the model's key, in one of its two shapes; named by :func:`substitute`."""

    key: object
    flavor: Flavor

    def write(self) -> str:
        raise RuntimeError(f"unresolved reference to {self.key!r}")


@dataclass(frozen=True)
class Array(Node):
    item: Node

    def write(self) -> str:
        return f"{self.item.write_tight()}[]"


@dataclass(frozen=True)
class TupleElement:
    type: Node
    label: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class Tuple(Node):
    """``[number, string]``, or labelled ``[x: number, y?: number]`` when every label is an identifier."""

    elements: tuple[TupleElement, ...]
    rest: Node | None = None
    """The type of any further elements: ``[number, ...string[]]``."""

    def write(self) -> str:
        labelled = (
            bool(self.elements)
            and self.rest is None
            and all(
                e.label is not None and is_identifier(e.label) and e.label not in RESERVED_WORDS
                for e in self.elements
            )
        )
        parts = []
        for element in self.elements:
            if labelled:
                parts.append(f"{element.label}{'?' if element.optional else ''}: {element.type.write()}")
            elif element.optional:
                parts.append(f"{element.type.write_tight()}?")
            else:
                parts.append(element.type.write())
        if self.rest is not None:
            parts.append(f"...{self.rest.write_tight()}[]")
        return f"[{', '.join(parts)}]"


@dataclass(frozen=True)
class Union(Node):
    """Build with :func:`union`, which flattens, de-duplicates and simplifies."""

    members: tuple[Node, ...]
    precedence = 0

    def write(self) -> str:
        return " | ".join(member.write() for member in self.members)


def union(members: Iterable[Node]) -> Node:
    """The union of ``members``, nested unions flattened, duplicates dropped (first one kept),
    ``never`` for none and the member itself for one; ``unknown`` absorbs everything."""
    flat: list[Node] = []
    for member in members:
        for item in member.members if isinstance(member, Union) else (member,):
            if item == UNKNOWN:
                return UNKNOWN
            if item != NEVER and item not in flat:
                flat.append(item)
    if not flat:
        return NEVER
    return flat[0] if len(flat) == 1 else Union(tuple(flat))


@dataclass(frozen=True)
class Prop:
    name: str
    type: Node
    optional: bool = False
    doc: str | None = None
    """Documentation from the source (a description, a title): left out of the contract fingerprint."""
    note: str | None = None
    """What the generator says about the type itself (its wire format, its constraints), written after
    ``doc``. It follows from the type, so unlike ``doc`` it is part of the contract fingerprint."""

    @property
    def comment(self) -> str | None:
        """The property's JSDoc text: ``doc``, then ``note``."""
        return "\n".join(part for part in (self.doc, self.note) if part) or None


@dataclass(frozen=True)
class Object(Node):
    """An object type; declared as an ``interface`` when it is a named type."""

    props: tuple[Prop, ...]
    index: Node | None = None
    """The type of an index signature ``[key: string]: T``, when the object allows other keys."""

    def write(self) -> str:
        parts = [self._prop(prop) for prop in self.props]
        if self.index is not None:
            parts.append(f"[key: string]: {self.index.write()}")
        return f"{{ {'; '.join(parts)} }}" if parts else "{}"

    def write_body(self, indent: str) -> str:
        """The members, one per line (each with its JSDoc), for an ``interface`` declaration."""
        lines = [f"{doc_comment(prop.comment, indent)}{indent}{self._prop(prop)};\n" for prop in self.props]
        if self.index is not None:
            lines.append(f"{indent}[key: string]: {self.index.write()};\n")
        return "".join(lines)

    @staticmethod
    def _prop(prop: Prop) -> str:
        return f"{property_name(prop.name)}{'?' if prop.optional else ''}: {prop.type.write()}"


@dataclass(frozen=True)
class Generic(Node):
    """A generic built-in: ``Record<string, number>``, ``Partial<...>``."""

    name: str
    args: tuple[Node, ...]

    def write(self) -> str:
        return f"{self.name}<{', '.join(arg.write() for arg in self.args)}>"


@dataclass(frozen=True)
class Template(Node):
    """`` `${T}` ``: the string form of a literal type (JSON object keys are strings)."""

    of: Node

    def write(self) -> str:
        return f"`${{{self.of.write()}}}`"


@dataclass(frozen=True)
class Declaration:
    """A named type: ``export interface`` for an object, ``export type`` for anything else."""

    name: str
    type: Node
    doc: str | None = None

    def write(self) -> str:
        doc = doc_comment(self.doc)
        if isinstance(self.type, Object) and self.type.props:
            return f"{doc}export interface {self.name} {{\n{self.type.write_body('  ')}}}\n"
        if isinstance(self.type, Object):
            return f"{doc}export interface {self.name} {{}}\n"
        return f"{doc}export type {self.name} = {self.type.write()};\n"


def _children(node: object) -> Iterator[object]:
    for field in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, field.name)
        yield from value if isinstance(value, tuple) else (value,)


def refs(node: object) -> Iterator[Ref]:
    """Every :class:`Ref` inside ``node`` (a node, a prop or a tuple element)."""
    if isinstance(node, Ref):
        yield node
    elif dataclasses.is_dataclass(node):
        for child in _children(node):
            yield from refs(child)


def substitute(node: Node, replace: Callable[[Ref], Node]) -> Node:
    """``node`` with every :class:`Ref` replaced by ``replace(ref)``."""
    result = _substitute(node, replace)
    assert isinstance(result, Node)
    return result


def _substitute(value: object, replace: Callable[[Ref], Node]) -> object:
    if isinstance(value, Ref):
        return replace(value)
    if isinstance(value, tuple):
        return tuple(_substitute(item, replace) for item in value)
    if isinstance(value, Union):
        return union(_substitute(member, replace) for member in value.members)  # type: ignore[misc]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _substitute(getattr(value, f.name), replace) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


def without_docs(value: _T) -> _T:
    """``value`` (a node, a declaration, a prop, or a tuple of them) with every ``doc`` removed, at
    any depth: what is left is what the generated code says apart from the source's documentation,
    which is what the contract fingerprint hashes."""
    if isinstance(value, tuple):
        return tuple(without_docs(item) for item in value)  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: None if f.name == "doc" else without_docs(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **changes)
    return value
