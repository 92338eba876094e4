"""The generated module, rendered from the client model: a TypeScript module, or an ES module plus its
``.d.ts``.

It holds only what is particular to the server: the payload types, the two event maps, the two reply
maps (what each call of the client returns, what the client answers to each call of the server), the
contract fingerprint, how each event the client sends and each reply it gives is framed, the presence
API's types when the server has presence on (``PresenceEvent``, ``Members``, and ``TypedClient`` with
``onPresence`` and ``members``), and a ``connect`` that hands these to the typed runtime
(``ss-typed.mjs``, written next to it by :mod:`~typed_ss.codegen.runtime`). The client's API types are
the runtime's (``ss-typed.d.ts``), instantiated here with the maps.

Everything is deterministic: sorted, no timestamps, no absolute paths, ``\\n`` newlines.
"""

from __future__ import annotations

import json
from typing import Final, Literal, TypeAlias

from typed_ss import __version__
from typed_ss.codegen import ir
from typed_ss.codegen.files import GeneratedFile
from typed_ss.codegen.ir import ClientModel, EventType
from typed_ss.codegen.typescript import doc_comment, property_name, write, write_declaration

__all__ = ["BASENAME", "RUNTIME", "Lang", "render"]

Lang: TypeAlias = Literal["ts", "js"]
"""``ts``: one TypeScript module; ``js``: an ES module and its declarations."""

BASENAME: Final = "ss.client"
"""The generated module's file name, without its extension."""

RUNTIME: Final = "_runtime"
"""The generated module's name for the typed runtime module. It starts with ``_`` and a letter, which no
payload type name does (see :mod:`~typed_ss.codegen.naming`), so it never clashes with one."""

_CONNECT_DOC: Final = (
    "Connects to a typed-ss server, sending this client's contract fingerprint (the `ss_contract`\n"
    "query parameter). `options` are the plain client's (reconnect, queue, WebSocket class for\n"
    "Node, ...)."
)

# The client's API, as aliases of the runtime's generic types: (documentation, declaration).
_API: Final = (
    ("The names of the events this client sends.", "type ClientEventName = keyof ClientToServerEvents"),
    ("The names of the events this client receives.", "type ServerEventName = keyof ServerToClientEvents"),
    (
        "The arguments after the event name: the payload, which may be left out when it is `null`.",
        f"type PayloadArgs<E extends ClientEventName> = {RUNTIME}.PayloadArgs<ClientToServerEvents, E>",
    ),
    (
        "`emit(event, payload)` arguments; distributive, so an event-name union cannot mix payloads.",
        f"type EmitArgs<E extends ClientEventName = ClientEventName> = "
        f"{RUNTIME}.EmitArgs<ClientToServerEvents, E>",
    ),
    (
        "Removes the listener it was returned for; calling it again does nothing.",
        f"type Unsubscribe = {RUNTIME}.Unsubscribe",
    ),
    (
        "An `__error` frame: the server could not decode, or failed to handle, a payload this client sent.",
        f"type ServerError = {RUNTIME}.ServerError<ClientEventName>",
    ),
    (
        '"current": the server has this client\'s contract; "stale": it has another; '
        '"unknown": no `__hello` yet.',
        f"type ContractStatus = {RUNTIME}.ContractStatus",
    ),
    (
        "The server's contract differs from the one this client was generated from.",
        f"type ContractMismatch = {RUNTIME}.ContractMismatch",
    ),
    (
        "The server refused this client as out of date (close code 4010): reload the page to get the new "
        "one.",
        f"type ReloadNeeded = {RUNTIME}.ReloadNeeded",
    ),
    (
        "A call's options: `timeout` in ms (default 5000), after which it fails with `CallTimeout`.",
        f"type CallOptions = {RUNTIME}.CallOptions",
    ),
    (
        "How a call failed, its `name` says: `CallTimeout`, `ServerError` (with the server's `code`, "
        "`message` and `data`), `Disconnected` or `TooManyCalls`.",
        f"type CallError = {RUNTIME}.CallError",
    ),
    (
        "A client typed by the server's contract, over the plain ss.js client.",
        f"type TypedClient = {RUNTIME}.TypedClient<\n  ClientToServerEvents,\n  ServerToClientEvents,\n"
        "  ClientToServerReplies,\n  ServerToClientReplies\n>",
    ),
)

_RUNTIME_TYPES: Final = (
    "ClientToServerEvents, ServerToClientEvents, ClientToServerReplies, ServerToClientReplies"
)
"""The type arguments of the runtime's ``connect``: the generated module's four maps."""


