"""The generated Python module (``typed-ss gen-client --lang py``), rendered from the client model.

The model is the one the TypeScript renderer uses (:mod:`~typed_ss.codegen.model`): the same named
types, received and sent shapes (``Name`` and ``NameInput``), events and replies. Here they become:

- object types: msgspec Structs (``kw_only``), a field that may be left out typed
  ``T | msgspec.UnsetType = msgspec.UNSET`` (so it is not sent, and the server applies its default);
  members of a union of objects that one literal property tells apart: tagged Structs, since msgspec
  decodes a union of Structs only by a tag; labelled tuples: ``array_like`` Structs;
- any other named type (an enum's values, an ``IntFlag``): a type alias, ``Literal[...]`` or
  ``int | float``;
- JSON's one number type: ``int | float`` (an ``int`` stays one, both ways);
- each event: a method of ``send`` and ``call`` (events the client sends), of ``on`` and ``handle``
  (events the server sends, ``handle`` for those it calls), typed by the contract, over
  :mod:`typed_ss.client.typed`;
- ``CONTRACT``, the fingerprint, and ``connect(url, **options)``, which sends it;
- for a server with presence on, ``TypedClient.on_presence`` and ``TypedClient.members``, typed by its
  presence payload type.

What the model leaves to the types' documentation (a date is a string with a format note, a Decimal
a string) stays so here: the Python client says what the wire says, as the TypeScript one does.

Everything is deterministic: model order (sorted), no timestamps, no paths, ``\\n`` newlines.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from typed_ss import __version__
from typed_ss.codegen import ir
from typed_ss.codegen.files import GeneratedFile
from typed_ss.codegen.ir import ClientModel, EventType
from typed_ss.typeinfo import PayloadKind

__all__ = ["MODULE", "render"]

MODULE: Final = "ss_client.py"
"""The generated module's file name."""

_ANY: Final = "_typing.Any"
_DICT_ANY: Final = "dict[str, _typing.Any]"
_NUMBER: Final = "int | float"
_BINARY_OUT: Final = "bytes | bytearray | memoryview"
_KEYWORDS: Final = frozenset(keyword.kwlist)
_MODULE_NAMES: Final = frozenset({"CONTRACT", "TypedClient", "connect", "annotations"})
"""Top-level names the module defines itself (its private ones start with ``_`` and a letter, which no
declaration's name does: see :mod:`~typed_ss.codegen.naming`)."""
_WIDTH: Final = 100
"""Docstring lines are wrapped to this many characters."""


def render(model: ClientModel, source: str) -> list[GeneratedFile]:
    """The generated module for ``model``; ``source`` names the app in its docstring."""
    return [GeneratedFile(MODULE, _Module(model).text(source))]


# --- names --------------------------------------------------------------------------------------------


def _python_names(declarations: tuple[ir.Declaration, ...]) -> dict[str, str]:
    """A Python name for each declaration: its own, with ``_`` appended while it is a keyword, a
    builtin or one of the module's own names (builtins too: annotations say ``str``, ``list`` ...)."""
    taken = {d.name for d in declarations}
    names: dict[str, str] = {}
    for declaration in declarations:
        name = declaration.name
        if name in _KEYWORDS or hasattr(builtins, name) or name in _MODULE_NAMES:
            name += "_"
            while name in taken:
                name += "_"
            taken.add(name)
        names[declaration.name] = name
    return names


