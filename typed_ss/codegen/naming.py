"""Naming: the TypeScript name of each named payload type, and of its ``Input`` shape.

A type is named after its class. When two different types share a name, every one of them is named by
module and class, so the names never depend on which event came first. Names the generated module
uses itself, TypeScript built-ins and reserved words get a trailing ``_``.

Every name is an identifier that starts with a letter, ``$``, or ``_`` followed by a digit: leading
underscores are dropped from the source's name. The generated module relies on that: the bindings it
adds beyond :data:`GENERATED_NAMES` start with ``_`` and a letter, so no payload type can shadow them.
"""

from __future__ import annotations

import re
import typing
from collections import defaultdict
from typing import Final

from typed_ss.codegen.typescript import RESERVED_WORDS
from typed_ss.typeinfo import origin

__all__ = ["GENERATED_NAMES", "PRESENCE_NAMES", "TS_GLOBALS", "assign_names", "input_name"]

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
        "CLIENT_REPLY_KINDS",
        "ClientToServerReplies",
        "ServerToClientReplies",
        "CallOptions",
        "CallError",
        "RELOAD_NEEDED_CODE",
        "connect",
        "SS",
        "withContract",
        "isBinary",
        "isBlobLike",
        "logError",
    ]
)
"""Names the generated module declares (or once declared) at its top level; a payload type must not
take one. The set never shrinks: a name dropped from it would stop renaming a payload type of that
name, change its declaration and so its contract's fingerprint. (``Listener``, ``Kind``,
``RELOAD_NEEDED_CODE``, ``withContract``, ``isBinary``, ``isBlobLike`` and ``logError`` were the
runtime's, which now lives in ss-typed.js.)"""

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

PRESENCE_NAMES: Final = frozenset(["PresenceEvent", "Members"])
"""Names the generated module declares only for a server with presence on, so only its payload types
must not take them (a contract without presence keeps its names, and its fingerprint)."""

_RESERVED: Final = GENERATED_NAMES | TS_GLOBALS | RESERVED_WORDS


def assign_names(sources: list[object], reserved: frozenset[str] = frozenset()) -> list[str]:
    """A TypeScript name for each source, in order: its own name when no other source has the same
    one, else its module-qualified name; reserved names (and ``reserved``) get a trailing ``_``; any
    clash left is numbered in the order given."""
    short = [_short_name(source) for source in sources]
    count: dict[str, int] = defaultdict(int)
    for name in short:
        count[name] += 1
    used: set[str] = set()
    names = []
    for source, name in zip(sources, short, strict=True):
        if count[name] > 1:
            name = _qualified_name(source)
        while name in _RESERVED or name in reserved:
            name += "_"
        names.append(_unique(name, used, f"{name}_2", reserved))
    return names


def input_name(name: str, used: set[str], reserved: frozenset[str] = frozenset()) -> str:
    """The name of the sent shape of the type named ``name``: ``NameInput``, or ``Name_Input`` when
    that is taken (then numbered), never one of ``reserved``. The name returned is added to ``used``."""
    return _unique(name + "Input", used, f"{name}_Input", reserved)


def _unique(name: str, used: set[str], fallback: str, reserved: frozenset[str] = frozenset()) -> str:
    candidate = name if name not in used and name not in reserved else fallback
    number = 2
    while candidate in used or candidate in _RESERVED or candidate in reserved:
        number += 1
        candidate = f"{name}_{number}"
    used.add(candidate)
    return candidate


def _identifier(text: str) -> str:
    # Underscores are stripped from both ends, and only a leading digit gets one back: so no name
    # starts with `_` and a letter, which the generated module keeps for its own bindings.
    name = re.sub(r"[^A-Za-z0-9_$]+", "_", text).strip("_") or "Type"
    return f"_{name}" if name[0].isdigit() else name


def _fragment(arg: object) -> str:
    if isinstance(arg, type):
        return arg.__name__
    if typing.get_origin(arg) is not None and typing.get_origin(arg) is not typing.Annotated:
        return "_".join([_fragment(typing.get_origin(arg)), *(_fragment(a) for a in typing.get_args(arg))])
    return "None" if arg is None or arg is type(None) else repr(arg)


def _short_name(source: object) -> str:
    if isinstance(source, str):
        return _identifier(source)
    generic = typing.get_origin(source)
    if generic is not None:  # a generic alias: Page[int] -> Page_int
        return _identifier("_".join([generic.__name__, *(_fragment(a) for a in typing.get_args(source))]))
    return _identifier(getattr(source, "__name__", repr(source)))


def _qualified_name(source: object) -> str:
    if isinstance(source, str):
        return _identifier(source)
    cls = origin(source)
    module = getattr(cls, "__module__", "")
    qualname = getattr(cls, "__qualname__", getattr(cls, "__name__", ""))
    suffix = _short_name(source)[len(_identifier(getattr(cls, "__name__", ""))) :]
    return _identifier(f"{module}.{qualname}".replace("<locals>", "locals")) + suffix
