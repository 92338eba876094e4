"""The AsyncAPI 3.0 document of a server's contract (``typed-ss asyncapi``).

The document describes the **server** application, as AsyncAPI documents describe one application:
an event a client sends is an operation with action ``receive``, an event the server sends one with
action ``send``. It holds one server (a WebSocket, protocol ``ws``, subprotocol ``sac-sock``), one
channel (the socket: WebSockets have no channels inside a connection), and for every event a message
with its payload schema and an operation. A call's answer is the operation's reply: the reply message
(``r<id>``) and the error reply (``e<id>``, ``{code, message, data}``). The sac-sock framing is written
out in the descriptions, and each message carries its own frame in ``x-sac-sock``, so a client can be
written from the document alone.

Schemas come from :meth:`Contract.json_schema` (JSON Schema 2020-12) and are rewritten for AsyncAPI's
schema format, a superset of draft 07: definitions move to ``components/schemas``, ``prefixItems``
becomes the array form of ``items``, a ``$ref`` with sibling keywords is wrapped in ``allOf`` (draft
07 ignores a ``$ref``'s siblings), and OpenAPI-style ``discriminator`` objects, which AsyncAPI's
string-valued ``discriminator`` cannot hold, become ``x-discriminator``.

The output is deterministic: events in the contract's order (direction, then name), definitions
sorted by name, no timestamps.

A server with presence on (``Server(presence=...)``) also has the protocol's presence messages: the
``__presence`` event it sends, and the ``__members`` call it answers, their schemas (``sac-sock.*``)
holding the application's presence payload schema.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any, Final

from typed_ss.contract import Contract, EventContract
from typed_ss.protocol import (
    ERROR_EVENT,
    GAP_EVENT,
    HELLO_EVENT,
    MAX_CALL_ID,
    MEMBERS_EVENT,
    PRESENCE_EVENT,
    PROTOCOL_VERSION,
    SUBPROTOCOL,
)
from typed_ss.typeinfo import PayloadKind

__all__ = ["ASYNCAPI_VERSION", "ERROR_CODES", "asyncapi_document", "render"]

ASYNCAPI_VERSION: Final = "3.0.0"
"""The AsyncAPI version of the document."""

ERROR_CODES: Final = ("invalid_payload", "handler_error", "unknown_event", "too_many_calls")
"""The error reply codes typed-ss itself uses; any other code is the application's own."""

_CHANNEL: Final = "socket"

# Component and message names: AsyncAPI requires ^[a-zA-Z0-9.\-_]+$ for component keys, and the
# document uses "." to join a direction, an event and a reply, so event names lose their dots too.
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")
_NOT_COMPONENT = re.compile(r"[^A-Za-z0-9._-]")

_CONTENT_TYPES: Final[dict[PayloadKind, str]] = {
    "json": "application/json",
    "text": "text/plain",
    "binary": "application/octet-stream",
}
_TYPE_LETTERS: Final[dict[PayloadKind, str]] = {"json": "J", "text": "S", "binary": "B"}
_FRAMES: Final[dict[PayloadKind, str]] = {"json": "text", "text": "text", "binary": "binary"}
_KIND_PAYLOADS: Final[dict[PayloadKind, str]] = {
    "json": "JSON (UTF-8)",
    "text": "a string (UTF-8), as it is: not JSON",
    "binary": "raw bytes, as they are",
}

