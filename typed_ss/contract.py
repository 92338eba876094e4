"""The typed contract between a server and its clients: every event, its direction and payload type.

Client-to-server events come from the handlers registered with ``@ss.on``; server-to-client events
from the ones declared with ``ss.event``. :class:`Contract` describes them for code generators
(``typed-ss gen-client``), as JSON Schema (``typed-ss schema``), and as a fingerprint that the server
sends in ``__hello`` and generated clients send back, so an out-of-date client can be told to reload.
The fingerprint hashes the schemas and the types the generator writes, so it changes whenever a
regenerated client would (documentation aside).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, Literal, TypeAlias

import msgspec

from typed_ss.calls import NO_REPLY
from typed_ss.errors import ConfigurationError
from typed_ss.typeinfo import PayloadKind, declared_fields, is_pydantic_model, payload_kind, type_name

__all__ = ["CONTRACT_QUERY_PARAMETER", "Contract", "Direction", "EventContract", "check_describable"]

Direction: TypeAlias = Literal["client_to_server", "server_to_client"]

CONTRACT_QUERY_PARAMETER: Final = "ss_contract"
"""The query parameter in which a generated client sends its contract fingerprint when it connects."""

_DOC_KEYS = frozenset({"description", "title", "examples"})
"""Schema keys that document without changing what is valid; the fingerprint ignores them."""


@dataclass(frozen=True, slots=True)
class EventContract:
    """One event of the contract."""

    name: str
    direction: Direction
    payload_type: object
    """The Python type: ``bytes``, ``str``, a msgspec type or a pydantic model."""
    doc: str | None = None
    """The handler's docstring (client-to-server events), for documentation in generated code."""
    reply: object = NO_REPLY
    """The type of the reply to a call of this event: a handler's return annotation
    (client-to-server), a declared event's ``reply`` (server-to-client), or :data:`NO_REPLY` for a
    declared event that is never called."""

    @property
    def kind(self) -> PayloadKind:
        """How the payload travels: ``binary`` (raw bytes), ``text`` (raw UTF-8) or ``json``."""
        return payload_kind(self.payload_type)

    @property
    def callable(self) -> bool:
        """Whether the event can be called: it has a reply type."""
        return self.reply is not NO_REPLY

    @property
    def reply_kind(self) -> PayloadKind:
        """How the reply travels (as :attr:`kind`); ``json`` when the event has no reply type."""
        return payload_kind(self.reply) if self.callable else "json"


@dataclass(frozen=True)
class Contract:
    """Every event a server handles and sends, sorted by direction, then name; and, when the server has
    presence on, the type of each socket's presence payload."""

    events: tuple[EventContract, ...]
    presence: object | None = None
    """The presence payload type of a server with ``presence=Presence(T, ...)`` (``T``), or ``None``
    without presence. Clients get it in each ``__presence`` event and each member a ``__members``
    call lists (docs/presence.md), so generated clients type both with it."""

    @classmethod
    def of(cls, events: Iterable[EventContract], presence: object | None = None) -> Contract:
        return cls(tuple(sorted(events, key=lambda e: (e.direction, e.name))), presence)

    def direction(self, direction: Direction) -> tuple[EventContract, ...]:
        """The events of one direction."""
        return tuple(event for event in self.events if event.direction == direction)

    def json_schema(self) -> dict[str, Any]:
        """The contract as a JSON Schema document: ``client_to_server`` and ``server_to_client`` map
        each event to its ``kind`` and, for JSON payloads, the payload's ``schema``; ``presence``,
        only when the server has presence on, gives the presence payload's ``kind`` (``json``) and
        ``schema``; shared definitions are under ``$defs``.

        Two msgspec types with the same name are told apart by their module; a pydantic definition
        whose name is taken by a different one gets a numbered name (``Color_2``).
        """
        defs: dict[str, Any] = {}
        document: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "typed-ss contract",
            "client_to_server": {},
            "server_to_client": {},
        }
        msgspec_schemas = _msgspec_schemas(
            [e.payload_type for e in self.events if e.kind == "json"]
            + [e.reply for e in self.events if e.callable and e.reply_kind == "json"]
            + ([] if self.presence is None else [self.presence])
        )

        def described(kind: PayloadKind, payload_type: object, direction: Direction) -> dict[str, Any]:
            entry: dict[str, Any] = {"kind": kind}
            if kind == "json":
                if payload_type in msgspec_schemas:
                    schema, components = msgspec_schemas[payload_type]
                else:
                    schema, components = _schema(payload_type, direction)
                schema, components = _fit(schema, components, defs)
                entry["schema"] = schema
                defs.update(components)
            return entry

        for event in self.events:
            entry = described(event.kind, event.payload_type, event.direction)
            if event.callable:
                # The reply travels the other way: a handler's return value to the client, a client's
                # answer to the server.
                back: Direction = (
                    "server_to_client" if event.direction == "client_to_server" else "client_to_server"
                )
                entry["reply"] = described(event.reply_kind, event.reply, back)
            if event.doc:
                entry["description"] = event.doc
            document[event.direction][event.name] = entry
        if self.presence is not None:
            # Only with presence on: a contract without it keeps its document, and its fingerprint.
            document["presence"] = described("json", self.presence, "server_to_client")
        if defs:
            document["$defs"] = dict(sorted(defs.items()))
        return document

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the contract, ignoring documentation: 32 hex characters.

        It covers both what decides which payloads are valid (names, directions, kinds, JSON
        Schemas) and every type a generated client declares (``typed-ss gen-client``). The schemas
        alone miss facts that change the generated types but not what the server accepts, such as
        ``omit_defaults`` on a struct the server sends (``x: number`` becomes ``x?: number``). So two
        contracts whose generated clients differ other than in documentation (docstrings,
        descriptions, titles, examples) have different fingerprints, and ``contract_check`` tells
        every stale client apart. Documentation is left out on purpose: editing it should not make
        open pages reload.
        """
        # Imported here: the generator imports this module, and only the fingerprint needs it.
        from typed_ss.codegen.model import canonical_types

        client: str | None
        try:
            client = canonical_types(self)
        except Exception:
            # No client can be generated for this contract (a payload type with no TypeScript form),
            # so none can be current: the schemas alone tell it apart, and "client" being null keeps
            # it apart from every contract that has one. Any error counts, not only CodegenError:
            # the server sends the fingerprint in every __hello, so an error here would refuse every
            # connection, and a contract the generator fails on has no generated client to check.
            client = None
        document = {"schema": _without_docs(self.json_schema()), "client": client}
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _msgspec_schemas(payload_types: list[object]) -> dict[object, tuple[dict[str, Any], dict[str, Any]]]:
    """The schema, and the components it refers to, of every type msgspec can describe, generated
    together so that two types with the same name get module-qualified definition names."""
    described = []
    for payload_type in payload_types:
        try:
            hash(payload_type)
            msgspec.json.schema_components([payload_type])
        except TypeError:
            continue  # pydantic models, or a type that _schema reports
        if payload_type not in described:
            described.append(payload_type)
    if not described:
        return {}
    schemas, components = msgspec.json.schema_components(described, ref_template="#/$defs/{name}")
    result = {}
    for payload_type, schema in zip(described, schemas, strict=True):
        used = _references(schema, components)
        result[payload_type] = (schema, {name: components[name] for name in sorted(used)})
    return result


def _fit(
    schema: dict[str, Any], components: dict[str, Any], defs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``schema`` and its ``components``, with every component whose name ``defs`` already has for a
    different schema renamed (and references to it rewritten), so that they can join ``defs``."""
    renames: dict[str, str] = {}
    while True:
        clashes = [name for name, c in components.items() if name in defs and defs[name] != c]
        if not clashes:
            return schema, components
        for name in clashes:
            number = 2
            while f"{name}_{number}" in defs or f"{name}_{number}" in components:
                number += 1
            renames[name] = f"{name}_{number}"
        schema = _renamed(schema, renames)
        components = {renames.get(name, name): _renamed(c, renames) for name, c in components.items()}
        renames = {}