def _identifier(text: str, taken: set[str], reserved: frozenset[str] = frozenset()) -> str:
    """A Python identifier for ``text`` not in ``taken`` (to which it is added)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text) or "_"
    if name[0].isdigit():
        name = f"_{name}"
    if name in _KEYWORDS or name in reserved:
        name += "_"
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    taken.add(candidate)
    return candidate


# --- types --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tag:
    field: str
    value: str | int


def _single_literal(node: ir.Node) -> str | int | None:
    if (
        isinstance(node, ir.Literal)
        and isinstance(node.value, str | int)
        and not isinstance(node.value, bool)
    ):
        return node.value
    return None


def _walk(node: object) -> Iterator[object]:
    """``node`` and everything inside it (nodes, props, tuple elements)."""
    yield node
    if isinstance(node, ir.Union):
        for member in node.members:
            yield from _walk(member)
    elif isinstance(node, ir.Object):
        for prop in node.props:
            yield from _walk(prop.type)
        if node.index is not None:
            yield from _walk(node.index)
    elif isinstance(node, ir.Array):
        yield from _walk(node.item)
    elif isinstance(node, ir.Tuple):
        for element in node.elements:
            yield from _walk(element.type)
        if node.rest is not None:
            yield from _walk(node.rest)
    elif isinstance(node, ir.Generic):
        for arg in node.args:
            yield from _walk(arg)
    elif isinstance(node, ir.Template):
        yield from _walk(node.of)


class _Types:
    """Writes IR types as Python: annotations, and the type objects the runtime encodes and decodes by."""

    def __init__(self, model: ClientModel) -> None:
        self.declarations = {d.name: d for d in model.declarations}
        self.names = _python_names(model.declarations)
        self.tags = self._tags(model)

    # Unions of objects: msgspec decodes a union of Structs only when a tag tells them apart.

    def _tags(self, model: ClientModel) -> dict[str, _Tag]:
        roots: list[ir.Node] = [d.type for d in model.declarations]
        if model.presence is not None:
            roots.append(model.presence)
        for event in (*model.client_to_server, *model.server_to_client):
            roots.append(event.payload)
            if event.reply is not None:
                roots.append(event.reply)
        tags: dict[str, _Tag] = {}
        for root in roots:
            for node in _walk(root):
                if isinstance(node, ir.Union):
                    found = self._union_tags(node, tags)
                    if found is not None:
                        tags.update(found)
        return tags

    def _union_tags(self, union: ir.Union, tags: dict[str, _Tag]) -> dict[str, _Tag] | None:
        """The tags that tell the union's object members apart: a property every one of them has, with
        one literal value each, all different and of one type; ``None`` when there is none (or a
        member is tagged by another property already)."""
        members = [m.text for m in union.members if isinstance(m, ir.Name) and self._struct_props(m.text)]
        if len(members) < 2:
            return None
        first = self._struct_props(members[0]) or ()
        for prop in first:
            values = []
            for member in members:
                props = {p.name: p for p in self._struct_props(member) or ()}
                value = _single_literal(props[prop.name].type) if prop.name in props else None
                if value is None:
                    break
                values.append(value)
            else:
                if len(set(values)) < len(values) or len({type(v) for v in values}) > 1:
                    continue
                found = {m: _Tag(prop.name, v) for m, v in zip(members, values, strict=True)}
                if all(tags.get(m, t) == t for m, t in found.items()):
                    return found
        return None

    def _struct_props(self, name: str) -> tuple[ir.Prop, ...] | None:
        """The properties of the declaration ``name`` when it is rendered as a dict-like Struct."""
        declaration = self.declarations.get(name)
        if declaration is None or not isinstance(declaration.type, ir.Object):
            return None
        return declaration.type.props

    def _category(self, node: ir.Node, seen: frozenset[str] = frozenset()) -> str:
        """What msgspec counts a union member as: ``object``, ``tagged``, ``array`` or ``other``."""
        if isinstance(node, ir.Name) and node.text in self.declarations and node.text not in seen:
            body = self.declarations[node.text].type
            if isinstance(body, ir.Object):
                return "tagged" if node.text in self.tags else "object"
            if isinstance(body, ir.Tuple):
                return "array"
            return self._category(body, seen | {node.text})
        if isinstance(node, ir.Object | ir.Generic):
            return "object"
        if isinstance(node, ir.Array | ir.Tuple):
            return "array"
        return "other"

    # Writing.

    def annotation(self, node: ir.Node) -> str:
        """``node`` as a Python type expression (valid at run time too, once the module is loaded)."""
        if isinstance(node, ir.Keyword):
            return {
                "number": _NUMBER,
                "string": "str",
                "boolean": "bool",
                "null": "None",
            }.get(node.name, _ANY)  # unknown; never (a union of nothing) has no value msgspec decodes
        if isinstance(node, ir.Literal):
            return f"_typing.Literal[{_literal(node.value)}]"
        if isinstance(node, ir.Name):
            if node.text == "BinaryOut":
                return _BINARY_OUT
            if node.text == "BinaryIn":
                return "bytes"
            return self.names.get(node.text, _ANY)
        if isinstance(node, ir.Array):
            return f"list[{self.annotation(node.item)}]"
        if isinstance(node, ir.Tuple):
            return self._tuple(node)
        if isinstance(node, ir.Union):
            return self._union(node)
        if isinstance(node, ir.Object):
            if not node.props and node.index is not None:
                return f"dict[str, {self.annotation(node.index)}]"
            return _DICT_ANY
        if isinstance(node, ir.Generic):
            return self._generic(node)
        if isinstance(node, ir.Template):
            return self.annotation(node.of)  # msgspec reads an int or enum key from its string form
        return _ANY

    def _tuple(self, node: ir.Tuple) -> str:
        if node.rest is not None:
            if node.elements:
                return "tuple[_typing.Any, ...]"  # a fixed head and a rest: no Python form
            return f"tuple[{self.annotation(node.rest)}, ...]"
        if not node.elements:
            return "tuple[()]"
        return f"tuple[{', '.join(self.annotation(e.type) for e in node.elements)}]"

    def _generic(self, node: ir.Generic) -> str:
        if node.name == "Partial" and len(node.args) == 1 and isinstance(node.args[0], ir.Generic):
            return self._generic(node.args[0])
        if node.name == "Record" and len(node.args) == 2:
            return f"dict[{self.annotation(node.args[0])}, {self.annotation(node.args[1])}]"
        return _DICT_ANY

    def _union(self, node: ir.Union) -> str:
        categories = [self._category(m) for m in node.members]
        # msgspec decodes at most one dict-like and one array-like member of a union (tagged Structs
        # aside): where the contract has more, the Python type says less, so the module still decodes.
        objects = [c for c in categories if c in ("object", "tagged")]
        any_object = len(objects) > 1 and objects.count("tagged") < len(objects)
        any_array = categories.count("array") > 1
        parts: list[str] = []
        literals: list[str] = []
        nullable = False
        for member, category in zip(node.members, categories, strict=True):
            if member == ir.NULL:
                nullable = True  # written last: `X | None`
            elif isinstance(member, ir.Literal):
                if not literals:
                    parts.append("")  # where the literals go, filled below
                literals.append(_literal(member.value))
            elif any_object and category in ("object", "tagged"):
                parts.append(_DICT_ANY)
            elif any_array and category == "array":
                parts.append("list[_typing.Any]")
            else:
                parts.append(self.annotation(member))
        if literals:
            parts[parts.index("")] = f"_typing.Literal[{', '.join(literals)}]"
        if nullable:
            parts.append("None")
        unique = list(dict.fromkeys(parts))
        return _ANY if _ANY in unique else " | ".join(unique)

    def sent(self, node: ir.Node) -> str:
        """``node`` as the type of a payload the client sends: a named type's received shape is
        accepted next to its sent one (``AddQuery | AddQueryInput``), since a Python class is not
        a structural type: both encode to what the server accepts."""
        if isinstance(node, ir.Name):
            declaration = self.declarations.get(node.text)
            if declaration is not None and declaration.received in self.names:
                return f"{self.names[declaration.received]} | {self.names[node.text]}"
        return self.annotation(node)

    def runtime(self, node: ir.Node, kind: PayloadKind, *, sent: bool = False) -> str:
        """The type object the runtime encodes or decodes a payload of ``kind`` with."""
        if kind == "binary":
            return "bytes"
        if kind == "text":
            return "str"
        return self.sent(node) if sent else self.annotation(node)


def _or_unset(annotation: str) -> str:
    """``annotation`` or ``UNSET`` (left out), with ``None`` kept last, as Python writes unions."""
    if annotation == "None":
        return "_msgspec.UnsetType | None"
    if annotation.endswith(" | None"):  # _union writes None last, at the top level only
        return annotation.removesuffix(" | None") + " | _msgspec.UnsetType | None"
    return f"{annotation} | _msgspec.UnsetType"


def _or_none(annotation: str) -> str:
    """``annotation | None``, unless it allows ``None`` already (or is ``Any``)."""
    if annotation in ("None", _ANY) or annotation.endswith(" | None"):
        return annotation
    return f"{annotation} | None"


def _literal(value: str | int | float | bool) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid Python string literal
    return repr(value)


_SEND_DOC: Final = "Each event the server handles, sent: ``await client.send.chat(...)``."
_CALL_DOC: Final = (
    "Each event the server handles, called: ``reply = await client.call.add(...)``, the reply typed by "
    "the handler's return type."
)
_ON_DOC: Final = (
    "Each event the server sends, listened to: ``client.on.chat(handler)``, one handler per event "
    "(another replaces it). A call of the event is acknowledged with ``None``."
)
_HANDLE_DOC: Final = (
    "Each event the server calls, answered: ``client.handle.confirm(fn)``; ``fn``'s return value is the "
    "reply, a ``typed_ss.HandlerError`` it raises an error reply with its code, message and data."
)
_CLIENT_DOC: Final = (
    "A client typed by the server's contract: ``send``, ``call``, ``on`` and ``handle`` have a method "
    "per event; ``raw`` is the untyped client underneath."
)
_ON_PRESENCE_DOC: Final = (
    "Call ``hook(event)`` for each ``__presence`` event: a member of a tracked room this client is in "
    "joined or left (``event.change``), on any of the server's instances. ``event.presence`` is its "
    "presence payload, or ``None``. One hook; returns it, so it can decorate (see "
    ":meth:`typed_ss.client.Client.on_presence`)."
)
_MEMBERS_DOC: Final = (
    "The members of ``room`` on every instance of the server (a ``__members`` call): ``members``, "
    "``missing`` (the instances that did not answer) and ``truncated``. Raises ``typed_ss.CallError`` "
    "``forbidden`` when the server does not let this client list the room (see "
    ":meth:`typed_ss.client.Client.members`)."
)
_CONNECT_DOC: Final = (
    "A client of the typed-ss server at ``url``, connected by ``async with``; it sends this module's "
    "contract fingerprint (the ``ss_contract`` query parameter). ``options`` are "
    ":func:`typed_ss.client.connect`'s (``headers``, ``reconnect``, ``open_timeout`` ...)."
)


# --- the module ---------------------------------------------------------------------------------------


def _docstring(text: str | None, indent: str) -> str:
    """A docstring statement (``""`` for none), its lines wrapped to :data:`_WIDTH`."""
    if not text or not text.strip():
        return ""
    escaped = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines: list[str] = []
    for line in escaped.splitlines():
        width = _WIDTH - len(indent)
        lines.extend(textwrap.wrap(line, width, break_on_hyphens=False) if len(line) > width else [line])
    if lines[-1].endswith('"'):
        lines[-1] += " "  # a quote right before the closing ones would end the string early
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""\n'
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in lines[1:])
    return f'{indent}"""{lines[0]}\n{body}{indent}"""\n'


@dataclass(frozen=True)
class _Method:
    """One event's methods and the runtime object behind them."""

    event: EventType
    method: str
    """The method's name in every namespace."""
    spec: str
    """The module-level name of its :class:`typed_ss.client.typed.Outgoing` or ``Incoming``."""


