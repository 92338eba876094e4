"""The generator's intermediate representation: payload types as a small type tree, and the client model.

The front ends (:mod:`~typed_ss.codegen.from_msgspec`, :mod:`~typed_ss.codegen.from_pydantic`) build it,
:mod:`~typed_ss.codegen.model` names it, and :mod:`~typed_ss.codegen.typescript` writes it. It is pure
data: no syntax and no Python types, only what the generated client says about each payload.

Nodes are frozen dataclasses, so two nodes compare equal when they describe the same type. A
:class:`Ref` points at a :class:`Named` type that has no name yet; :func:`substitute` replaces every
``Ref`` once names are known, and the writer refuses one that is left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypeVar
from typing import Literal as TypingLiteral

if TYPE_CHECKING:
    from typed_ss.typeinfo import PayloadKind

__all__ = [
    "BOOLEAN",
    "NEVER",
    "NULL",
    "NUMBER",
    "STRING",
    "UNKNOWN",
    "Array",
    "ClientModel",
    "Declaration",
    "EventType",
    "Flavor",
    "Generic",
    "Keyword",
    "Literal",
    "Name",
    "Named",
    "Node",
    "Object",
    "Prop",
    "Ref",
    "Template",
    "Tuple",
    "TupleElement",
    "Union",
    "refs",
    "substitute",
    "union",
    "without_docs",
]

Flavor: TypeAlias = TypingLiteral["received", "sent"]
"""Which shape of a named type: what the client receives (encoded) or sends (decoded)."""

_T = TypeVar("_T")


class Node:
    """A type."""


@dataclass(frozen=True)
class Keyword(Node):
    """``number``, ``string``, ``boolean``, ``null``, ``unknown``, ``never``."""

    name: str


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


@dataclass(frozen=True)
class Name(Node):
    """A type referred to by name: a generated declaration or a TypeScript built-in."""

    text: str


@dataclass(frozen=True)
class Ref(Node):
    """A named payload type, by the model's key, in one of its two shapes; named by :func:`substitute`."""

    key: object
    flavor: Flavor


@dataclass(frozen=True)
class Array(Node):
    """A list of one item type (``T[]``)."""

    item: Node


@dataclass(frozen=True)
class TupleElement:
    """One element of a :class:`Tuple`: its type, its label (a field name), and whether it may be left
    out (a trailing element with a default, when sent)."""

    type: Node
    label: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class Tuple(Node):
    """A fixed-length array, its elements labelled when the source names them."""

    elements: tuple[TupleElement, ...]
    rest: Node | None = None
    """The type of any further elements: ``[number, ...string[]]``."""


@dataclass(frozen=True)
class Union(Node):
    """Build with :func:`union`, which flattens, de-duplicates and simplifies."""

    members: tuple[Node, ...]


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
    """A property of an :class:`Object`, by its encoded name."""

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
        """The property's documentation text: ``doc``, then ``note``."""
        return "\n".join(part for part in (self.doc, self.note) if part) or None


@dataclass(frozen=True)
class Object(Node):
    """An object type; declared as an ``interface`` when it is a named type."""

    props: tuple[Prop, ...]
    index: Node | None = None
    """The type of an index signature ``[key: string]: T``, when the object allows other keys."""


@dataclass(frozen=True)
class Generic(Node):
    """A generic built-in: ``Record<string, number>``, ``Partial<...>``."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Template(Node):
    """The string form of a literal type (JSON object keys are strings)."""

    of: Node


@dataclass(frozen=True)
class Declaration:
    """A named type, as the generated module declares it."""

    name: str
    type: Node
    doc: str | None = None
    received: str | None = None
    """For a sent shape (``NameInput``): the name of the received shape it is sent for (``Name``)."""


@dataclass
class Named:
    """A named type before naming: both shapes, with references still unresolved. The front ends
    register one per class they meet; :mod:`~typed_ss.codegen.model` names them."""

    key: object
    """What identifies the type: its class (or generic alias), or a string for an unknown source."""
    source: object
    """Where its name comes from: a class, a generic alias or a plain name."""
    doc: str | None
    received: Node = NEVER
    sent: Node = NEVER


@dataclass(frozen=True)
class EventType:
    """One event of the generated client, its payload type (and its reply type, when it can be called)
    resolved to declared names."""

    name: str
    kind: PayloadKind
    payload: Node
    doc: str | None = None
    reply: Node | None = None
    """The type of the reply to a call of this event, or ``None`` when it cannot be called. The reply
    travels the other way: for an event the client sends, it is what the server's handler returns, in
    the shape the client receives (``BinaryIn`` for ``bytes``); for an event the server sends (declared
    with ``reply=``), it is what the client answers, in the shape the client sends (``BinaryOut``,
    ``NameInput``). A handler that returns ``None`` has the reply ``null``."""
    reply_kind: PayloadKind | None = None
    """How the reply travels (``binary``, ``text`` or ``json``), or ``None`` when the event cannot be
    called."""

    @property
    def callable(self) -> bool:
        """Whether the event can be called: it has a reply type."""
        return self.reply is not None


@dataclass(frozen=True)
class ClientModel:
    """Everything a renderer needs: the declarations, sorted by name, both event maps, and the presence
    payload type when the server has presence on."""

    fingerprint: str
    declarations: tuple[Declaration, ...]
    client_to_server: tuple[EventType, ...]
    server_to_client: tuple[EventType, ...]
    presence: Node | None = None
    """The type of each socket's presence payload, in the shape the client receives, when the server
    has presence on (``Server(presence=...)``): what a ``__presence`` event and each member listed by a
    ``__members`` call carry (or ``null``). ``None``: the client has no presence API."""


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
