"""From a server's contract to the client model: every payload type in the IR, named and resolved.

Each JSON event's payload, and the JSON reply of each event that can be called, goes to a front end
(:mod:`~typed_ss.codegen.from_msgspec`, or :mod:`~typed_ss.codegen.from_pydantic` when a pydantic model
is involved), which describes it in the IR with the named types it uses. A reply travels the other way
from its event: a handler's return value is described as the client receives it, a client's answer to
a server's call as the client sends it. This module then names those types (:mod:`~typed_ss.codegen.naming`),
gives a second declaration, ``NameInput``, to each type whose sent shape differs from the received one
(itself, or through a type it contains), and replaces every reference by its name. Names are collected
first and assigned after, so the output never depends on which event came first.

:func:`canonical_types` is what the contract fingerprint hashes: the model written as the generated code
writes it, documentation aside.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from typed_ss.codegen import from_msgspec, ir
from typed_ss.codegen.errors import CodegenError, Where
from typed_ss.codegen.ir import ClientModel, EventType, Flavor
from typed_ss.codegen.naming import PRESENCE_NAMES, assign_names, input_name
from typed_ss.codegen.typescript import write, write_declaration

if TYPE_CHECKING:
    from typed_ss.contract import Contract, EventContract

# CodegenError and ClientModel are part of what this stage hands out; they live with the errors and the IR.
__all__ = ["ClientModel", "CodegenError", "EventType", "ReplyWhere", "build", "canonical_types"]

BINARY_OUT: Final = ir.Name("BinaryOut")
"""The type of a binary payload the client sends (declared by the generated module)."""
BINARY_IN: Final = ir.Name("BinaryIn")
"""The type of a binary payload the client receives (declared by the generated module)."""


@dataclass(frozen=True)
class ReplyWhere(Where):
    """A place in the reply type of an event, for error messages: ``the reply, field Model.name``."""

    path: str = "the reply"

    def at(self, path: str) -> Where:
        if path == "the payload":  # the front ends' name for the type as a whole
            return self
        return ReplyWhere(self.event, f"the reply, {path}")


def build(contract: Contract) -> ClientModel:
    """The client model of ``contract``.

    Raises:
        CodegenError: a payload type has no TypeScript form; the message names the event and field.
    """
    types = _client_types(contract)
    return ClientModel(
        contract.fingerprint,
        types.declarations,
        types.client_to_server,
        types.server_to_client,
        types.presence,
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
        # Inline object types write no JSDoc, so the payload's text holds no documentation. An event
        # that cannot be called is written as before replies existed, so its contract keeps its
        # fingerprint.
        return [
            [event.name, event.kind, write(event.payload)]
            + ([event.reply_kind or "json", write(event.reply)] if event.reply is not None else [])
            for event in direction
        ]

    document = {
        # Written, not compared as nodes: what counts is what the generated code says.
        "declarations": [
            write_declaration(ir.without_docs(declaration)) for declaration in types.declarations
        ],
        "client_to_server": events(types.client_to_server),
        "server_to_client": events(types.server_to_client),
    }
    if types.presence is not None:
        # Only with presence on: a contract without it keeps its canonical text, and its fingerprint.
        document["presence"] = write(types.presence)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class _ClientTypes:
    declarations: tuple[ir.Declaration, ...]
    client_to_server: tuple[EventType, ...]
    server_to_client: tuple[EventType, ...]
    presence: ir.Node | None = None


PRESENCE_EVENT: Final = "__presence"
"""The event whose payload carries the presence payload; its name, in error messages, says where a
presence payload type without a client form is."""


def _presence_event(contract: Contract) -> EventContract | None:
    """The presence payload as the payload of a server event, so the front ends describe it as they
    describe every payload the client receives (named, documented, in the received shape)."""
    if contract.presence is None:
        return None
    # Imported here: typed_ss.contract imports this module for the fingerprint.
    from typed_ss.contract import EventContract

    return EventContract(PRESENCE_EVENT, "server_to_client", contract.presence)


def _client_types(contract: Contract) -> _ClientTypes:
    """The declarations and event maps of ``contract``'s client: all of the model but its fingerprint,
    which is computed from them."""
    walker = from_msgspec.Walker()
    payloads: dict[tuple[str, str], ir.Node] = {}
    replies: dict[tuple[str, str], ir.Node] = {}
    through_pydantic: list[EventContract] = []
    replies_through_pydantic: list[tuple[EventContract, Where]] = []
    presence = _presence_event(contract)
    for event in (*contract.events, *(() if presence is None else (presence,))):
        if event.kind == "json" or event is presence:
            info = from_msgspec.type_info(event)
            if info is None:
                through_pydantic.append(event)
            else:
                flavor: Flavor = "sent" if event.direction == "client_to_server" else "received"
                payloads[event.name, event.direction] = walker.convert(info, flavor, Where(event))
        if event.callable and event.reply_kind == "json":
            where = ReplyWhere(event)
            info = from_msgspec.type_info_of(event.reply, where)
            if info is None:
                replies_through_pydantic.append((event, where))
            else:
                # The reply travels the other way: the client receives what its calls return, and
                # sends what it answers to the server's calls.
                back: Flavor = "received" if event.direction == "client_to_server" else "sent"
                replies[event.name, event.direction] = walker.convert(info, back, where)
    if through_pydantic or replies_through_pydantic:
        # Imported only here: pydantic is optional, and a contract without its models never needs it.
        from typed_ss.codegen import from_pydantic

        converted = from_pydantic.convert(through_pydantic, replies_through_pydantic)
        payloads.update(converted.payloads)
        replies.update(converted.replies)
        for entry in converted.named:
            walker.named.setdefault(entry.key, entry)
    return _resolve(contract, walker.named, payloads, replies)


def _resolve(
    contract: Contract,
    named: dict[object, ir.Named],
    payloads: dict[tuple[str, str], ir.Node],
    replies: dict[tuple[str, str], ir.Node],
) -> _ClientTypes:
    # The presence API's names are the generated module's only when it has one.
    reserved = PRESENCE_NAMES if contract.presence is not None else frozenset()
    names = assign_names([entry.source for entry in named.values()], reserved)
    by_key = {entry.key: name for entry, name in zip(named.values(), names, strict=True)}
    differs = _sent_shape_differs(named)
    used = set(by_key.values())
    input_names: dict[object, str] = {}
    for key in named:
        if key in differs:
            input_names[key] = input_name(by_key[key], used, reserved)

    def name_of(ref: ir.Ref) -> ir.Node:
        if ref.flavor == "sent" and ref.key in input_names:
            return ir.Name(input_names[ref.key])
        return ir.Name(by_key[ref.key])

    declarations = []
    for key, entry in named.items():
        declarations.append(ir.Declaration(by_key[key], ir.substitute(entry.received, name_of), entry.doc))
        if key in input_names:
            note = "The shape the client sends: fields with a default may be left out."
            doc = f"{entry.doc}\n\n{note}" if entry.doc else note
            sent = ir.substitute(entry.sent, name_of)
            declarations.append(ir.Declaration(input_names[key], sent, doc, received=by_key[key]))
    declarations.sort(key=lambda d: (d.name.lower(), d.name))

    def node(
        kind: str, sent: bool, converted: dict[tuple[str, str], ir.Node], key: tuple[str, str]
    ) -> ir.Node:
        if kind == "binary":
            return BINARY_OUT if sent else BINARY_IN
        if kind == "text":
            return ir.STRING
        return ir.substitute(converted[key], name_of)

    def events(direction: str) -> tuple[EventType, ...]:
        result = []
        outgoing = direction == "client_to_server"
        for event in contract.events:
            if event.direction != direction:
                continue
            key = (event.name, direction)
            payload = node(event.kind, outgoing, payloads, key)
            if not event.callable:
                result.append(EventType(event.name, event.kind, payload, event.doc))
                continue
            reply = node(event.reply_kind, not outgoing, replies, key)
            result.append(EventType(event.name, event.kind, payload, event.doc, reply, event.reply_kind))
        return tuple(result)

    presence = None
    if contract.presence is not None:
        presence = ir.substitute(payloads[PRESENCE_EVENT, "server_to_client"], name_of)
    return _ClientTypes(tuple(declarations), events("client_to_server"), events("server_to_client"), presence)


def _sent_shape_differs(named: dict[object, ir.Named]) -> set[object]:
    """The keys whose sent shape differs from the received one, itself or through a type it contains."""

    def erased(node: ir.Node) -> ir.Node:
        return ir.substitute(node, lambda ref: ir.Ref(ref.key, "received"))

    differs = {key for key, entry in named.items() if erased(entry.received) != erased(entry.sent)}
    users: dict[object, set[object]] = defaultdict(set)
    for key, entry in named.items():
        for ref in ir.refs(entry.sent):
            users[ref.key].add(key)
    pending = list(differs)
    while pending:
        for user in users[pending.pop()]:
            if user not in differs:
                differs.add(user)
                pending.append(user)
    return differs
