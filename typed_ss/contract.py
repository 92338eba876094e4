"""The typed contract between a server and its clients: every event, its direction and payload type.

Client-to-server events come from the handlers registered with ``@ss.on``; server-to-client events
from the ones declared with ``ss.event``. :class:`Contract` describes them for code generators
(``typed-ss gen-client``), as JSON Schema (``typed-ss schema``), and as a fingerprint that the server
sends in ``__hello`` and generated clients send back, so an out-of-date client can be told to reload.
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

from typed_ss.errors import ConfigurationError
from typed_ss.events import PayloadKind, payload_kind

__all__ = ["CONTRACT_QUERY_PARAMETER", "Contract", "Direction", "EventContract"]

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

    @property
    def kind(self) -> PayloadKind:
        """How the payload travels: ``binary`` (raw bytes), ``text`` (raw UTF-8) or ``json``."""
        return payload_kind(self.payload_type)


@dataclass(frozen=True)
class Contract:
    """Every event a server handles and sends, sorted by direction, then name."""

    events: tuple[EventContract, ...]

    @classmethod
    def of(cls, events: Iterable[EventContract]) -> Contract:
        return cls(tuple(sorted(events, key=lambda e: (e.direction, e.name))))

    def direction(self, direction: Direction) -> tuple[EventContract, ...]:
        """The events of one direction."""
        return tuple(event for event in self.events if event.direction == direction)

    def json_schema(self) -> dict[str, Any]:
        """The contract as a JSON Schema document: ``client_to_server`` and ``server_to_client`` map
        each event to its ``kind`` and, for JSON payloads, the payload's ``schema``; shared
        definitions are under ``$defs``.

        Raises:
            ConfigurationError: two different types share a definition name.
        """
        defs: dict[str, Any] = {}
        document: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "typed-ss contract",
            "client_to_server": {},
            "server_to_client": {},
        }
        for event in self.events:
            entry: dict[str, Any] = {"kind": event.kind}
            if event.kind == "json":
                schema, components = _schema(event.payload_type, event.direction)
                entry["schema"] = schema
                for name, component in components.items():
                    if defs.setdefault(name, component) != component:
                        raise ConfigurationError(
                            f"two different types are both named {name!r} in the contract "
                            f"(event {event.name!r}); rename one of them"
                        )
            if event.doc:
                entry["description"] = event.doc
            document[event.direction][event.name] = entry
        if defs:
            document["$defs"] = dict(sorted(defs.items()))
        return document

    @cached_property
    def fingerprint(self) -> str:
        """A hash of everything that decides which payloads are valid (names, directions, kinds,
        schemas), ignoring documentation: 32 hex characters."""
        canonical = json.dumps(_without_docs(self.json_schema()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


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
    if isinstance(payload_type, type) and issubclass(payload_type, pydantic.BaseModel):
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