def _runtime_types(model: ClientModel) -> str:
    """The runtime ``connect``'s type arguments: the four maps, and the presence payload type when the
    server has presence on."""
    if model.presence is None:
        return _RUNTIME_TYPES
    return f"{_RUNTIME_TYPES}, {write(model.presence)}"


def render(model: ClientModel, lang: Lang, source: str) -> list[GeneratedFile]:
    """The generated module for ``model``: ``ss.client.ts``, or ``ss.client.js`` and
    ``ss.client.d.ts``. ``source`` names the app in the banner."""
    if lang == "ts":
        return [GeneratedFile(f"{BASENAME}.ts", _typescript(model, source))]
    return [
        GeneratedFile(f"{BASENAME}.js", _javascript(model, source)),
        GeneratedFile(f"{BASENAME}.d.ts", _declarations(model, source)),
    ]


def _banner(model: ClientModel, source: str, what: str) -> str:
    return (
        f"// {what}, generated by typed-ss {__version__} from {source}.\n"
        "// Do not edit: run `typed-ss gen-client` again when the server's events change.\n"
        f"// Contract fingerprint: {model.fingerprint}\n"
        "/* eslint-disable */\n"
    )


def _types(model: ClientModel) -> str:
    parts = []
    if model.declarations:
        parts.append("// --- payload types ---\n\n")
        parts.append("\n".join(write_declaration(declaration) for declaration in model.declarations))
        parts.append("\n")
    parts.append("// --- events ---\n\n")
    parts.append(
        "/** Binary payloads this client can send. */\n"
        f"export type BinaryOut = {RUNTIME}.BinaryOut;\n"
        "/** Binary payloads this client receives. */\n"
        f"export type BinaryIn = {RUNTIME}.BinaryIn;\n"
        "/** What is read from a Blob (declared structurally, so no DOM lib is needed). */\n"
        f"export type BlobLike = {RUNTIME}.BlobLike;\n\n"
    )
    parts.append(
        _event_map(
            "ClientToServerEvents", "Every event this client sends, with its payload.", model.client_to_server
        )
    )
    parts.append("\n")
    parts.append(
        _event_map(
            "ServerToClientEvents",
            "Every event this client receives, with its payload.",
            model.server_to_client,
        )
    )
    parts.append("\n")
    parts.append(
        _reply_map(
            "ClientToServerReplies",
            "What the server replies to each event this client calls (`client.call.<event>`): its "
            "handler's return value.",
            model.client_to_server,
        )
    )
    parts.append("\n")
    parts.append(
        _reply_map(
            "ServerToClientReplies",
            "What this client replies to each event the server calls (`client.handle.<event>`).",
            model.server_to_client,
        )
    )
    if model.presence is not None:
        parts.append(_presence_types(model.presence))
    parts.append("\n// --- the client (implemented by ss-typed.js) ---\n\n")
    parts.append("".join(f"/** {doc} */\nexport {declaration};\n" for doc, declaration in _api(model)))
    return "".join(parts)


def _api(model: ClientModel) -> tuple[tuple[str, str], ...]:
    """The client's API aliases: :data:`_API`, its ``TypedClient`` with the presence API when the
    server has presence on."""
    if model.presence is None:
        return _API
    return tuple(
        (
            doc.removesuffix(".") + ", with the presence API (`onPresence`, `members`).",
            declaration + f" & {RUNTIME}.PresenceClient<{write(model.presence)}>",
        )
        if declaration.startswith("type TypedClient =")
        else (doc, declaration)
        for doc, declaration in _API
    )


def _presence_types(presence: ir.Node) -> str:
    """The presence API's types (a server with presence on): its event and the reply of ``members``."""
    payload = write(presence)
    return (
        "\n// --- presence (the server's Presence) ---\n\n"
        "/**\n"
        " * A `__presence` event (`client.onPresence`): a member of a tracked room this client is in\n"
        " * joined or left, on any instance. `presence` is that member's presence payload, or null.\n"
        " */\n"
        f"export type PresenceEvent = {RUNTIME}.PresenceEvent<{payload}>;\n"
        "/**\n"
        " * What `client.members(room)` resolves with: the room's members on every instance that answered\n"
        " * (`missing` names those that did not), at most the server's `max_listed` (`truncated` says so).\n"
        " */\n"
        f"export type Members = {RUNTIME}.Members<{payload}>;\n"
    )