class _Module:
    def __init__(self, model: ClientModel) -> None:
        self.model = model
        self.types = _Types(model)
        self.outgoing = self._methods(model.client_to_server, "_out_")
        self.incoming = self._methods(model.server_to_client, "_in_")

    @staticmethod
    def _methods(events: tuple[EventType, ...], prefix: str) -> list[_Method]:
        taken: set[str] = set()
        methods = []
        for event in events:
            method = _identifier(event.name, taken, frozenset({"_client"}))
            methods.append(_Method(event, method, prefix + method))
        return methods

    def text(self, source: str) -> str:
        parts = [
            self._header(source),
            self._declarations(),
            self._specs(),
            self._namespaces(),
            self._client(),
        ]
        # Blocks end with a newline: two blank lines between them, as between top-level definitions.
        return "\n\n".join(part for part in parts if part)

    def _header(self, source: str) -> str:
        fingerprint = self.model.fingerprint
        uses_msgspec = any(self._is_struct(d) for d in self.model.declarations)
        return (
            f'"""A typed client for a typed-ss server, generated by typed-ss {__version__} from {source}.\n'
            "\n"
            "Do not edit: run `typed-ss gen-client --lang py` again when the server's events change.\n"
            "\n"
            f"Contract fingerprint: {fingerprint}\n"
            '"""\n'
            "# ruff: noqa\n"
            "# fmt: off\n"
            "\n"
            "from __future__ import annotations\n"
            "\n"
            "import typing as _typing\n"
            "\n"
            # One block: both are third-party packages where the module is used.
            + ("import msgspec as _msgspec\n" if uses_msgspec else "")
            + "from typed_ss.client import typed as _runtime\n"
            "\n"
            f"CONTRACT: _typing.Final = {json.dumps(fingerprint)}\n"
            '"""The fingerprint of the contract this client was generated from."""\n'
        )

    # Declarations: Structs first (their annotations are read lazily, so their order is free), then
    # the aliases, each after the aliases it uses (they are evaluated as the module loads).

    def _is_struct(self, declaration: ir.Declaration) -> bool:
        body = declaration.type
        if isinstance(body, ir.Object):
            return True
        return (
            isinstance(body, ir.Tuple)
            and bool(body.elements)
            and body.rest is None
            and all(e.label is not None for e in body.elements)
        )

    def _declarations(self) -> str:
        structs = [d for d in self.model.declarations if self._is_struct(d)]
        aliases = [d for d in self.model.declarations if not self._is_struct(d)]
        blocks = [self._struct(d) for d in structs] + [self._alias(d) for d in _alias_order(aliases)]
        return "\n\n".join(blocks)

    def _struct(self, declaration: ir.Declaration) -> str:
        types = self.types
        name = types.names[declaration.name]
        options = ["_msgspec.Struct", "kw_only=True"]
        tag = types.tags.get(declaration.name)
        if tag is not None:
            options += [f"tag_field={json.dumps(tag.field)}", f"tag={_literal(tag.value)}"]
        body = declaration.type
        fields: list[str] = []
        taken: set[str] = set()
        if isinstance(body, ir.Tuple):
            options.append("array_like=True")
            for element in body.elements:
                assert element.label is not None
                # Every element is required: msgspec cannot leave out a trailing one it encodes, and
                # sending one the server would default is always valid.
                fields.append(self._field(element.label, element.type, False, None, taken))
        else:
            assert isinstance(body, ir.Object)
            for prop in body.props:
                if tag is not None and prop.name == tag.field:
                    continue  # msgspec writes and reads the tag itself
                fields.append(self._field(prop.name, prop.type, prop.optional, prop.comment, taken))
        head = f"class {name}({', '.join(options)}):\n"
        doc = _docstring(declaration.doc, "    ")
        if not fields:
            return head + (doc or "    pass\n")
        return head + doc + ("\n" if doc else "") + "".join(fields)

    def _field(self, wire_name: str, node: ir.Node, optional: bool, doc: str | None, taken: set[str]) -> str:
        attribute = _identifier(wire_name, taken)
        annotation = self.types.annotation(node)
        default: str | None = None
        if optional:
            annotation = _or_unset(annotation)
            default = "_msgspec.UNSET"
        elif isinstance(node, ir.Literal):
            # One possible value: filled in for the caller (and always sent, as the contract says).
            default = _literal(node.value)
        if attribute != wire_name:
            keywords = [f"name={json.dumps(wire_name, ensure_ascii=False)}"]
            if default is not None:
                keywords.append(f"default={default}")
            default = f"_msgspec.field({', '.join(keywords)})"
        line = f"    {attribute}: {annotation}" + (f" = {default}" if default is not None else "") + "\n"
        return line + _docstring(doc, "    ")

    def _alias(self, declaration: ir.Declaration) -> str:
        name = self.types.names[declaration.name]
        return f"{name}: _typing.TypeAlias = {self.types.annotation(declaration.type)}\n" + _docstring(
            declaration.doc, ""
        )

    # Events.

    def _specs(self) -> str:
        lines = []
        for m in self.outgoing:
            lines.append(self._spec(m, "Outgoing", self._payload(m.event, sent=True), self._reply(m.event)))
        for m in self.incoming:
            lines.append(self._spec(m, "Incoming", self._payload(m.event), self._reply(m.event, sent=True)))
        if not lines:
            return ""
        return "# The events: how each payload (and reply) is typed, encoded and decoded.\n" + "".join(lines)

    def _spec(self, m: _Method, cls: str, payload: str, reply: str) -> str:
        event, types = m.event, self.types
        outgoing = cls == "Outgoing"  # the client sends its payload; else the reply
        payload_type = types.runtime(event.payload, event.kind, sent=outgoing)
        arguments = [json.dumps(event.name, ensure_ascii=False), payload_type, json.dumps(event.kind)]
        if event.reply is not None and event.reply_kind is not None:
            reply_type = types.runtime(event.reply, event.reply_kind, sent=not outgoing)
            arguments += [reply_type, json.dumps(event.reply_kind)]
        return f"{m.spec}: _runtime.{cls}[{payload}, {reply}] = _runtime.{cls}({', '.join(arguments)})\n"

    def _payload(self, event: EventType, *, sent: bool = False) -> str:
        return self.types.sent(event.payload) if sent else self.types.annotation(event.payload)

    def _reply(self, event: EventType, *, sent: bool = False) -> str:
        if event.reply is None:
            return "None"
        return self.types.sent(event.reply) if sent else self.types.annotation(event.reply)

    def _namespaces(self) -> str:
        return "\n\n".join(
            [
                self._namespace("_Send", _SEND_DOC, [self._send(m) for m in self.outgoing]),
                self._namespace(
                    "_Call", _CALL_DOC, [self._call(m) for m in self.outgoing if m.event.reply is not None]
                ),
                self._namespace("_On", _ON_DOC, [self._on(m) for m in self.incoming]),
                self._namespace(
                    "_Handle",
                    _HANDLE_DOC,
                    [self._handle(m) for m in self.incoming if m.event.reply is not None],
                ),
            ]
        )

    @staticmethod
    def _namespace(name: str, doc: str, methods: list[str]) -> str:
        return (
            f"class {name}:\n" + _docstring(doc, "    ") + "\n"
            '    __slots__ = ("_client",)\n'
            "\n"
            "    def __init__(self, client: _runtime.Client) -> None:\n"
            "        self._client = client\n" + "".join(f"\n{method}" for method in methods)
        )

    def _payload_parameter(self, event: EventType, annotation: str) -> str:
        # A payload that can only be null may be left out, as in the TypeScript client.
        return f"payload: {annotation}" + (" = None" if annotation == "None" else "")

    def _event_doc(self, event: EventType) -> str | None:
        wire = {"binary": "Binary frame.", "text": "Raw text, not JSON.", "json": None}[event.kind]
        return "\n\n".join(part for part in (event.doc, wire) if part) or None

    def _send(self, m: _Method) -> str:
        parameter = self._payload_parameter(m.event, self._payload(m.event, sent=True))
        return (
            f"    async def {m.method}(self, {parameter}) -> None:\n"
            + _docstring(self._event_doc(m.event), "        ")
            + f"        await {m.spec}.emit(self._client, payload)\n"
        )

    def _call(self, m: _Method) -> str:
        parameter = self._payload_parameter(m.event, self._payload(m.event, sent=True))
        reply = self._reply(m.event)
        return (
            f"    async def {m.method}(self, {parameter}, *, timeout: float = 5.0) -> {reply}:\n"
            + _docstring(self._event_doc(m.event), "        ")
            + f"        return await {m.spec}.call(self._client, payload, timeout)\n"
        )

    def _on(self, m: _Method) -> str:
        payload = self._payload(m.event)
        return (
            f"    def {m.method}(self, handler: _runtime.Listener[{payload}]) -> None:\n"
            + _docstring(self._event_doc(m.event), "        ")
            + f"        {m.spec}.on(self._client, handler)\n"
        )

    def _handle(self, m: _Method) -> str:
        payload, reply = self._payload(m.event), self._reply(m.event, sent=True)
        return (
            f"    def {m.method}(self, fn: _runtime.Answerer[{payload}, {reply}]) -> None:\n"
            + _docstring(self._event_doc(m.event), "        ")
            + f"        {m.spec}.handle(self._client, fn)\n"
        )

    def _presence(self) -> str:
        """The presence API's module-level objects (a server with presence on), or ``""``."""
        if self.model.presence is None:
            return ""
        payload = self.types.annotation(self.model.presence)
        runtime = self.types.runtime(self.model.presence, "json")
        return (
            "# Presence: the server's presence payload type types on_presence and members.\n"
            f"_presence: _runtime.PresenceApi[{payload}] = _runtime.PresenceApi({runtime})\n"
            "_PresenceHook = _typing.TypeVar(\n"
            f'    "_PresenceHook", bound=_typing.Callable[[_runtime.PresenceEvent[{payload}]], object]\n'
            ")\n"
        )

    def _presence_methods(self) -> str:
        if self.model.presence is None:
            return ""
        listed = _or_none(self.types.annotation(self.model.presence))
        return (
            "\n"
            "    def on_presence(self, hook: _PresenceHook) -> _PresenceHook:\n"
            + _docstring(_ON_PRESENCE_DOC, "        ")
            + "        _presence.on(self.raw, hook)\n"
            "        return hook\n"
            "\n"
            "    async def members(\n"
            "        self, room: str, *, timeout: float = 5.0\n"
            f"    ) -> _runtime.Listed[{listed}]:\n"
            + _docstring(_MEMBERS_DOC, "        ")
            + "        return await _presence.members(self.raw, room, timeout)\n"
        )

    def _client(self) -> str:
        return (
            self._presence()
            + ("\n\n" if self.model.presence is not None else "")
            + "class TypedClient(_runtime.TypedClientBase):\n"
            + _docstring(_CLIENT_DOC, "    ")
            + "\n"
            '    __slots__ = ("call", "handle", "on", "send")\n'
            "\n"
            "    def __init__(self, raw: _runtime.Client) -> None:\n"
            "        super().__init__(raw)\n"
            "        self.send = _Send(raw)\n"
            "        self.call = _Call(raw)\n"
            "        self.on = _On(raw)\n"
            "        self.handle = _Handle(raw)\n" + self._presence_methods() + "\n"
            "\n"
            "def connect(url: str, **options: _typing.Unpack[_runtime.ConnectOptions]) -> TypedClient:\n"
            + _docstring(_CONNECT_DOC, "    ")
            + "    return TypedClient(_runtime.Client(url, contract=CONTRACT, **options))\n"
        )


def _alias_order(aliases: list[ir.Declaration]) -> list[ir.Declaration]:
    """``aliases`` with each after the aliases it refers to (model order otherwise; a cycle, which
    msgspec could not decode anyway, is left in model order)."""
    by_name = {d.name: d for d in aliases}
    ordered: list[ir.Declaration] = []
    state: dict[str, str] = {}

    def visit(declaration: ir.Declaration) -> None:
        if state.get(declaration.name):
            return
        state[declaration.name] = "visiting"
        for node in _walk(declaration.type):
            if isinstance(node, ir.Name) and node.text in by_name:
                visit(by_name[node.text])
        state[declaration.name] = "done"
        ordered.append(declaration)

    for declaration in aliases:
        visit(declaration)
    return ordered