def _renamed(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_renamed(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _renamed(value, renames) for key, value in node.items()}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in renames:
        result["$ref"] = "#/$defs/" + renames[ref.removeprefix("#/$defs/")]
    return result


def _references(schema: object, components: dict[str, Any]) -> set[str]:
    """The names of the components ``schema`` refers to, directly or through other components."""
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in found and name in components:
                    found.add(name)
                    pending.append(components[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def check_describable(name: str, payload_type: object, direction: Direction) -> None:
    """Check, when an event is registered, that its payload type has a JSON Schema, so a type the
    contract cannot describe fails there instead of in every connection's ``__hello``.

    Raises:
        ConfigurationError: no JSON Schema can be made for the type.
    """
    if payload_kind(payload_type) != "json":
        return
    try:
        _schema(payload_type, direction)
    except Exception as exc:  # msgspec's TypeError, pydantic's schema generation errors
        field = _undescribable_field(payload_type, direction)
        where = f" (field {field})" if field else ""
        raise ConfigurationError(
            f"the payload type {type_name(payload_type)} of event {name!r} has no JSON Schema{where}, "
            f"so it cannot be part of the contract: {exc}"
        ) from exc


def _undescribable_field(payload_type: object, direction: Direction) -> str | None:
    """``Model.field`` for the first field of a model or struct whose type has no JSON Schema."""
    fields = declared_fields(payload_type)
    if fields is None:
        return None
    for field_name, field_type in fields:
        try:
            _schema(field_type, direction)
        except Exception:
            return f"{type_name(payload_type)}.{field_name}"
    return None


def _schema(payload_type: object, direction: Direction) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema of one payload type and the components it refers to."""
    pydantic = sys.modules.get("pydantic")
    try:
        (schema,), components = msgspec.json.schema_components([payload_type], ref_template="#/$defs/{name}")
        return schema, components
    except TypeError:
        if pydantic is None:
            raise
    # pydantic models, alone or inside containers. What the server sends is what pydantic serialises
    # (by alias, as typed-ss encodes them); what clients send is what it validates, which can differ,
    # so the definitions of models that clients send are named with an "Input" suffix.
    suffix = "" if direction == "server_to_client" else "Input"
    mode = "serialization" if direction == "server_to_client" else "validation"
    schema = pydantic.TypeAdapter(payload_type).json_schema(
        mode=mode, by_alias=True, ref_template="#/$defs/{model}" + suffix
    )
    components = {name + suffix: component for name, component in schema.pop("$defs", {}).items()}
    if is_pydantic_model(payload_type) and "$ref" not in schema:
        # A model on its own comes back inline; refer to it by name like every other model.
        name = payload_type.__name__ + suffix
        components[name] = schema
        schema = {"$ref": f"#/$defs/{name}"}
    return schema, components


_NAMED_SCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "dependentSchemas", "client_to_server", "server_to_client"}
)
"""Keys whose value maps names to schemas: the names there are data (a field may be called "title")."""


def _without_docs(node: object) -> object:
    if isinstance(node, list):
        return [_without_docs(item) for item in node]
    if not isinstance(node, dict):
        return node
    stripped: dict[str, object] = {}
    for key, value in node.items():
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            stripped[key] = {name: _without_docs(schema) for name, schema in value.items()}
        elif key not in _DOC_KEYS:
            stripped[key] = _without_docs(value)
    return stripped