def _event_map(name: str, doc: str, events: tuple[EventType, ...]) -> str:
    if not events:
        return f"/** {doc} */\nexport interface {name} {{}}\n"
    body = "".join(
        f"{doc_comment(_event_doc(e), '  ')}  {property_name(e.name)}: {write(e.payload)};\n" for e in events
    )
    return f"/** {doc} */\nexport interface {name} {{\n{body}}}\n"


def _event_doc(event: EventType) -> str | None:
    parts = [part for part in (event.doc, _WIRE[event.kind]) if part]
    return "\n\n".join(parts) or None


_WIRE: Final[dict[str, str | None]] = {"binary": "Binary frame.", "text": "Raw text, not JSON.", "json": None}


def _reply_map(name: str, doc: str, events: tuple[EventType, ...]) -> str:
    callable_events = [event for event in events if event.reply is not None]
    if not callable_events:
        return f"/** {doc} */\nexport interface {name} {{}}\n"
    body = "".join(
        f"{doc_comment(_WIRE[e.reply_kind or 'json'], '  ')}  {property_name(e.name)}: {write(e.reply)};\n"
        for e in callable_events
        if e.reply is not None
    )
    return f"/** {doc} */\nexport interface {name} {{\n{body}}}\n"


def _contract(model: ClientModel, kinds_type: str, reply_kinds_type: str) -> str:
    """``CONTRACT``, ``CLIENT_EVENT_KINDS`` and ``CLIENT_REPLY_KINDS``: what the runtime needs to know of
    the contract."""
    kinds = "".join(
        f"  {property_name(event.name)}: {json.dumps(event.kind)},\n" for event in model.client_to_server
    )
    reply_kinds = "".join(
        f"  {property_name(event.name)}: {json.dumps(event.reply_kind)},\n"
        for event in model.server_to_client
        if event.reply is not None
    )
    return (
        "/** The fingerprint of the contract this client was generated from. */\n"
        f"export const CONTRACT = {json.dumps(model.fingerprint)};\n\n"
        "/** How each event's payload is framed. */\n"
        f"const CLIENT_EVENT_KINDS{kinds_type} = {{\n{kinds}}};\n\n"
        "/** How this client's reply to each event the server calls is framed. */\n"
        f"const CLIENT_REPLY_KINDS{reply_kinds_type} = {_object_literal(reply_kinds)};\n\n"
    )


def _object_literal(members: str) -> str:
    """``{}``, or the members (each a line) between braces."""
    return f"{{\n{members}}}" if members else "{}"


_CONTRACT_ARGUMENT: Final = (
    "{ fingerprint: CONTRACT, kinds: CLIENT_EVENT_KINDS, replyKinds: CLIENT_REPLY_KINDS }"
)


def _typescript(model: ClientModel, source: str) -> str:
    return (
        _banner(model, source, "A typed client for a typed-ss server")
        + 'import type SS from "./ss.mjs";\n'
        + f'import * as {RUNTIME} from "./ss-typed.mjs";\n\n'
        + _types(model)
        + "\n"
        + _contract(
            model,
            f": {{ readonly [E in ClientEventName]: {RUNTIME}.Kind }}",
            f": {{ readonly [E in keyof ServerToClientReplies]: {RUNTIME}.Kind }}",
        )
        + doc_comment(_CONNECT_DOC)
        + "export function connect(url: string, options?: SS.Options): TypedClient {\n"
        + f"  return {RUNTIME}.connect<{_runtime_types(model)}>(\n"
        + "    url,\n"
        + f"    {_CONTRACT_ARGUMENT},\n"
        + "    options,\n"
        + "  );\n"
        + "}\n"
    )


def _javascript(model: ClientModel, source: str) -> str:
    return (
        _banner(model, source, "A typed client for a typed-ss server (types in ss.client.d.ts)")
        + f'import * as {RUNTIME} from "./ss-typed.mjs";\n\n'
        + _contract(model, "", "")
        + doc_comment(_CONNECT_DOC)
        + "export function connect(url, options) {\n"
        + f"  return {RUNTIME}.connect(url, {_CONTRACT_ARGUMENT}, options);\n"
        + "}\n"
    )


def _declarations(model: ClientModel, source: str) -> str:
    return (
        _banner(model, source, "Types of the typed client in ss.client.js")
        + 'import type SS from "./ss.mjs";\n'
        + f'import type * as {RUNTIME} from "./ss-typed.mjs";\n\n'
        + _types(model)
        + "\n/** The fingerprint of the contract this client was generated from. */\n"
        + f"export declare const CONTRACT: {json.dumps(model.fingerprint)};\n\n"
        + doc_comment(_CONNECT_DOC)
        + "export declare function connect(url: string, options?: SS.Options): TypedClient;\n"
    )