# The protocol's own payloads (typed_ss.protocol's Hello, ErrorPayload and ErrorReply), written by
# hand: msgspec has no schema for ErrorReply's `data: object`, and hand-written they carry the
# documentation a client's author needs. tests/test_asyncapi.py checks them against the structs.
_PROTOCOL_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "Hello": {
        "title": "Hello",
        "description": "The payload of `__hello`, the first frame the server sends on every "
        "connection. More fields may be added: ignore the ones you do not know.",
        "type": "object",
        "properties": {
            "v": {"type": "integer", "description": f"The protocol version: {PROTOCOL_VERSION}."},
            "id": {
                "type": "string",
                "description": "This socket's id: 32 characters of A-Z a-z 0-9 - _ (24 random bytes, "
                "base64url).",
            },
            "max_message_size": {
                "type": "integer",
                "description": "The largest message the server takes, in bytes; a larger one closes "
                "the connection with 1009.",
            },
            "contract": {
                "type": "string",
                "description": "The server's contract fingerprint (32 hex digits), as in `info.version`. "
                "A generated client sends its own as the `ss_contract` query parameter.",
            },
            "max_calls": {
                "type": "integer",
                "description": "The most calls each side may have waiting for a reply on this connection.",
            },
            "session": {
                "type": "string",
                "description": "With connection state recovery on: the token to reconnect with, as the "
                "`ss_session` query parameter, with the last offset of each stream in `ss_offsets`.",
            },
            "recovered": {
                "type": "boolean",
                "description": "After a reconnect with a token: whether the server took the session up "
                "(same id and rooms; every frame missed follows) or the socket starts afresh.",
            },
            "rooms": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The rooms of a recovered session.",
            },
            "streams": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The tags of a recovered session's streams: the client may forget the "
                "offsets of any other.",
            },
        },
        "required": ["v", "id", "max_message_size", "contract", "max_calls"],
    },
    "Gap": {
        "title": "Gap",
        "description": "The payload of `__gap`: messages of a room this socket is in were lost between "
        "the server's instances; fetch that room's state again.",
        "type": "object",
        "properties": {
            "room": {
                "type": ["string", "null"],
                "description": "The room; null for the broadcasts.",
            },
            "lost": {"type": "integer", "description": "How many messages were lost."},
        },
        "required": ["room", "lost"],
    },
    "Error": {
        "title": "Error",
        "description": "The payload of `__error`: a message that was not a call failed. The connection "
        "stays open.",
        "type": "object",
        "properties": {
            "event": {"type": "string", "description": "The event of the message that failed."},
            "code": {
                "type": "string",
                "description": "`invalid_payload` (the payload did not decode as the event's type), "
                "`handler_error` (the handler raised), or the application's own code.",
                "examples": ["invalid_payload", "handler_error"],
            },
            "detail": {
                "type": "string",
                "description": "For people, not programs: the validator's message with a JSON path "
                "(`Expected `str`, got `int` - at `$.room``), at most 300 printable characters.",
            },
        },
        "required": ["event", "code", "detail"],
    },
    "ErrorReply": {
        "title": "ErrorReply",
        "description": "The payload of an error reply (`e<id>`): why a call failed.",
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "description": "`invalid_payload` (the payload did not decode as the event's type; the "
                "message names the field), `handler_error` (the handler raised; nothing of the "
                "exception is sent), `unknown_event` (nothing handles the event), `too_many_calls` "
                "(`max_calls` calls already wait on the connection), or the application's own code.",
                "examples": list(ERROR_CODES),
            },
            "message": {"type": "string", "description": "For people, not programs."},
            "data": {"description": "The application's details, any JSON value; null when none."},
        },
        "required": ["code", "message"],
    },
}
_PROTOCOL_PREFIX: Final = "sac-sock."
"""The protocol's schemas are named ``sac-sock.Hello`` and so on, apart from the application's."""

_PRESENCE_SCHEMAS: Final = ("Member", "Members", "MembersQuestion", "PresenceEvent")
"""The protocol's schemas of a server with presence on (written by :meth:`_Builder._presence_schemas`,
since they hold the application's presence payload schema)."""


def render(document: dict[str, Any]) -> str:
    """The document as JSON text: two-space indents, UTF-8 characters as they are, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def asyncapi_document(contract: Contract, title: str = "typed-ss server") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``contract``, from the server's point of view (see the module's
    docstring); ``title`` is its ``info.title``. ``info.version`` is the contract's fingerprint.

    Raises:
        Exception: the contract's JSON Schema cannot be made (as :meth:`Contract.json_schema`).
    """
    # A copy: the document shares nothing with this module's constants or the contract's schemas, so
    # a caller may change it.
    return copy.deepcopy(_Builder(contract).document(title))


class _Names:
    """Unique names: a name already taken gets ``_2``, ``_3``... (in the order names are asked for)."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)

    def claim(self, wanted: str) -> str:
        name, number = wanted, 2
        while name in self._taken:
            name = f"{wanted}_{number}"
            number += 1
        self._taken.add(name)
        return name


class _Builder:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.schema = contract.json_schema()
        names = _Names()
        protocol = [*_PROTOCOL_SCHEMAS, *(_PRESENCE_SCHEMAS if contract.presence is not None else ())]
        self.protocol_refs = {name: names.claim(_PROTOCOL_PREFIX + name) for name in sorted(protocol)}
        self.app_refs = {
            name: names.claim(_NOT_COMPONENT.sub("_", name)) for name in sorted(self.schema.get("$defs", {}))
        }
        self.messages: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}

    def document(self, title: str) -> dict[str, Any]:
        self._protocol_messages()
        presence = self.contract.presence is not None
        if presence:
            self._presence_messages()
        # One id per event and direction, used in its messages' and operation's names; the protocol's
        # own events are named first, so an event whose name is cleaned into theirs gets another.
        ids = {
            "client_to_server": _Names([_NOT_ID.sub("_", MEMBERS_EVENT)] if presence else []),
            "server_to_client": _Names(
                _NOT_ID.sub("_", name)
                for name in (HELLO_EVENT, ERROR_EVENT, GAP_EVENT, *([PRESENCE_EVENT] if presence else []))
            ),
        }
        # Names that need no cleaning keep theirs: "a_b" stays a_b, and "a.b" becomes a_b_2.
        clean = [e for e in self.contract.events if not _NOT_ID.search(e.name)]
        event_ids = {
            (e.direction, e.name): ids[e.direction].claim(_NOT_ID.sub("_", e.name))
            for e in [*clean, *(e for e in self.contract.events if _NOT_ID.search(e.name))]
        }
        for event in self.contract.events:
            self._event(event, event_ids[event.direction, event.name])
        schemas = {
            self.protocol_refs[name]: _converted(schema, self.protocol_refs)
            for name, schema in _PROTOCOL_SCHEMAS.items()
        }
        if presence:
            schemas.update(
                (self.protocol_refs[name], schema) for name, schema in self._presence_schemas().items()
            )
        schemas.update(
            (self.app_refs[name], _converted(schema, self.app_refs))
            for name, schema in self.schema.get("$defs", {}).items()
        )
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": title,
                "version": self.contract.fingerprint,
                "description": _info_description(self.contract),
            },
            "servers": {"server": _server()},
            "defaultContentType": _CONTENT_TYPES["json"],
            "channels": {
                _CHANNEL: {
                    "address": None,
                    "title": "The socket",
                    "description": "The WebSocket connection itself, at the server's `pathname`: "
                    "WebSockets have no channels inside a connection, so every event travels here, "
                    "told apart by the event name that starts each frame.",
                    "messages": self.messages,
                    "bindings": {"ws": _channel_binding()},
                }
            },
            "operations": self.operations,
            "components": {"schemas": dict(sorted(schemas.items()))},
        }

    # --- messages and operations ------------------------------------------------------------------

    def _message(self, key: str, message: dict[str, Any]) -> dict[str, str]:
        self.messages[key] = message
        return {"$ref": f"#/channels/{_CHANNEL}/messages/{key}"}

    def _protocol_messages(self) -> None:
        hello = self._message(
            f"server.{HELLO_EVENT}",
            {
                "name": HELLO_EVENT,
                "title": f"{HELLO_EVENT} (server to client)",
                "summary": "The first frame on every connection: the socket's id and the limits.",
                "description": f"A text frame: `{HELLO_EVENT}` 0x01 `J` 0x02 JSON. The server sends it "
                "first, before any other frame, whether the client sent a contract fingerprint or not. "
                'With `contract_check="refuse"` and a client whose `ss_contract` differs from '
                "`contract`, the server closes the connection with 4010 right after it: reload, do not "
                "reconnect.",
                "contentType": _CONTENT_TYPES["json"],
                "payload": self._protocol_ref("Hello"),
                "x-sac-sock": _frame(HELLO_EVENT, "json", "server", [""]),
            },
        )
        error = self._message(
            f"server.{ERROR_EVENT}",
            {
                "name": ERROR_EVENT,
                "title": f"{ERROR_EVENT} (server to client)",
                "summary": "A message that was not a call failed.",
                "description": f"A text frame: `{ERROR_EVENT}` 0x01 `J` 0x02 JSON, sent to the socket "
                "whose message failed: its payload did not decode (`invalid_payload`), its handler "
                "raised (`handler_error`), or raised `HandlerError` with the application's code. A call "
                "gets an error reply instead. The connection stays open.",
                "contentType": _CONTENT_TYPES["json"],
                "payload": self._protocol_ref("Error"),
                "x-sac-sock": _frame(ERROR_EVENT, "json", "server", [""]),
            },
        )
        gap = self._message(
            f"server.{GAP_EVENT}",
            {
                "name": GAP_EVENT,
                "title": f"{GAP_EVENT} (server to client)",
                "summary": "Messages of a room were lost between the server's instances.",
                "description": f"A text frame: `{GAP_EVENT}` 0x01 `J` 0x02 JSON, sent to the members of a "
                "room on an instance that found messages of that room lost on their way from another "
                "instance, before the message that revealed it (`room` null: the broadcasts, sent to "
                "every socket).",
                "contentType": _CONTENT_TYPES["json"],
                "payload": self._protocol_ref("Gap"),
                "x-sac-sock": _frame(GAP_EVENT, "json", "server", [""]),
            },
        )
        for event, message, summary in (
            (HELLO_EVENT, hello, "Send the socket's id and the limits, first on every connection."),
            (ERROR_EVENT, error, "Tell a client that one of its messages, not a call, failed."),
            (GAP_EVENT, gap, "Tell a room's members that some of its messages were lost."),
        ):
            self.operations[f"send.{_NOT_ID.sub('_', event)}"] = {
                "action": "send",
                "channel": _channel_ref(),
                "title": f"Send {event}",
                "summary": summary,
                "messages": [message],
            }

    def _presence_messages(self) -> None:
        """The ``__presence`` event and the ``__members`` call (a server with presence on)."""
        event = self._message(
            f"server.{PRESENCE_EVENT}",
            {
                "name": PRESENCE_EVENT,
                "title": f"{PRESENCE_EVENT} (server to client)",
                "summary": "A member of a tracked room joined or left.",
                "description": f"A text frame: `{PRESENCE_EVENT}` 0x01 `J` 0x02 JSON, sent to the members "
                "of a room whose presence the server tracks when a socket (or, per identity, an "
                "identity's first socket) joins it, or one (its last) leaves it, on any of the server's "
                "instances. `presence` is that member's presence payload, or null when it has none.",
                "contentType": _CONTENT_TYPES["json"],
                "payload": self._protocol_ref("PresenceEvent"),
                "x-sac-sock": _frame(PRESENCE_EVENT, "json", "server", [""]),
            },
        )
        self.operations[f"send.{_NOT_ID.sub('_', PRESENCE_EVENT)}"] = {
            "action": "send",
            "channel": _channel_ref(),
            "title": f"Send {PRESENCE_EVENT}",
            "summary": "Tell a tracked room's members that a member joined or left.",
            "messages": [event],
        }
        members_id = _NOT_ID.sub("_", MEMBERS_EVENT)
        question = self._message(
            f"client.{members_id}",
            {
                "name": MEMBERS_EVENT,
                "title": f"{MEMBERS_EVENT} (client to server)",
                "summary": "List the members of a room, on every instance.",
                "description": f"Always a call: {_layout(MEMBERS_EVENT, 'json', 'client', 'c<id>')}. "
                "The payload names the room.",
                "contentType": _CONTENT_TYPES["json"],
                "payload": self._protocol_ref("MembersQuestion"),
                "x-sac-sock": _frame(MEMBERS_EVENT, "json", "client", ["c<id>"]),
            },
        )
        reply = self._message(
            f"server.{members_id}.reply",
            {
                "name": MEMBERS_EVENT,
                "title": f"{MEMBERS_EVENT}: reply (server to client)",
                "summary": f"The server's reply to a call of {MEMBERS_EVENT}.",
                "description": "The room's members on every instance that answered in time (`missing` "
                "names the others), at most the server's `max_listed` (`truncated`). Sent as "
                + _layout(MEMBERS_EVENT, "json", "server", "r<id>")
                + ", where `<id>` is the call's id.",
                "contentType": _CONTENT_TYPES["json"],
                "payload": self._protocol_ref("Members"),
                "x-sac-sock": _frame(MEMBERS_EVENT, "json", "server", ["r<id>"]),
            },
        )
        failure = self._message(
            f"server.{members_id}.error",
            {
                "name": MEMBERS_EVENT,
                "title": f"{MEMBERS_EVENT}: error reply (server to client)",
                "summary": f"The server's error reply to a call of {MEMBERS_EVENT}.",
                "description": "`forbidden`: the application does not let this socket list the room (by "
                "default, only its members may); or `invalid_payload`, `too_many_calls`. Sent as "
                + _layout(MEMBERS_EVENT, "json", "server", "e<id>")
                + ", where `<id>` is the call's id; the payload is `{code, message, data}`.",
                "contentType": _CONTENT_TYPES["json"],
                "payload": self._protocol_ref("ErrorReply"),
                "x-sac-sock": _frame(MEMBERS_EVENT, "json", "server", ["e<id>"]),
            },
        )
        self.operations[f"receive.{members_id}"] = {
            "action": "receive",
            "channel": _channel_ref(),
            "title": f"Receive {MEMBERS_EVENT}",
            "summary": "List a room's members, if the application lets the socket see them.",
            "description": f"A client calls `{MEMBERS_EVENT}` with a room's name; the server answers with "
            "the room's members on every instance, or the error reply `forbidden`.",
            "messages": [question],
            "reply": {"channel": _channel_ref(), "messages": [reply, failure]},
        }

    def _presence_schemas(self) -> dict[str, dict[str, Any]]:
        """The protocol's presence schemas, each holding the application's presence payload schema
        (or null), already in AsyncAPI's format."""
        payload = {
            "anyOf": [_converted(self.schema["presence"]["schema"], self.app_refs), {"type": "null"}],
            "description": "The member's presence payload (the application's `Presence` type); null "
            "when it has none.",
        }
        return {
            "PresenceEvent": {
                "title": "PresenceEvent",
                "description": f"The payload of `{PRESENCE_EVENT}`: a member of a tracked room joined "
                "or left.",
                "type": "object",
                "properties": {
                    "room": {"type": "string", "description": "The room."},
                    "change": {"enum": ["joined", "left"]},
                    "socket": {
                        "type": "string",
                        "description": "The id of the socket that joined or left (per identity: the "
                        "identity's first socket to join, or its last to leave).",
                    },
                    "presence": payload,
                },
                "required": ["room", "change", "socket", "presence"],
            },
            "MembersQuestion": {
                "title": "MembersQuestion",
                "description": f"The payload of a `{MEMBERS_EVENT}` call.",
                "type": "object",
                "properties": {"room": {"type": "string", "description": "The room to list."}},
                "required": ["room"],
            },
            "Member": {
                "title": "Member",
                "description": "One member of a room.",
                "type": "object",
                "properties": {
                    "socket": {"type": "string", "description": "Its socket id."},
                    "instance": {
                        "type": "string",
                        "description": "The id of the server instance it is connected to.",
                    },
                    "presence": payload,
                },
                "required": ["socket", "instance", "presence"],
            },
            "Members": {
                "title": "Members",
                "description": f"The reply to a `{MEMBERS_EVENT}` call.",
                "type": "object",
                "properties": {
                    "members": {"type": "array", "items": self._protocol_ref("Member")},
                    "missing": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "The instances that did not answer in time: their members are "
                        "not listed.",
                    },
                    "truncated": {
                        "type": "boolean",
                        "description": "More members than the server lists at once (`max_listed`): "
                        "some were left out.",
                    },
                },
                "required": ["members", "missing", "truncated"],
            },
        }

    def _protocol_ref(self, name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{self.protocol_refs[name]}"}

    def _event(self, event: EventContract, event_id: str) -> None:
        event_schema = self.schema[event.direction][event.name]
        receives = event.direction == "client_to_server"
        sender, answerer = ("client", "server") if receives else ("server", "client")
        flags = ["", "c<id>"] if event.callable else [""]
        message = self._message(
            f"{sender}.{event_id}",
            {
                "name": event.name,
                "title": f"{event.name} ({sender} to {answerer})",
                **_summary(event.doc),
                "description": _event_description(event, sender),
                "contentType": _CONTENT_TYPES[event.kind],
                "payload": self._payload(event.kind, event_schema),
                "x-sac-sock": _frame(event.name, event.kind, sender, flags),
            },
        )
        operation: dict[str, Any] = {
            "action": "receive" if receives else "send",
            "channel": _channel_ref(),
            "title": f"{'Receive' if receives else 'Send'} {event.name}",
            **_summary(event.doc),
            "description": _operation_description(event),
            "messages": [message],
        }
        if event.callable:
            reply = self._message(
                f"{answerer}.{event_id}.reply",
                {
                    "name": event.name,
                    "title": f"{event.name}: reply ({answerer} to {sender})",
                    "summary": f"The {answerer}'s reply to a call of {event.name}.",
                    "description": _reply_description(event, answerer),
                    "contentType": _CONTENT_TYPES[event.reply_kind],
                    "payload": self._payload(event.reply_kind, event_schema["reply"]),
                    "x-sac-sock": _frame(event.name, event.reply_kind, answerer, ["r<id>"]),
                },
            )
            failure = self._message(
                f"{answerer}.{event_id}.error",
                {
                    "name": event.name,
                    "title": f"{event.name}: error reply ({answerer} to {sender})",
                    "summary": f"The {answerer}'s error reply to a call of {event.name}.",
                    "description": _error_reply_description(event, answerer),
                    "contentType": _CONTENT_TYPES["json"],
                    "payload": self._protocol_ref("ErrorReply"),
                    "x-sac-sock": _frame(event.name, "json", answerer, ["e<id>"]),
                },
            )
            operation["reply"] = {"channel": _channel_ref(), "messages": [reply, failure]}
        self.operations[f"{operation['action']}.{event_id}"] = operation

    def _payload(self, kind: PayloadKind, entry: dict[str, Any]) -> dict[str, Any]:
        if kind == "json":
            converted: dict[str, Any] = _converted(entry["schema"], self.app_refs)
            return converted
        if kind == "text":
            return {"type": "string", "description": "UTF-8 text, as it is (not JSON)."}
        return {"type": "string", "format": "binary", "description": "Raw bytes, as they are."}


def _channel_ref() -> dict[str, str]:
    return {"$ref": f"#/channels/{_CHANNEL}"}


def _summary(doc: str | None) -> dict[str, str]:
    """The first paragraph of a handler's docstring, on one line, as a summary."""
    if not doc:
        return {}
    return {"summary": " ".join(doc.split("\n\n")[0].split())}


def _frame(event: str, kind: PayloadKind, sender: str, flags: list[str]) -> dict[str, Any]:
    """A message's frame, for programs (``x-sac-sock``): its event name, the WebSocket frame type, the
    type letter (server frames only) and the header flags it may carry (``""``: none)."""
    frame: dict[str, Any] = {"event": event, "frame": _FRAMES[kind]}
    if sender == "server":
        frame["typeLetter"] = _TYPE_LETTERS[kind]
    frame["flags"] = flags
    return frame


def _layout(event: str, kind: PayloadKind, sender: str, flag: str) -> str:
    """One frame of a message, for people: ``chat`` 0x01 ``Jr<id>`` 0x02 JSON."""
    header = (_TYPE_LETTERS[kind] if sender == "server" else "") + flag
    payload = {"json": "JSON", "text": "the text", "binary": "the bytes"}[kind]
    frame = f"a {_FRAMES[kind]} frame"
    if sender == "client" and kind != "binary":
        frame = "a text frame (or a binary one)"
    if header:
        return f"{frame}: `{event}` 0x01 `{header}` 0x02 {payload}"
    return f"{frame}: `{event}` 0x02 {payload}"


def _event_description(event: EventContract, sender: str) -> str:
    parts = [event.doc.strip()] if event.doc else []
    parts.append(f"The payload is {_KIND_PAYLOADS[event.kind]}.")
    frames = [_layout(event.name, event.kind, sender, "")]
    if event.callable:
        frames.append("as a call, " + _layout(event.name, event.kind, sender, "c<id>"))
    parts.append("Sent as " + "; or ".join(frames) + ".")
    return "\n\n".join(parts)


def _operation_description(event: EventContract) -> str:
    if event.direction == "client_to_server":
        text = f"A client sends `{event.name}` and the server's handler receives it. "
        if event.kind == "json":
            text += (
                "A payload that does not validate never reaches the handler: the client gets an "
                "`__error` (`invalid_payload`, naming the field), or an error reply to a call. "
            )
        return text + (
            "Sent as a call (`c<id>`), it is answered with the handler's return value (the reply) or "
            "an error reply; sent without, it gets no answer."
        )
    text = f"The server sends `{event.name}` to one socket, a room, or every socket. "
    if event.callable:
        text += (
            "Sent as a call (`c<id>`), the client must answer it with the reply (`r<id>`) or an error "
            "reply (`e<id>`) before the server's timeout; sent without, it expects no answer."
        )
    else:
        text += "It expects no answer."
    return text


def _reply_description(event: EventContract, answerer: str) -> str:
    if answerer == "server":
        what = "The handler's return value"
    else:
        what = "The client's answer to the server's call"
    kind = event.reply_kind
    payload = _KIND_PAYLOADS[kind]
    if kind == "json" and event.reply in (None, type(None)):
        payload = "JSON `null`: an acknowledgement"
    return (
        f"{what}, {payload}. Sent as "
        + _layout(event.name, kind, answerer, "r<id>")
        + ", where `<id>` is the call's id."
    )


def _error_reply_description(event: EventContract, answerer: str) -> str:
    if answerer == "server":
        why = (
            "The call failed: its payload did not decode (`invalid_payload`), the handler raised "
            "(`handler_error`) or raised `HandlerError` (the application's code), or `max_calls` calls "
            "were already waiting (`too_many_calls`)."
        )
    else:
        why = "The client could not answer the call (the client's own code)."
    return (
        why
        + " Sent as "
        + _layout(event.name, "json", answerer, "e<id>")
        + ", where `<id>` is the call's id; the payload is `{code, message, data}`."
    )


def _server() -> dict[str, Any]:
    return {
        "host": "{host}",
        "pathname": "{path}",
        "protocol": "ws",
        "protocolVersion": "13",
        "title": "The typed-ss server",
        "description": f"A WebSocket (RFC 6455) per client, speaking the `{SUBPROTOCOL}` subprotocol: "
        f"offer `{SUBPROTOCOL}` in `Sec-WebSocket-Protocol` (the server selects it; a client that "
        "offers none is accepted too). Behind TLS, connect with `wss` instead of `ws`. Before the "
        "upgrade the server may refuse with HTTP 403 (a foreign `Origin`, a `Host` not allowed, the "
        "application's authentication refused) or 503 (shutting down, or too many connections). The "
        "host and the path are where the application serves the typed-ss server.",
        "variables": {
            "host": {
                "default": "localhost:8080",
                "description": "The host name and port the application is served on.",
            },
            "path": {
                "default": "/socket",
                "description": "The path the application mounts the typed-ss server at.",
            },
        },
    }


def _channel_binding() -> dict[str, Any]:
    return {
        "method": "GET",
        "query": {
            "type": "object",
            "properties": {
                "ss_contract": {
                    "type": "string",
                    "description": "The client's contract fingerprint (`info.version` of the document it "
                    "was written from). The server compares it with its own; with "
                    '`contract_check="refuse"` a different one is closed with 4010. Optional: a client '
                    "that sends none is never checked.",
                }
            },
        },
        "headers": {
            "type": "object",
            "properties": {
                "Sec-WebSocket-Protocol": {
                    "type": "string",
                    "description": f"Offer `{SUBPROTOCOL}`; the server selects it.",
                }
            },
        },
        "bindingVersion": "0.1.0",
    }


def _info_description(contract: Contract) -> str:
    received = len(contract.direction("client_to_server"))
    sent = len(contract.direction("server_to_client"))
    return f"""\
The contract of a typed-ss server: the {received} event(s) it handles and the {sent} it declares it \
sends, with their payloads, and the replies to calls. `info.version` is the contract's fingerprint, \
which the server also sends in `__hello`.

## Point of view

This document describes the **server**. An operation whose action is `receive` is an event a client \
sends and the server handles; `send` is an event the server sends to clients. A client does the \
opposite: it sends the messages of `receive` operations and receives those of `send` operations. \
Messages are named after their sender: `client.<event>` and `server.<event>`, and a call's answers \
`<answerer>.<event>.reply` and `<answerer>.<event>.error`.

## Frames (the sac-sock protocol)

Every WebSocket message is one frame:

    <event name, UTF-8> 0x01 <header flags> 0x02 <payload>

- **Client to server**: `<event> 0x02 <payload>`, or `<event> 0x01 <flag> 0x02 <payload>` with one \
call flag (below). The payload is everything after the **first** 0x02: it may contain any byte, 0x01 \
and 0x02 included, and may be empty. The frame may be text or binary; send a payload that is not \
UTF-8 in a binary frame. An event name is not empty, at most 128 bytes by default (the server's \
`max_event_name_length`), without 0x01 or 0x02; names that start with `__` belong to the protocol.
- **Server to client**: `<event> 0x01 <type letter><flag> 0x02 <payload>`, where the type letter says \
what the payload is, and the flag is empty except in calls and their answers:
  - `S`: a text frame; the payload is a string, as it is (content type `text/plain`).
  - `B`: a binary frame; the payload is raw bytes (`application/octet-stream`).
  - `J`: a text frame; the payload is compact JSON (`application/json`).

Each message gives its frame in `x-sac-sock`: `event` (the event name), `frame` (`text` or `binary`), \
`typeLetter` (server frames) and `flags` (the header flags it may carry; `""`: none).

Payloads: an event whose content type is `application/json` carries JSON that must validate against \
its payload schema (the server checks what it receives, and what it sends was checked before it was \
sent); `text/plain` is raw UTF-8 text and `application/octet-stream` raw bytes, both unencoded. The \
payload of a JSON event whose schema is a string is a JSON string, quotes included.

## Calls

A frame whose flag is `c<id>` is a call: the other side must answer it with a frame of the same event \
whose flag is `r<id>` (the reply: its payload is the return value, framed as the reply's message says) \
or `e<id>` (an error reply: the JSON object `{{"code", "message", "data"}}`). `<id>` is a decimal \
integer from 1 to {MAX_CALL_ID} without leading zeros, chosen by the caller and unique among its calls \
that wait. A client frame carries the flag alone (`add 0x01 c7 0x02 {{"a":1,"b":2}}`); a server frame \
after its type letter (`add 0x01 Jr7 0x02 {{"sum":3}}`).

- Every event the server receives can be called: the reply is the handler's return value, declared by \
the operation's `reply`. The same event sent without `c<id>` gets no answer.
- An event the server sends with a `reply` is one it may call: the client answers it as its `reply` \
declares (`confirm 0x01 r3 0x02 {{"yes":true}}`, or `confirm 0x01 e3 0x02 {{"code":"busy",\
"message":"later","data":null}}`).
- `__hello` gives `max_calls`: the most calls each side may have waiting for a reply. A call to the \
server past it gets the error reply `too_many_calls`.
- A call of an event the server does not handle gets the error reply `unknown_event`.

## Errors

Error reply codes typed-ss uses: {", ".join(f"`{code}`" for code in ERROR_CODES)}. Any other code is \
the application's own (`typed_ss.HandlerError`), with its `data`. A message that was not a call and \
fails is answered with an `__error` event instead (`{{"event", "code", "detail"}}`), and the \
connection stays open.

The server closes connections with a code: 1001, 1011, 1012, 1013 and 4008 (reconnect after a \
jittered delay), 1009 (a message over `max_message_size`), 1000 and 1008 (do not reconnect), 4010 (the \
client's contract is out of date: reload, do not reconnect).
""" + (_PRESENCE_DESCRIPTION if contract.presence is not None else "")


_PRESENCE_DESCRIPTION: Final = f"""
## Presence

This server tracks who is in some of its rooms, across all of its instances. The members of a tracked \
room get a `{PRESENCE_EVENT}` event when a member joins or leaves it, and a client may call \
`{MEMBERS_EVENT}` with a room's name to list its members, each with its presence payload, if the \
application lets it (by default, only a room's members may list it; otherwise the error reply \
`forbidden`).
"""


_SCHEMA_KEYWORDS: Final = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
"""Keywords whose value is a schema: the rest hold data (``default``, ``const``, ``enum``...) or names."""
_SCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS: Final = frozenset(
    {"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"}
)


def _converted(schema: Any, refs: dict[str, str]) -> Any:
    """A JSON Schema 2020-12 schema in AsyncAPI's schema format (see the module's docstring), its
    references to ``#/$defs/NAME`` pointing at ``#/components/schemas/refs[NAME]``."""
    if not isinstance(schema, dict):
        return schema  # true, false

    def convert(node: Any) -> Any:
        return _converted(node, refs)

    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            result[key] = _ref(value, refs)
        elif key == "discriminator" and isinstance(value, dict):
            mapping = value.get("mapping")
            result["x-discriminator"] = (
                {**value, "mapping": {tag: _ref(ref, refs) for tag, ref in mapping.items()}}
                if isinstance(mapping, dict)
                else value
            )
        elif key in _SCHEMA_KEYWORDS:
            result[key] = [convert(item) for item in value] if isinstance(value, list) else convert(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            result[key] = [convert(item) for item in value]
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            result[key] = {name: convert(item) for name, item in value.items()}
        else:
            result[key] = value
    if "prefixItems" in result:
        # Draft 07 writes a tuple as an array of item schemas; 2020-12's `items` beside prefixItems
        # (`false`: nothing more) is draft 07's additionalItems.
        prefix = result.pop("prefixItems")
        if "items" in result:
            result["additionalItems"] = result.pop("items")
        result["items"] = prefix
    if "$ref" in result and len(result) > 1:
        # Draft 07 ignores a $ref's siblings (a default, a description): allOf keeps them.
        result = {"allOf": [{"$ref": result.pop("$ref")}], **result}
    return result


def _ref(ref: str, refs: dict[str, str]) -> str:
    name = ref.removeprefix("#/$defs/")
    if name == ref or name not in refs:
        return ref
    return f"#/components/schemas/{refs[name]}"
